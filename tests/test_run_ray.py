"""`forge run-milestone --executor ray` on a real Ray cluster of this machine (tests/ray_cluster):
tasks run on the nodes from bundles, come back as bundles, and are merged here once each, even
when a node dies mid-task; the user's checkout is never touched. And the errors a user meets
first: Ray not installed, no shared PostgreSQL ledger, a node that lacks what a task needs.

Every task is pinned to a tier of its own holding one fake model, so each model's script is the
answer for exactly one task, whichever node runs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forge.execution.workspace import branch_part
from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge, start_forge
from tests.ray_cluster import RayCluster
from tests.test_run_milestone import PYPROJECT, git, make_repo

# One worker runs these tests: each worker would start a Ray cluster of its own.
pytestmark = pytest.mark.xdist_group("ray")

IDS = ("a", "b", "c", "d", "e", "f")
AFTER = {"c": ["a"], "d": ["b"], "e": ["c", "d"], "f": ["e"]}


def module(name: str, value: int) -> str:
    return f"def value_{name}() -> int:\n    return {value}\n"


def six_module_repo(tmp_path: Path) -> Path:
    """A Python project whose real pytest suite checks six modules, one per task."""
    tests = "".join(
        f"from mod_{n} import value_{n}\n\n\ndef test_{n}():\n    assert value_{n}() >= 1\n\n\n"
        for n in IDS
    )
    files = {
        "pyproject.toml": PYPROJECT,
        ".gitignore": "__pycache__/\n.pytest_cache/\n.ruff_cache/\n",
        "tests/test_values.py": tests.rstrip() + "\n",
        **{f"mod_{n}.py": module(n, 1) for n in IDS},
    }
    return make_repo(tmp_path / "repo", files)


def raise_value(name: str) -> str:
    return (
        f"mod_{name}.py\n```python\n<<<<<<< SEARCH\n    return 1\n=======\n"
        f"    return 2\n>>>>>>> REPLACE\n```\n"
    )


def ray_config(tmp_path: Path, url: str, ledger: str, cluster: RayCluster) -> Path:
    models = "".join(
        f'\n[models.m{n}]\nprovider = "fake"\nid = "m{n}-1"\ntier = "t{n}"\n'
        f"input_price = 1\noutput_price = 1\n"
        for n in range(1, len(IDS) + 1)
    )
    path = tmp_path / "forge.toml"
    path.write_text(
        f"""
[providers.fake]
base_url = "{url}/v1"
{models}
[tiers]
ladder = {json.dumps([f"t{n}" for n in range(1, len(IDS) + 1)])}

[routing]
max_attempts_per_tier = 1
max_total_attempts = 2
learn_from_history = false
max_call_attempts = 1
max_concurrent_tasks = 4

[validation]
enable_lint_check = false

[ledger]
url = "{ledger}"

