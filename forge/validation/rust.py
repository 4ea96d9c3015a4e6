"""Cargo's output turned into typed results: compiler diagnostics and per-test outcomes.

Pure parsers: the runner spawns cargo with the `*_ARGS` commands and hands the captured text here.

`cargo test` writes its `Running ...` / `Doc-tests ...` headers to stderr and the test binaries
write libtest's report to stdout. The most robust input is both streams merged in order (run cargo
with stderr redirected into stdout and call `parse_test_output(merged, "", root)`): each header
then sits right before its binary's report. With separate streams the N-th report is matched with
the N-th header, which goes wrong only when a binary prints no report at all (`harness = false`,
or a crash before its first line).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.validation.types import Diagnostic, Severity, TestOutcome, TestResult

# cargo check and clippy build what `cargo test` builds by default, and no more: libraries,
# binaries, the test targets (unit tests of libraries and binaries, tests/*.rs, and benches or
# examples with `test = true`) and examples. Not `--all-targets`: it adds every bench, and a
# bench written for nightly (`#![feature(test)]`) would stop a stable crate whose tests pass.
# `--lib` checks a library as built without cfg(test); cargo refuses it in a workspace without
# any library ("no library targets found"), so it is dropped there (see `rust_validators`).
TARGETS = ["--lib", "--bins", "--tests", "--examples"]
CHECK_ARGS = ["cargo", "check", "--workspace", *TARGETS, "--message-format=json"]
CLIPPY_ARGS = ["cargo", "clippy", "--workspace", *TARGETS, "--message-format=json"]
# No `--all-targets` here: for `cargo test` it means "skip the doc-tests".
TEST_ARGS = ["cargo", "test", "--workspace", "--no-fail-fast", "--message-format=json"]

COUNT_KEYS = ("passed", "failed", "ignored", "measured", "filtered_out")

# The span-less error that only sums up the ones already reported.
_SUMMARY = re.compile(r"^aborting due to")

# `(?!`)`: not the "Running `rustc ...`" lines of `cargo -v`.
_RUNNING = re.compile(r"^\s*Running (?!`)(?P<label>.+?)(?: \((?P<exe>[^()]+)\))?\s*$")
_DOC_TESTS = re.compile(r"^\s*Doc-tests (?P<crate>\S+)\s*$")
_RUNNING_N = re.compile(r"^running \d+ tests?$")
_TEST_LINE = re.compile(r"^test (?P<name>.+) \.\.\. (?P<status>ok|FAILED|ignored)(?:, .*)?$")
_RESULT_LINE = re.compile(r"^test result: ")
_COUNT = re.compile(r"(\d+) (passed|failed|ignored|measured|filtered out)")
_SECTION = re.compile(r"^---- (?P<name>.+) std(?:out|err) ----$")
# libtest appends the test's mode to the name on the result line, not in the failure section.
_NAME_SUFFIX = re.compile(r" - (?:should panic|compile fail|compile)$")
_DOCTEST_NAME = re.compile(r"^(?P<file>.+?) - .*\(line (?P<line>\d+)\)$")
_THREAD = r"thread '[^'\n]*'(?: \(\d+\))? panicked at "
_LOCATION = r"(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+)"
# rustc >= 1.73: `panicked at file:line:col:` and the message on the lines below.
_PANIC = re.compile(rf"^{_THREAD}{_LOCATION}:$", re.M)
# Older rustc: `panicked at 'message', file:line:col`, the message possibly spanning lines.
_PANIC_OLD = re.compile(rf"^{_THREAD}'(?P<message>.*?)', {_LOCATION}$", re.M | re.S)
_NO_PANIC = re.compile(rf"^note: test did not panic as expected at {_LOCATION}$", re.M)
_PANIC_END = ("stack backtrace:", "note: run with `RUST_BACKTRACE")
_OUTCOMES: dict[str, TestOutcome] = {"ok": "passed", "FAILED": "failed", "ignored": "skipped"}


# ---------------------------------------------------------------- compiler messages


def parse_compiler_messages(stdout: str, repo_root: Path, tool: str) -> list[Diagnostic]:
    """Diagnostics from cargo's `--message-format=json` lines, in order, duplicates removed.

    A crate compiled twice (lib and lib test) repeats its warnings; the copy
    with the same file, line, column, code and message is dropped.
    """
    diagnostics: list[Diagnostic] = []
    seen: set[tuple[object, ...]] = set()
    for record in _json_records(stdout):
        if record.get("reason") != "compiler-message":
            continue
        diagnostic = _diagnostic(record, repo_root, tool)
        if diagnostic is None:
            continue
        key = _identity(diagnostic)
        if key not in seen:
            seen.add(key)
            diagnostics.append(diagnostic)
    return diagnostics


def _identity(d: Diagnostic) -> tuple[object, ...]:
    return (d.file, d.line, d.column, d.code, d.message, d.severity)


def _json_records(stdout: str) -> Iterator[dict[str, Any]]:
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record


def _diagnostic(record: dict[str, Any], repo_root: Path, tool: str) -> Diagnostic | None:
    """One diagnostic at the message's primary span, or None for a summary or span-less note."""
    message: dict[str, Any] = record.get("message") or {}
    text = str(message.get("message", ""))
    severity = _severity(str(message.get("level", "")))
    span = _primary_span(message.get("spans") or [], repo_root)
    # A span-less error (a linker failure, a missing crate) is still a finding; the rest is noise.
    if span is None and (severity != "error" or _SUMMARY.match(text)):
        return None
    rendered = message.get("rendered")
    file, line, column = None, None, None
    if span is not None:
        file = _repo_path(str(span["file_name"]), _package_dir(record, repo_root), repo_root)
        line, column = int(span["line_start"]), int(span["column_start"])
    return Diagnostic(
        tool=tool,
        severity=severity,
        message=text,
        file=file,
        line=line,
        column=column,
        code=(message.get("code") or {}).get("code"),
        rendered=rendered if isinstance(rendered, str) else None,
    )


