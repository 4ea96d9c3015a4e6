"""`forge run-milestone` on task graphs: parallel tasks, dependencies, failures, conflicts,
budget stops, SIGKILL and --resume, --dry-run, --apply.

Every task is pinned to its own tier, and every tier has one model, so each fake model's script
is the answer for exactly one task whatever order the tasks run in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from forge.execution.store import RunStore
from forge.ledger import Ledger
from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge, start_forge
from tests.test_run_milestone import git, make_repo, user_state

TIERS = ("t1", "t2", "t3", "t4")


def graph_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    models = "".join(
        f'\n[models.m{n}]\nprovider = "fake"\nid = "m{n}-1"\ntier = "{tier}"\n'
        f"input_price = {n}\noutput_price = {n}\n"
        for n, tier in enumerate(TIERS, 1)
    )
    path = tmp_path / "forge.toml"
    path.write_text(
        f"""
[providers.fake]
base_url = "{url}/v1"
{models}
[tiers]
ladder = {json.dumps(list(TIERS))}

[routing]
max_attempts_per_tier = 1
max_total_attempts = 2
learn_from_history = false
max_call_attempts = 1
max_concurrent_tasks = 4
{extra}
""",
        encoding="utf-8",
    )
    return path


def text_repo(tmp_path: Path, **files: str) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "calc\n", **files})


def edit(path: str, old: str, new: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def milestone(tmp_path: Path, *tasks: dict[str, Any]) -> Path:
    path = tmp_path / "milestone.toml"
    blocks = []
    for task in tasks:
        lines = ["[[task]]"] + [f"{key} = {json.dumps(value)}" for key, value in task.items()]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def run(repo: Path, cfg: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = run_forge("run-milestone", *args, "--json", "-c", str(cfg), cwd=repo, timeout=300)
    try:
        return done.returncode, json.loads(done.stdout), done.stderr
    except json.JSONDecodeError:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}") from None


def start_run(repo: Path, plan: Path, cfg: Path, stderr: IO[str]) -> subprocess.Popen[str]:
    """`forge run-milestone` in the background, its progress lines going to `stderr`."""
    return start_forge(
        "run-milestone",
        str(plan),
        "-c",
        str(cfg),
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def tasks_by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in report["tasks"]}


def merged_tasks(repo: Path, branch: str) -> list[str]:
    text = git(repo, "log", "--format=%(trailers:key=Forge-Task,valueonly)", branch)
    return sorted(line for line in text.split() if line)


def merged_into_the_run(repo: Path, task: str) -> Callable[[], bool]:
    """Whether `task` has been merged into a run's integration ref: a fake reply held on it
    answers only after that merge, however busy the machine."""

    def check() -> bool:
        refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/forge/runs/").split()
        return any(task in merged_tasks(repo, ref) for ref in refs)

    return check


def test_three_independent_tasks_run_at_the_same_time_and_all_land_on_the_run_branch(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"})
    fake.hold_until_open = 3  # each call answers once all three are open at once
    for n, name in enumerate("abc", 1):
        fake.script(f"m{n}-1", Reply(text=edit(f"{name}.txt", name, name.upper())))
    plan = milestone(
        tmp_path,
        *(
            {"id": name, "title": f"Capitalise {name}.txt", "tier": f"t{n}"}
            for n, name in enumerate("abc", 1)
        ),
    )

    code, report, stderr = run(repo, graph_config(tmp_path, fake.url), str(plan))

    assert code == 0, stderr
    assert fake.max_concurrent_streams >= 3  # the three model calls overlapped
    branch = report["branch"]
    assert branch == f"forge/{report['run']}"
    assert merged_tasks(repo, branch) == ["a", "b", "c"]
    for name in "abc":
        assert git(repo, "show", f"{branch}:{name}.txt") == name.upper() + "\n"
    assert report["totals"]["done"] == 3
    assert report["totals"]["finished_per_tier"] == {"t1": 1, "t2": 1, "t3": 1}


def test_a_task_sees_the_work_of_the_task_it_comes_after(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"notes.txt": "start\n"})
    fake.script("m1-1", Reply(text=edit("notes.txt", "start", "start\nMARKER-FROM-A")))
    fake.script("m2-1", Reply(text=edit("notes.txt", "MARKER-FROM-A", "MARKER-FROM-A\nand B")))
    plan = milestone(
        tmp_path,
        {
            "id": "b",
            "title": "Extend the notes",
            "files": ["notes.txt"],
            "after": ["a"],
            "tier": "t2",
        },
        {"id": "a", "title": "Start the notes", "files": ["notes.txt"], "tier": "t1"},
    )

    code, report, stderr = run(repo, graph_config(tmp_path, fake.url), str(plan))

    assert code == 0, stderr
    request = fake.requests_for("m2-1")[0].body["messages"][-1]["content"]
    assert "MARKER-FROM-A" in request
    assert git(repo, "show", f"{report['branch']}:notes.txt") == "start\nMARKER-FROM-A\nand B\n"


def test_a_failed_task_skips_its_dependents_and_independent_tasks_go_on(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"c.txt": "c\n"})
    fake.script("m4-1", Reply(text="I would rather not edit anything."))
    fake.script("m1-1", Reply(text=edit("c.txt", "c", "C")))
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "Do the impossible", "tier": "t4"},
        {"id": "d", "title": "Build on the impossible", "after": ["a"], "tier": "t2"},
        {"id": "e", "title": "Build on that", "after": ["d"], "tier": "t3"},
        {"id": "c", "title": "Capitalise c.txt", "tier": "t1"},
    )

    code, report, _ = run(repo, graph_config(tmp_path, fake.url), str(plan))

    assert code == 1
    tasks = tasks_by_id(report)
    assert tasks["a"]["state"] == "failed"
    assert tasks["d"]["state"] == "skipped" and "after a, which failed" in tasks["d"]["reason"]
    assert tasks["e"]["state"] == "skipped"
    assert tasks["c"]["state"] == "done"
    assert fake.requests_for("m2-1") == [] and fake.requests_for("m3-1") == []
    assert merged_tasks(repo, report["branch"]) == ["c"]


def test_two_parallel_tasks_editing_the_same_line_the_second_reruns_on_the_new_head(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path)
    fake.script("m1-1", Reply(text=edit("README.md", "calc", "calc A")))
    fake.script(
        "m2-1",
        # B's first answer comes once A has merged: B's work is then on a stale head.
        Reply(text=edit("README.md", "calc", "calc B"), after=merged_into_the_run(repo, "a")),
        Reply(text=edit("README.md", "calc A", "calc A and B")),
    )
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "Name A in the readme", "files": ["README.md"], "tier": "t1"},
        {"id": "b", "title": "Name B in the readme", "files": ["README.md"], "tier": "t2"},
    )

    code, report, stderr = run(repo, graph_config(tmp_path, fake.url), str(plan))

    assert code == 0, stderr
    tasks = tasks_by_id(report)
    assert tasks["b"]["conflicts"] == 1 and tasks["b"]["state"] == "done"
    assert git(repo, "show", f"{report['branch']}:README.md") == "calc A and B\n"
    rerun = fake.requests_for("m2-1")[1].body["messages"][-1]["content"]
    assert "calc A" in rerun  # the re-run started from the new head
    rows = RunStore(Ledger.open()).attempts(report["run"], "b")
    assert [r.kind for r in rows] == ["attempt", "merge", "attempt"]
    assert "README.md" in (rows[1].detail or "")


def test_plan_errors_name_the_ids_and_exit_2(fake: FakeProvider, tmp_path: Path) -> None:
    repo = text_repo(tmp_path)
    cfg = graph_config(tmp_path, fake.url)
    cases = {
        "cycle.md": (
            "- [ ] a: A (after: c)\n- [ ] b: B (after: a)\n- [ ] c: C (after: b)\n",
            "dependency cycle: a -> c -> b -> a",
        ),
        "unknown.md": ("- [ ] a: A (after: ghost)\n", "ghost"),
        "duplicate.md": ("- [ ] a: A\n- [ ] a: Again\n", "'a'"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        done = run_forge("run-milestone", str(path), "-c", str(cfg), cwd=repo)
        assert done.returncode == 2, (name, done.stderr)
        assert expected in done.stderr, (name, done.stderr)
        assert "Traceback" not in done.stderr
    assert fake.requests == []


def test_budget_reached_stops_the_run_with_exit_3_and_starts_nothing_after(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"a.txt": "a\n"})
    fake.script("m1-1", Reply(text=edit("a.txt", "a", "A"), cost="1.0"))
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "Capitalise a.txt", "tier": "t1"},
        {"id": "b", "title": "Then something", "after": ["a"], "tier": "t2"},
        {"id": "c", "title": "And more", "after": ["b"], "tier": "t3"},
    )
    cfg = graph_config(
        tmp_path, fake.url, "\n[cost]\ndaily_budget_usd = 100\nrun_budget_usd = 0.5\n"
    )

    code, report, _ = run(repo, cfg, str(plan))

    assert code == 3
    assert report["state"] == "stopped" and "run_budget_usd" in report["stop_reason"]
    tasks = tasks_by_id(report)
    assert tasks["a"]["state"] == "done"
    assert tasks["b"]["state"] == tasks["c"]["state"] == "not_started"
    assert fake.requests_for("m2-1") == [] and fake.requests_for("m3-1") == []
    assert merged_tasks(repo, report["branch"]) == ["a"]


def test_a_run_killed_with_sigkill_resumes_without_redoing_merged_tasks(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"a.txt": "a\n", "b.txt": "b\n"})
    (repo / "README.md").write_text("calc, edited by the user\n")
    (repo / "scratch.txt").write_text("untracked\n")
    git(repo, "add", "scratch.txt")  # staged: the index must survive too
    before = (*user_state(repo), (repo / "scratch.txt").read_bytes())
    fake.script("m1-1", Reply(text=edit("a.txt", "a", "A")))
    fake.script("m2-1", Reply(text=edit("b.txt", "b", "B"), ttft=60.0))
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "Capitalise a.txt", "tier": "t1"},
        {"id": "b", "title": "Capitalise b.txt", "after": ["a"], "tier": "t2"},
    )
    cfg = graph_config(tmp_path, fake.url)
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        process = start_run(repo, plan, cfg, err)
        deadline = time.monotonic() + 120
        while not fake.requests_for("m2-1") and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        busy = run_forge(
            "run-milestone", "--resume", log.read_text().split()[2], "-c", str(cfg), cwd=repo
        )
        assert busy.returncode == 2 and "still running" in busy.stderr
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    run_id = log.read_text().split()[2]
    assert (*user_state(repo), (repo / "scratch.txt").read_bytes()) == before
    listed = json.loads(run_forge("runs", "--json", cwd=repo).stdout)["runs"]
    assert [(r["run"], r["state"]) for r in listed] == [(run_id, "crashed")]
    fake.script("m2-1", Reply(text=edit("b.txt", "b", "B")))

    code, report, stderr = run(repo, cfg, "--resume", run_id)

    assert code == 0, stderr
    assert report["run"] == run_id and report["resumed"] is True
    assert len(fake.requests_for("m1-1")) == 1  # a was merged before the kill: not redone
    tasks = tasks_by_id(report)
    assert tasks["a"]["reason"] == "merged before the run resumed"
    assert tasks["b"]["state"] == "done"
    assert merged_tasks(repo, report["branch"]) == ["a", "b"]
    assert (*user_state(repo), (repo / "scratch.txt").read_bytes()) == before
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    unknown = run_forge("run-milestone", "--resume", "nope", "-c", str(cfg), cwd=repo)
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr


def test_dry_run_prints_levels_routes_critical_path_and_estimate(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path)
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "First", "tier": "t1"},
        {"id": "b", "title": "Second", "tier": "t2"},
        {"id": "c", "title": "After both", "after": ["a", "b"], "tier": "t3"},
    )
    cfg = graph_config(tmp_path, fake.url)

    done = run_forge("run-milestone", str(plan), "--dry-run", "-c", str(cfg), cwd=repo)

    assert done.returncode == 0, done.stderr
    assert "level 1 (2 task(s) at once)" in done.stdout
    assert "level 2 (1 task(s) at once)" in done.stdout
    assert "t3/m3" in done.stdout and "after a, b" in done.stdout
    assert "critical path: a -> c" in done.stdout
    assert "estimate: first attempts $" in done.stdout
    assert fake.requests == []
    as_json = json.loads(
        run_forge(
            "run-milestone", str(plan), "--dry-run", "--json", "-c", str(cfg), cwd=repo
        ).stdout
    )
    assert as_json["levels"] == [["a", "b"], ["c"]]
    assert git(repo, "branch", "--list", "forge/*") == ""


def test_apply_fast_forwards_a_clean_branch_and_refuses_a_dirty_one(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"a.txt": "a\n"})
    fake.script("m1-1", Reply(text=edit("a.txt", "a", "A")))
    cfg = graph_config(tmp_path, fake.url)
    plan = milestone(tmp_path, {"id": "a", "title": "Capitalise a.txt", "tier": "t1"})
    (repo / "README.md").write_text("dirty\n")

    dirty = run_forge("run-milestone", str(plan), "--apply", "-c", str(cfg), cwd=repo)

    assert dirty.returncode == 0
    assert "uncommitted changes; nothing applied" in dirty.stderr
    assert (repo / "a.txt").read_text() == "a\n" and (repo / "README.md").read_text() == "dirty\n"
    git(repo, "checkout", "README.md")
    clean = run_forge("run-milestone", str(plan), "--apply", "-c", str(cfg), cwd=repo)
    assert clean.returncode == 0
    assert "fast-forwarded" in clean.stderr
    assert (repo / "a.txt").read_text() == "A\n"


def test_ctrl_c_exits_130_cleans_the_worktrees_and_the_run_can_resume(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"a.txt": "a\n"})
    before = user_state(repo)
    fake.script("m1-1", Reply(text=edit("a.txt", "a", "A"), ttft=60.0))
    plan = milestone(tmp_path, {"id": "a", "title": "Capitalise a.txt", "tier": "t1"})
    cfg = graph_config(tmp_path, fake.url)
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        process = start_run(repo, plan, cfg, err)
        deadline = time.monotonic() + 120
        while not fake.requests_for("m1-1") and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130, log.read_text()
    assert "Traceback" not in log.read_text()
    run_id = log.read_text().split()[2]
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert user_state(repo) == before
    assert RunStore(Ledger.open()).run(run_id).state == "interrupted"  # type: ignore[union-attr]
    fake.script("m1-1", Reply(text=edit("a.txt", "a", "A")))
    code, report, stderr = run(repo, cfg, "--resume", run_id)
    assert code == 0, stderr
    assert merged_tasks(repo, report["branch"]) == ["a"]


CRATE = '[package]\nname = "parts"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
BROKEN = 'pub fn {name}() -> i32 {{\n    "{name}"\n}}\n'


def test_fix_the_build_runs_one_task_per_broken_file_in_parallel_then_what_comes_after(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "crate",
        {
            "Cargo.toml": CRATE,
            ".gitignore": "target/\n",
            "README.md": "parts\n",
            "src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
            **{f"src/{n}.rs": BROKEN.format(name=n) for n in "abc"},
        },
    )
    replies = [
        Reply(
            text=edit(f"src/{n}.rs", f'    "{n}"', f"    {i}"),
            when=f"in src/{n}.rs",
        )
        for i, n in enumerate("abc", 1)
    ]
    readme = Reply(text=edit("README.md", "parts", "parts: a, b and c"), when="README")
    fake.script("m1-1", *replies, readme)
    fake.hold_until_open = 3  # the fixes answer once all three are open at once
    cfg = graph_config(tmp_path, fake.url)

    code, report, stderr = run(
        repo, cfg, "--goal", "Fix the build, then add a usage section to the README", "--tier", "t1"
    )

    assert code == 0, stderr
    tasks = report["tasks"]
    fixes = [t for t in tasks if t["id"].startswith("fix-")]
    assert sorted(t["id"] for t in fixes) == ["fix-src-a-rs", "fix-src-b-rs", "fix-src-c-rs"]
    last = next(t for t in tasks if not t["id"].startswith("fix-"))
    assert sorted(last["after"]) == sorted(t["id"] for t in fixes)
    assert all(t["state"] == "done" for t in tasks)
    assert fake.max_concurrent_streams >= 3  # the three fixes were asked for at the same time
    branch = report["branch"]
    for i, n in enumerate("abc", 1):
        assert git(repo, "show", f"{branch}:src/{n}.rs") == f"pub fn {n}() -> i32 {{\n    {i}\n}}\n"
    assert git(repo, "show", f"{branch}:README.md") == "parts: a, b and c\n"
    assert not (repo / "target").exists()  # the plan's validation ran in a scratch worktree


def test_ctrl_c_during_validation_stops_the_validators_instead_of_waiting_for_them(
    fake: FakeProvider, tmp_path: Path
) -> None:
    slow = "import time\n\n\ndef test_slow():\n    time.sleep(300)\n"
    repo = make_repo(
        tmp_path / "repo",
        {"pyproject.toml": '[project]\nname = "slow"\nversion = "0"\n', "tests/test_slow.py": slow},
    )
    plan = milestone(tmp_path, {"id": "a", "title": "Anything", "tier": "t1"})
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        process = start_run(repo, plan, graph_config(tmp_path, fake.url), err)
        deadline = time.monotonic() + 60
        while "validating the base" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # pytest is now inside the 300-second test
        process.send_signal(signal.SIGINT)
        # Far less than the test's 300 s: the validators were killed, not waited for.
        assert process.wait(timeout=120) == 130, log.read_text()
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert fake.requests == []


def test_the_live_table_shows_each_task_with_its_model_attempt_stage_and_a_footer() -> None:
    import io

    from rich.console import Console

    from forge.commands.run_view import LiveTasks
    from forge.execution.engine import TaskEvent
    from forge.execution.scheduler import RunEvent
    from forge.planning.milestone import parse_markdown

    plan = parse_markdown("- [ ] a: First\n- [ ] b: Second (after: a)\n")
    view = LiveTasks(plan)
    view.update(RunEvent("a", "running", "started"))
    view.update(TaskEvent("a", "validating", "attempt 2: validating", 2, "cheap", "beta"))
    out = io.StringIO()
    Console(file=out, width=200).print(view._table())
    text = out.getvalue()
    assert "running" in text and "cheap/beta" in text and "validating" in text
    assert "waiting" in text  # b waits for a
    assert "running 1, waiting 1" in text


def test_on_budget_cancel_cancels_the_tasks_in_flight(fake: FakeProvider, tmp_path: Path) -> None:
    repo = text_repo(tmp_path, **{"b.txt": "b\n"})
    fake.script("m2-1", Reply(text=edit("b.txt", "b", "B"), ttft=60.0))
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "Too dear for the budget", "tier": "t4"},
        {"id": "b", "title": "Capitalise b.txt", "tier": "t2"},
    )
    # m2's worst case (about $0.01 at $2 per million tokens) fits; m4's (twice that) does not.
    cfg = graph_config(
        tmp_path, fake.url, "\n[cost]\ndaily_budget_usd = 100\nrun_budget_usd = 0.015\n"
    )

    code, report, _ = run(repo, cfg, str(plan), "--on-budget", "cancel")

    assert code == 3
    tasks = tasks_by_id(report)
    assert tasks["a"]["state"] == "stopped" and "run_budget_usd" in tasks["a"]["reason"]
    assert tasks["b"]["state"] == "interrupted" and "cancelled" in tasks["b"]["reason"]
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_work_that_breaks_when_merged_with_earlier_work_runs_again_on_the_new_head(
    fake: FakeProvider, tmp_path: Path
) -> None:
    from tests.test_run_milestone import CALC_OK, CALC_TESTS, PYPROJECT

    repo = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": PYPROJECT,
            ".gitignore": "__pycache__/\n.pytest_cache/\n.ruff_cache/\n",
            "calc.py": CALC_OK,
            "tests/test_calc.py": CALC_TESTS,
        },
    )
    rename = edit("calc.py", "def add(a: int, b: int) -> int:", "def plus(a: int, b: int) -> int:")
    rename += "\n" + edit(
        "tests/test_calc.py", "from calc import add", "from calc import plus as add"
    )
    new_test = "tests/test_more.py\n<<<<<<< SEARCH\n=======\nfrom calc import {name}\n\n\n"
    new_test += "def test_more():\n    assert {name}(1, 1) == 2\n>>>>>>> REPLACE\n"
    fake.script("m1-1", Reply(text=rename))
    fake.script(
        "m2-1",
        Reply(text=new_test.format(name="add"), after=merged_into_the_run(repo, "rename")),
        Reply(text=new_test.format(name="plus")),
    )
    plan = milestone(
        tmp_path,
        # A rename changes the existing tests that call the old name: the task says so.
        {
            "id": "rename",
            "title": "Rename add to plus",
            "files": ["calc.py"],
            "tier": "t1",
            "tests": "edit",
        },
        {"id": "more", "title": "Test more sums", "files": ["tests/test_more.py"], "tier": "t2"},
    )

    code, report, stderr = run(repo, graph_config(tmp_path, fake.url), str(plan))

    assert code == 0, stderr
    more = tasks_by_id(report)["more"]
    assert more["conflicts"] == 1  # each passed alone; together test_more could not import add
    assert "from calc import plus" in git(repo, "show", f"{report['branch']}:tests/test_more.py")
    rows = RunStore(Ledger.open()).attempts(report["run"], "more")
    assert "fails validation" in (rows[1].detail or "")


def test_ids_that_would_share_a_branch_and_unknown_tiers_are_refused_before_any_work(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path)
    cfg = graph_config(tmp_path, fake.url)
    clash = tmp_path / "clash.md"
    clash.write_text("- [ ] a.b: One\n- [ ] a..b: Two\n")
    done = run_forge("run-milestone", str(clash), "-c", str(cfg), cwd=repo)
    assert done.returncode == 2 and "both become the branch name 'a.b'" in done.stderr
    bogus = milestone(tmp_path, {"id": "a", "title": "Anything", "tier": "bogus"})
    done = run_forge("run-milestone", str(bogus), "-c", str(cfg), cwd=repo)
    assert done.returncode == 2 and "bogus" in done.stderr
    assert fake.requests == []
    assert "Traceback" not in done.stderr


def test_apply_leaves_the_branch_alone_when_the_run_did_not_finish_every_task(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = text_repo(tmp_path, **{"a.txt": "a\n"})
    head = git(repo, "rev-parse", "HEAD")
    fake.script("m1-1", Reply(text=edit("a.txt", "a", "A")))
    fake.script("m4-1", Reply(text="no edits from me"))
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "Capitalise a.txt", "tier": "t1"},
        {"id": "z", "title": "Fail", "tier": "t4"},
    )

    done = run_forge(
        "run-milestone",
        str(plan),
        "--apply",
        "-c",
        str(graph_config(tmp_path, fake.url)),
        cwd=repo,
    )

    assert done.returncode == 1
    assert "the run is failed, not done; nothing applied" in done.stderr
    assert git(repo, "rev-parse", "HEAD") == head and (repo / "a.txt").read_text() == "a\n"


def test_on_budget_cancel_still_merges_work_that_had_finished(tmp_path: Path) -> None:
    """Cancelling the tasks in flight must not throw away validated, paid-for work: a task that
    finished before the stop (queued for its merge, or in it) is merged all the same."""
    import time as clock

    import anyio

    from forge.errors import ExitCode
    from forge.execution.engine import TaskOutcome
    from forge.execution.integration import Merge
    from forge.planning.milestone import MilestoneTask

    class Settings:
        run_id = "r1"

    class Engine:  # a finishes first, b next, then c's next call is refused by the budget
        settings = Settings()

        async def run(self, task: MilestoneTask, head: str, known: object) -> TaskOutcome:
            await anyio.sleep({"a": 0.05, "b": 0.1, "c": 0.6}[task.id])
            if task.id == "c":
                return TaskOutcome(task, "stopped", ExitCode.BUDGET, "the budget said no")
            return TaskOutcome(task, "done", ExitCode.OK, "ok", commit=f"c-{task.id}", base=head)

    class Line:  # each merge takes a while, as git's does
        def __init__(self) -> None:
            self.merged: list[str] = []
            self._head = "base"

        def head(self) -> str:
            return self._head

        def prepare(self, commit: str, parent: str | None = None) -> Merge:
            clock.sleep(0.5)
            return Merge(f"m-{commit}", previous=self._head)

        def advance(self, merge: Merge) -> None:
            assert merge.head is not None
            self._head = merge.head
            self.merged.append(merge.head)

    async def adds_nothing(before: str, after: str) -> None:
        return None

    line = Line()
    scheduler = _stub_scheduler(tmp_path, Engine(), line, "abc", adds_nothing, on_budget="cancel")

    outcome = anyio.run(scheduler.run, "base")

    states = {task_id: record.state for task_id, record in outcome.records.items()}
    assert states == {"a": "done", "b": "done", "c": "stopped"}
    assert line.merged == ["m-c-a", "m-c-b"]
    assert outcome.exit_code is ExitCode.BUDGET


def test_tasks_one_after_another_reuse_one_worktree(tmp_path: Path) -> None:
    """Giving a worktree back happens in the background; the next task waits for it rather than
    checking out a whole new tree (and, in a Rust crate, starting a cold target/)."""
    from git import Repo

    from forge.execution.workspace import WorktreePool, worktrees_home

    repo = text_repo(tmp_path, **{"b.txt": "b\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    pool = WorktreePool(Repo(repo), "run-1")
    for number in range(6):
        tree = pool.acquire(f"t{number}", base)
        (tree.path / "scratch.txt").write_text("left behind by the task\n")
        pool.release(tree)
    slots = sorted(p.name for p in (worktrees_home() / "run-1").iterdir())
    pool.close()
    assert slots == ["slot-1"]
    assert not (worktrees_home() / "run-1" / "slot-1").exists()


def _batch_scheduler(tmp_path: Path, breaks: Any) -> tuple[Any, Any, list[tuple[str, str]]]:
    """A scheduler over stub tasks and a stub line: a finishes first, and b, c, d finish while
    a's merge is being validated, so they wait for the merger together."""
    import anyio

    from forge.errors import ExitCode
    from forge.execution.engine import TaskOutcome
    from forge.execution.integration import Merge
    from forge.planning.milestone import MilestoneTask

    class Settings:
        run_id = "r1"

    class Engine:
        settings = Settings()

        def __init__(self) -> None:
            self.runs: dict[str, int] = {}

        async def run(self, task: MilestoneTask, head: str, known: object) -> TaskOutcome:
            self.runs[task.id] = self.runs.get(task.id, 0) + 1
            await anyio.sleep(0.05 if task.id == "a" else 0.1)
            commit = task.id if self.runs[task.id] == 1 else f"{task.id}-again"
            return TaskOutcome(task, "done", ExitCode.OK, "ok", commit=commit, base=head)

    class Line:  # a head is the list of changes on it: "base|a|b"
        def __init__(self) -> None:
            self._head = "base"

        def head(self) -> str:
            return self._head

        def prepare(self, commit: str, parent: str | None = None, onto: str | None = None) -> Merge:
            on = onto or self._head
            return Merge(f"{on}|{commit}", previous=on)

        def advance(self, merge: Merge) -> None:
            assert merge.head is not None and merge.previous == self._head
            self._head = merge.head

    checked: list[tuple[str, str]] = []

    async def validated(before: str, after: str) -> str | None:
        checked.append((before, after))
        await anyio.sleep(0.5)  # the merged tree's tests
        return breaks(after.split("|"))

    line = Line()
    return _stub_scheduler(tmp_path, Engine(), line, "abcd", validated), line, checked


