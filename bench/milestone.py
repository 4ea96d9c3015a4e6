"""`forge run-milestone` against its lower bound: a random task graph, fake models, a fast check.

Builds a git repository with one small text file per task (so no two tasks conflict) and a seeded
random graph of tasks, each coming after 0..--max-after earlier ones. Every task is pinned to a
tier of its own holding one fake model, which answers after a random latency with a SEARCH/REPLACE
edit of the task's file: a task's work is that latency, known in advance. The only validator is a
custom one (`true`, read by its exit code). Then it runs `forge run-milestone FILE --json` in a
subprocess, as a user does, and reports, in this one run:
  - the makespan (process start to exit) as a ratio to the lower bound
    max(critical path, total work / max_concurrent_tasks) (target: at most 1.15);
  - the scheduler's overhead per task, (makespan - bound) / tasks, and the constant per-task cost
    that, added to every task of a zero-overhead greedy schedule, gives the measured span;
  - for comparison: that greedy schedule simulated without overhead (what the graph allows), and
    the same model calls in the same order by a bare asyncio loop over httpx (no git, no
    validation, no ledger);
  - where a task's time goes, from forge's progress lines (one per event on stderr) and the
    ledger's task rows: routing, worktree, base validation, the model call beyond its latency,
    validation, commit, clean-up, waiting for the merge loop; how busy the one loop that merges
    was; the CPU time of forge's own process and of the git and validator processes it ran.

    python bench/milestone.py [--tasks 300] [--concurrency 8] [--latency-min 0.5]
        [--latency-max 2.0] [--max-after 3] [--window 0] [--seed 7] [--quick] [--tries 1]
        [--no-bare] [--profile FILE] [--keep] [--executor local|ray] [--nodes 2] [--pairs 1]

`--executor ray` runs the same graph three times in one run: on the local executor with the
SQLite ledger, on the local executor with a throw-away PostgreSQL ledger (as
tests/postgres_server.py starts it), then on a Ray cluster started on this machine (a head and
`--nodes` worker nodes sharing `--concurrency` CPUs, 127.0.0.1 only, as tests/ray_cluster.py
starts it) with that PostgreSQL, and prints the Ray run's makespan as a ratio to each local one
(target: at most 1.3x against the local run on the same PostgreSQL ledger: the price of shipping
bundles; the ratio to SQLite is the earlier baseline, kept for comparison), with what shipping
cost: the bundles' sizes, the time to make them, and the time a node took to take them into its
clone.

With `--pairs N`, the local run on PostgreSQL and the Ray run are made N times, alternated
(local, Ray, local, Ray, ...): each pair gives a ratio, and their median is printed with them. On
a machine that other work shares, the load drifts over minutes; neighbouring runs share it.

A run in which a task fails measures nothing and is reported as such; `--tries N` starts again
from scratch, showing each failed run, until one finishes every task.

forge's bytecode is compiled first (into forge/__pycache__), as an installed forge's is.
Everything runs on 127.0.0.1 in a temporary folder (FORGE_HOME included); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.15
QUICK_TASKS = 40
IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
# forge's progress lines without a terminal: "ID [rung/model] stage: message" or "ID state: ..."
EVENT = re.compile(r"^(?P<task>\S+)(?: \[[^\]]*\])? (?P<stage>[a-z][a-z ]*): ")
# A task's way through forge, in the order of its events (the first of each is kept).
STAGES = ("running", "worktree", "base", "asking", "validating", "validated", "committed")


# -- the graph ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Graph:
    ids: tuple[str, ...]  # in file order, every task after the tasks it comes after
    after: dict[str, tuple[str, ...]]
    work: dict[str, float]  # seconds: the scripted latency of the task's model

    def model(self, task_id: str) -> str:
        return f"model-{task_id}"

    def ready(self, done: set[str], taken: Iterable[str]) -> list[str]:
        """As forge's scheduler picks them: not done or taken, predecessors done, file order."""
        busy = done | set(taken)
        return [t for t in self.ids if t not in busy and all(p in done for p in self.after[t])]