def _severity(level: str) -> Severity:
    # Levels: error, warning, note, help, failure-note, "error: internal compiler error".
    if level.startswith("error"):
        return "error"
    if level == "warning":
        return "warning"
    return "note"


def _primary_span(spans: list[dict[str, Any]], repo_root: Path) -> dict[str, Any] | None:
    """The primary span, followed out of macro expansions defined outside the repository."""
    span = next((s for s in spans if s.get("is_primary")), None)
    while span is not None and span.get("expansion") and _outside(span["file_name"], repo_root):
        span = span["expansion"].get("span")
    return span


def _outside(file_name: str, repo_root: Path) -> bool:
    # `<std macros>`-style names and absolute paths elsewhere (the standard library, the registry).
    path = Path(file_name)
    return file_name.startswith("<") or (path.is_absolute() and _relative(path, repo_root) is None)


def _package_dir(record: dict[str, Any], repo_root: Path) -> Path:
    manifest = record.get("manifest_path")
    if isinstance(manifest, str):
        return Path(manifest).parent
    return repo_root


# ---------------------------------------------------------------- paths


def _repo_path(file_name: str, package_dir: Path, repo_root: Path) -> str:
    """A path cargo or rustc printed, relative to the repository root with forward slashes.

    Paths outside the repository stay absolute.
    """
    path = Path(file_name)
    if not path.is_absolute():
        path = _compiler_cwd(path, package_dir) / path
    relative = _relative(path, repo_root)
    return relative if relative is not None else path.as_posix()


def _compiler_cwd(path: Path, package_dir: Path) -> Path:
    """The folder rustc ran in when it printed `path`, which is relative to that folder.

    Cargo runs rustc from the workspace root, so a member's files read "crates/b/src/lib.rs";
    older cargo ran it from the package folder ("src/lib.rs"). The workspace root is an ancestor
    of the package folder: take the outermost one from which the path leads into the package.
    """
    for base in reversed([package_dir, *package_dir.parents]):
        prefix = package_dir.relative_to(base).parts
        if path.parts[: len(prefix)] == prefix:
            return base
    return package_dir


def _relative(path: Path, repo_root: Path) -> str | None:
    for root in (repo_root, repo_root.resolve()):
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return None


# ---------------------------------------------------------------- test output


@dataclass(frozen=True)
class _Header:
    """A `Running ...` or `Doc-tests ...` line: the binary's label and its package folder."""

    label: str
    package_dir: Path | None
    doc_tests: bool


@dataclass
class _Binary:
    """One test binary's report: its header, if known, and the stdout lines libtest printed."""

    header: _Header | None
    lines: list[str] = field(default_factory=list)

    @property
    def label(self) -> str | None:
        return self.header.label if self.header else None


def parse_test_output(stdout: str, stderr: str, repo_root: Path) -> list[TestResult]:
    """Every test `cargo test` reported, in order, with its binary as the suite.

    `stdout` holds cargo's JSON build messages and libtest's reports; `stderr` cargo's headers.
    Pass both streams merged as `stdout` (and `stderr=""`) when you can: see the module docstring.
    A binary that stopped before its `test result:` line (a crash, an abort) adds one "error"
    result named after the binary.
    """
    packages = _package_dirs(stdout)
    headers = (_header(line, packages) for line in stderr.splitlines())
    queued = (header for header in headers if header is not None)
    results: list[TestResult] = []
    for binary in _binaries(stdout, queued, packages):
        results.extend(_binary_results(binary, repo_root))
    return results