def _stub_scheduler(
    tmp_path: Path, engine: Any, line: Any, tasks: str, breaks: Any, **options: Any
) -> Any:
    """A Scheduler over stub tasks and a stub line, all tasks at once, its check of a merged
    tree replaced by `breaks`."""
    from forge.config.schema import ForgeConfig
    from forge.execution.scheduler import Scheduler
    from forge.planning.milestone import Milestone, MilestoneTask

    scheduler = Scheduler(
        plan=Milestone("m", tuple(MilestoneTask(i, i) for i in tasks)),
        engine=engine,
        integration=line,
        ledger=Ledger(tmp_path / "ledger.db"),
        config=ForgeConfig.model_validate({"routing": {"max_concurrent_tasks": len(tasks)}}),
        **options,
    )
    scheduler._breaks = breaks  # type: ignore[method-assign]
    return scheduler


def test_work_that_finishes_during_a_merge_is_merged_as_one_batch_validated_once(
    tmp_path: Path,
) -> None:
    import anyio

    scheduler, line, checked = _batch_scheduler(tmp_path, lambda changes: None)
    outcome = anyio.run(scheduler.run, "base")
    assert {r.state for r in outcome.records.values()} == {"done"}
    assert line.head() == "base|a|b|c|d"
    # a alone, then b, c and d together: two validations where one at a time takes four.
    assert checked == [("base", "base|a"), ("base|a", "base|a|b|c|d")]


