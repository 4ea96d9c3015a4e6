"""Goals in a sentence: split into parts, fix parts planned from real validators, --plan-with."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from forge.config import parse_config_text
from forge.config.schema import ValidationConfig
from forge.planning.goals import GoalPart, fix_tasks, plan_goal, split_goal
from forge.planning.milestone import Milestone, find_cycle, parse_markdown
from forge.planning.plan_model import PlanRejected, plan_with_model
from forge.providers.client import ModelClient
from forge.testing.fake_provider import FakeProvider, Reply
from forge.validation.types import (
    Diagnostic,
    Stage,
    Status,
    TestResult,
    ValidationReport,
    ValidatorResult,
)
from tests.conftest import fake_config

BUILD_ONLY = ValidationConfig(enable_test_execution=False, enable_lint_check=False)
NO_LINT = ValidationConfig(enable_lint_check=False)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def broken_crate(tmp_path: Path) -> Path:
    """A Rust crate with one type error in each of three modules."""
    files = {
        "Cargo.toml": '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n',
        "src/lib.rs": "mod a;\nmod b;\nmod c;\n",
    }
    for name in "abc":
        files[f"src/{name}.rs"] = (
            f'pub fn {name}() -> i32 {{\n    let x: i32 = "{name} is not a number";\n    x\n}}\n'
        )
    return write(tmp_path / "crate", files)


def python_project(root: Path, *, syntax_error: bool) -> Path:
    files = {
        "pyproject.toml": '[project]\nname = "calc"\nversion = "0.1.0"\n',
        "calc.py": "def add(a, b):\n    return a - b\n",
        "tests/test_calc.py": (
            "from calc import add\n\n\n"
            "def test_add():\n    assert add(1, 2) == 3\n\n\n"
            "def test_zero():\n    assert add(0, 0) == 0\n"
        ),
        "report.py": "def broken(:\n    pass\n" if syntax_error else "def fine():\n    pass\n",
    }
    return write(root, files)


def check_plan(plan: Milestone) -> dict[str, tuple[str, ...]]:
    """What a milestone file must satisfy: unique ids, known `after`, no cycle."""
    ids = [t.id for t in plan.tasks]
    assert len(ids) == len(set(ids)), ids
    assert all(before in ids for t in plan.tasks for before in t.after)
    assert find_cycle(plan.tasks) is None
    return {t.id: t.after for t in plan.tasks}


# -- splitting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("goal", "parts"),
    [
        (
            "Fix all build errors, then work on milestone 3",
            [
                GoalPart("Fix all build errors", "build", False),
                GoalPart("work on milestone 3", None, True),
            ],
        ),
        (
            "fix the tests and the lint",
            [GoalPart("fix the tests", "tests", False), GoalPart("fix the lint", "lint", False)],
        ),
        ("Add a --verbose flag", [GoalPart("Add a --verbose flag", None, False)]),
        (
            "1. Fix the clippy warnings\n2. Add a README section\n3. Then make the tests pass",
            [
                GoalPart("Fix the clippy warnings", "lint", False),
                GoalPart("Add a README section", None, False),
                GoalPart("make the tests pass", "tests", True),
            ],
        ),
        (
            "The CI is red. Please fix the build; then the milestone.",
            [
                GoalPart("The CI is red. Please fix the build", "build", False),
                GoalPart("the milestone.", None, True),
            ],
        ),
        (
            "Fix the parser and add a test for empty input",
            [
                GoalPart("Fix the parser", None, False),
                GoalPart("add a test for empty input", None, False),
            ],
        ),
    ],
)
def test_split_goal(goal: str, parts: list[GoalPart]) -> None:
    assert split_goal(goal) == parts


def test_a_fix_aimed_at_something_specific_is_an_ordinary_task() -> None:
    for goal in ("Fix the build errors in the parser module", "fix the test for the lexer"):
        assert split_goal(goal) == [GoalPart(goal, None, False)]


# -- fix parts on real projects ----------------------------------------------------------------


def test_fix_the_build_of_a_rust_crate_then_a_task_after_it(broken_crate: Path) -> None:
    planned = plan_goal(
        "Fix all build errors, then add a README section",
        root=broken_crate,
        validation=BUILD_ONLY,
    )
    after = check_plan(planned.milestone)
    *fixes, readme = planned.milestone.tasks
    assert [t.id for t in fixes] == ["fix-src-a-rs", "fix-src-b-rs", "fix-src-c-rs"]
    for task, name in zip(fixes, "abc", strict=True):
        assert task.title == f"Fix the build errors in src/{name}.rs"
        assert task.files == (f"src/{name}.rs",)
        assert task.type == "bug_fix" and task.after == ()
        assert f"src/{name}.rs:2: E0308 mismatched types" in task.description
        assert "expected `i32`, found `&str`" in task.description
    assert readme.title == "add a README section"
    assert after[readme.id] == ("fix-src-a-rs", "fix-src-b-rs", "fix-src-c-rs")
    assert planned.notes == ()
    assert planned.report is not None
    assert fix_tasks(planned.report, "build") == [replace(t, where="") for t in fixes]


def test_fix_the_build_then_the_milestone(broken_crate: Path) -> None:
    milestone = parse_markdown(
        "- [x] setup: Create the crate\n"
        "- [ ] fix-src-a-rs: Rename a() to alpha() (files: src/a.rs) (after: setup)\n"
        "- [ ] docs: Document alpha (files: README.md) (after: fix-src-a-rs)\n"
        "- [ ] bench: Add a benchmark\n",
        "m3.md",
    )
    planned = plan_goal(
        "fix the build, then the milestone",
        root=broken_crate,
        validation=BUILD_ONLY,
        milestone=milestone,
    )
    after = check_plan(planned.milestone)
    fixes = ("fix-src-a-rs-2", "fix-src-b-rs", "fix-src-c-rs")  # the milestone keeps its ids
    assert list(after) == [*fixes, "fix-src-a-rs", "docs", "bench"]
    assert all(after[f] == () for f in fixes)
    assert after["fix-src-a-rs"] == fixes, "the done task is dropped, the fixes come first"
    assert after["docs"] == ("fix-src-a-rs",)
    assert after["bench"] == fixes
    assert planned.milestone.task("docs").files == ("README.md",)


def test_fix_the_tests_of_a_python_project(tmp_path: Path) -> None:
    project = python_project(tmp_path / "py", syntax_error=True)
    planned = plan_goal("fix the tests", root=project, validation=NO_LINT)
    # The syntax error stops pytest: what can be fixed first is planned, and said.
    [task] = planned.milestone.tasks
    assert (task.id, task.files) == ("fix-report-py", ("report.py",))
    assert "report.py:1: SyntaxError invalid syntax" in task.description
    assert planned.notes == (
        "'fix the tests': the tests could not run because python syntax failed; "
        "the build errors are planned instead",
    )

    write(project, {"report.py": "def fine():\n    pass\n"})
    planned = plan_goal(
        "Make the tests pass, then add a --verbose flag", root=project, validation=NO_LINT
    )
    after = check_plan(planned.milestone)
    fix, flag = planned.milestone.tasks
    assert fix.id == "fix-tests-tests-test-calc-py"
    assert fix.title == "Fix the failing tests in tests/test_calc.py"
    assert fix.files == ("tests/test_calc.py",)
    assert "tests/test_calc.py:5: test tests.test_calc::test_add failed" in fix.description
    assert "assert -1 == 3" in fix.description
    assert "test_zero" not in fix.description
    assert (flag.id, after[flag.id]) == ("add-a-verbose-flag", (fix.id,))


def test_a_fix_part_with_nothing_to_fix_adds_no_task_and_says_so(tmp_path: Path) -> None:
    project = python_project(tmp_path / "py", syntax_error=False)
    write(project, {"calc.py": "def add(a, b):\n    return a + b\n"})
    planned = plan_goal(
        "Fix the tests, then add a --verbose flag", root=project, validation=NO_LINT
    )
    [flag] = planned.milestone.tasks
    assert (flag.id, flag.after) == ("add-a-verbose-flag", ())
    assert planned.notes == ("'Fix the tests': nothing to fix (pytest passed)",)


def test_plain_goals_do_not_run_validators_and_a_milestone_comes_last(tmp_path: Path) -> None:
    def no_validation(root: Path, settings: ValidationConfig) -> ValidationReport:
        raise AssertionError("no fix part, nothing to validate")

    planned = plan_goal(
        "Add a --verbose flag, then work on milestone 3",
        root=tmp_path,
        validation=NO_LINT,
        validate_fn=no_validation,
    )
    assert [(t.id, t.after) for t in planned.milestone.tasks] == [
        ("add-a-verbose-flag", ()),
        ("work-on-milestone-3", ("add-a-verbose-flag",)),
    ]
    assert "no milestone file was given" in planned.notes[0]

    milestone = parse_markdown("- [ ] one: First\n- [ ] two: Second (after: one)\n", "m.md")
    planned = plan_goal(
        "Add a --verbose flag",
        root=tmp_path,
        validation=NO_LINT,
        milestone=milestone,
        validate_fn=no_validation,
    )
    after = check_plan(planned.milestone)
    assert after == {"add-a-verbose-flag": (), "one": ("add-a-verbose-flag",), "two": ("one",)}
    assert planned.notes == ("m.md: its pending tasks come after the goal's tasks",)


# -- fix tasks from a report -------------------------------------------------------------------


def test_fix_tasks_group_by_file_and_keep_what_has_no_file() -> None:
    long_path = "src/" + "very_long_module_name/" * 4 + "parse.rs"
    check = ValidatorResult(
        "cargo check",
        "cargo",
        Stage.BUILD,
        ".",
        Status.FAILED,
        diagnostics=[
            *(
                Diagnostic("cargo", "error", f"error number {n}", long_path, n, code="E0425")
                for n in range(1, 26)
            ),
            Diagnostic("cargo", "warning", "unused variable", "src/lib.rs", 3),
            Diagnostic("cargo", "error", "linking with `cc` failed", rendered="note: ld: boom"),
        ],
    )
    clippy = ValidatorResult(
        "cargo clippy",
        "clippy",
        Stage.LINT,
        ".",
        Status.FAILED,
        diagnostics=[Diagnostic("clippy", "warning", "unused variable", "src/lib.rs", 3)],
    )
    pytest_run = ValidatorResult(
        "pytest",
        "pytest",
        Stage.TEST,
        "py",
        Status.FAILED,
        tests=[
            TestResult("test_a", "failed", "tests.test_a", "py/calc.py", 9, message="boom\nmore"),
            TestResult("test_b", "passed", "tests.test_a", "py/tests/test_a.py"),
        ],
    )
    broken = ValidatorResult(
        "mypy", "mypy", Stage.LINT, "py", Status.ERROR, output_tail="Traceback\nKeyError: 'x'"
    )
    report = ValidationReport("/repo", [check, clippy, pytest_run, broken])

    build = fix_tasks(report, "build")
    assert [t.id for t in build][1:] == ["fix-build-other"]
    long_id = build[0].id  # readable, bounded, and kept apart from paths with the same start
    assert re.fullmatch(r"fix-src-very-long-module-name-[a-z-]+-[0-9a-f]{8}", long_id)
    assert len(long_id) <= len("fix-") + 60 and long_id == fix_tasks(report, "build")[0].id
    lines = build[0].description.splitlines()
    assert lines[0] == f"{long_path}:1: E0425 error number 1"
    assert len(lines) == 21 and lines[-1] == "... and 5 more"
    other = build[1]
    assert other.files == () and "linking with `cc` failed" in other.description
    assert "ld: boom" in other.description

    lint = fix_tasks(report, "lint")
    assert [(t.id, t.files) for t in lint] == [
        ("fix-lint-src-lib-rs", ("src/lib.rs",)),
        ("fix-lint-other", ()),
    ]
    assert "mypy error" in lint[1].description and "KeyError: 'x'" in lint[1].description

    [tests] = fix_tasks(report, "tests", id_prefix="repair")
    assert (tests.id, tests.files) == ("repair-tests-py-calc-py", ("py/calc.py",))
    assert tests.description == "py/calc.py:9: test tests.test_a::test_a failed: boom"


# -- --plan-with -----------------------------------------------------------------------------

GOOD = """Here is the plan you asked for.