def random_graph(
    tasks: int, max_after: int, window: int, latency: tuple[float, float], seed: int
) -> Graph:
    rng = random.Random(seed)
    ids = tuple(f"t{i:03d}" for i in range(tasks))
    after: dict[str, tuple[str, ...]] = {}
    for i, task_id in enumerate(ids):
        earlier = ids[max(0, i - window) : i] if window else ids[:i]
        count = min(len(earlier), rng.randint(0, max_after))
        after[task_id] = tuple(sorted(rng.sample(earlier, count)))
    work = {t: round(rng.uniform(*latency), 3) for t in ids}
    return Graph(ids, after, work)


def critical_path(graph: Graph) -> float:
    finish: dict[str, float] = {}
    for task_id in graph.ids:
        start = max((finish[p] for p in graph.after[task_id]), default=0.0)
        finish[task_id] = start + graph.work[task_id]
    return max(finish.values(), default=0.0)


def greedy_schedule(graph: Graph, concurrency: int, extra: float = 0.0) -> float:
    """The makespan of forge's policy with no overhead (plus `extra` seconds on every task)."""
    now = 0.0
    done: set[str] = set()
    running: dict[str, float] = {}  # task -> when it finishes
    while len(done) < len(graph.ids):
        for task_id in graph.ready(done, running):
            if len(running) >= concurrency:
                break
            running[task_id] = now + graph.work[task_id] + extra
        now = min(running.values())
        for task_id in [t for t, end in running.items() if end <= now]:
            done.add(task_id)
            del running[task_id]
    return now


def fitted_overhead(graph: Graph, concurrency: int, span: float) -> float:
    """The per-task constant with which the greedy schedule takes `span` seconds."""
    low, high = 0.0, span
    if greedy_schedule(graph, concurrency) >= span:
        return 0.0
    for _ in range(40):
        middle = (low + high) / 2
        if greedy_schedule(graph, concurrency, middle) < span:
            low = middle
        else:
            high = middle
    return (low + high) / 2


# -- the repository, the milestone and the configuration ------------------------------------------


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **IDENTITY},
        check=True,
    )
    return done.stdout.strip()


def make_repo(path: Path, graph: Graph) -> str:
    """One file per task, committed; returns the base commit."""
    (path / "f").mkdir(parents=True)
    for task_id in graph.ids:
        (path / "f" / f"{task_id}.txt").write_text(f"{task_id}: open\n", encoding="utf-8")
    (path / "README.md").write_text("One file per task of the milestone bench.\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", IDENTITY["GIT_AUTHOR_NAME"])
    git(path, "config", "user.email", IDENTITY["GIT_AUTHOR_EMAIL"])
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return git(path, "rev-parse", "HEAD")


def milestone_toml(graph: Graph) -> str:
    parts = ['title = "A random graph of tasks"\n']
    for task_id in graph.ids:
        after = ", ".join(f'"{p}"' for p in graph.after[task_id])
        parts.append(
            f'[[task]]\nid = "{task_id}"\ntitle = "Mark {task_id} as done in its file"\n'
            f'files = ["f/{task_id}.txt"]\nafter = [{after}]\ntier = "tier-{task_id}"\n'
        )
    return "\n".join(parts)


def forge_toml(url: str, graph: Graph, concurrency: int) -> str:
    """One tier per task with one free model in it: a task's `tier` must name a tier, not a
    model (Router.check), so this is how each task gets its own model and its own latency."""
    parts = [
        f'[providers.fake]\nbase_url = "{url}/v1"\n',
        f"[routing]\nmax_concurrent_tasks = {concurrency}\nlearn_from_history = false\n"
        "max_call_attempts = 1\n",
        "[validation]\nenable_syntax_check = false\nenable_build_check = false\n"
        "enable_test_execution = false\n",
        '[[validation.custom]]\nname = "fast"\ncommand = "true"\nparser = "exit_code"\n'
        'stage = "lint"\n',
    ]
    for task_id in graph.ids:
        model = graph.model(task_id)
        parts.append(
            f'[models.{model}]\nprovider = "fake"\nid = "{model}"\ntier = "tier-{task_id}"\n'
            "input_price = 0\noutput_price = 0\n"
        )
    return "\n".join(parts)


def answer(task_id: str) -> str:
    return (
        f"Marking {task_id} as done.\n\nf/{task_id}.txt\n<<<<<<< SEARCH\n{task_id}: open\n"
        f"=======\n{task_id}: done\n>>>>>>> REPLACE\n"
    )


