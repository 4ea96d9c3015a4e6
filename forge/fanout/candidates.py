"""`--validate`: each code answer tried for real, then ranked by what passes, then by cost.

Every candidate gets its own scratch copy: the project around `--target FILE` with the
candidate's code written over that file, or, with only `--tests FILE`, a folder holding the test
file and the candidate saved as the module the tests import. `forge validate` runs on each copy.
Evidence before votes: a candidate that passes the tests ranks above any number of answers that
agree with each other.
"""

from __future__ import annotations

import ast
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from forge.config.schema import ValidationConfig
from forge.errors import ForgeError, UsageError
from forge.fanout.answers import Answer
from forge.fanout.code import extract_blocks
from forge.validation.runner import Options, validate
from forge.validation.sandbox import SandboxUnavailable
from forge.validation.tree import list_files, repository_root
from forge.validation.types import Stage, Status, ValidationReport, ValidatorResult

LANGUAGES = {".py": {"python", ""}, ".rs": {"rust", ""}}
DEFAULT_MODULE = "solution"


@dataclass(frozen=True)
class Workspace:
    project: Path | None  # copied for each candidate; None: start from an empty folder
    target: str  # where the candidate's code goes, relative to the copy
    tests: Path | None = None  # a test file from outside the project, copied in
    tests_at: str | None = None

    @property
    def suffix(self) -> str:
        return Path(self.target).suffix


