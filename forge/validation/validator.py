"""The validator seam: what to run, where, after what, and how to read its output.

Built-in validators (cargo, ruff, mypy, pytest, the syntax check) and custom ones from
`[validation.custom]` are all `Validator` values; the runner knows nothing else about them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from forge.validation.process import ProcessOutput
from forge.validation.sandbox import Sandbox
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
    repository: tuple[str, ...] = ()  # every file of the repository, for `reads_repository`
    sandbox: Sandbox | None = None  # what a command it runs itself must run in


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
    # Configuration it reads from the project's folder and every folder above it (cargo's
    # .cargo/config.toml, ruff.toml, pytest.ini, conftest.py...), listed by git or not, and
    # from the user's home (absolute paths).
    config_files: tuple[str, ...] = ()
    user_files: tuple[str, ...] = ()
    # (program, search path) looked up to find the tool: which file that finds decides what
    # runs, so a replay asks again (a ruff installed since, earlier on PATH).
    lookups: tuple[tuple[str, str], ...] = ()
    # Builds and test runs read beyond the project's folder (a path dependency `../lib`, a
    # sibling uv workspace member, an editable install of another folder): their cache key
    # covers every file of the repository, not only the project's.
    reads_repository: bool = False

    def relevant(self, files: tuple[str, ...]) -> tuple[str, ...]:
        if not self.file_suffixes:
            return files
        return tuple(f for f in files if f.endswith(self.file_suffixes))

    def files_read(self, project: Path) -> list[Path]:
        """Where its configuration may be, whether it is there or not (absolute paths)."""
        folders = (project, *project.parents)
        found = [folder / name for folder in folders for name in self.config_files]
        return found + [Path(p) for p in self.user_files]
