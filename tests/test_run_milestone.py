"""`forge run-milestone` on one task: worktree, edits, validation, retry, escalation, commit.

Each test builds a small git repository, scripts the fake models with edits, and runs the real
CLI in a subprocess; validation is the real ruff, pytest and cargo.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forge.execution.store import RunStore
from forge.ledger import Ledger
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge

AUTHOR = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}

CALC_BUGGY = """\
def add(a: int, b: int) -> int:
    return a - b
"""
CALC_OK = """\
def add(a: int, b: int) -> int:
    return a + b
"""
CALC_TESTS = """\
from calc import add


def test_add():
    assert add(2, 3) == 5
"""
PYPROJECT = """\
[project]
name = "calc"
version = "0.1.0"

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""

FIX_ADD = """\
calc.py
```python
<<<<<<< SEARCH
    return a - b
=======
    return a + b
>>>>>>> REPLACE
```
"""
MULTIPLY_INSTEAD = """\
calc.py
```python
<<<<<<< SEARCH
    return a - b
=======
    return a * b
>>>>>>> REPLACE
```
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **AUTHOR},
        check=True,
    )
    return done.stdout


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


def python_repo(
    tmp_path: Path, calc: str = CALC_BUGGY, extra: dict[str, str] | None = None
) -> Path:
    files = {
        "pyproject.toml": PYPROJECT,
        ".gitignore": "__pycache__/\n.pytest_cache/\n.ruff_cache/\n",
        "calc.py": calc,
        "tests/test_calc.py": CALC_TESTS,
        "README.md": "calc\n",
        **(extra or {}),
    }
    return make_repo(tmp_path / "repo", files)


def config(tmp_path: Path, url: str, extra: str = "", beta_price: str = "3") -> Path:
    path = tmp_path / "forge.toml"
    path.write_text(
        f"""
[providers.fake]
base_url = "{url}/v1"

[models.alpha]
provider = "fake"
id = "alpha-1"
tier = "free"
input_price = 0.1
output_price = 0.2

[models.beta]
provider = "fake"
id = "beta-1"
tier = "cheap"
input_price = {beta_price}
output_price = {beta_price}

[models.gamma]
provider = "fake"
id = "gamma-1"
tier = "premium"
input_price = 5
output_price = 15

[tiers]
ladder = ["free", "cheap", "premium"]