[execution]
executor = "ray"
ray_address = "{cluster.address}"
""",
        encoding="utf-8",
    )
    return path


def six_task_plan(tmp_path: Path) -> Path:
    blocks = []
    for n, task_id in enumerate(IDS, 1):
        lines = [
            "[[task]]",
            f'id = "{task_id}"',
            f'title = "Raise value_{task_id} to 2"',
            f'files = ["mod_{task_id}.py"]',
            f'tier = "t{n}"',
            f"after = {json.dumps(AFTER.get(task_id, []))}",
        ]
        blocks.append("\n".join(lines))
    path = tmp_path / "milestone.toml"
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def independent_tasks(tmp_path: Path, ids: str) -> Path:
    """A milestone of one task per letter of `ids`, none after another: the n-th raises
    value_<id> to 2 on tier t<n> (so its model is m<n>)."""
    path = tmp_path / f"tasks-{ids}.toml"
    path.write_text(
        "".join(
            f'[[task]]\nid = "{t}"\ntitle = "Raise value_{t} to 2"\ntier = "t{n}"\n\n'
            for n, t in enumerate(ids, 1)
        )
    )
    return path


def checkout_state(repo: Path) -> dict[str, str]:
    """What the user sees: branch, HEAD, the index file's bytes, every file of the tree."""
    files = sorted(p for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts)
    return {
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "head": git(repo, "rev-parse", "HEAD"),
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "status": git(repo, "status", "--porcelain", "--ignored"),
        **{str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }


def merged_once(repo: Path, branch: str) -> list[str]:
    text = git(repo, "log", "--format=%(trailers:key=Forge-Task,valueonly)", branch)
    return sorted(line for line in text.split() if line)


def wait_for(
    condition: Any, what: str, timeout: float = 120.0, driver: subprocess.Popen[str] | None = None
) -> None:
    """Wait for `condition`; past `timeout`, fail with what the driver said, if it is given."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            said = ""
            if driver is not None:
                driver.kill()
                said = "\n" + "\n".join(str(part) for part in driver.communicate())
            raise AssertionError(f"timed out waiting for {what}{said}")
        time.sleep(0.1)


@contextlib.contextmanager
def holding(driver: subprocess.Popen[str], held: threading.Event) -> Iterator[None]:
    """The body runs while the driver's held model calls wait; then they are let go. A driver
    still running when the body fails is killed."""
    try:
        yield
    except BaseException:
        held.set()
        driver.kill()
        raise
    held.set()


def succeeded(driver: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """The driver's `--json` report once it ended with 0, and its progress lines."""
    stdout, stderr = driver.communicate(timeout=240)
    assert driver.returncode == 0, stderr
    return json.loads(stdout), stderr


def test_six_tasks_run_on_the_cluster_and_a_node_killed_mid_task_costs_one_rerun(
    fake: FakeProvider, tmp_path: Path, ray_cluster: RayCluster, postgres_database: str
) -> None:
    repo = six_module_repo(tmp_path)
    before = checkout_state(repo)
    # a and b start together, one per worker node (each node has one CPU); neither is answered
    # the first time until the doomed node is dead, so both are mid-task when it is killed.
    killed = threading.Event()
    for n, task_id in enumerate(IDS, 1):
        held = killed.is_set if task_id in "ab" else None
        first = Reply(text=raise_value(task_id), after=held)
        fake.script(f"m{n}-1", first, Reply(text=raise_value(task_id)))
    ray_cluster.add_worker("doomed")
    cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
    plan = six_task_plan(tmp_path)
    process = start_forge(
        *("run-milestone", str(plan), "--json", "-c", str(cfg)),
        cwd=repo,
        env={**os.environ, "FORGE_USER": "alice", "FORGE_HOST": "driver"},
    )
    try:
        wait_for(
            lambda: fake.requests_for("m1-1") and fake.requests_for("m2-1"),
            "tasks a and b to ask their models",
            driver=process,
        )
        ray_cluster.kill("doomed")
        killed.set()
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert stdout.startswith("{"), f"{stdout}\n{stderr}"
    report = json.loads(stdout)
    assert {t["id"]: t["state"] for t in report["tasks"]} == dict.fromkeys(IDS, "done")
    # The task on the killed node asked its model again elsewhere; the other asked once.
    asked = sorted(len(fake.requests_for(f"m{n}-1")) for n in (1, 2))
    assert asked == [1, 2], asked
    assert "its node was lost mid-task" in stderr
    # Merged exactly once each, with every task's work on the run's branch.
    branch = report["branch"]
    assert merged_once(repo, branch) == sorted(IDS)
    for task_id in IDS:
        assert git(repo, "show", f"{branch}:mod_{task_id}.py") == module(task_id, 2)
    # The user's branch, index and tree are as they were, byte for byte.
    assert checkout_state(repo) == before
    # Every node wrote its calls to the one shared ledger, as the user who started the run.
    logs = run_forge("logs", "--run", report["run"], "--json", "-n", "50", "-c", str(cfg), cwd=repo)
    calls = [c for c in json.loads(logs.stdout)["attempts"] if c["outcome"] == "ok"]
    made = sorted((c["model"], c["host"]) for c in calls)
    assert [model for model, _ in made] == [f"m{n}" for n in range(1, len(IDS) + 1)], made
    assert {c["username"] for c in calls} == {"alice"}
    assert {c["host"] for c in calls} <= {"steady", "doomed"} and "steady" in {
        c["host"] for c in calls
    }
    # No task branch or shipping ref is left behind, and no node alive keeps a copy of the run.
    assert git(repo, "for-each-ref", "refs/forge/ship", f"refs/heads/{branch}/") == ""
    assert run_copies(ray_cluster, report["run"]) == []
    # The nodes' worker processes let go of the run's ledger connections.
    wait_for(lambda: ledger_connections(postgres_database) == 0, "the nodes to close the ledger")


def test_a_node_with_two_cpus_runs_two_tasks_side_by_side_in_one_runner(
    fake: FakeProvider, tmp_path: Path, ray_cluster: RayCluster, postgres_database: str
) -> None:
    """Three independent tasks on three slots (steady's one, wide's two): all three are in
    flight at once, so wide runs two side by side, in its one runner process, in the one
    repository of the run it keeps; all three are merged once."""
    repo = six_module_repo(tmp_path)
    ray_cluster.add_worker("wide", cpus=2)
    try:
        released = threading.Event()
        for n, task_id in enumerate("abc", 1):
            fake.script(f"m{n}-1", Reply(text=raise_value(task_id), after=released.is_set))
        cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
        plan = independent_tasks(tmp_path, "abc")
        driver = start_forge("run-milestone", str(plan), "--json", "-c", str(cfg), cwd=repo)
        with holding(driver, released):
            wait_for(
                lambda: all(fake.requests_for(f"m{n}-1") for n in (1, 2, 3)),
                "all three tasks to ask their models at once",
                driver=driver,
            )
            # Mid-task on both nodes: one runner process on wide, two worktrees in its one
            # repository of the run.
            assert len(runners(ray_cluster, "wide")) == 1
            trees = list((ray_cluster.home("wide") / "ray").glob("*/workers/*/trees/slot-*"))
            assert len(trees) == 2, trees
        report, stderr = succeeded(driver)
        assert {t["id"]: t["state"] for t in report["tasks"]} == dict.fromkeys("abc", "done")
        assert merged_once(repo, report["branch"]) == ["a", "b", "c"]
        assert [len(fake.requests_for(f"m{n}-1")) for n in (1, 2, 3)] == [1, 1, 1]
        ran_on = [
            line.split(" ran on ")[1].split(" in ")[0]
            for line in stderr.splitlines()
            if " cluster: ran on " in line
        ]
        assert len(ran_on) == 3 and sorted(ran_on.count(n) for n in set(ran_on)) == [1, 2]
        assert run_copies(ray_cluster, report["run"]) == []
    finally:
        ray_cluster.kill("wide")


def runners(cluster: RayCluster, node: str) -> list[int]:
    """The node's processes running a NodeRunner (Ray titles an actor's process with its
    class), found by the node's FORGE_HOME in their environment."""
    home = f"FORGE_HOME={cluster.home(node)}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::NodeRunner") and home in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_a_runner_killed_on_a_node_that_stays_up_is_replaced_and_its_task_sent_again(
    fake: FakeProvider, tmp_path: Path, ray_cluster: RayCluster, postgres_database: str
) -> None:
    """Only the runner's process dies (as when a node's memory monitor kills it), on the one
    node with CPUs: the node gets a new runner, the task runs again there and is merged once."""
    repo = six_module_repo(tmp_path)
    killed = threading.Event()
    fake.script(
        "m1-1", Reply(text=raise_value("a"), after=killed.is_set), Reply(text=raise_value("a"))
    )
    cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
    plan = independent_tasks(tmp_path, "a")
    driver = start_forge("run-milestone", str(plan), "--json", "-c", str(cfg), cwd=repo)
    with holding(driver, killed):
        wait_for(lambda: fake.requests_for("m1-1"), "task a to ask its model", driver=driver)
        (runner,) = runners(ray_cluster, "steady")
        os.kill(runner, signal.SIGKILL)
    report, stderr = succeeded(driver)
    assert [t["state"] for t in report["tasks"]] == ["done"], stderr
    assert "its node was lost mid-task" in stderr
    assert len(fake.requests_for("m1-1")) == 2
    assert merged_once(repo, report["branch"]) == ["a"]
    assert run_copies(ray_cluster, report["run"]) == []


