"""What validation says about an attempt: targets, background, new findings, and the feedback.

Before the first attempt the base is validated once. Its findings split in two: the task's
targets (findings in a file the task names, a failing test counting in its test file; or all of
them for a "fix the build / tests / lint" task) and the background, which is not the task's
business. An attempt passes when it adds no finding the base did not have and leaves no target
standing; with `require_green` it must pass every validator. The feedback a model gets is the new
findings and the standing targets, each with the code around it, cut to a size a model can use.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from forge.validation.types import Status, TestResult, ValidationReport, ValidatorResult

FEEDBACK_LIMIT_CHARS = 6_000
CODE_AROUND_LINES = 3
DETAIL_LINES = 12
BROKEN = {Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.COULD_NOT_RUN}
# "Fix the build", "fix all compile errors", "repair the failing tests", "fix lint warnings",
# "make the tests pass": a fix verb whose object is the build, the tests or the linters.
FIX_EVERYTHING = re.compile(
    r"\b(?:fix|repair|resolve)\s+(?:all\s+|any\s+|every\s+)?(?:the\s+)?(?:remaining\s+)?"
    r"(?:build|compil\w*|failing\s+tests|broken\s+tests|tests|test\s+suite|test\s+failures|"
    r"lint\w*|clippy|ruff|mypy|type\s+errors|ci)\b"
    r"|\bmake\s+(?:the\s+|all\s+)?(?:tests|test\s+suite|build|ci)\s+(?:pass|green|compile)",
    re.IGNORECASE,
)

FindingKey = tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """One thing validation holds against the tree: a diagnostic, a failing test, a broken tool."""

    key: FindingKey  # what makes it "the same finding" in the base and in an attempt
    validator: str
    summary: str  # one line: "src/app.py:12: ruff F401 `os` imported but unused"
    file: str | None = None
    line: int | None = None
    detail: str | None = None  # the rendered diagnostic or the test's failure message
    # Where it belongs besides `file`: a failing test belongs to its test module too, even when
    # the assertion that failed is in another file.
    module: str | None = None
    test_name: str | None = None  # a failing test's own name (Rust's carries its module path)

    def belongs_to(self, named: set[str]) -> bool:
        if self.file is not None and _names(named, self.file):
            return True
        if self.module is None and self.test_name is None:
            return False
        # A failing test also belongs to the file it tests.
        places = [p for p in (self.module, self.file and self.file.rsplit(".", 1)[0]) if p]
        if any(_names_module(named, place) for place in places):
            return True
        rust = _rust_module(self.test_name or "")
        return rust is not None and _names_rust_module(named, rust)


def findings(report: ValidationReport) -> list[Finding]:
    found: list[Finding] = []
    for result in report.results:
        found.extend(_of_result(result))
    return found


def _of_result(result: ValidatorResult) -> list[Finding]:
    found = [
        Finding(
            key=("diagnostic", *d.baseline_key()),
            validator=result.name,
            summary=_where(d.file, d.line) + f"{d.tool} {d.code or d.severity}: {d.message}",
            file=d.file,
            line=d.line,
            detail=d.rendered,
        )
        for d in result.diagnostics
    ]
    found += [
        Finding(
            key=("test", result.name, t.suite or "", t.name),
            validator=result.name,
            summary=_where(t.file, t.line) + f"test {t.name} {t.outcome}",
            file=t.file,
            line=t.line,
            detail=t.message,
            module=t.suite.replace(".", "/") if t.suite else None,
            test_name=t.name,
        )
        for t in result.tests
        if t.outcome in ("failed", "error")
    ]
    if not found and (result.status in BROKEN or result.status is Status.NO_TESTS):
        # A tool that failed without saying where (a crash, a timeout, nothing collected).
        # Its reason, else the last line it printed (where tools say why they stopped).
        tail = result.reason or _last_line(result.output_tail or "")
        found.append(
            Finding(
                key=("validator", result.name, result.status.value),
                validator=result.name,
                summary=f"{result.name} {result.status.value}"
                + (f": {tail[:200]}" if tail else ""),
                detail=result.output_tail,
            )
        )
    return found


def _where(file: str | None, line: int | None) -> str:
    if file is None:
        return ""
    return f"{file}:{line}: " if line else f"{file}: "


def fixes_everything(task_text: str, named_files: Sequence[str]) -> bool:
    """A "fix the build / tests / lint" task that names no file: every finding is its target."""
    return not named_files and FIX_EVERYTHING.search(task_text) is not None


@dataclass(frozen=True)
class Baseline:
    """The base's findings, split into the task's targets and the background."""

    report: ValidationReport
    targets: tuple[Finding, ...]
    background: tuple[Finding, ...]

    @classmethod
    def of(cls, report: ValidationReport, task_files: Sequence[str], *, fix_all: bool) -> Baseline:
        named = {f.removeprefix("./") for f in task_files}
        targets: list[Finding] = []
        background: list[Finding] = []
        for finding in findings(report):
            mine = fix_all or finding.belongs_to(named)
            (targets if mine else background).append(finding)
        return cls(report, tuple(targets), tuple(background))

    @property
    def green(self) -> bool:
        return self.report.passed

    def describe(self) -> str:
        if self.green:
            return "the base passes validation"
        return (
            f"the base does not pass validation: {len(self.targets)} finding(s) are this task's "
            f"targets, {len(self.background)} are background (not this task's to fix)"
        )


def _names(named: set[str], path: str) -> bool:
    """`path` is a file the task names, written in full or by its ending."""
    return path in named or any(path.endswith("/" + n) for n in named)


def _names_module(named: set[str], module: str) -> bool:
    """A test's module (tests.test_app.TestParser as tests/test_app/TestParser) belongs to a
    named file when it is that file, or the file's tests by name (test_app, app_test, tests/app).
    """
    parts = module.split("/")
    for name in named:
        path = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
        # A package's `__init__.py` (and a Rust `mod.rs`) is the package: calc/__init__.py is
        # `calc`, tested by test_calc.
        path = path.removesuffix("/__init__")
        if name.endswith(".rs"):
            path = path.removesuffix("/mod")
        if f"/{path}/" in f"/{module}/":
            return True
        stem = path.rsplit("/", 1)[-1]
        if {f"test_{stem}", f"{stem}_test", f"{stem}_tests"} & set(parts):
            return True
    return False


def _rust_module(name: str) -> str | None:
    """`calc::tests::adds` (a libtest name) as the module path it lives in: `calc`."""
    if "::" not in name:
        return None
    parts = [p for p in name.split("::")[:-1] if p != "tests"]
    return "/".join(parts) or None


def _names_rust_module(named: set[str], module: str) -> bool:
    """A Rust module path (`calc`, `net/http`) is the file `src/calc.rs` or `src/calc/mod.rs`
    that a task names, by its ending."""
    return any(
        n.endswith(".rs") and n.removesuffix(".rs").removesuffix("/mod").endswith(f"/{module}")
        for n in named
    )


@dataclass(frozen=True)
class Verdict:
    passed: bool
    new: tuple[Finding, ...]  # findings the base did not have
    standing: tuple[Finding, ...]  # targets still there (or not checked: their tool did not run)
    failing: tuple[Finding, ...]  # require_green: everything that still fails
    report: ValidationReport

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else "failed"

    def headline(self) -> str:
        if self.passed:
            return "validation passed"
        parts = []
        if self.new:
            parts.append(f"{len(self.new)} new finding(s)")
        if self.standing:
            parts.append(f"{len(self.standing)} target(s) still standing")
        if self.failing and not (self.new or self.standing):
            parts.append(f"{len(self.failing)} finding(s) left (--require-green)")
        return "validation failed: " + ", ".join(parts)


def judge(
    baseline: Baseline,
    report: ValidationReport,
    *,
    require_green: bool,
    keep_tests: bool = False,
) -> Verdict:
    """`keep_tests`: a test that passed at the base and is now missing or skipped is a new
    finding (a task that may not change tests cannot deselect one through test settings)."""
    now = findings(report)
    if keep_tests:
        now += _tests_gone(baseline.report, report)
    before = Counter(f.key for f in findings(baseline.report))
    # Tools the base never got to (a syntax error skipped the tests) say nothing about what the
    # attempt broke: what they find is background, not new.
    unseen = {r.name for r in baseline.report.results if r.status is Status.SKIPPED}
    seen: Counter[FindingKey] = Counter()
    new: list[Finding] = []
    for finding in now:
        seen[finding.key] += 1
        if seen[finding.key] > before[finding.key] and finding.validator not in unseen:
            new.append(finding)
    current = {f.key: f for f in now}
    ran = {r.name for r in report.results if r.status is not Status.SKIPPED}
    passing = {
        ("test", r.name, t.suite or "", t.name)
        for r in report.results
        for t in r.tests
        if t.outcome == "passed"
    }
    # A target still fails, or cannot be shown fixed: a failing test counts as fixed only when
    # the same test now passes (deleting or renaming it fixes nothing).
    standing = [
        current.get(t.key, t)
        for t in baseline.targets
        if t.key in current
        or (t.key[0] == "test" and t.key not in passing)
        or (t.key[0] != "test" and t.validator not in ran)
    ]
    failing = now if require_green else []
    passed = not new and not standing and (report.passed if require_green else True)
    return Verdict(passed, tuple(new), tuple(standing), tuple(failing), report)


# A doc-test's name carries its line, which moves when code is added above it.
_LINE_IN_NAME = re.compile(r" \(line \d+\)$")


def _test_identity(validator: str, test: TestResult) -> tuple[str, str, str]:
    return (validator, test.suite or "", _LINE_IN_NAME.sub("", test.name))


def _tests_gone(before: ValidationReport, after: ValidationReport) -> list[Finding]:
    """Tests that passed in `before` and that `after` no longer runs (missing or skipped), for
    the validators that ran in both."""
    ran = {r.name for r in after.results if r.status in (Status.PASSED, Status.FAILED)}
    now = {_test_identity(r.name, t): t.outcome for r in after.results for t in r.tests}
    gone = []
    for result in before.results:
        if result.name not in ran:
            continue
        for test in result.tests:
            identity = _test_identity(result.name, test)
            outcome = now.get(identity, "missing")
            if test.outcome == "passed" and outcome in ("missing", "skipped"):
                gone.append(
                    Finding(
                        key=("gone", *identity),
                        validator=result.name,
                        summary=f"test {test.name} passed at the base and is now {outcome}: "
                        "a task may not take tests away (through test settings, skips or "
                        "deletions)",
                        file=test.file,
                        line=test.line,
                    )
                )
    return gone


def render_feedback(verdict: Verdict, root: Path, limit: int = FEEDBACK_LIMIT_CHARS) -> str:
    """What the next attempt is told: each problem with its code, cut to `limit` characters."""
    sections: list[tuple[str, Iterable[Finding]]] = [
        ("New problems your change introduced", verdict.new),
        ("Problems the task must fix that are still there", verdict.standing),
    ]
    if not verdict.new and not verdict.standing:
        sections.append(("Validation still fails (every check must pass)", verdict.failing))
    out: list[str] = []
    used = 0
    left = 0
    for title, items in sections:
        items = list(items)
        if not items:
            continue
        out.append(f"## {title}\n")
        for finding in items:
            block = render_finding(finding, root)
            if used + len(block) > limit:
                left += 1
                continue
            out.append(block)
            used += len(block)
    if left:
        out.append(f"... and {left} more finding(s) not shown\n")
    return "\n".join(out).strip()


def render_finding(finding: Finding, root: Path) -> str:
    lines = [f"- {finding.summary}"]
    if finding.detail:
        detail = finding.detail.strip().splitlines()
        if len(detail) > DETAIL_LINES:
            detail = [*detail[:DETAIL_LINES], "  ..."]
        lines += ["  " + line for line in detail]
    code = code_around(root, finding.file, finding.line)
    if code:
        lines += ["  code:", *("  " + line for line in code)]
    return "\n".join(lines) + "\n"


def code_around(root: Path, file: str | None, line: int | None) -> list[str]:
    """The numbered lines around `line` of `file` as the attempt left it."""
    from forge.execution.symbols import read_text

    if file is None or line is None:
        return []
    text = read_text(root, file)
    if text is None:
        return []
    rows = text.splitlines()
    start = max(1, line - CODE_AROUND_LINES)
    end = min(len(rows), line + CODE_AROUND_LINES)
    width = len(str(end))
    return [
        f"{'>' if n == line else ' '} {n:>{width}} | {rows[n - 1]}" for n in range(start, end + 1)
    ]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