[routing]
max_attempts_per_tier = 2
max_total_attempts = 6
learn_from_history = false
max_call_attempts = 1
{extra}
""",
        encoding="utf-8",
    )
    return path


def forge_run(repo: Path, cfg: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = run_forge("run-milestone", *args, "--json", "-c", str(cfg), cwd=repo, timeout=300)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.returncode, report, done.stderr


def user_state(repo: Path) -> tuple[str, str, str, bytes]:
    """What the user sees: status, branch, index, and the bytes of the file they are editing."""
    return (
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "branch", "--show-current"),
        git(repo, "ls-files", "--stage"),
        (repo / "README.md").read_bytes(),
    )


def prompt_of(request: Any) -> str:
    return "\n".join(m["content"] for m in request.body["messages"])


def trailers(repo: Path, ref: str) -> dict[str, str]:
    text = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", ref)
    return dict(line.split(": ", 1) for line in text.strip().splitlines())


# -- the first rung solves it ------------------------------------------------------------------


def test_task_solved_on_the_first_rung_is_one_commit_with_trailers_and_the_user_tree_untouched(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    (repo / "README.md").write_text("calc, being edited by the user\n")  # uncommitted change
    (repo / "notes.txt").write_text("untracked\n")
    before = user_state(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    fake.script("alpha-1", Reply(text="Here is the fix.\n\n" + FIX_ADD))
    cfg = config(tmp_path, fake.url)
    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] fix-add: Fix add in calc.py (files: calc.py, tests/test_calc.py)\n")

    code, report, stderr = forge_run(repo, cfg, str(milestone), "--tier", "free")

    assert code == 0, stderr
    task = report["tasks"][0]
    assert task["state"] == "done"
    assert task["rungs_tried"] == ["free"]
    assert [a["outcome"] for a in task["attempts"]] == ["passed"]
    branch = report["branch"]
    assert branch == f"forge/{report['run']}"
    assert task["tier"] == "free"
    # The task's working branch is gone: git cannot hold forge/RUN beside forge/RUN/TASK.
    assert git(repo, "branch", "--list", f"forge/{report['run']}/*") == ""
    assert "base does not pass validation: 1 finding(s) are this task's targets" in task["base"]
    # One commit on top of the base, with exactly the fix and the trailers.
    assert git(repo, "rev-list", "--count", f"{head}..{branch}").strip() == "1"
    assert git(repo, "show", f"{branch}:calc.py") == CALC_OK
    assert git(repo, "diff", "--name-only", head, branch).split() == ["calc.py"]
    found = trailers(repo, branch)
    assert found["Forge-Model"] == "alpha"
    assert found["Forge-Tier"] == "free"
    assert found["Forge-Attempts"] == "1"
    assert found["Forge-Cost"].startswith("$")
    assert git(repo, "log", "-1", "--format=%s", branch).strip() == "Fix add in calc.py"
    # The user's checkout is exactly as it was; no worktree is left behind.
    assert user_state(repo) == before
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert run_folders() == []


def run_folders() -> list[str]:
    """The folders runs' worktrees live in (conftest's FORGE_HOME)."""
    home = Path(os.environ["FORGE_HOME"]) / "worktrees"
    return sorted(p.name for p in home.iterdir()) if home.is_dir() else []


# -- retry with the failure in hand, then escalation --------------------------------------------


def test_failing_attempts_retry_with_the_test_failure_then_escalate_and_every_attempt_is_logged(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(text=MULTIPLY_INSTEAD), Reply(text=MULTIPLY_INSTEAD))
    fake.script("beta-1", Reply(text=FIX_ADD))
    cfg = config(tmp_path, fake.url)

    code, report, stderr = forge_run(
        repo,
        cfg,
        "--goal",
        "Fix add in calc.py so that tests/test_calc.py passes",
        "--tier",
        "free",
    )

    assert code == 0, stderr
    task = report["tasks"][0]
    assert task["rungs_tried"] == ["free", "cheap"]
    assert task["escalations"] == 1
    assert [(a["rung"], a["model"], a["outcome"]) for a in task["attempts"]] == [
        ("free", "alpha", "failed"),
        ("free", "alpha", "failed"),
        ("cheap", "beta", "passed"),
    ]
    first, second = fake.requests_for("alpha-1")
    assert "# Your previous attempt" not in prompt_of(first)
    retry = prompt_of(second)
    assert "# Your previous attempt" in retry
    assert "test_add" in retry and "assert 6 == 5" in retry
    escalated = prompt_of(fake.requests_for("beta-1")[0])
    assert "# Earlier attempts" in escalated and "alpha" in escalated
    assert "return a - b" in escalated  # the clean base, not alpha's edit
    assert trailers(repo, report["branch"])["Forge-Attempts"] == "3"
    assert trailers(repo, report["branch"])["Forge-Model"] == "beta"
    # The ledger: every attempt with its tier, model, tokens, cost and validation outcome.
    ledger = Ledger.open()
    rows = RunStore(ledger).attempts(report["run"])
    assert [(r.rung, r.model, r.validation, r.well_formed) for r in rows] == [
        ("free", "alpha", "failed", True),
        ("free", "alpha", "failed", True),
        ("cheap", "beta", "passed", True),
    ]
    assert all(r.input_tokens > 0 and r.output_tokens > 0 for r in rows)
    assert all(r.cost_usd is not None and r.cost_usd > 0 for r in rows)
    assert rows[0].targets_left == 1
    calls = ledger.attempts(run_id=report["run"], limit=None)
    assert sorted(c.model for c in calls) == ["alpha", "alpha", "beta"]


def test_a_task_that_exhausts_the_ladder_fails_with_a_report_of_every_rung_and_no_commit(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    head = git(repo, "rev-parse", "HEAD").strip()
    for model in ("alpha-1", "beta-1", "gamma-1"):
        fake.script(model, Reply(text=MULTIPLY_INSTEAD))
    cfg = config(tmp_path, fake.url)

    code, report, _ = forge_run(repo, cfg, "--goal", "Fix add in calc.py", "--tier", "free")

    assert code == 1
    task = report["tasks"][0]
    assert task["state"] == "failed"
    assert task["rungs_tried"] == ["free", "cheap", "premium"]
    assert len(task["attempts"]) == 6  # max_total_attempts
    assert "every rung tried failed (free, cheap, premium" in task["reason"]
    assert "test_add" in task["last_findings"]
    assert task["commit"] is None
    # Nothing was merged: no empty branch and no empty worktree folder are left behind.
    assert report["branch"] is None
    assert git(repo, "branch", "--list", "forge/*") == ""
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert run_folders() == []
    human = run_forge(
        "run-milestone",
        "--goal",
        "Fix add in calc.py",
        "--tier",
        "premium",
        "-c",
        str(cfg),
        cwd=repo,
        timeout=300,
    )
    assert human.returncode == 1
    assert "every rung tried failed (premium" in human.stdout
    assert "nothing was merged, so no branch was made" in human.stdout
    assert "last findings" in human.stdout and "test_add" in human.stdout


def test_budget_exhausted_mid_task_stops_with_exit_3_and_says_how_much_more_was_needed(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(text=MULTIPLY_INSTEAD))
    fake.script("beta-1", Reply(text=FIX_ADD))
    cfg = config(
        tmp_path,
        fake.url,
        "[cost]\ndaily_budget_usd = 100\nrun_budget_usd = 0.5\n",
        beta_price="1000",
    )

    code, report, stderr = forge_run(repo, cfg, "--goal", "Fix add in calc.py", "--tier", "free")

    assert code == 3, stderr
    task = report["tasks"][0]
    assert task["state"] == "stopped"
    assert "run_budget_usd" in task["reason"] and "more is needed" in task["reason"]
    # The escalation to beta was refused before anything was sent, and is in the report.
    assert [a["model"] for a in task["attempts"]] == ["alpha", "alpha", "beta"]
    assert task["attempts"][-1]["outcome"] == "stopped"
    assert fake.requests_for("beta-1") == []  # refused before sending
    assert task["commit"] is None


def test_a_format_error_is_repaired_by_asking_again_for_the_failed_block_only(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path, calc=CALC_BUGGY + "\n\ndef double(x: int) -> int:\n    return x\n")
    good = "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
    bad = "calc.py\n<<<<<<< SEARCH\n    return y\n=======\n    return 2 * x\n>>>>>>> REPLACE\n"
    fixed = "calc.py\n<<<<<<< SEARCH\n    return x\n=======\n    return 2 * x\n>>>>>>> REPLACE\n"
    fake.script("alpha-1", Reply(text=good + "\n" + bad), Reply(text=fixed))
    cfg = config(tmp_path, fake.url)

    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] fix: Fix add and make double return twice x (files: calc.py)\n")
    code, report, stderr = forge_run(repo, cfg, str(milestone), "--tier", "free")

    assert code == 0, stderr
    attempts = report["tasks"][0]["attempts"]
    assert len(attempts) == 1 and attempts[0]["repairs"] == 1
    repair = fake.requests_for("alpha-1")[1].body["messages"][-1]["content"]
    assert "return y" in repair  # the failed block, with the text around where it should go
    assert "return x" in repair
    assert "return a - b" not in repair  # the good block is kept, not asked for again
    final = git(repo, "show", f"{report['branch']}:calc.py")
    assert "return a + b" in final and "return 2 * x" in final
    rows = RunStore(Ledger.open()).attempts(report["run"])
    assert [(r.kind, r.well_formed) for r in rows] == [("repair", True), ("attempt", True)]


def test_a_repair_shows_the_file_as_the_answer_s_earlier_blocks_left_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path, calc=CALC_BUGGY + "\n\ndef double(x: int) -> int:\n    return x\n")
    first = "calc.py\n<<<<<<< SEARCH\n    return x\n=======\n    return x  # twice\n"
    first += ">>>>>>> REPLACE\n"
    wrong = "calc.py\n<<<<<<< SEARCH\n    return y  # twice\n=======\n    return 2 * x\n"
    wrong += ">>>>>>> REPLACE\n"
    fixed = "calc.py\n<<<<<<< SEARCH\n    return x  # twice\n=======\n    return 2 * x\n"
    fixed += ">>>>>>> REPLACE\n"
    add = "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
    fake.script("alpha-1", Reply(text=f"{add}\n{first}\n{wrong}"), Reply(text=fixed))
    cfg = config(tmp_path, fake.url)

    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] dbl: Fix add, make double return twice x (files: calc.py)\n")
    code, report, stderr = forge_run(repo, cfg, str(milestone), "--tier", "free")

    repair = fake.requests_for("alpha-1")[1].body["messages"][-1]["content"]
    shown = repair.split("The current text of calc.py there:")[1]
    assert "return x  # twice" in shown, "the region as the first block left it, not the disk's"
    assert code == 0, stderr
    final = git(repo, "show", f"{report['branch']}:calc.py")
    assert "return 2 * x" in final and "# twice" not in final


# -- targets and background ---------------------------------------------------------------------

OTHER_FAILING = """\
def test_unrelated():
    assert 1 == 2, "broken before the task"