```markdown
- [ ] flag: Add a --verbose flag (files: src/cli.rs)
  Print each step as it runs.
- [ ] docs: Document --verbose (files: README.md) (after: flag)
- [ ] test: Test --verbose \x1b[31moutput\x1b[0m (files: tests/cli.rs) (after: flag)
```

Tasks docs and test can run in parallel.
"""
CYCLE = "```\n- [ ] a: First (after: b)\n- [ ] b: Second (after: a)\n```"


async def test_plan_with_model_reads_the_checklist_in_prose_and_fence(fake: FakeProvider) -> None:
    fake.script("alpha-1", Reply(text=GOOD))
    async with ModelClient(parse_config_text(fake_config(fake.url))) as client:
        plan = await plan_with_model(
            client, "alpha", "Add a --verbose flag", context="A Rust CLI in src/"
        )
    assert [(t.id, t.files, t.after) for t in plan.tasks] == [
        ("flag", ("src/cli.rs",), ()),
        ("docs", ("README.md",), ("flag",)),
        ("test", ("tests/cli.rs",), ("flag",)),
    ]
    assert plan.task("flag").description == "Print each step as it runs."
    assert plan.task("test").title == "Test --verbose output", "escapes are dropped"
    [request] = fake.requests_for("alpha-1")
    system, user = request.body["messages"]
    assert (
        "- [ ] parser: Accept empty input (files: src/parse.rs, src/ast.rs) (after: lexer)"
        in (system["content"])
    )
    assert user["content"].startswith("Goal: Add a --verbose flag")
    assert "A Rust CLI in src/" in user["content"]


async def test_a_malformed_plan_gets_one_repair_request(fake: FakeProvider) -> None:
    fake.script("alpha-1", Reply(text=CYCLE), Reply(text=GOOD))
    async with ModelClient(parse_config_text(fake_config(fake.url))) as client:
        plan = await plan_with_model(client, "alpha", "Add a --verbose flag")
    assert [t.id for t in plan.tasks] == ["flag", "docs", "test"]
    first, second = fake.requests_for("alpha-1")
    *earlier, answer, repair = second.body["messages"]
    assert earlier == first.body["messages"]
    assert answer == {"role": "assistant", "content": CYCLE}
    assert "dependency cycle: a -> b -> a" in repair["content"]


async def test_a_plan_still_bad_after_the_repair_is_refused(fake: FakeProvider) -> None:
    escaping = "- [ ] grab: Read the keys (files: ../../.ssh/id_rsa)\n"
    fake.script("alpha-1", Reply(text=escaping), Reply(text="Sorry, I cannot plan this."))
    async with ModelClient(parse_config_text(fake_config(fake.url))) as client:
        with pytest.raises(PlanRejected) as caught:
            await plan_with_model(client, "alpha", "Add a --verbose flag")
    _, second = fake.requests_for("alpha-1")
    assert (
        "(files: ../../.ssh/id_rsa) leaves the repository"
        in (second.body["messages"][-1]["content"])
    )
    message = str(caught.value)
    assert "alpha did not write a usable plan" in message
    assert "no tasks found" in message and "Sorry, I cannot plan this." in message
    assert caught.value.exit_code == 1