def summed_counts(stdout: str) -> dict[str, int]:
    """passed, failed, ignored, measured and filtered_out, summed over every `test result:` line."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for line in stdout.splitlines():
        if _RESULT_LINE.match(line):
            for number, kind in _COUNT.findall(line):
                counts[kind.replace(" ", "_")] += int(number)
    return counts


def _package_dirs(stdout: str) -> dict[str, Path]:
    """Package folder of each test executable (by file name) and each library (by crate name)."""
    packages: dict[str, Path] = {}
    for record in _json_records(stdout):
        if record.get("reason") != "compiler-artifact" or "manifest_path" not in record:
            continue
        package_dir = Path(record["manifest_path"]).parent
        if record.get("executable"):
            packages[Path(record["executable"]).name] = package_dir
        target = record.get("target") or {}
        if _is_library(target.get("kind") or []):
            packages[f"crate:{target.get('name')}"] = package_dir
    return packages


def _is_library(kinds: list[str]) -> bool:
    return any(kind in ("lib", "rlib", "dylib", "proc-macro") for kind in kinds)


def _header(line: str, packages: dict[str, Path]) -> _Header | None:
    if match := _DOC_TESTS.match(line):
        crate = match["crate"]
        return _Header(f"doc-tests {crate}", packages.get(f"crate:{crate}"), doc_tests=True)
    if match := _RUNNING.match(line):
        executable = Path(match["exe"] or match["label"]).name
        return _Header(match["label"], packages.get(executable), doc_tests=False)
    return None


def _binaries(
    stdout: str, queued: Iterator[_Header], packages: dict[str, Path]
) -> Iterator[_Binary]:
    """Split stdout at each `running N tests` line, one block per test binary.

    A header met in stdout itself (merged streams) names the next block; otherwise the next
    header from stderr does.
    """
    inline: _Header | None = None
    binary: _Binary | None = None
    for line in stdout.splitlines():
        if (header := _header(line, packages)) is not None:
            inline = header
        elif _RUNNING_N.match(line):
            if binary is not None:
                yield binary
            header = inline or next(queued, None)
            inline = None
            binary = _Binary(header)
        elif binary is not None:
            binary.lines.append(line)
    if binary is not None:
        yield binary


def _binary_results(binary: _Binary, repo_root: Path) -> list[TestResult]:
    outcomes, sections, finished = _read_report(binary.lines)
    results = [
        _test_result(name, outcome, sections.get(name), binary, repo_root)
        for name, outcome in outcomes
    ]
    if not finished:
        message = "the test binary stopped before reporting a result (crashed or killed)"
        name = binary.label or "test binary"
        results.append(TestResult(name=name, outcome="error", suite=binary.label, message=message))
    return results


def _read_report(
    lines: list[str],
) -> tuple[list[tuple[str, TestOutcome]], dict[str, list[str]], bool]:
    """The (name, outcome) lines, the captured output of each failure, and whether it finished.

    Test lines come before the first `failures:`; after it only sections are read, so a failed
    test's captured output that looks like a test line is not mistaken for one.
    """
    outcomes: list[tuple[str, TestOutcome]] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_failures = False
    for line in lines:
        if _RESULT_LINE.match(line):
            return outcomes, sections, True
        if line == "failures:":
            in_failures, current = True, None
        elif in_failures and (match := _SECTION.match(line)):
            current = sections.setdefault(match["name"], [])
        elif in_failures and current is not None:
            current.append(line)
        elif not in_failures and (match := _TEST_LINE.match(line)):
            outcomes.append((_NAME_SUFFIX.sub("", match["name"]), _OUTCOMES[match["status"]]))
    return outcomes, sections, False


def _test_result(
    name: str,
    outcome: TestOutcome,
    section: list[str] | None,
    binary: _Binary,
    repo_root: Path,
) -> TestResult:
    header = binary.header
    package_dir = header.package_dir if header and header.package_dir else repo_root
    file: str | None = None
    line: int | None = None
    message: str | None = None
    if section is not None:
        file, line, message = _failure(section)
        if file is not None:
            file = _repo_path(file, package_dir, repo_root)
    # A doc-test panics in a generated file; its name says where it lives in the sources.
    if header and header.doc_tests and (match := _DOCTEST_NAME.match(name)):
        file, line = _repo_path(match["file"], package_dir, repo_root), int(match["line"])
    return TestResult(
        name=name, outcome=outcome, suite=binary.label, file=file, line=line, message=message
    )


def _failure(section: list[str]) -> tuple[str | None, int | None, str | None]:
    """Where a failed test panicked, as printed, and the panic message (else its whole output)."""
    text = "\n".join(section)
    if match := _PANIC.search(text):
        message = _panic_message(text[match.end() :].splitlines())
        return match["file"], int(match["line"]), message
    if match := _PANIC_OLD.search(text):
        return match["file"], int(match["line"]), match["message"]
    output = text.strip() or None
    if match := _NO_PANIC.search(text):
        return match["file"], int(match["line"]), output
    return None, None, output


def _panic_message(lines: list[str]) -> str | None:
    kept: list[str] = []
    for line in lines[1:]:  # lines[0] is the rest of the header line: empty
        if line.startswith(_PANIC_END):
            break
        kept.append(line)
    return "\n".join(kept).strip() or None