"""
DOCSTRING_ONLY = '''\
calc.py
<<<<<<< SEARCH
def add(a: int, b: int) -> int:
=======
def add(a: int, b: int) -> int:
    """The sum of a and b."""
>>>>>>> REPLACE
'''


def test_a_failing_test_the_task_names_is_a_target_and_one_elsewhere_is_background(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path, extra={"tests/test_other.py": OTHER_FAILING})
    fake.script("alpha-1", Reply(text=DOCSTRING_ONLY), Reply(text=FIX_ADD))
    cfg = config(tmp_path, fake.url)
    milestone = tmp_path / "m.toml"
    milestone.write_text(
        '[[task]]\nid = "fix"\ntitle = "Make the calc tests pass"\n'
        'files = ["calc.py", "tests/test_calc.py"]\ntier = "free"\n'
    )

    code, report, stderr = forge_run(repo, cfg, str(milestone))

    assert code == 0, stderr
    task = report["tasks"][0]
    assert "1 finding(s) are this task's targets, 2 are background" in task["base"]
    # The docstring alone leaves the target standing: not a pass.
    assert [a["outcome"] for a in task["attempts"]] == ["failed", "passed"]
    assert "1 target(s) still standing" in task["attempts"][0]["headline"]
    retry = prompt_of(fake.requests_for("alpha-1")[1])
    assert "test_add" in retry
    assert "test_unrelated" not in retry  # background is not the attempt's fault
    # The second attempt passes although test_unrelated still fails.
    assert git(repo, "show", f"{report['branch']}:calc.py").startswith("def add")


def test_require_green_refuses_an_attempt_while_background_findings_remain(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path, extra={"tests/test_other.py": OTHER_FAILING})
    fake.script("alpha-1", Reply(text=FIX_ADD))
    cfg = config(tmp_path, fake.url)
    code, report, _ = forge_run(
        repo, cfg, "--goal", "Fix add in calc.py", "--model", "alpha", "--require-green"
    )
    assert code == 1
    assert report["tasks"][0]["attempts"][0]["headline"].endswith("left (--require-green)")


# -- safety through the CLI ---------------------------------------------------------------------


def test_an_edit_outside_the_repository_is_refused_and_nothing_is_written(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    outside = tmp_path / "outside.txt"
    escape = "../outside.txt\n<<<<<<< SEARCH\n=======\npwned\n>>>>>>> REPLACE\n"
    fake.script("alpha-1", Reply(text=escape))
    cfg = config(tmp_path, fake.url)

    code, report, _ = forge_run(repo, cfg, "--goal", "Fix add in calc.py", "--model", "alpha")

    assert code == 1
    assert not outside.exists()
    first = report["tasks"][0]["attempts"][0]
    assert first["outcome"] == "refused" and first["well_formed"] is False
    assert "outside" in first["headline"] or "repository" in first["headline"]


def test_an_answer_that_writes_a_file_git_ignores_is_refused_before_anything_is_written(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """forge never writes what it could not commit; an edit to a tracked file next to it is
    written on the next attempt, alone."""
    repo = python_repo(tmp_path, extra={".gitignore": "__pycache__/\n.pytest_cache/\n*.log\n"})
    log = "debug.log\n<<<<<<< SEARCH\n=======\nnotes\n>>>>>>> REPLACE\n"
    fake.script("alpha-1", Reply(text=FIX_ADD + "\n" + log), Reply(text=FIX_ADD))
    cfg = config(tmp_path, fake.url)

    code, report, _ = forge_run(repo, cfg, "--goal", "Fix add in calc.py", "--model", "alpha")

    assert code == 0
    attempts = report["tasks"][0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["refused", "passed"]
    assert attempts[0]["headline"].startswith("debug.log: ignored by git")
    changed = git(repo, "diff", "--name-only", f"{report['branch']}~1", report["branch"])
    assert changed.split() == ["calc.py"]


def test_a_file_an_answer_creates_is_validated(fake: FakeProvider, tmp_path: Path) -> None:
    """The attempt's validation sees the file its edits made, though the listing it uses was
    taken before them (with only the syntax check on, which reads exactly the files listed)."""
    repo = python_repo(tmp_path, calc=CALC_OK)
    create = (
        "helpers.py\n```python\n<<<<<<< SEARCH\n=======\n"
        "def double(x: int) -> int\n    return 2 * x\n>>>>>>> REPLACE\n```\n"
    )
    fix = (
        "helpers.py\n```python\n<<<<<<< SEARCH\ndef double(x: int) -> int\n=======\n"
        "def double(x: int) -> int:\n>>>>>>> REPLACE\n```\n"
    )
    fake.script("alpha-1", Reply(text=create), Reply(text=fix))
    syntax_only = (
        "[validation]\nenable_build_check = false\nenable_lint_check = false\n"
        "enable_test_execution = false\n"
    )
    cfg = config(tmp_path, fake.url, syntax_only)
    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] double: Add a double helper in helpers.py\n")

    code, report, stderr = forge_run(repo, cfg, str(milestone), "--model", "alpha")

    assert code == 0, stderr
    attempts = report["tasks"][0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "passed"]
    assert "helpers.py:1" in prompt_of(fake.requests_for("alpha-1")[1])  # the syntax error
    assert "int:\n" in git(repo, "show", f"{report['branch']}:helpers.py")


def test_a_run_started_with_git_dir_set_is_refused_and_touches_nothing(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """Inside a git hook GIT_DIR is set; every worktree command would act on the user's
    repository instead."""
    repo = python_repo(tmp_path)
    before = user_state(repo)
    cfg = config(tmp_path, fake.url)
    done = run_forge(
        "run-milestone",
        "--goal",
        "Fix add in calc.py",
        "--model",
        "alpha",
        "-c",
        str(cfg),
        cwd=repo,
        env={"GIT_DIR": str(repo / ".git")},
    )
    assert done.returncode == 2
    assert "GIT_DIR is set" in done.stderr and "Traceback" not in done.stderr
    assert user_state(repo) == before
    assert git(repo, "branch", "--list", "forge/*") == ""
    assert fake.requests == []


def test_strict_files_refuses_edits_to_files_the_task_does_not_list(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    readme = "README.md\n<<<<<<< SEARCH\ncalc\n=======\nhacked\n>>>>>>> REPLACE\n"
    fake.script("alpha-1", Reply(text=readme + "\n" + FIX_ADD))
    cfg = config(tmp_path, fake.url)
    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] fix: Fix add (files: calc.py)\n")

    code, report, _ = forge_run(repo, cfg, str(milestone), "--model", "alpha", "--strict-files")

    assert code == 1
    assert "calc.py" in report["tasks"][0]["attempts"][0]["headline"]
    assert report["branch"] is None  # nothing merged
    assert (repo / "README.md").read_text() == "calc\n"


def test_ctrl_c_during_a_run_says_how_to_resume_it(fake: FakeProvider, tmp_path: Path) -> None:
    repo = python_repo(tmp_path)
    cfg = config(tmp_path, fake.url)
    fake.script("alpha-1", Reply(fault=Fault.STALL, stall_seconds=60))
    args = ["run-milestone", "--goal", "Fix add in calc.py", "--tier", "free", "-c", str(cfg)]
    forge = subprocess.Popen(
        [sys.executable, "-m", "forge", *args],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forge.stderr is not None
        seen = []
        for line in forge.stderr:  # wait until the first task asks its model
            seen.append(line)
            if "asking alpha" in line:
                break
        else:
            pytest.fail("the run ended before it asked a model:\n" + "".join(seen))
        run_id = seen[0].split()[2]  # forge: run RUN (1 task(s))
        forge.send_signal(signal.SIGINT)
        rest = forge.communicate(timeout=120)[1]
    finally:
        forge.kill()

    assert forge.returncode == 130, rest
    assert f"to carry on: forge run-milestone --resume {run_id} -c {cfg}" in rest
    assert "Traceback" not in rest
    runs = json.loads(run_forge("runs", "--json").stdout)["runs"]
    assert [(r["run"], r["state"]) for r in runs] == [(run_id, "interrupted")]


# -- usage errors -------------------------------------------------------------------------------


def test_usage_errors_exit_2_with_a_message(tmp_path: Path, fake: FakeProvider) -> None:
    cfg = config(tmp_path, fake.url)
    plain = tmp_path / "plain"
    plain.mkdir()
    done = run_forge("run-milestone", "--goal", "Fix it", "-c", str(cfg), cwd=plain)
    assert done.returncode == 2 and "not inside a git repository" in done.stderr
    repo = python_repo(tmp_path)
    done = run_forge("run-milestone", "-c", str(cfg), cwd=repo)
    assert done.returncode == 2 and "give a milestone file, --goal TEXT, or --resume" in done.stderr
    two = tmp_path / "two.md"
    two.write_text("- [ ] a: First thing\n- [ ] b: Second thing\n")
    done = run_forge("run-milestone", str(two), "--task", "c", "-c", str(cfg), cwd=repo)
    assert done.returncode == 2 and "has no task 'c'" in done.stderr
    done = run_forge("run-milestone", "--goal", "x", "--base", "nope", "-c", str(cfg), cwd=repo)
    assert done.returncode == 2 and "'nope'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_run_with_no_model_it_can_call_exits_2_before_making_a_branch_or_worktree(
    fake: FakeProvider, tmp_path: Path, isolated_home: Path
) -> None:
    repo = python_repo(tmp_path)
    keyed = config(tmp_path, fake.url).read_text()
    keyed = keyed.replace("[providers.fake]\n", '[providers.fake]\napi_key_env = "FAKE_API_KEY"\n')
    cfg = tmp_path / "keyed.toml"
    cfg.write_text(keyed)
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[providers.fake]\nbase_url = "{fake.url}/v1"\n')

    no_key = run_forge("run-milestone", "--goal", "Fix add in calc.py", "-c", str(cfg), cwd=repo)
    no_model = run_forge("run-milestone", "--goal", "Fix add in calc.py", "-c", str(bare), cwd=repo)

    assert no_key.returncode == 2, no_key.stderr
    assert "FAKE_API_KEY is not set (for alpha, beta, gamma)" in no_key.stderr
    assert no_model.returncode == 2, no_model.stderr
    assert "no model in forge.toml has a tier of the ladder" in no_model.stderr
    assert "Traceback" not in no_key.stderr + no_model.stderr
    assert git(repo, "branch", "--list", "forge/*") == ""
    assert not (isolated_home / "forge-home" / "worktrees").exists()
    assert fake.requests == []


# -- Rust ---------------------------------------------------------------------------------------

CARGO = '[package]\nname = "shapes"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
LIB_RS = """\
pub fn area(width: u32, height: u32) -> u32 {
    width + height
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_of_a_rectangle() {
        assert_eq!(area(3, 4), 12);
    }
}
"""
FIX_AREA = """\
src/lib.rs
```rust
<<<<<<< SEARCH
    width + height
=======
    width * height
>>>>>>> REPLACE
```
"""


def test_a_rust_crate_task_is_validated_with_cargo_and_committed(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "crate",
        {"Cargo.toml": CARGO, "src/lib.rs": LIB_RS, ".gitignore": "target/\n"},
    )
    fake.script("alpha-1", Reply(text=FIX_AREA))
    cfg = config(tmp_path, fake.url)

    code, report, stderr = forge_run(
        repo, cfg, "--goal", "Fix area in src/lib.rs: the test fails", "--model", "alpha"
    )

    assert code == 0, stderr
    assert "area_of_a_rectangle" not in (report["tasks"][0]["last_findings"] or "")
    assert "width * height" in git(repo, "show", f"{report['branch']}:src/lib.rs")
    assert not (repo / "target").exists()  # cargo ran in the worktree, not in the checkout


def test_a_local_model_writes_whole_files_by_default(fake: FakeProvider, tmp_path: Path) -> None:
    repo = python_repo(tmp_path)
    fake.script("small-1", Reply(text="calc.py\n```python\n" + CALC_OK + "```\n"))
    local = '\n[models.small]\nprovider = "fake"\nid = "small-1"\ntier = "local"\n'
    cfg = config(tmp_path, fake.url, local)

    code, report, stderr = forge_run(repo, cfg, "--goal", "Fix add in calc.py", "--model", "small")

    assert code == 0, stderr
    system = fake.requests_for("small-1")[0].body["messages"][0]["content"]
    assert "<<<<<<< SEARCH" not in system  # taught the whole-file format, not SEARCH/REPLACE
    assert git(repo, "show", f"{report['branch']}:calc.py") == CALC_OK


def test_deleting_the_failing_test_does_not_count_as_fixing_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    cheat = (
        "tests/test_calc.py\n<<<<<<< SEARCH\ndef test_add():\n    assert add(2, 3) == 5\n"
        "=======\ndef test_add_exists():\n    assert add\n>>>>>>> REPLACE\n"
    )
    fake.script("alpha-1", Reply(text=cheat))
    cfg = config(tmp_path, fake.url)
    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] fix: Fix add (files: calc.py, tests/test_calc.py) (tier: free)\n")

    code, report, _ = forge_run(repo, cfg, str(milestone), "--model", "alpha")

    assert code == 1
    first = report["tasks"][0]["attempts"][0]
    assert first["outcome"] == "failed" and "target(s) still standing" in first["headline"]


def test_a_tracked_symlink_to_a_file_outside_the_repository_never_reaches_a_prompt(
    fake: FakeProvider, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("# AWS_SECRET=hunter2\n")
    repo = python_repo(tmp_path)
    (repo / "settings.py").symlink_to(secret)
    git(repo, "add", "settings.py")
    git(repo, "commit", "-q", "-m", "settings")
    fake.script("alpha-1", Reply(text=FIX_ADD))
    cfg = config(tmp_path, fake.url)

    code, _, stderr = forge_run(
        repo, cfg, "--goal", "Fix add in calc.py and read settings.py", "--model", "alpha"
    )

    assert code == 0, stderr
    assert "hunter2" not in prompt_of(fake.requests_for("alpha-1")[0])


def test_model_written_code_is_validated_without_the_users_credentials(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """An answer adds a test that records the environment it runs in (and writes it outside
    the worktree, which nothing stops without a sandbox): the provider's key and every
    variable named like a credential are gone, but what `pass_env` keeps."""
    repo = python_repo(tmp_path)
    seen = tmp_path / "seen-environment.json"
    spy = (
        "tests/test_spy.py\n```python\n<<<<<<< SEARCH\n=======\nimport json\nimport os\n\n\n"
        f"def test_spy():\n    with open({str(seen)!r}, 'w') as out:\n"
        "        json.dump(dict(os.environ), out)\n>>>>>>> REPLACE\n```\n"
    )
    fake.script("alpha-1", Reply(text=FIX_ADD + "\n" + spy))
    cfg = config(tmp_path, fake.url, '[validation]\npass_env = ["DATABASE_URL"]\n')
    text = cfg.read_text().replace(
        "[providers.fake]\n", '[providers.fake]\napi_key_env = "LLM_GATEWAY"\n', 1
    )
    cfg.write_text(text)
    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] fix: Fix add in calc.py (files: calc.py)\n")
    secrets = {
        "LLM_GATEWAY": "gw-0123456789abcdef",  # the configured key, named like nothing special
        "AWS_SECRET_ACCESS_KEY": "aws-0123456789abcdef",
        "GITHUB_TOKEN": "ghp_0123456789abcdef",
        "DEPLOY_PASSWORD": "hunter2-hunter2",
        "DATABASE_URL": "postgresql://app:pw@127.0.0.1/app",
    }
    done = run_forge(
        "run-milestone", str(milestone), "--model", "alpha", "--json", "-c", str(cfg),
        cwd=repo, env=secrets, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    environment = json.loads(seen.read_text())
    for name in ("LLM_GATEWAY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DEPLOY_PASSWORD"):
        assert name not in environment, name
    assert environment["DATABASE_URL"] == secrets["DATABASE_URL"], "pass_env keeps it"
    assert "PATH" in environment and "HOME" in environment

    # The user's own `forge validate` on their own tree keeps its environment.
    seen.unlink()
    git(repo, "checkout", "-q", "-b", "mine")
    (repo / "tests" / "test_spy.py").write_text(
        f"import json\nimport os\n\n\ndef test_spy():\n    with open({str(seen)!r}, 'w') as out:\n"
        "        json.dump(dict(os.environ), out)\n"
    )
    run_forge("validate", str(repo), "-c", str(cfg), env=secrets)
    assert json.loads(seen.read_text())["GITHUB_TOKEN"] == secrets["GITHUB_TOKEN"]


FIX_TASK = "fix: Fix add in calc.py (files: calc.py)"


def run_task(
    repo: Path, tmp_path: Path, fake: FakeProvider, task: str, *args: str
) -> tuple[int, dict[str, Any], str]:
    """One Markdown task (`- [ ] TASK`) run with `--model alpha` and the usual configuration."""
    milestone = tmp_path / "m.md"
    milestone.write_text(f"- [ ] {task}\n")
    return forge_run(repo, config(tmp_path, fake.url), str(milestone), "--model", "alpha", *args)


def test_a_failing_test_of_a_package_belongs_to_its_init_file(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """calc/__init__.py is the package `calc`: tests/test_calc.py's failure is the task's
    target, so a comment-only "fix" that leaves it failing is not a pass."""
    repo = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": PYPROJECT,
            ".gitignore": "__pycache__/\n.pytest_cache/\n.ruff_cache/\n",
            "calc/__init__.py": CALC_BUGGY,
            "tests/test_calc.py": CALC_TESTS,
        },
    )
    comment_only = (
        "calc/__init__.py\n<<<<<<< SEARCH\ndef add(a: int, b: int) -> int:\n=======\n"
        "# Adds two numbers.\ndef add(a: int, b: int) -> int:\n>>>>>>> REPLACE\n"
    )
    fix = FIX_ADD.replace("calc.py", "calc/__init__.py")
    fake.script("alpha-1", Reply(text=comment_only), Reply(text=fix))
    code, report, stderr = run_task(repo, tmp_path, fake, "fix: Fix add (files: calc/__init__.py)")

    assert code == 0, stderr
    task = report["tasks"][0]
    assert "1 finding(s) are this task's targets" in task["base"]
    assert [a["outcome"] for a in task["attempts"]] == ["failed", "passed"]
    assert "1 target(s) still standing" in task["attempts"][0]["headline"]


def test_a_failing_rust_test_belongs_to_the_module_it_lives_in() -> None:
    from forge.execution.feedback import Finding

    finding = Finding(
        key=("test", "cargo test", "unittests", "geometry::tests::area"),
        validator="cargo test",
        summary="test geometry::tests::area failed",
        file="src/helpers.rs",  # where the assertion that failed is
        module="unittests src/lib.rs",
        test_name="geometry::tests::area",
    )
    assert finding.belongs_to({"src/geometry.rs"})
    assert finding.belongs_to({"src/geometry/mod.rs"})
    assert not finding.belongs_to({"src/lib.rs"})
    assert not finding.belongs_to({"src/metry.rs"})


MONKEYPATCHING_CONFTEST = """\
tests/conftest.py
```python
<<<<<<< SEARCH
=======
import calc

calc.add = lambda a, b: 5
>>>>>>> REPLACE
```
"""


def test_an_answer_that_adds_a_conftest_is_refused_and_told_why(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """A new conftest.py that patches the function under test would make pytest pass: a task
    that does not name conftest.py may not change it."""
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(text=MONKEYPATCHING_CONFTEST), Reply(text=FIX_ADD))
    code, report, stderr = run_task(
        repo, tmp_path, fake, "fix: Fix add in calc.py (files: calc.py)"
    )

    assert code == 0, stderr
    # The refused block is asked for again, with the reason; the second answer fixes calc.py.
    retry = prompt_of(fake.requests_for("alpha-1")[1])
    assert "tests/conftest.py is pytest configuration that runs before every test" in retry
    assert "only when it names it" in retry
    assert report["tasks"][0]["attempts"][0]["files"] == ["calc.py"]
    assert "conftest" not in git(repo, "ls-tree", "-r", "--name-only", report["branch"])


def test_a_risky_file_the_task_names_is_changed_and_called_out(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path, calc=CALC_OK, extra={"setup.py": "# install\n"})
    edit = (
        "setup.py\n```python\n<<<<<<< SEARCH\n# install\n=======\n"
        "# install calc\n>>>>>>> REPLACE\n```\n"
    )
    fake.script("alpha-1", Reply(text=edit))
    code, report, stderr = run_task(
        repo, tmp_path, fake, "setup: Describe the package in setup.py (files: setup.py)"
    )

    assert code == 0, stderr
    task = report["tasks"][0]
    assert task["review_before_merging"] == ["setup.py (a Python install script)"]
    assert trailers(repo, report["branch"])["Forge-Review"] == "setup.py (a Python install script)"

    again = make_repo(tmp_path / "again", {"setup.py": "# install\n", "calc.py": CALC_OK})
    fake.script("alpha-1", Reply(text=edit))
    cfg = config(tmp_path, fake.url)
    milestone = tmp_path / "m.md"  # the same task, at a terminal
    shown = run_forge(
        "run-milestone", str(milestone), "--model", "alpha", "-c", str(cfg), cwd=again
    )
    assert shown.returncode == 0, shown.stderr
    assert "setup: review before merging: setup.py (a Python install script)" in shown.stdout


EXPECT_THE_BUG = """\
tests/test_calc.py
```python
<<<<<<< SEARCH
    assert add(2, 3) == 5
=======
    assert add(2, 3) == -1
>>>>>>> REPLACE
```
"""
FIX_AND_ADD_A_TEST = (
    FIX_ADD
    + """