def test_a_batch_that_fails_validation_is_merged_one_at_a_time_to_find_the_culprit(
    tmp_path: Path,
) -> None:
    import anyio

    def breaks(changes: list[str]) -> str | None:  # b and c cannot live together
        return "b and c clash" if "b" in changes and "c" in changes else None

    scheduler, line, checked = _batch_scheduler(tmp_path, breaks)
    outcome = anyio.run(scheduler.run, "base")
    assert {r.state for r in outcome.records.values()} == {"done"}
    assert outcome.records["c"].conflicts == 1, "c ran again on the new head"
    assert line.head() == "base|a|b|d|c-again"
    assert ("base|a", "base|a|b|c|d") in checked  # the batch, then one by one
    assert ("base|a|b", "base|a|b|c") in checked


def test_resume_does_not_redo_a_task_whose_change_was_already_on_the_line(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """Two tasks make the same change: the second merge adds nothing, so no commit names it.
    A resumed run must still count it as done, not ask its model again."""
    repo = text_repo(tmp_path, **{"b.txt": "b\n", "c.txt": "c\n"})
    fake.script("m1-1", Reply(text=edit("b.txt", "b", "B")))
    fake.script("m2-1", Reply(text=edit("b.txt", "b", "B"), ttft=1.0))
    fake.script("m3-1", Reply(text=edit("c.txt", "no such line", "C")))
    plan = milestone(
        tmp_path,
        {"id": "a", "title": "Capitalise b.txt", "tier": "t1"},
        {"id": "same", "title": "Capitalise b.txt as well", "tier": "t2"},
        {"id": "c", "title": "Capitalise c.txt", "tier": "t3"},
    )
    cfg = graph_config(tmp_path, fake.url)
    code, report, stderr = run(repo, cfg, str(plan))
    assert code == 1, stderr
    states = {t["id"]: (t["state"], t["reason"]) for t in report["tasks"]}
    assert states["same"] == ("done", "its change was already on the integration line")
    assert states["c"][0] == "failed"
    asked = {model: len(fake.requests_for(model)) for model in ("m1-1", "m2-1")}

    fake.script("m3-1", Reply(text=edit("c.txt", "c", "C")))
    code, resumed, stderr = run(repo, cfg, "--resume", report["run"])

    assert code == 0, stderr
    assert {model: len(fake.requests_for(model)) for model in asked} == asked
    assert {t["id"]: t["state"] for t in resumed["tasks"]} == {
        "a": "done",
        "same": "done",
        "c": "done",
    }
    assert git(repo, "show", f"{resumed['branch']}:c.txt") == "C\n"
