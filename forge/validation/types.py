"""Typed results of `forge validate`: diagnostics, test results, one result per validator."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

Severity = Literal["error", "warning", "note"]
# xfailed: failed as marked expected to (never fails a run); xpassed: passed although marked
# expected to fail, without strict (a strict one is "failed", as pytest counts it).
TestOutcome = Literal["passed", "failed", "skipped", "error", "xfailed", "xpassed"]


class Stage(StrEnum):
    """Validators run in this order of stages; a syntax or build failure skips the tests."""

    SYNTAX = "syntax"
    BUILD = "build"
    LINT = "lint"
    TEST = "test"


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run, as asked: stage switched off, optional tool missing, ...
    COULD_NOT_RUN = "could_not_run"  # a tool the project needs is missing: never a pass
    TIMEOUT = "timeout"  # killed, with its whole process group, past its time limit
    ERROR = "error"  # the tool itself broke (crash, unreadable output)
    NO_TESTS = "no_tests"  # the test runner collected nothing: never counted as a pass


@dataclass(frozen=True)
class Diagnostic:
    """One finding. `file` is relative to the repository root, with forward slashes."""

    tool: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    code: str | None = None
    rendered: str | None = None

    def baseline_key(self) -> tuple[str, str, str, str]:
        """What makes two findings "the same" across commits: not the line, which moves."""
        return (self.tool, self.file or "", self.code or "", self.message)


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # a result type, not a pytest test class

    name: str
    outcome: TestOutcome
    suite: str | None = None  # the test binary, module or class
    file: str | None = None  # where it failed (the panic or assertion), else where it lives
    line: int | None = None
    duration: float | None = None
    message: str | None = None


@dataclass
class ValidatorResult:
    name: str  # e.g. "cargo clippy", "ruff", "pytest", or a custom validator's name
    tool: str
    stage: Stage
    project: str  # the project folder relative to the repository root ("." for the root)
    status: Status
    command: list[str] = field(default_factory=list)
    reason: str | None = None  # why it was skipped, timed out or errored
    exit_code: int | None = None
    duration: float = 0.0
    diagnostics: list[Diagnostic] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    cached: bool = False
    output_tail: str | None = None  # the end of the tool's output, when nothing else says why

    def count(self, outcome: TestOutcome) -> int:
        return sum(1 for t in self.tests if t.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.status in (Status.PASSED, Status.SKIPPED)

    @property
    def unexplained(self) -> bool:
        """Failed without a finding forge could read: the cause may be the machine, not the
        code (a race between tools, a full disk), so it is never answered from a cache."""
        return self.status is Status.FAILED and not (self.diagnostics or self.tests)


@dataclass(frozen=True)
class PythonUsed:
    """The interpreter a project's Python checks ran under, and how forge chose it."""

    path: str
    version: str
    source: str  # VIRTUAL_ENV, project (.venv/venv), PATH or forge
    description: str


@dataclass(frozen=True)
class ProjectNote:
    """A project forge found and says something about: why it was not validated, or how it was."""

    path: str  # the project folder relative to the repository root ("." for the root)
    kind: Literal["rust", "python"]
    reason: str


@dataclass
class ValidationReport:
    root: str  # absolute path of the repository (or project) root
    results: list[ValidatorResult]
    duration: float = 0.0
    baseline: str | None = None  # the ref findings were compared with, if any
    # The tools this run depended on (probe -> installed stamp), for replaying it later.
    tool_stamps: dict[str, str | None] = field(default_factory=dict)
    # The Python each Python project's checks ran under, by project folder.
    interpreters: dict[str, PythonUsed] = field(default_factory=dict)
    # Every Cargo.toml and Python project found is either validated or listed here with why.
    not_validated: list[ProjectNote] = field(default_factory=list)
    notes: list[ProjectNote] = field(default_factory=list)  # validated, but not as one expects

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [d for r in self.results for d in r.diagnostics]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1