tests/test_calc.py
```python
<<<<<<< SEARCH
    assert add(2, 3) == 5
=======
    assert add(2, 3) == 5


def test_add_negative():
    assert add(-2, -3) == -5
>>>>>>> REPLACE
```
"""
)


def test_an_answer_that_edits_the_test_to_expect_the_bug_fails_and_is_undone(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    base_test = (repo / "tests" / "test_calc.py").read_text()
    fake.script("alpha-1", Reply(text=EXPECT_THE_BUG), Reply(text=FIX_AND_ADD_A_TEST))
    code, report, stderr = run_task(
        repo, tmp_path, fake, "fix: Fix add in calc.py (files: calc.py, tests/test_calc.py)"
    )

    assert code == 0, stderr
    attempts = report["tasks"][0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "passed"]
    assert "once your test changes (tests/test_calc.py) are set aside" in attempts[0]["headline"]
    retry = prompt_of(fake.requests_for("alpha-1")[1])
    assert "test_add" in retry, "the base's failing test is the feedback"
    committed = git(repo, "show", f"{report['branch']}:tests/test_calc.py")
    assert committed.startswith(base_test.rstrip("\n")), "the edited expectation is not kept"
    assert "def test_add_negative" in committed, "a test added next to a real fix is welcome"
    assert trailers(repo, report["branch"])["Forge-Tests"] == "added"


def test_allow_test_edits_lets_a_task_change_an_existing_test(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(text=EXPECT_THE_BUG))
    task = "expect: Change what add is expected to return (files: tests/test_calc.py) "
    task += "(type: bug_fix)"
    code, report, stderr = run_task(repo, tmp_path, fake, task, "--allow-test-edits")

    assert code == 0, stderr
    assert [a["outcome"] for a in report["tasks"][0]["attempts"]] == ["passed"]
    assert trailers(repo, report["branch"])["Forge-Tests"] == "edited"


def test_a_milestone_entry_marked_tests_edit_may_change_existing_tests(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(text=EXPECT_THE_BUG))
    milestone = tmp_path / "m.toml"
    milestone.write_text(
        '[[task]]\nid = "expect"\ntitle = "Change what add is expected to return"\n'
        'files = ["tests/test_calc.py"]\ntype = "bug_fix"\ntests = "edit"\n'
    )

    code, report, stderr = forge_run(
        repo, config(tmp_path, fake.url), str(milestone), "--model", "alpha"
    )

    assert code == 0, stderr
    assert trailers(repo, report["branch"])["Forge-Tests"] == "edited"


RETURN_EARLY = """\
tests/test_calc.py
```python
<<<<<<< SEARCH
def test_add():
=======
def test_add():
    return
>>>>>>> REPLACE
```
"""
PATCHING_TEST_MODULE = """\
tests/test_zzz.py
```python
<<<<<<< SEARCH
=======
import calc

calc.add.__code__ = (lambda a, b: a + b).__code__


def test_nothing():
    pass
>>>>>>> REPLACE
```
"""
FIX_AND_WEAKEN = (
    FIX_ADD
    + """