# -- forge, as a user runs it ---------------------------------------------------------------------


@dataclass
class ForgeRun:
    makespan: float  # process start to exit
    started: float  # wall clock at process start
    report: dict[str, Any]
    events: dict[tuple[str, str], float] = field(default_factory=dict)  # (task, stage) -> time
    announced: float | None = None  # "forge: run RUN": configuration, repository, ledger open
    cpu: float = 0.0  # user + system seconds of forge and the processes it ran (git, the validator)
    own_cpu: float | None = None  # of forge's Python process alone (Linux: /proc), last sample
    stderr_tail: list[str] = field(default_factory=list)


def isolated_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FORGE_") and "_API_KEY" not in k
    }
    return env | {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "FORGE_HOME": str(home / "forge-home"),
        "NO_COLOR": "1",
        "PYTHONPATH": str(ROOT),
    }


def run_forge(
    repo: Path, milestone: Path, config: Path, env: dict[str, str], profile: Path | None
) -> ForgeRun:
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    command = [sys.executable, *prefix, "-m", "forge", "run-milestone", str(milestone)]
    command += ["--json", "-c", str(config)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, clock = time.perf_counter(), time.time()
    process = subprocess.Popen(
        command,
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = ForgeRun(0.0, clock, {})
    reader = threading.Thread(target=read_events, args=(process, run), daemon=True)
    reader.start()
    threading.Thread(target=sample_own_cpu, args=(process, run), daemon=True).start()
    assert process.stdout is not None
    stdout = process.stdout.read()
    code = process.wait()
    run.makespan = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    reader.join()
    try:
        run.report = json.loads(stdout)
    except json.JSONDecodeError:
        tail = "\n".join(run.stderr_tail)
        raise SystemExit(f"forge printed no JSON report (exit {code}):\n{stdout}\n{tail}") from None
    return run


def read_events(process: subprocess.Popen[str], run: ForgeRun) -> None:
    """Time-stamps forge's progress lines as they arrive."""
    assert process.stderr is not None
    for line in process.stderr:
        now = time.time()
        run.stderr_tail = [*run.stderr_tail[-19:], line.rstrip()]
        if line.startswith("forge: run "):
            run.announced = now
            continue
        match = EVENT.match(line)
        if match:
            key = (match["task"], match["stage"].strip())
            if key not in run.events or key[1] == "done":
                run.events[key] = now


def sample_own_cpu(process: subprocess.Popen[str], run: ForgeRun) -> None:
    """The CPU time of forge's own process (all its threads, one GIL), until it exits."""
    stat = Path(f"/proc/{process.pid}/stat")
    tick = os.sysconf("SC_CLK_TCK")
    while process.poll() is None:
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            return
        run.own_cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        time.sleep(0.05)


class Incomplete(Exception):
    """Tasks were left undone: the run's timings are not those of the whole graph."""


def check(run: ForgeRun, repo: Path, base: str, graph: Graph, calls: dict[str, int]) -> None:
    """Every task done, each file changed once, one model call per task: else the figures lie."""
    tasks = run.report["tasks"]
    if run.report["state"] != "done" or any(t["state"] != "done" for t in tasks):
        counts = Counter(t["state"] for t in tasks)
        failed = [f"  {t['id']}: {t['reason']}" for t in tasks if t["state"] == "failed"]
        raise Incomplete(
            f"the run did not finish every task ({dict(counts)}), so it measures nothing:\n"
            + "\n".join(failed[:5])
        )
    changed = git(repo, "diff", "--name-only", base, run.report["branch"]).split()
    if len(changed) != len(graph.ids):
        raise SystemExit(f"{len(changed)} files changed on the branch, not {len(graph.ids)}")
    extra = {m: n for m, n in calls.items() if n != 1}
    if extra or len(calls) != len(graph.ids):
        raise SystemExit(f"expected one call per model; got {extra or len(calls)}")


def engine_finished(home: Path, run_id: str) -> dict[str, float]:
    """When the engine handed each task back (after removing its worktree), from the ledger."""
    ledger = home / "forge-home" / "ledger.db"
    with sqlite3.connect(ledger) as db:
        rows = db.execute(
            "SELECT task_id, finished_at FROM run_tasks WHERE run_id = ?", (run_id,)
        ).fetchall()
    return {task: at for task, at in rows if at is not None}


# -- the floor: the same calls by a bare asyncio loop ---------------------------------------------


async def bare_run(url: str, graph: Graph, concurrency: int) -> float:
    import httpx

    async def call(http: httpx.AsyncClient, task_id: str) -> None:
        body = {
            "model": graph.model(task_id),
            "messages": [{"role": "user", "content": f"Mark {task_id} as done."}],
            "stream": True,
        }
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            async for _ in response.aiter_lines():
                pass

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=None, limits=limits) as http:
        started = time.perf_counter()
        done: set[str] = set()
        running: dict[asyncio.Task[None], str] = {}
        while len(done) < len(graph.ids):
            for task_id in graph.ready(done, running.values()):
                if len(running) >= concurrency:
                    break
                running[asyncio.create_task(call(http, task_id))] = task_id
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                task.result()
                done.add(running.pop(task))
        return time.perf_counter() - started


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    tasks: int
    concurrency: int
    total_work: float
    critical: float
    bound: float
    greedy: float
    bare: float | None
    makespan: float
    span: float  # first task started to last task merged
    startup: float  # process start to the first task started
    teardown: float  # last task merged to process exit


def figures(graph: Graph, concurrency: int, run: ForgeRun, bare: float | None) -> Figures:
    total = sum(graph.work.values())
    critical = critical_path(graph)
    starts = [at for (_, stage), at in run.events.items() if stage == "running"]
    merges = [at for (_, stage), at in run.events.items() if stage == "done"]
    first, last = min(starts), max(merges)
    return Figures(
        tasks=len(graph.ids),
        concurrency=concurrency,
        total_work=total,
        critical=critical,
        bound=max(critical, total / concurrency),
        greedy=greedy_schedule(graph, concurrency),
        bare=bare,
        makespan=run.makespan,
        span=last - first,
        startup=first - run.started,
        teardown=run.started + run.makespan - last,
    )


def print_figures(f: Figures, graph: Graph, run: ForgeRun) -> None:
    announced = (run.announced - run.started) if run.announced else float("nan")
    rows = [
        ("lower bound max(critical path, work / concurrency)", f.bound),
        ("greedy schedule, no overhead (simulated)", f.greedy),
    ]
    if f.bare is not None:
        rows.append(("the same calls, bare asyncio + httpx (measured)", f.bare))
    rows += [
        ("forge: first task started to last merged (measured)", f.span),
        ("forge run-milestone, process start to exit (measured)", f.makespan),
    ]
    print(f"{'':<56}{'seconds':>9}{'/ bound':>9}")
    for name, seconds in rows:
        print(f"{name:<56}{seconds:>9.2f}{seconds / f.bound:>8.3f}x")
    print(
        f"\nmakespan / bound: {f.makespan / f.bound:.3f}x (target: at most {TARGET:.2f}x); "
        f"span / bound {f.span / f.bound:.3f}x"
    )
    print(
        f"scheduler overhead per task, (makespan - bound) / tasks: "
        f"{(f.makespan - f.bound) / f.tasks * 1000:.0f} ms"
    )
    fitted = fitted_overhead(graph, f.concurrency, f.span)
    print(
        f"per-task cost that turns the greedy schedule into the measured span: "
        f"{fitted * 1000:.0f} ms of each task's slot"
    )
    print(
        f"outside the schedule: {f.startup:.2f}s before the first task started "
        f"({announced:.2f}s to the run's first line), {f.teardown:.2f}s after the last merge"
    )
    cores = os.cpu_count() or 1
    print(
        f"CPU: forge and its git and validator processes used {run.cpu:.1f}s "
        f"({run.cpu / f.tasks * 1000:.0f} ms per task), {run.cpu / (f.makespan * cores):.0%} "
        f"of {cores} CPUs over the makespan"
    )
    if run.own_cpu is not None:
        print(
            f"     of which forge's own Python process {run.own_cpu:.1f}s "
            f"({run.own_cpu / f.makespan:.0%} of one core: the event loop and its worker threads "
            f"share one GIL), the processes it ran {run.cpu - run.own_cpu:.1f}s"
        )


STEPS = {
    ("running", "worktree"): "route, ledger rows",
    ("worktree", "base"): "create the worktree",
    ("base", "asking"): "validate the base, select context",
    ("asking", "validating"): "model call beyond its latency, apply",
    ("validating", "validated"): "validate the attempt",
    ("validated", "committed"): "commit",
    ("committed", "returned"): "remove the worktree, ledger row",
    ("returned", "done"): "wait for the merge loop, merge",
    ("running", "done"): "all of it (slot held minus work)",
}
WITH_THE_CALL = {("asking", "validating"), ("running", "done")}


def task_steps(graph: Graph, run: ForgeRun, returned: dict[str, float]) -> dict[str, list[float]]:
    """Seconds each task spent in each step; the model's scripted latency is taken out."""
    steps: dict[str, list[float]] = {name: [] for name in STEPS.values()}
    for task_id in graph.ids:
        at = {stage: run.events.get((task_id, stage)) for stage in (*STAGES, "done")}
        at["returned"] = returned.get(task_id)
        known = {stage: t for stage, t in at.items() if t is not None}
        if len(known) < len(at):
            continue
        for (first, then), name in STEPS.items():
            work = graph.work[task_id] if (first, then) in WITH_THE_CALL else 0.0
            steps[name].append(known[then] - known[first] - work)
    return steps


def print_breakdown(steps: dict[str, list[float]], concurrency: int) -> None:
    """Mean and p90 per task in each step, and the step's total divided by the concurrency."""
    counted = len(next(iter(steps.values())))
    if not counted:
        return
    print(f"\nwhere a task's slot time goes beyond its model latency ({counted} tasks):")
    print(f"{'':<42}{'mean ms':>9}{'p90 ms':>9}{'total s':>9}{'total / c':>11}")
    for name, values in steps.items():
        ordered = sorted(values)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        total = sum(ordered)
        print(
            f"{name:<42}{statistics.mean(ordered) * 1000:>9.0f}{p90 * 1000:>9.0f}"
            f"{total:>9.1f}{total / concurrency:>10.2f}s"
        )


def merge_loop_busy(graph: Graph, run: ForgeRun, returned: dict[str, float]) -> float:
    """Seconds the scheduler's one loop spent taking finished tasks in and merging them.

    The loop handles one finished task at a time, in the order they come back: each one's
    service is from when it came back (or the previous one was merged, if later) to its merge.
    """
    handed = sorted(
        (run.events[(t, "done")], returned[t])
        for t in graph.ids
        if (t, "done") in run.events and t in returned
    )
    busy, previous = 0.0, float("-inf")
    for merged, back in handed:
        busy += max(0.0, merged - max(back, previous))
        previous = merged
    return busy


def print_merge_loop(busy: float, f: Figures) -> None:
    print(
        f"\nthe merge loop was busy {busy:.1f}s of the {f.span:.1f}s span ({busy / f.span:.0%}), "
        f"{busy / f.tasks * 1000:.0f} ms per task, so it can merge at most "
        f"{f.tasks / busy:.1f} tasks/s; finishing at the bound takes {f.tasks / f.bound:.1f}/s"
    )


def print_profile(path: Path) -> None:
    """The event loop's own time: sync work there holds up every task in flight."""
    import pstats

    print(f"\ncProfile of forge's main thread (the event loop), written to {path}:")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(12)
    stats.sort_stats("cumulative").print_stats(r"forge/(execution|ledger|planning)/", 20)


# -- the run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="max_concurrent_tasks")
    parser.add_argument("--latency-min", type=float, default=0.5, help="seconds")
    parser.add_argument("--latency-max", type=float, default=2.0, help="seconds")
    parser.add_argument("--max-after", type=int, default=3, help="most tasks one comes after")
    parser.add_argument(
        "--window", type=int, default=0, help="pick them among the last N tasks (0: any earlier)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks: a smoke run")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare asyncio floor")
    parser.add_argument("--profile", type=Path, help="run forge under cProfile, stats to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="ray: the same graph on the local executor, then on a Ray cluster of this machine",
    )
    parser.add_argument("--nodes", type=int, default=2, help="Ray worker nodes (--executor ray)")
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="--executor ray: local and Ray runs on PostgreSQL, alternated, this many times each",
    )
    parser.add_argument(
        "--tries",
        type=int,
        default=1,
        help="run again from scratch, up to this many times, while a task fails (each is shown)",
    )
    args = parser.parse_args()
    tasks = QUICK_TASKS if args.quick else args.tasks
    latency = (args.latency_min, args.latency_max)
    graph = random_graph(tasks, args.max_after, args.window, latency, args.seed)
    work = graph.work.values()
    print(
        f"{len(graph.ids)} tasks, max_concurrent_tasks {args.concurrency}, model latency "
        f"{min(work):.2f}..{max(work):.2f}s (mean {statistics.mean(work):.2f}s), "
        f"{sum(len(a) for a in graph.after.values())} dependencies; {os.cpu_count()} CPUs"
    )
    for number in range(1, args.tries + 1):
        folder = Path(tempfile.mkdtemp(prefix="forge-bench-milestone-"))
        try:
            if args.executor == "ray":
                bench_ray(graph, args.concurrency, folder, args.nodes, max(1, args.pairs))
            else:
                bench(graph, args.concurrency, folder, not args.no_bare, args.profile)
            return
        except Incomplete as exc:
            print(f"run {number} of {args.tries}: {exc}", flush=True)
        finally:
            if args.keep:
                print(f"kept {folder}")
            else:
                shutil.rmtree(folder, ignore_errors=True)
    raise SystemExit(f"none of {args.tries} run(s) finished every task")


