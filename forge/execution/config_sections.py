"""The sections of shared configuration files that configure the tests.

pytest reads `[tool.pytest.ini_options]` in pyproject.toml, `[tool:pytest]` in setup.cfg and
`[pytest]` in tox.ini; cargo builds the tests with `[dev-dependencies]`. An answer that adds
`addopts = "-p cheat"` there changes what the tests are without touching a test file. The
rest of such a file (a project's dependencies, its version) is the code's.

Sections are cut from the text: one runs from its header, a line starting with `[`, to the
next. Text can hide a table from that cut (dotted keys under `[tool]`, an indented header, a
decoy copy of the section inside a multi-line string), so the files are also read as what
pytest reads (`settings`): when those differ, the tests changed, and when putting the base's
sections back does not give the base's settings, the base's whole file stands in.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HEADER = re.compile(r"\[\[?([^\]]*)\]")
CARGO_DEV = re.compile(r"(?:target\..+\.)?dev[-_]dependencies(?:\..+)?")

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
    `tool.pytest` table, setup.cfg's and tox.ini's pytest section (None: nothing). A file
    that does not parse is its own text: any change to it counts."""
    name = path.rsplit("/", 1)[-1]
    if name == "pyproject.toml":
        try:
            return tomllib.loads(text).get("tool", {}).get("pytest")
        except (tomllib.TOMLDecodeError, RecursionError):
            return ("unparsable", text)
    section = {"setup.cfg": "tool:pytest", "tox.ini": "pytest"}.get(name)
    if section is None:
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return ("unparsable", text)
    return dict(parser[section]) if parser.has_section(section) else None


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