tests/test_calc.py
```python
<<<<<<< SEARCH
    assert add(2, 3) == 5
=======
    assert add(2, 3) == add(2, 3)
>>>>>>> REPLACE
```
"""
)


@pytest.mark.parametrize(
    "cheat", [RETURN_EARLY, PATCHING_TEST_MODULE], ids=["returns-early", "patching-module"]
)
def test_cheats_that_only_add_lines_or_files_are_judged_by_the_base_tests(
    fake: FakeProvider, tmp_path: Path, cheat: str
) -> None:
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(text=cheat), Reply(text=FIX_ADD))
    code, report, stderr = run_task(
        repo, tmp_path, fake, "fix: Fix add in calc.py (files: calc.py)"
    )

    assert code == 0, stderr
    attempts = report["tasks"][0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "passed"]
    assert "tests that exist at the base fail" in attempts[0]["headline"]
    files = git(repo, "ls-tree", "-r", "--name-only", report["branch"])
    assert "test_zzz" not in files, "the set-aside module is not committed"
    committed = git(repo, "show", f"{report['branch']}:tests/test_calc.py")
    assert committed == CALC_TESTS


def test_a_weakened_test_beside_a_real_fix_is_not_committed(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(text=FIX_AND_WEAKEN))
    code, report, stderr = run_task(
        repo, tmp_path, fake, "fix: Fix add in calc.py (files: calc.py)"
    )

    assert code == 0, stderr
    committed = git(repo, "show", f"{report['branch']}:tests/test_calc.py")
    assert committed == CALC_TESTS, "the weakened expectation is undone"
    assert "return a + b" in git(repo, "show", f"{report['branch']}:calc.py")
    assert "Forge-Tests" not in trailers(repo, report["branch"])


CALC_WITH_SUB = CALC_BUGGY + "\n\ndef sub(a: int, b: int) -> int:\n    return -(b - a)\n"
TESTS_WITH_SUB = CALC_TESTS.replace("from calc import add", "from calc import add, sub") + (
    "\n\ndef test_sub():\n    assert sub(5, 3) == 2\n"
)
HIDE_A_BROKEN_TEST = (
    FIX_ADD
    + """