def run_copies(cluster: RayCluster, run_id: str) -> list[str]:
    """The nodes alive whose FORGE_HOME still holds the run's copy (its clone, its tasks')."""
    return [n for n in cluster.nodes if (cluster.home(n) / "ray" / branch_part(run_id)).exists()]


def ledger_connections(url: str) -> int:
    """Connections to the run's database other than this one's."""
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def without_ray(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a Python where `import ray` fails, as where the extra is not installed."""
    probe = (
        "import sys; sys.modules['ray'] = None; from forge.cli import main; "
        f"sys.argv = ['forge', *{list(args)!r}]; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_without_the_ray_extra_the_error_names_it_and_nothing_is_made(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = six_module_repo(tmp_path)
    cfg = tmp_path / "forge.toml"
    cfg.write_text(f'[providers.fake]\nbase_url = "{fake.url}/v1"\n', encoding="utf-8")
    plan = six_task_plan(tmp_path)
    for args in (
        ["run-milestone", str(plan), "--executor", "ray", "-c", str(cfg)],
        ["ray-node", "--head", "-c", str(cfg)],
    ):
        done = without_ray(*args, cwd=repo)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            "forge: error: --executor ray needs Ray, an optional extra: "
            "pip install 'forge-cli[ray]'"
        ]
    assert git(repo, "for-each-ref", "refs/forge", "refs/heads/forge") == ""


def test_the_ray_executor_refuses_a_ledger_the_nodes_cannot_share(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = six_module_repo(tmp_path)
    cfg = tmp_path / "forge.toml"
    cfg.write_text(
        f'[providers.fake]\nbase_url = "{fake.url}/v1"\n\n[execution]\nexecutor = "ray"\n',
        encoding="utf-8",
    )
    done = run_forge("run-milestone", str(six_task_plan(tmp_path)), "-c", str(cfg), cwd=repo)
    assert done.returncode == 2
    assert "needs a ledger every node shares" in done.stderr
    assert '[ledger] url = "postgresql://..."' in done.stderr
    assert "Traceback" not in done.stderr
    assert git(repo, "for-each-ref", "refs/forge", "refs/heads/forge") == ""


def test_a_ray_address_without_the_ray_executor_is_a_usage_error(
    fake: FakeProvider, tmp_path: Path
) -> None:
    repo = six_module_repo(tmp_path)
    cfg = tmp_path / "forge.toml"
    cfg.write_text(f'[providers.fake]\nbase_url = "{fake.url}/v1"\n', encoding="utf-8")
    plan = six_task_plan(tmp_path)
    done = run_forge(
        "run-milestone", str(plan), "--ray-address", "127.0.0.1:1", "-c", str(cfg), cwd=repo
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "forge: error: --ray-address names a Ray cluster: it goes with --executor ray"
    )
    assert git(repo, "for-each-ref", "refs/forge", "refs/heads/forge") == ""


def test_a_task_whose_key_no_node_has_is_not_placed_and_fails_saying_why(
    fake: FakeProvider,
    tmp_path: Path,
    ray_cluster: RayCluster,
    postgres_database: str,
    monkeypatch: Any,
) -> None:
    """The driver has the key; no node declared it (forge ray-node said it lacks it)."""
    repo = six_module_repo(tmp_path)
    cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
    text = cfg.read_text().replace(
        'base_url = "', 'api_key_env = "RAYTEST_ONLY_HERE_KEY"\nbase_url = "', 1
    )
    cfg.write_text(text, encoding="utf-8")
    monkeypatch.setenv("RAYTEST_ONLY_HERE_KEY", "sk-driver-only")
    plan = independent_tasks(tmp_path, "a")

    done = run_forge("run-milestone", str(plan), "--json", "-c", str(cfg), cwd=repo, timeout=300)

    assert done.returncode == 1, done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert task["state"] == "failed"
    assert (
        "needs forge_key_RAYTEST_ONLY_HERE_KEY, which no node of the cluster has"
        in (task["reason"])
    )
    assert fake.requests_for("m1-1") == []
    assert "sk-driver-only" not in done.stdout + done.stderr
    # The nodes made ready for the run as it started; it ended at once, and left no copy.
    assert run_copies(ray_cluster, json.loads(done.stdout)["run"]) == []


def test_every_node_makes_ready_for_the_run_as_it_starts_and_keeps_nothing_after(
    fake: FakeProvider, tmp_path: Path, ray_cluster: RayCluster, postgres_database: str
) -> None:
    """One task, two nodes with a slot each: the node that gets no task clones the run too, at
    the run's start (a task placed there later does not wait for it), and the end of the run
    removes both copies."""
    repo = six_module_repo(tmp_path)
    ray_cluster.add_worker("spare")
    try:
        nodes = ("steady", "spare")
        before = {n: set((ray_cluster.home(n) / "ray").glob("*/repo/.git")) for n in nodes}

        def cloned() -> set[str]:
            found = {n: set((ray_cluster.home(n) / "ray").glob("*/repo/.git")) for n in nodes}
            return {n for n in nodes if found[n] - before[n]}

        released = threading.Event()
        fake.script("m1-1", Reply(text=raise_value("a"), after=released.is_set))
        cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
        plan = independent_tasks(tmp_path, "a")
        driver = start_forge("run-milestone", str(plan), "--json", "-c", str(cfg), cwd=repo)
        with holding(driver, released):
            wait_for(lambda: fake.requests_for("m1-1"), "task a to ask its model", driver=driver)
            # The task is on one node, held; the other has had nothing to do but make ready.
            wait_for(lambda: cloned() == set(nodes), "both nodes to clone the run", driver=driver)
        report, stderr = succeeded(driver)
        assert [t["state"] for t in report["tasks"]] == ["done"]
        assert sum(line.startswith("a cluster: ran on ") for line in stderr.splitlines()) == 1
        assert run_copies(ray_cluster, report["run"]) == []
    finally:
        ray_cluster.kill("spare")


def test_ray_node_says_what_this_machine_lacks_and_joins_with_what_it_has(
    tmp_path: Path, monkeypatch: Any
) -> None:
    cfg = tmp_path / "forge.toml"
    cfg.write_text(
        '[providers.here]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "RAYTEST_SET_KEY"\n'
        '[providers.away]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "RAYTEST_UNSET_KEY"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("RAYTEST_SET_KEY", "sk-set-here")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # python and pytest, no cargo

    done = run_forge("ray-node", "--address", "127.0.0.1:6379", "--dry-run", "-c", str(cfg))

    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("forge: this node runs tasks with: python (pytest ")
    assert lines[0].endswith("; keys: RAYTEST_SET_KEY")
    assert "forge: this node lacks cargo: tasks on cargo projects are not placed here" in lines
    assert (
        "forge: this node lacks RAYTEST_UNSET_KEY: tasks whose models need it are not placed here"
    ) in lines
    command = shlex.split(done.stdout)
    assert command[command.index("--address") + 1] == "127.0.0.1:6379"
    resources = json.loads(command[command.index("--resources") + 1])
    assert sorted(resources) == ["forge_key_RAYTEST_SET_KEY", "forge_python"]
    assert "sk-set-here" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "stop", [signal.SIGKILL, signal.SIGINT], ids=["driver-killed", "driver-interrupted"]
)
def test_a_driver_stopped_mid_run_resumes_on_the_cluster_without_redoing_merged_work(
    fake: FakeProvider,
    tmp_path: Path,
    ray_cluster: RayCluster,
    postgres_database: str,
    stop: signal.Signals,
) -> None:
    """Killed (its machine died) or interrupted (Ctrl-C, which could have cleaned up and must
    not): the run did not end, so the nodes keep their copies of it for --resume."""
    repo = six_module_repo(tmp_path)
    fake.script("m1-1", Reply(text=raise_value("a")))
    fake.script("m2-1", Reply(text=raise_value("b"), ttft=30.0), Reply(text=raise_value("b")))
    fake.script("m3-1", Reply(text=raise_value("c")))
    cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
    plan = tmp_path / "three.toml"
    plan.write_text(
        "".join(
            f'[[task]]\nid = "{t}"\ntitle = "Raise value_{t} to 2"\ntier = "t{n}"\n'
            f'files = ["mod_{t}.py"]\nafter = {json.dumps(["a"] if t != "a" else [])}\n\n'
            for n, t in enumerate("abc", 1)
        ),
        encoding="utf-8",
    )
    log = tmp_path / "driver.log"
    with log.open("w") as stderr:
        driver = start_forge(
            "run-milestone",
            str(plan),
            "-c",
            str(cfg),
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            # b asks its model only once a is merged: the driver stops with a on the line and b
            # mid-task on a node.
            wait_for(lambda: fake.requests_for("m2-1"), "task b to ask its model")
            driver.send_signal(stop)
            driver.wait(timeout=120)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    run_id = log.read_text().split()[2]
    if stop == signal.SIGINT:
        assert driver.returncode == 130, log.read_text()
        assert f"forge: interrupted; to carry on: forge run-milestone --resume {run_id}" in (
            log.read_text()
        )
    # The run did not end: the node that ran a keeps its clone for the resumed run.
    assert run_copies(ray_cluster, run_id) != []

    done = run_forge("run-milestone", "--resume", run_id, "--json", "-c", str(cfg), cwd=repo)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resumed"] is True
    tasks = {t["id"]: t for t in report["tasks"]}
    assert {t: v["state"] for t, v in tasks.items()} == dict.fromkeys("abc", "done")
    assert tasks["a"]["reason"] == "merged before the run resumed"
    assert len(fake.requests_for("m1-1")) == 1  # a was not redone
    assert merged_once(repo, report["branch"]) == ["a", "b", "c"]
    # The resumed run ended: the nodes' copies of it are gone.
    assert run_copies(ray_cluster, run_id) == []


def gated_test(gate: Path) -> str:
    """mod_a's test, held while mod_a says 2 (the task's attempt; not the base's validation)
    until `gate` exists: the task stays in its validation until the test lets it go."""
    return (
        "import time\nfrom pathlib import Path\n\nfrom mod_a import value_a\n\n\n"
        "def test_a():\n"
        "    deadline = time.monotonic() + 120\n"
        f"    while value_a() == 2 and not Path({str(gate)!r}).exists():\n"
        "        assert time.monotonic() < deadline, 'the gate was never opened'\n"
        "        time.sleep(0.05)\n"
        "    assert value_a() >= 1\n"
    )


def test_a_ray_tasks_stages_show_on_the_driver_while_it_runs(
    fake: FakeProvider, tmp_path: Path, ray_cluster: RayCluster, postgres_database: str
) -> None:
    gate = tmp_path / "gate"
    files = {
        "pyproject.toml": PYPROJECT,
        ".gitignore": "__pycache__/\n.pytest_cache/\n.ruff_cache/\n",
        "mod_a.py": module("a", 1),
        "tests/test_a.py": gated_test(gate),
    }
    repo = make_repo(tmp_path / "repo", files)
    log = tmp_path / "driver.log"
    seen: list[str] = []

    def shows(stage: str) -> bool:
        """Whether the driver's progress lines show task a in `stage` (noted when they do)."""
        if f"a [t1/m1] {stage}:" in log.read_text(errors="replace"):
            seen.append(stage)
            return True
        return False

    # The model answers only once the driver shows the task asking; the attempt's validation
    # ends only once the driver shows it validating. Neither has returned from the node yet.
    fake.script("m1-1", Reply(text=raise_value("a"), after=lambda: shows("asking")))
    cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
    plan = independent_tasks(tmp_path, "a")
    with log.open("w") as stderr:
        driver = start_forge(
            "run-milestone", str(plan), "--json", "-c", str(cfg), cwd=repo, stderr=stderr
        )
        try:
            wait_for(
                lambda: shows("validating") or driver.poll() is not None,
                "the driver to show task a validating",
                timeout=240,
            )
            gate.touch()
            stdout, _ = driver.communicate(timeout=240)
        finally:
            if driver.poll() is None:
                driver.kill()
    progress = log.read_text()
    assert driver.returncode == 0, progress
    assert [t["state"] for t in json.loads(stdout)["tasks"]] == ["done"]
    # Both stages were on the driver's screen while the task was still on its node.
    assert "asking" in seen and "validating" in seen, progress
    # Each stage once: what the stream showed is not shown again when the result comes back.
    lines = progress.splitlines()
    for start in ("a [t1/m1] asking:", "a [t1/m1] validating:", "a committed:"):
        assert sum(line.startswith(start) for line in lines) == 1, progress
    assert sum(line.startswith("a cluster: ran on ") for line in lines) == 1, progress
    assert run_copies(ray_cluster, json.loads(stdout)["run"]) == []
    wait_for(lambda: ledger_connections(postgres_database) == 0, "the nodes to close the ledger")


def logged_suite_repo(tmp_path: Path, sessions: Path) -> Path:
    """mod_a/b/c.py with value 1, and a pytest suite over them whose every session appends a
    line to `sessions`: where it ran, and the three values it saw ("121": b raised)."""
    conftest = (
        "from pathlib import Path\n\nROOT = Path(__file__).resolve().parents[1]\n\n\n"
        "def pytest_sessionstart(session):\n"
        "    values = ''.join((ROOT / f'mod_{n}.py').read_text().split()[-1] for n in 'abc')\n"
        f"    with open({str(sessions)!r}, 'a') as out:\n"
        "        out.write(f'{ROOT} {values}\\n')\n"
    )
    tests = "".join(
        f"from mod_{n} import value_{n}\n\n\ndef test_{n}():\n    assert value_{n}() >= 1\n\n\n"
        for n in "abc"
    )
    files = {
        "pyproject.toml": PYPROJECT,
        ".gitignore": "__pycache__/\n.pytest_cache/\n.ruff_cache/\n",
        "tests/conftest.py": conftest,
        "tests/test_values.py": tests.rstrip() + "\n",
        **{f"mod_{n}.py": module(n, 1) for n in "abc"},
    }
    return make_repo(tmp_path / "repo", files)


def sessions_by_place(cluster: RayCluster, sessions: Path) -> tuple[list[str], list[str]]:
    """The values each suite session saw, in order: those on the nodes, those on the driver."""
    nodes = tuple(str(cluster.home(name)) for name in cluster.nodes)
    runs = [line.rsplit(" ", 1) for line in sessions.read_text().splitlines()]
    on_nodes = [values for where, values in runs if where.startswith(nodes)]
    return on_nodes, [values for where, values in runs if not where.startswith(nodes)]


def test_a_node_validates_a_tasks_base_itself_even_when_the_driver_validated_that_line(
    fake: FakeProvider, tmp_path: Path, ray_cluster: RayCluster, postgres_database: str
) -> None:
    """a and b run side by side; the second to merge is re-created on the first, so the driver
    validates the merged line. c, after both, starts from that line, and its node runs the
    suite on it again: c's attempts are judged in the node's environment, so its baseline
    must come from there, not from the driver's tools and the user's checkout."""
    sessions = tmp_path / "sessions.log"
    repo = logged_suite_repo(tmp_path, sessions)
    for n, name in enumerate("abc", 1):
        fake.script(f"m{n}-1", Reply(text=raise_value(name)))
    plan = tmp_path / "plan.toml"
    plan.write_text(
        "".join(
            f'[[task]]\nid = "{name}"\ntitle = "Raise value_{name} to 2"\ntier = "t{n}"\n'
            f'files = ["mod_{name}.py"]\nafter = {json.dumps(after)}\n\n'
            for n, (name, after) in enumerate((("a", []), ("b", []), ("c", ["a", "b"])), 1)
        )
    )
    cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
    done = run_forge("run-milestone", str(plan), "--json", "-c", str(cfg), cwd=repo)
    assert done.returncode == 0, done.stderr
    assert [t["state"] for t in json.loads(done.stdout)["tasks"]] == ["done"] * 3
    on_nodes, on_driver = sessions_by_place(ray_cluster, sessions)
    assert "221" in on_driver, on_driver  # the driver validated the line a and b made
    assert "221" in on_nodes, on_nodes  # and c's node validated it again, for c's baseline
    assert "222" in on_nodes, on_nodes  # c's own attempt was validated there
    assert "c base: validating the base" in done.stderr


def test_a_node_validates_each_base_once_for_the_tasks_that_start_from_it(
    fake: FakeProvider, tmp_path: Path, ray_cluster: RayCluster, postgres_database: str
) -> None:
    """Three independent tasks start from the run's base on the one node with one slot, one
    after another: the node validates that base for the first, and the other two take that
    report (the stderr lines say so; the suite's log alone could not tell, since the validation
    cache would also spare a second session); each attempt is still validated."""
    sessions = tmp_path / "sessions.log"
    repo = logged_suite_repo(tmp_path, sessions)
    for n, name in enumerate("abc", 1):
        fake.script(f"m{n}-1", Reply(text=raise_value(name)))
    cfg = ray_config(tmp_path, fake.url, postgres_database, ray_cluster)
    done = run_forge(
        "run-milestone", str(independent_tasks(tmp_path, "abc")), "--json", "-c", str(cfg),
        cwd=repo,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [t["state"] for t in json.loads(done.stdout)["tasks"]] == ["done"] * 3
    on_nodes, _ = sessions_by_place(ray_cluster, sessions)
    assert on_nodes.count("111") == 1, on_nodes  # the base, once
    assert sorted(v for v in on_nodes if v != "111") == ["112", "121", "211"], on_nodes
    assert done.stderr.count("base: validating the base") == 1, done.stderr
    assert done.stderr.count("base: the base's validation is known already") == 2, done.stderr


def test_events_after_a_lost_batch_are_shown_from_the_result_in_order() -> None:
    """A node's batch of events lost on its way (or overtaken by a later one): the driver shows
    nothing past the gap live, and the task's result then shows every event from the gap on,
    each once and in order."""
    from forge.execution.engine import TaskEvent
    from forge.execution.ray_events import EventStream

    shown: list[str] = []
    stream = EventStream(ray=None, on_event=lambda event: shown.append(event.message))
    stream.current["a"], stream.shown["a#1"] = "a#1", 0
    events = [TaskEvent(task_id="a", stage="s", message=f"e{n}") for n in range(4)]
    stream._deliver([("a#1", 0, events[0])])
    stream._deliver([("a#1", 2, events[2]), ("a#1", 3, events[3])])  # e1's batch was lost
    assert shown == ["e0"]
    stream.end("a", "a#1", events)
    assert shown == ["e0", "e1", "e2", "e3"]