def bench(graph: Graph, concurrency: int, folder: Path, bare: bool, profile: Path | None) -> None:
    from bytecode import compile_forge

    from forge.testing.fake_provider import FakeProvider, Reply

    repo, home = folder / "repo", folder / "home"
    home.mkdir()
    base = make_repo(repo, graph)
    compile_forge()
    with FakeProvider() as fake:
        for task_id in graph.ids:
            reply = Reply(text=answer(task_id), latency=graph.work[task_id])
            fake.script(graph.model(task_id), reply)
        milestone, config = folder / "milestone.toml", folder / "forge.toml"
        milestone.write_text(milestone_toml(graph), encoding="utf-8")
        config.write_text(forge_toml(fake.url, graph, concurrency), encoding="utf-8")
        run = run_forge(repo, milestone, config, isolated_env(home), profile)
        calls: dict[str, int] = {}
        for request in fake.requests:
            if isinstance(request.body, dict) and "model" in request.body:
                calls[request.body["model"]] = calls.get(request.body["model"], 0) + 1
        check(run, repo, base, graph, calls)
        floor = asyncio.run(bare_run(fake.url, graph, concurrency)) if bare else None
    found = figures(graph, concurrency, run, floor)
    print(
        f"critical path {found.critical:.2f}s, total work {found.total_work:.1f}s / "
        f"{concurrency} = {found.total_work / concurrency:.2f}s\n"
    )
    print_figures(found, graph, run)
    returned = engine_finished(home, run.report["run"])
    print_breakdown(task_steps(graph, run, returned), concurrency)
    print_merge_loop(merge_loop_busy(graph, run, returned), found)
    if profile is not None:
        print_profile(profile)