calc.py
```python
<<<<<<< SEARCH
def sub(a: int, b: int) -> int:
    return -(b - a)
=======
def sub(a: int, b: int) -> int:
    return a + b
>>>>>>> REPLACE
```

pyproject.toml
```toml
<<<<<<< SEARCH
testpaths = ["tests"]
=======
testpaths = ["tests"]
addopts = "-k 'not test_sub'"
>>>>>>> REPLACE
```
"""
)


def test_a_test_deselected_through_the_test_settings_is_a_new_finding(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """The answer fixes add, breaks sub and hides test_sub with pytest's addopts: a test that
    passed at the base and no longer runs counts against the attempt."""
    repo = python_repo(tmp_path, calc=CALC_WITH_SUB, extra={"tests/test_calc.py": TESTS_WITH_SUB})
    restore = (
        "calc.py\n```python\n<<<<<<< SEARCH\ndef sub(a: int, b: int) -> int:\n"
        "    return a + b\n=======\ndef sub(a: int, b: int) -> int:\n    return -(b - a)\n"
        ">>>>>>> REPLACE\n```\n\npyproject.toml\n```toml\n<<<<<<< SEARCH\n"
        "addopts = \"-k 'not test_sub'\"\n=======\n>>>>>>> REPLACE\n```\n"
    )
    fake.script("alpha-1", Reply(text=HIDE_A_BROKEN_TEST), Reply(text=restore))
    code, report, stderr = run_task(
        repo, tmp_path, fake, "fix: Fix add in calc.py (files: calc.py)"
    )

    assert code == 0, stderr
    attempts = report["tasks"][0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "passed"]
    retry = prompt_of(fake.requests_for("alpha-1")[-1])
    assert "test_sub passed at the base and is now missing" in retry
    assert "return -(b - a)" in git(repo, "show", f"{report['branch']}:calc.py")


PLUGIN_CHEAT = """\
cheat_plugin.py
```python
<<<<<<< SEARCH
=======
import calc


def _add(a: int, b: int) -> int:
    return a + b


calc.add = _add
>>>>>>> REPLACE
```

