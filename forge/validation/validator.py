"""The validator seam: what to run, where, after what, and how to read its output.

Built-in validators (cargo, ruff, mypy, pytest, the syntax check) and custom ones from
`[validation.custom]` are all `Validator` values; the runner knows nothing else about them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from forge.validation.process import ProcessOutput
from forge.validation.tree import Known
from forge.validation.types import Diagnostic, Stage, Status, TestResult


@dataclass
class Parsed:
    """What a parser read from a finished command."""

    status: Status
    diagnostics: list[Diagnostic] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    reason: str | None = None


@dataclass(frozen=True)
class Context:
    """Where a validator runs and what it may look at."""

    repo_root: Path
    project: Path
    files: tuple[str, ...]  # repository-relative files of this project (tracked or would be)
    only: tuple[str, ...] | None = None  # --changed: lint only these files
    scratch: Path | None = None  # a private folder for report files (JUnit, SARIF)
    known: Mapping[str, Known] = field(default_factory=dict)  # files as git's index has them


# The environment variables the tools read (their flags, paths and plug-ins): part of every
# cache key, so `RUSTFLAGS="-D warnings"` or a new PYTHONPATH is never answered from a run
# made without it. A pattern ending in "*" is a prefix.
TOOL_ENVIRONMENT = (
    "PATH",
    "VIRTUAL_ENV",
    "PYTHON*",
    "PYTEST_*",
    "MYPY*",
    "RUFF_*",
    "CARGO*",
    "RUST*",
    "CC",
    "CXX",
    "CFLAGS",
    "CXXFLAGS",
    "LDFLAGS",
)


def tool_environment(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables of TOOL_ENVIRONMENT that are set, sorted, with their values."""
    return sorted(
        (name, value)
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in TOOL_ENVIRONMENT)
    )


Parser = Callable[[ProcessOutput, Context], Parsed]
InProcess = Callable[[Context], Parsed]


@dataclass(frozen=True)
class Validator:
    name: str
    tool: str
    stage: Stage
    argv: tuple[str, ...] = ()
    parse: Parser | None = None
    run_in_process: InProcess | None = None  # for checks forge does itself (syntax)
    probe: tuple[str, ...] | None = None  # a command that fails when the tool is missing
    after: tuple[str, ...] = ()  # validators of the same project that must pass first
    # Start at once instead of waiting for `after`; dropped (killed) if one of them fails.
    speculative: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    settings: str = ""  # anything else that changes the result, for the cache key
    lints_files: bool = False  # takes a file list under --changed
    file_suffixes: tuple[str, ...] = ()  # which files matter to it (empty: every file)
    prepare: Callable[[Path], None] | None = None  # run on the project's folder first
    # Why it cannot run, found when it was built (the tool is not installed where forge
    # looked): the gate fails as "could not run" unless the user made the tool optional.
    unavailable: str | None = None
    # Files it reads that git may not list (an ignored Cargo.lock), relative to the project.
    extra_files: tuple[str, ...] = ()

    def relevant(self, files: tuple[str, ...]) -> tuple[str, ...]:
        if not self.file_suffixes:
            return files
        return tuple(f for f in files if f.endswith(self.file_suffixes))