@dataclass(frozen=True)
class CandidateResult:
    key: str
    alias: str
    status: str  # "passed", "failed", "no_code" or "error"
    summary: str
    tests_passed: int = 0
    tests_failed: int = 0
    failed_checks: tuple[str, ...] = ()
    tests_ok: bool = False
    cost_usd: Decimal | None = None
    # Lint findings in the user's test file copied in by --tests: reported, never counted.
    test_file_findings: int = 0

    def rank_key(self, position: int) -> tuple[Any, ...]:
        cost = self.cost_usd if self.cost_usd is not None else Decimal("Infinity")
        # Evidence first: passing tests, then every check, then how much passed; a candidate
        # that could not be tried at all ranks below one that was tried and failed.
        return (
            not self.tests_ok,
            self.status != "passed",
            self.status in ("no_code", "error"),
            -self.tests_passed,
            len(self.failed_checks),
            cost,
            position,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "model": self.alias,
            "status": self.status,
            "summary": self.summary,
            "tests_passed": self.tests_passed,
            "tests_failed": self.tests_failed,
            "failed_checks": list(self.failed_checks),
            "tests_ok": self.tests_ok,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "test_file_findings": self.test_file_findings,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateResult:
        return cls(
            key=data["key"],
            alias=data["model"],
            status=data["status"],
            summary=data["summary"],
            tests_passed=data["tests_passed"],
            tests_failed=data["tests_failed"],
            failed_checks=tuple(data["failed_checks"]),
            tests_ok=data["tests_ok"],
            cost_usd=None if data["cost_usd"] is None else Decimal(data["cost_usd"]),
            test_file_findings=data.get("test_file_findings", 0),
        )


def workspace_for(target: Path | None, tests: Path | None) -> Workspace:
    if target is None and tests is None:
        raise UsageError("--validate needs --target FILE (the file to replace) or --tests FILE")
    for given in (target, tests):
        if given is not None and given.is_dir():
            raise UsageError(f"{given} is a folder; --target and --tests take a file")
    if tests is not None and not tests.is_file():
        raise UsageError(f"--tests {tests}: no such file")
    if target is not None:
        project = repository_root(target.resolve().parent)
        relative = target.resolve().relative_to(project).as_posix()
        if tests is None or tests.resolve().is_relative_to(project):
            return Workspace(project, relative)
        return Workspace(project, relative, tests.resolve(), f"tests/{tests.name}")
    assert tests is not None
    module = tested_module(tests)
    return Workspace(None, f"{module}.py", tests.resolve(), f"tests/{tests.name}")


def tested_module(tests: Path) -> str:
    """The module a test file imports that is not the standard library's or pytest's."""
    try:
        tree = ast.parse(tests.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return DEFAULT_MODULE
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("pytest", "conftest"):
                return top
    return DEFAULT_MODULE


def candidate_code(answer: Answer, suffix: str) -> str | None:
    """The longest fenced block in the target's language; a bare answer that parses as Python
    counts for a Python target (some models leave out the fence when asked for code only)."""
    wanted = LANGUAGES.get(suffix)
    blocks = [b for b in extract_blocks(answer.text) if wanted is None or b.language in wanted]
    if blocks:
        return max(blocks, key=lambda b: len(b.source)).source + "\n"
    if suffix == ".py" and answer.text.strip():
        try:
            ast.parse(answer.text)
        except SyntaxError:
            return None
        return answer.text.strip() + "\n"
    return None


def try_candidates(
    answers: Sequence[Answer],
    workspace: Workspace,
    settings: ValidationConfig,
    jobs: int = 4,
    secrets: tuple[str, ...] = (),
) -> list[CandidateResult]:
    """Each distinct candidate validated once in its own copy, several at once; best first.
    `secrets`: the configuration's key variables, kept from the candidates' validators."""
    codes = {a.key: candidate_code(a, workspace.suffix) for a in answers}
    distinct = list(dict.fromkeys(code for code in codes.values() if code is not None))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        found = pool.map(lambda code: _validate(code, workspace, settings, secrets), distinct)
        reports = dict(zip(distinct, found, strict=True))
    results = [_result(a, codes[a.key], reports, workspace.tests_at) for a in answers]
    order = {a.key: i for i, a in enumerate(answers)}
    return sorted(results, key=lambda r: r.rank_key(order[r.key]))


def _validate(
    code: str, workspace: Workspace, settings: ValidationConfig, secrets: tuple[str, ...]
) -> ValidationReport | str:
    """The report on one candidate, or why it could not be validated."""
    with tempfile.TemporaryDirectory(prefix="forge-candidate-") as holder:
        scratch = Path(holder) / "work"
        _prepare(scratch, workspace, code)
        # A cache folder of its own: validation names its cache files per process, and the
        # candidates run side by side in one process. Each build starts from nothing.
        # The copy of a project is validated with the project's own environment (its .venv).
        options = Options(
            cache_dir=Path(holder) / "cache",
            cold_builds=True,
            environment_root=workspace.project,
            scrub_secrets=True,  # a model's code
            secrets=secrets,
        )
        try:
            return validate(scratch, settings, options)
        except SandboxUnavailable:
            raise  # not this candidate's failure: none can be validated as configured
        except ForgeError as err:
            return str(err)


def _prepare(scratch: Path, workspace: Workspace, code: str) -> None:
    scratch.mkdir(parents=True)
    if workspace.project is not None:
        for name in list_files(workspace.project):
            destination = scratch / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(workspace.project / name, destination)
    if workspace.tests is not None and workspace.tests_at is not None:
        destination = scratch / workspace.tests_at
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workspace.tests, destination)
    target = scratch / workspace.target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(code, encoding="utf-8")


def _result(
    answer: Answer,
    code: str | None,
    reports: dict[str, ValidationReport | str],
    tests_at: str | None = None,
) -> CandidateResult:
    if code is None:
        return CandidateResult(
            answer.key, answer.alias, "no_code", "no code block found", cost_usd=answer.cost_usd
        )
    report = reports[code]
    if isinstance(report, str):
        return CandidateResult(answer.key, answer.alias, "error", report, cost_usd=answer.cost_usd)
    tests = [r for r in report.results if r.stage is Stage.TEST]
    tests_ok = bool(tests) and all(r.status is Status.PASSED for r in tests)
    # The user's own test file is not the candidate's to fix: its lint findings are set aside.
    theirs = {i: _test_file_findings(r, tests_at) for i, r in enumerate(report.results)}
    excused = {i for i, r in enumerate(report.results) if theirs[i] and _only(r, theirs[i])}
    failed = tuple(r.name for i, r in enumerate(report.results) if not r.ok and i not in excused)
    return CandidateResult(
        answer.key,
        answer.alias,
        "passed" if not failed and (tests_ok or not tests) else "failed",
        _summary(report, theirs),
        tests_passed=sum(r.count("passed") for r in tests),
        tests_failed=sum(r.count("failed") + r.count("error") for r in tests),
        failed_checks=failed,
        tests_ok=tests_ok,
        cost_usd=answer.cost_usd,
        test_file_findings=sum(theirs.values()),
    )


def _test_file_findings(result: ValidatorResult, tests_at: str | None) -> int:
    """How many of a lint result's findings are in the test file copied in by --tests."""
    if tests_at is None or result.stage is not Stage.LINT:
        return 0
    return sum(1 for d in result.diagnostics if d.file == tests_at)


def _only(result: ValidatorResult, theirs: int) -> bool:
    """Whether a failed lint result failed only through findings in the copied test file."""
    return result.status is Status.FAILED and theirs == len(result.diagnostics)


def _summary(report: ValidationReport, theirs: dict[int, int]) -> str:
    parts = []
    for i, r in enumerate(report.results):
        mine = len(r.diagnostics) - theirs.get(i, 0)
        if r.stage is Stage.TEST and r.tests:
            parts.append(f"{r.name}: {r.count('passed')} passed, {r.count('failed')} failed")
        elif not r.ok and (mine or not r.diagnostics):
            detail = f"{mine} findings" if r.diagnostics else (r.reason or "")
            parts.append(f"{r.name}: {r.status.value}" + (f" ({detail})" if detail else ""))
        if theirs.get(i):
            parts.append(f"{r.name}: {theirs[i]} findings in the test file (not counted)")
    return "; ".join(parts) or "every check passed"