pyproject.toml
```toml
<<<<<<< SEARCH
testpaths = ["tests"]
=======
testpaths = ["tests"]
addopts = "-p cheat_plugin"
>>>>>>> REPLACE
```
"""


def test_a_pytest_plugin_added_through_pyproject_does_not_fix_the_task(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """pytest's section of pyproject.toml is test configuration: the plugin it loads patches
    add, which passes the attempt's own validation but not the base's tests."""
    repo = python_repo(tmp_path)
    head = git(repo, "rev-parse", "HEAD").strip()
    fake.script("alpha-1", Reply(text=PLUGIN_CHEAT))
    code, report, _ = run_task(repo, tmp_path, fake, "fix: Fix add in calc.py (files: calc.py)")

    assert code == 1
    task = report["tasks"][0]
    assert task["state"] == "failed" and task["commit"] is None
    first = task["attempts"][0]
    assert first["outcome"] == "failed"
    assert "once your test changes (pyproject.toml) are set aside" in first["headline"]
    assert report["branch"] is None and git(repo, "rev-parse", "HEAD").strip() == head


RETURN_EARLY_FROM_THE_RUST_TEST = """\
src/lib.rs
```rust
<<<<<<< SEARCH
    fn area_of_a_rectangle() {
=======
    fn area_of_a_rectangle() {
        if true {
            return;
        }
>>>>>>> REPLACE
```
"""
WEAKEN_THE_RUST_TEST = """\
src/lib.rs
```rust
<<<<<<< SEARCH
        assert_eq!(area(3, 4), 12);
=======
        assert!(area(3, 4) > 0);
>>>>>>> REPLACE
```
"""
FIX_AREA_AND_ADD_A_TEST = (
    FIX_AREA
    + """
