"""The sections of shared configuration files that configure the tests.

pytest reads `[tool.pytest.ini_options]` in pyproject.toml, `[tool:pytest]` in setup.cfg and
`[pytest]` in tox.ini; cargo builds the tests with `[dev-dependencies]` and the `test` and
`bench` profiles, finds them through `[[test]]` and `[[bench]]` targets, and runs them as a
target's `test`, `harness` and `doctest` keys and `[package]`'s `autotests` and `autobenches`
say. An answer that adds `addopts = "-p cheat"`, or points the failing test target at a file
of its own, changes what the tests are without touching a test file. The rest of such a file
(a project's dependencies, its version) is the code's.

Sections are cut from the text: one runs from its header, a line starting with `[`, to the
next. Text can hide a table from that cut (dotted keys under `[tool]`, an indented header, a
decoy copy of the section inside a multi-line string), so the files are also read as the
tools read them (`settings`: pytest's table or section, a Cargo manifest's test values):
when those differ, the tests changed, and when putting the base's sections back does not
give the base's settings (a key in `[package]` or `[lib]`), the base's whole file stands in.
"""

from __future__ import annotations

import configparser
import posixpath
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HEADER = re.compile(r"\[\[?([^\]]*)\]")
CARGO_DEV = re.compile(
    r"(?:target\..+\.)?dev[-_]dependencies(?:\..+)?|test|bench|profile\.(?:test|bench)"
)
TARGET_KEYS = ("test", "harness", "doctest", "bench")

TEST_SECTIONS: dict[str, Callable[[str], bool]] = {
    "pyproject.toml": lambda name: name == "tool.pytest" or name.startswith("tool.pytest."),
    "setup.cfg": lambda name: name == "tool:pytest",
    "tox.ini": lambda name: name == "pytest",
    "Cargo.toml": lambda name: CARGO_DEV.fullmatch(name) is not None,
}


@dataclass(frozen=True)
class Section:
    """A header line and the lines up to the next; `key` tells repeated headers apart."""

    name: str
    key: tuple[str, int]
    text: str


def holds_test_settings(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in TEST_SECTIONS


def sections(text: str) -> list[Section]:
    """`text` cut at its header lines; what comes before the first is a section named ""."""
    found: list[Section] = []
    seen: dict[str, int] = {}
    name = ""
    lines: list[str] = []
    for line in text.splitlines(keepends=True):
        header = HEADER.match(line)
        if header:
            if lines or found:
                found.append(_section(name, lines, seen))
            name, lines = _name(header.group(1)), []
        lines.append(line)
    if lines:
        found.append(_section(name, lines, seen))
    return found


def sections_for_tests(path: str, text: str) -> list[Section]:
    is_test = TEST_SECTIONS[path.rsplit("/", 1)[-1]]
    return [section for section in sections(text) if section.name and is_test(section.name)]


def changed(path: str, before: str, now: str) -> bool:
    """Whether the test sections of `now` differ from those of `before` (blank lines and
    trailing spaces aside), or what they configure does."""
    if _normal(sections_for_tests(path, before)) != _normal(sections_for_tests(path, now)):
        return True
    return bool(settings(path, before) != settings(path, now))


def settings(path: str, text: str) -> Any:
    """What the file configures for the tests, as the tools parse it: pyproject's
    `tool.pytest` table, setup.cfg's and tox.ini's pytest section, a Cargo manifest's test
    values (None: nothing). A file that does not parse is its own text: any change counts."""
    name = path.rsplit("/", 1)[-1]
    if name == "pyproject.toml":
        try:
            return tomllib.loads(text).get("tool", {}).get("pytest")
        except (tomllib.TOMLDecodeError, RecursionError):
            return ("unparsable", text)
    if name == "Cargo.toml":
        cargo = cargo_test_settings(text)
        return ("unparsable", text) if cargo is None else cargo
    section = {"setup.cfg": "tool:pytest", "tox.ini": "pytest"}.get(name)
    if section is None:
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return ("unparsable", text)
    return dict(parser[section]) if parser.has_section(section) else None


def cargo_test_settings(text: str) -> dict[str, Any] | None:
    """What a Cargo manifest says about the tests, as values (None: not TOML)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None

    def table(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    def keys(target: Any) -> dict[str, Any]:
        return {key: table(target).get(key) for key in TARGET_KEYS}

    package, profile = table(data.get("package")), table(data.get("profile"))
    return {
        "package": {key: package.get(key) for key in ("autotests", "autobenches")},
        "lib": keys(data.get("lib")),
        "bin": [keys(t) | {"name": table(t).get("name")} for t in _list(data.get("bin"))],
        "example": [keys(t) | {"name": table(t).get("name")} for t in _list(data.get("example"))],
        "test": data.get("test"),
        "bench": data.get("bench"),
        "profile": {key: profile.get(key) for key in ("test", "bench")},
        "dev": [data.get("dev-dependencies"), data.get("dev_dependencies")],
        "target": {
            name: [table(t).get("dev-dependencies"), table(t).get("dev_dependencies")]
            for name, t in table(data.get("target")).items()
        },
    }


def cargo_test_targets(path: str, text: str) -> set[str]:
    """The files the `[[test]]` and `[[bench]]` targets of the manifest at `path` name."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return set()
    folder = posixpath.dirname(path)
    return {
        posixpath.normpath(posixpath.join(folder, target["path"]))
        for target in _list(data.get("test")) + _list(data.get("bench"))
        if isinstance(target, dict) and isinstance(target.get("path"), str)
    }


def with_base_sections(path: str, before: str, now: str) -> str:
    """`now` with the test sections `before` has: each put in place of the one with its
    header, appended when `now` lacks it; one the base does not have is removed."""
    base = {section.key: section for section in sections_for_tests(path, before)}
    is_test = TEST_SECTIONS[path.rsplit("/", 1)[-1]]
    kept: list[str] = []
    for section in sections(now):
        if not (section.name and is_test(section.name)):
            kept.append(section.text)
        elif section.key in base:
            # The base's lines, with the blank lines that set the attempt's section apart.
            tail = section.text[len(section.text.rstrip("\n")) :]
            kept.append(base.pop(section.key).text.rstrip("\n") + (tail or "\n"))
    text = "".join(kept).rstrip("\n")
    if base:
        text += "\n\n" if text else ""
        text += "\n".join(_ended(section.text) for section in base.values())
    spliced = _ended(text.rstrip("\n"))
    # The cut was fooled when the result does not configure the tests as the base did.
    return spliced if settings(path, spliced) == settings(path, before) else before


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _section(name: str, lines: list[str], seen: dict[str, int]) -> Section:
    seen[name] = seen.get(name, 0) + 1
    return Section(name, (name, seen[name]), "".join(lines))


def _name(header: str) -> str:
    """`tool . "pytest"` and `tool.pytest` are the same table."""
    name = re.sub(r"\s*\.\s*", ".", header.strip())
    return re.sub(r'"([\w-]+)"', r"\1", name)


def _normal(found: list[Section]) -> list[tuple[tuple[str, int], list[str]]]:
    return [(s.key, [line.rstrip() for line in s.text.splitlines() if line.strip()]) for s in found]


def _ended(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"