# -- --executor ray: the same graph on a Ray cluster of this machine, against the local run ----


class ClusterCpu:
    """CPU seconds (user + system) of what serves a run besides the driver, sampled from /proc
    every half second while it lasts: the Ray worker processes of the cluster's nodes (with
    the git and validator processes they ran and reaped), Ray's own daemons (raylets, GCS,
    agents), and the PostgreSQL server (postmaster and backends). A process's last sample
    counts; a backend's CPU after its last sample is not seen."""

    GROUPS = ("Ray workers (+ their git)", "Ray daemons", "PostgreSQL")

    def __init__(self, cluster_folder: Path, session: Path | None, pg_data: Path) -> None:
        self.home = f"FORGE_HOME={cluster_folder}".encode()
        self.session = session.name if session else None
        self.pg_data = pg_data
        self.kinds: dict[int, str | None] = {}
        self.seen: dict[int, float] = {}
        self.at_start: dict[int, float] = {}
        self.tick = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_forever, daemon=True)

    def __enter__(self) -> ClusterCpu:
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def totals(self) -> dict[str, float]:
        out = dict.fromkeys(self.GROUPS, 0.0)
        for pid, value in self.seen.items():
            kind = self.kinds.get(pid)
            if kind is not None:
                out[kind] += value - self.at_start.get(pid, 0.0)
        return out

    def _postmaster(self) -> int | None:
        try:
            return int((self.pg_data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _kind(self, entry: Path, ppid: int, postmaster: int | None) -> str | None:
        pid = int(entry.name)
        if postmaster is not None and postmaster in (pid, ppid):
            return "PostgreSQL"
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            return None
        ray_worker = "default_worker.py" in command or (
            command.startswith("ray::") and "Agent" not in command
        )
        if ray_worker and any(v.startswith(self.home) for v in environ.split(b"\0")):
            return "Ray workers (+ their git)"
        if (
            self.session
            and (self.session in command or "Agent" in command)
            and (
                any(v.startswith(self.home) for v in environ.split(b"\0"))
                or self.session in command
            )
        ):
            return "Ray daemons"
        return None

    def _sample(self, first: bool = False) -> None:
        postmaster = self._postmaster()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            ppid = int(fields[1])
            if pid not in self.kinds:
                self.kinds[pid] = self._kind(entry, ppid, postmaster)
            kind = self.kinds[pid]
            if kind is None:
                continue
            used = int(fields[11]) + int(fields[12])  # utime, stime
            if kind == "Ray workers (+ their git)":
                used += int(fields[13]) + int(fields[14])  # the children it reaped: git, `true`
            value = used / self.tick
            if first:
                self.at_start[pid] = value
            self.seen[pid] = value

    def _sample_forever(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()


# (name, executor, ledger) of `--executor ray`'s runs, in order.
RAY_BENCH_RUNS = (
    ("local-sqlite", "local", "sqlite"),
    ("local-postgresql", "local", "postgresql"),
    ("ray", "ray", "postgresql"),
)


def ray_bench_runs(pairs: int) -> list[tuple[str, str, str]]:
    """The runs of `--executor ray`: SQLite once, then local and Ray on PostgreSQL, alternated,
    `pairs` times ("local-postgresql", "ray", "local-postgresql-2", "ray-2", ...)."""
    again = [run for run in RAY_BENCH_RUNS if run[2] == "postgresql"]
    return [
        *RAY_BENCH_RUNS,
        *(
            (f"{name}-{n}", executor, ledger)
            for n in range(2, pairs + 1)
            for name, executor, ledger in again
        ),
    ]


def bench_ray(graph: Graph, concurrency: int, folder: Path, nodes: int, pairs: int = 1) -> None:
    """Local first, then Ray, same graph, same fake models, in this one process."""
    from bytecode import compile_forge

    sys.path.insert(0, str(ROOT))  # forge and its tests, from this checkout
    from forge.testing.fake_provider import FakeProvider, Reply
    from tests.postgres_server import PostgresServer
    from tests.ray_cluster import RayCluster

    compile_forge()
    cluster_folder = Path(tempfile.mkdtemp(prefix="forge-ray-", dir="/tmp"))
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    server = PostgresServer()
    cluster = RayCluster(cluster_folder)
    try:
        started = time.perf_counter()
        server.create()
        cluster.start()
        for number in range(nodes):
            cpus = concurrency // nodes + (1 if number < concurrency % nodes else 0)
            cluster.add_worker(f"node{number}", cpus=cpus)
        print(
            f"PostgreSQL and a Ray cluster (head + {nodes} worker nodes, {concurrency} CPUs) "
            f"started in {time.perf_counter() - started:.1f}s"
        )
        with FakeProvider() as fake:
            for task_id in graph.ids:
                fake.script(
                    graph.model(task_id), Reply(text=answer(task_id), latency=graph.work[task_id])
                )
            runs = {}
            cpu: dict[str, dict[str, float]] = {}
            # The Ray run must use PostgreSQL (every node shares the ledger); the local one is
            # measured on it too, so the ratio is of executors, not of ledgers, and on the
            # SQLite file a user of one machine has, as the earlier baseline was.
            for name, executor, ledger in ray_bench_runs(pairs):
                repo, home = folder / name / "repo", folder / name / "home"
                home.mkdir(parents=True)
                base = make_repo(repo, graph)
                milestone, config = (
                    folder / name / "milestone.toml",
                    folder / name / "forge.toml",
                )
                milestone.write_text(milestone_toml(graph), encoding="utf-8")
                text = forge_toml(fake.url, graph, concurrency)
                if ledger == "postgresql":
                    database = server.create_database(f"bench_{name.replace('-', '_')}")
                    text += f'\n[ledger]\nurl = "{database}"\n'
                if executor == "ray":
                    text += f'\n[execution]\nexecutor = "ray"\nray_address = "{cluster.address}"\n'

                config.write_text(text, encoding="utf-8")
                seen = len(fake.requests)
                env = isolated_env(home) | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
                with ClusterCpu(cluster_folder, cluster.session, server.data) as serving:
                    run = run_forge(repo, milestone, config, env, None)
                cpu[name] = {"driver (forge + its git)": run.cpu, **serving.totals()}
                calls: dict[str, int] = {}
                for request in fake.requests[seen:]:
                    if isinstance(request.body, dict) and "model" in request.body:
                        calls[request.body["model"]] = calls.get(request.body["model"], 0) + 1
                check(run, repo, base, graph, calls)
                runs[name] = run
                print(
                    f"{executor:>5} on {ledger:<10}: makespan {run.makespan:7.2f}s, CPU of the "
                    f"driver and its processes {run.cpu:6.1f}s",
                    flush=True,
                )
        ray = runs["ray"].makespan
        bound = max(critical_path(graph), sum(graph.work.values()) / concurrency)
        print(f"\nlower bound {bound:.2f}s")
        ratios = [ray / runs["local-postgresql"].makespan]
        ratios += [
            runs[f"ray-{n}"].makespan / runs[f"local-postgresql-{n}"].makespan
            for n in range(2, pairs + 1)
        ]
        if pairs > 1:
            each = ", ".join(f"{r:.3f}x" for r in ratios)
            print(f"ray / local, both on PostgreSQL, each pair: {each}")
        print(
            f"ray / local, both on PostgreSQL:      {statistics.median(ratios):.3f}x "
            f"{'(median of the pairs) ' if pairs > 1 else ''}(target: at most 1.3x)"
        )
        print(f"ray / local, local on SQLite (earlier): {ray / runs['local-sqlite'].makespan:.3f}x")
        print_cpu(cpu, len(graph.ids))
        print_shipping(folder / "ray" / "repo", runs["ray"])
    finally:
        try:
            cluster.stop()
        finally:  # Ray's own shutdown can raise (processes it could not reap): not a reason
            server.destroy()  # to leave the database server running
            shutil.rmtree(cluster_folder, ignore_errors=True)


def print_cpu(cpu: dict[str, dict[str, float]], tasks: int) -> None:
    """Where the CPU went, per task, in each run (milliseconds)."""
    parts = list(next(iter(cpu.values())))
    print(f"\nCPU per task, ms       {'  '.join(f'{p:>26}' for p in parts)}       total")
    for name, used in cpu.items():
        row = "  ".join(f"{1000 * used[p] / tasks:26.0f}" for p in parts)
        print(f"{name:<20}  {row}  {1000 * sum(used.values()) / tasks:10.0f}")


def print_shipping(repo: Path, run: ForgeRun) -> None:
    """What a bundle costs: the base's (once per run and node), an increment's, a result's."""
    from forge.execution.bundles import make_bundle, take_bundle

    base = run.report["base"]
    head = run.report["head"]
    for name, since in (
        ("the base, with its history", None),
        ("the whole line since the base", base),
    ):
        started = time.perf_counter()
        data = make_bundle(repo, "refs/forge/bench", head if since else base, since=since)
        made = time.perf_counter() - started
        scratch = Path(tempfile.mkdtemp(prefix="forge-bench-take-"))
        git(scratch, "init", "-q")
        if since:
            take_bundle(scratch, make_bundle(repo, "refs/forge/bench", base), "refs/forge/b")
        started = time.perf_counter()
        take_bundle(scratch, data, "refs/forge/x")
        taken = time.perf_counter() - started
        shutil.rmtree(scratch, ignore_errors=True)
        print(
            f"bundle of {name}: {len(data) / 1024:.1f} KiB, made in {made * 1000:.0f} ms, "
            f"taken in {taken * 1000:.0f} ms"
        )
    git(repo, "update-ref", "-d", "refs/forge/bench")


if __name__ == "__main__":
    main()