src/lib.rs
```rust
<<<<<<< SEARCH
        assert_eq!(area(3, 4), 12);
    }
=======
        assert_eq!(area(3, 4), 12);
    }

    #[test]
    fn area_of_a_square() {
        assert_eq!(area(2, 2), 4);
    }
>>>>>>> REPLACE
```
"""
)


def rust_crate(tmp_path: Path) -> Path:
    files = {"Cargo.toml": CARGO, "src/lib.rs": LIB_RS, ".gitignore": "target/\n"}
    return make_repo(tmp_path / "crate", files)


def test_a_test_of_a_cfg_test_module_that_returns_early_does_not_fix_the_task(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """The `#[cfg(test)]` module of src/lib.rs is the base's tests: a test made to return
    early passes, but not as the base has it; a fix with a new test in the module is welcome."""
    repo = rust_crate(tmp_path)
    cheat, fix = RETURN_EARLY_FROM_THE_RUST_TEST, FIX_AREA_AND_ADD_A_TEST
    fake.script("alpha-1", Reply(text=cheat), Reply(text=fix))
    code, report, stderr = run_task(repo, tmp_path, fake, "fix: Fix area (files: src/lib.rs)")

    assert code == 0, stderr
    attempts = report["tasks"][0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "passed"]
    assert "once your test changes (src/lib.rs) are set aside" in attempts[0]["headline"]
    committed = git(repo, "show", f"{report['branch']}:src/lib.rs")
    assert "width * height" in committed and "fn area_of_a_square" in committed
    assert "return;" not in committed
    assert trailers(repo, report["branch"])["Forge-Tests"] == "added"


def test_a_weakened_rust_test_beside_a_real_fix_is_undone_and_the_fix_kept(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """Undoing the edit puts the base's test module back into the attempt's src/lib.rs: the
    code fix in the same file stays."""
    repo = rust_crate(tmp_path)
    fake.script("alpha-1", Reply(text=FIX_AREA + "\n" + WEAKEN_THE_RUST_TEST))
    code, report, stderr = run_task(repo, tmp_path, fake, "fix: Fix area (files: src/lib.rs)")

    assert code == 0, stderr
    assert [a["outcome"] for a in report["tasks"][0]["attempts"]] == ["passed"]
    committed = git(repo, "show", f"{report['branch']}:src/lib.rs")
    assert committed.rstrip("\n") == LIB_RS.replace("width + height", "width * height").rstrip()
    assert "Forge-Tests" not in trailers(repo, report["branch"])


# -- what a server says about the model ------------------------------------------------------

WIDE_MODEL = """
[models.wide]
provider = "fake"
id = "wide-1"
tier = "free"
context_window = 32768
input_price = 1
output_price = 2
"""
# A block whose search text is not in calc.py: the answer arrives, and forge asks again.
MISSED = "calc.py\n<<<<<<< SEARCH\n    return y\n=======\n    return a + b\n>>>>>>> REPLACE\n"


def test_a_repair_that_outgrows_the_context_moves_to_a_wider_model_of_the_same_tier(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    overflow = Reply(fault=Fault.CONTEXT_TOO_LONG, server="llama-server")
    fake.script("alpha-1", Reply(text=MISSED), overflow)
    fake.script("wide-1", Reply(text=FIX_ADD))
    cfg = config(tmp_path, fake.url, "", "3")
    cfg.write_text(
        cfg.read_text().replace('id = "alpha-1"\n', 'id = "alpha-1"\ncontext_window = 4096\n')
        + WIDE_MODEL
    )

    code, report, stderr = forge_run(repo, cfg, "--goal", "Fix add in calc.py", "--tier", "free")

    assert code == 0, stderr
    task = report["tasks"][0]
    assert [a["model"] for a in task["attempts"]] == ["alpha", "wide"]
    assert task["attempts"][0]["failure"] == "context_too_long"
    assert "exceeds the available context size" in task["attempts"][0]["headline"]
    assert len(fake.requests_for("alpha-1")) == 2, "the overflowing request is not sent again"
    assert fake.requests_for("beta-1") == [], "a wider model of the same tier comes first"
    assert "return a + b" in git(repo, "show", f"{report['branch']}:calc.py")


def test_models_that_answered_then_overflowed_are_not_unreachable(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """Both models answered; the repair outgrew a 1,024-token context. The task failed, it
    was not "no model of the ladder could be reached" (exit 4)."""
    repo = python_repo(tmp_path)
    overflow = Reply(fault=Fault.CONTEXT_TOO_LONG, server="llama-server")
    for model in ("alpha-1", "beta-1", "gamma-1"):
        fake.script(model, Reply(text=MISSED), overflow)
    cfg = config(tmp_path, fake.url)

    code, report, stderr = forge_run(repo, cfg, "--goal", "Fix add in calc.py", "--tier", "free")

    task = report["tasks"][0]
    assert code == 1, stderr
    assert "could be reached" not in task["reason"]
    assert "every rung tried failed (free, cheap, premium" in task["reason"]
    assert [a["model"] for a in task["attempts"]] == ["alpha", "beta", "gamma"]
    assert {a["failure"] for a in task["attempts"]} == {"context_too_long"}


def test_a_model_id_the_server_does_not_know_is_called_once_in_the_run(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = python_repo(tmp_path)
    fake.script("alpha-1", Reply(fault=Fault.NOT_FOUND, server="litellm"))
    fake.script("beta-1", Reply(text=FIX_ADD))
    cfg = config(tmp_path, fake.url)
    milestone = tmp_path / "m.md"
    milestone.write_text(
        "- [ ] one: Fix add in calc.py (files: calc.py)\n"
        "- [ ] two: Fix add in calc.py again (files: calc.py) (after: one)\n"
    )

    _, report, _ = forge_run(repo, cfg, str(milestone), "--tier", "free")

    assert len(fake.requests_for("alpha-1")) == 1, "a typo in id is not retried in the run"
    first = report["tasks"][0]["attempts"][0]
    assert first["failure"] == "not_found"
    assert "'alpha-1' is unknown to the server" in first["headline"]
    assert "check `id` in [models.alpha] of forge.toml" in first["headline"]


class LiveTable:
    """run-milestone's live table on a fixed-width console, driven by the test's clocks."""

    def __init__(self, plan_text: str) -> None:
        import io

        from rich.console import Console

        from forge.commands.run_view import LiveTasks
        from forge.planning.milestone import parse_markdown

        self.now = 100.0  # the monotonic clock: elapsed times
        self.wall = 1_000.0  # the wall clock: the ends of waits
        self.screen = io.StringIO()
        self.view = LiveTasks(
            parse_markdown(plan_text),
            console=Console(file=self.screen, force_terminal=True, width=160, no_color=True),
            clock=lambda: self.now,
            wall_clock=lambda: self.wall,
        )

    def row(self, task: str) -> str:
        """What one refresh, as the Live's own timer does it, draws of `task`'s row."""
        start = self.screen.tell()
        self.view.live.refresh()
        frame = self.screen.getvalue()[start:]
        return next(line for line in frame.splitlines() if f"│ {task} " in line)


def test_the_live_tables_elapsed_column_ticks_between_events() -> None:
    """A task's clock moves at every refresh of the live table, not only when the task reports
    something: a long validation used to show `0s` all along. The table's clock is the test's."""
    from forge.execution.scheduler import RunEvent

    table = LiveTable("- [ ] fix: Fix the adder (files: calc.py)\n- [ ] docs: Docs (after: fix)")
    table.view.start()
    try:
        table.view.update(RunEvent("fix", "running", "started"))
        table.now = 103.2
        assert "│ 3s " in table.row("fix")
        table.now = 104.6  # no event since: only the clock moved
        assert "│ 5s " in table.row("fix")
        table.view.update(RunEvent("fix", "done", "merged"))
        table.now = 200.0
        assert "│ 5s " in table.row("fix"), "a finished task's clock stops"
    finally:
        table.view.stop()


def test_a_task_waiting_on_a_rate_limit_says_so_and_then_goes_on(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """A Retry-After is announced on the task's line as the wait starts, not lived through as
    silence that looks like a hang."""
    repo = python_repo(tmp_path)
    fake.script(
        "alpha-1",
        Reply(fault=Fault.RATE_LIMIT, retry_after=1),
        Reply(text="Here is the fix.\n\n" + FIX_ADD),
    )
    cfg = config(tmp_path, fake.url)
    cfg.write_text(cfg.read_text().replace("max_call_attempts = 1", "max_call_attempts = 2"))
    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] fix-add: Fix add in calc.py (files: calc.py, tests/test_calc.py)\n")

    code, report, stderr = forge_run(repo, cfg, str(milestone), "--tier", "free")

    assert code == 0, stderr
    assert "fix-add [free/alpha] waiting: retrying (429, 2/2) in 1 s" in stderr
    assert [a["outcome"] for a in report["tasks"][0]["attempts"]] == ["passed"]


def test_the_live_table_counts_a_tasks_wait_down() -> None:
    from forge.execution.engine import TaskEvent
    from forge.execution.scheduler import RunEvent
    from forge.providers.types import Pause

    table = LiveTable("- [ ] fix: Fix the adder (files: calc.py)")
    wait = Pause("alpha", "retry", 4.0, 1_004.0, "429", "rate limited", 2, 3)
    table.view.start()
    try:
        table.view.update(RunEvent("fix", "running", "started"))
        table.view.update(
            TaskEvent("fix", "waiting", wait.describe(), 1, "free", "alpha", pause=wait)
        )
        assert "retrying (429, 2/3) in 4 s" in table.row("fix")
        table.wall = 1_002.5  # no event since: only the clock moved
        assert "retrying (429, 2/3) in 2 s" in table.row("fix")
        table.view.update(TaskEvent("fix", "asking", "asking alpha", 1, "free", "alpha"))
        assert "retrying" not in table.row("fix"), "the wait is over once the task moves on"
    finally:
        table.view.stop()
