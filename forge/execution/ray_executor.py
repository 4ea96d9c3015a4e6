"""The Ray executor: a run's tasks on the nodes of a Ray cluster, merged here one at a time.

It stands where the task engine stands for the scheduler (`run(task, head)` gives a task's
outcome), so everything around a task is unchanged: the graph, the limits, the budget checks,
the merges and their validation, the ledger's run rows, `--resume`. What changes is where the
task's attempts happen. The driver (this process) puts the run's base bundle in Ray's object
store once and a small bundle of the integration line's newer commits per head. One runner per
node (an actor, see ray_worker) builds the node's clone from them as the run starts and runs the
same engine for the tasks placed there; the driver places each task itself, on the node with the
most free slots (one per CPU) among those with what the task needs. The task's commit comes back
as a bundle; its objects are stored here and the task's branch set to it, as the engine would
have done locally, and the scheduler merges it. The user's repository is only touched here.

A node lost mid-task (its machine died, its raylet or its runner was killed) loses the work of
every task on it: each is sent again, placed on a node that is alive, and only the run that
returns is merged. Ray's own retries are off, so the driver knows and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from forge.errors import ForgeError, UsageError
from forge.execution.bundles import Piece, Shipping, take_bundle
from forge.execution.engine import TaskEvent
from forge.execution.placement import repository_toolchains, task_needs
from forge.execution.ray_worker import MAX_TASKS_IN_FLIGHT
from forge.execution.workspace import branch_part

if TYPE_CHECKING:
    from git import Repo

    from forge.config.schema import ForgeConfig
    from forge.execution.engine import EngineSettings, TaskOutcome
    from forge.execution.ray_worker import RemoteResult
    from forge.planning.milestone import MilestoneTask
    from forge.routing.codebase import Codebase
    from forge.routing.decision import RouteDecision, Router
    from forge.validation.types import ValidationReport

RAY_EXTRA = "pip install 'forge-cli[ray]'"
# How many times a task whose node was lost is sent again before it fails.
MAX_NODE_LOSSES = 3
CPUS_PER_TASK = 1.0
# How many runners a node gets in one run: a second when the first died but the node did not.
RUNNER_STARTS = 2
# How long the driver waits for the nodes to remove their copies of a run that ended.
FORGET_SECONDS = 30.0


class ClusterError(ForgeError):
    """The cluster cannot run the work: unreachable, or no node has what a task needs."""


def import_ray() -> Any:
    """Ray, or a usage error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, an optional extra: {RAY_EXTRA}") from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at `address` (else RAY_ADDRESS, else one started on this machine with
    `forge ray-node --head` or `ray start --head`) as its driver."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    _cluster_messages_to_stderr(ray)
    try:
        ray.init(
            address=target,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {target}: {first} (start one with "
            "`forge ray-node --head`, join nodes with `forge ray-node --address HEAD:PORT`)"
        ) from None
    return ray


def _cluster_messages_to_stderr(ray: Any) -> None:
    """Ray prints the cluster's events (a node lost, a raylet ended) on the driver's standard
    output, where `--json` puts forge's report: they go to standard error instead."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "forge_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.forge_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr  # type: ignore[union-attr]


class RayTasks:
    """The scheduler's task runner on a Ray cluster (the local one is TaskEngine)."""

    def __init__(
        self,
        *,
        config: ForgeConfig,
        repo: Repo,
        router: Router,
        settings: EngineSettings,
        base: str,
        address: str | None,
        codebase: Codebase | None = None,
        on_event: Callable[[TaskEvent], None] = lambda event: None,
    ) -> None:
        self.ray = connect(address)
        self.config = config
        self.repo = repo
        self.router = router
        self.codebase = codebase
        self.settings = settings
        self.on_event = on_event
        self.repo_dir = Path(repo.working_dir)
        self.run_id = settings.run_id
        self.base = base
        self.shipping = Shipping(self.repo_dir, self.run_id, base, self.ray.put)
        self._identity = _identity(self.repo_dir)
        # The node's calls are the user's: a shared ledger's rows and a `scope = "user"`
        # budget count them against the person who started the run, not the node's login.
        from forge.ledger.store import user_name

        self._runtime_env = {"env_vars": {"FORGE_USER": user_name()}}
        self.nodes = NodePool(self.ray, self._runtime_env, self._run_start)
        files = _files_at(self.repo_dir, base)
        self.toolchains = repository_toolchains(self.repo_dir, files)
        self.losses: dict[str, int] = {}  # task id -> nodes lost under it
        self._resources: set[str] = set()  # the cluster's, as last asked
        from forge.execution.ray_events import EventStream

        self.stream = EventStream(self.ray, on_event)
        self._sends = 0  # sends of any task so far: each send's events are keyed apart
        self._shared: Any = None  # the run's RunShared, once in the object store
        self._routing = threading.Lock()
        self._sharing = threading.Lock()
        # The nodes' runners start now, in the background, and make ready for the run (its
        # clone, repository, connections: seconds of a node's time) while the driver validates
        # the base and routes the first tasks.
        threading.Thread(target=self._start_nodes, name="forge-ray-start", daemon=True).start()

    def _start_nodes(self) -> None:
        with contextlib.suppress(Exception):  # best effort: the first task starts what is missing
            self.nodes.refresh()

    def _run_start(self) -> Any:
        from forge import __version__
        from forge.execution.ray_worker import RunStart

        return RunStart([self._shared_object()], [self.shipping.base_object()], __version__)

    async def run(
        self,
        task: MilestoneTask,
        base: str,
        base_report: tuple[ValidationReport | None] | tuple[()] = (),
    ) -> TaskOutcome:
        """The task from `base` (the integration head) on a node; its commit, when it made one,
        is in the user's repository on the task's branch when this returns.

        `base_report`, the scheduler's validation of `base`, stays here: it was made with the
        driver's tools and the user's checkout's environment (its `.venv`), the node's
        attempts are validated with the node's, and a baseline from one judging attempts from
        the other could excuse what an attempt broke (a check skipped here, a test failing
        only here) or blame it for what it did not. The node validates its base itself; for
        the same reason its reports never come back to stand for the driver's."""
        from forge.execution.ray_worker import RemoteJob

        decision = await anyio.to_thread.run_sync(self._route, task)
        needs = task_needs(self.config, decision, self.toolchains)
        self._placeable(task, needs)
        base_object, pieces = await anyio.to_thread.run_sync(self._objects, base)
        from forge import __version__

        job = RemoteJob(
            task=task,
            head=base,
            shared=[self._shared_object()],
            version=__version__,
            decision=decision,
        )
        self._emit(task, "cluster", f"sent to the cluster from {base[:10]}")
        key, result = await self._until_it_returns(task, job, needs, base_object, pieces)
        self.stream.end(task.id, key, result.events)
        outcome = result.outcome
        if result.bundle is not None and outcome.commit is not None:
            branch = f"refs/heads/forge/{branch_part(self.run_id)}/{branch_part(task.id)}"
            got = await anyio.to_thread.run_sync(take_bundle, self.repo_dir, result.bundle, branch)
            if got != outcome.commit:
                raise ClusterError(f"task {task.id!r}: its bundle holds {got}, not its commit")
        self._emit(task, "cluster", f"ran on {result.node} in {result.seconds:.1f}s")
        return outcome

    async def _until_it_returns(
        self, task: MilestoneTask, job: Any, needs: dict[str, float], base: Any, pieces: Any
    ) -> tuple[str, RemoteResult]:
        """The task's send that returned (its key) and what it brought back."""
        ray = self.ray
        lost = ray.exceptions
        while True:
            node = await self.nodes.take(task.id, needs)
            self._sends += 1
            key = f"{task.id}#{self._sends}"
            ref = None
            try:
                self.stream.begin(task.id, key)
                ref = node.actor.run.remote(job, [base], pieces, (self.stream.sink, key))
                result: RemoteResult = await asyncio.wrap_future(ref.future())
                return key, result
            except lost.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, Exception) and not isinstance(cause, lost.RayError):
                    raise cause from None
                raise ClusterError(f"task {task.id!r} failed on its node: {exc}") from None
            except (lost.TaskCancelledError, anyio.get_cancelled_exc_class()):
                if ref is not None:
                    with contextlib.suppress(lost.RayError):
                        ray.cancel(ref)  # the node's runner cancels the task's engine
                raise
            except lost.RayError as exc:  # the node or its runner died: send it again
                self.nodes.lose(node)
                count = self.losses[task.id] = self.losses.get(task.id, 0) + 1
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                if count > MAX_NODE_LOSSES:
                    raise ClusterError(
                        f"task {task.id!r} lost {count} nodes ({type(exc).__name__}: "
                        f"{why}); not sent again"
                    ) from None
                self._emit(
                    task,
                    "cluster",
                    f"its node was lost mid-task ({type(exc).__name__}); sending it again",
                )
            finally:
                self.nodes.give_back(node)

    def _shared_object(self) -> Any:
        """What every task of the run carries alike, in the object store (put once)."""
        with self._sharing:
            return self._shared_once()

    def _shared_once(self) -> Any:
        if self._shared is None:
            from forge.execution.ray_worker import RunShared

            self._shared = self.ray.put(
                RunShared(
                    run_id=self.run_id,
                    base=self.base,
                    config=self.config,
                    settings=replace(self.settings, repo_key=str(self.repo_dir)),
                    repo_key=str(self.repo_dir),
                    identity=self._identity,
                )
            )
        return self._shared

    def _route(self, task: MilestoneTask) -> RouteDecision:
        """As the engine routes it: the decision goes to the node with the task."""
        from forge.execution.engine import route_task

        with self._routing:  # the router counts turns (round_robin), as the engine's does
            return route_task(task, self.codebase, self.router, self.settings.pins)

    def _placeable(self, task: MilestoneTask, needs: dict[str, float]) -> None:
        """A task no node can take would wait forever: it fails now, naming what is missing.
        The cluster's resources are asked again only when one seems missing (a node may have
        joined since), not for every task."""
        missing = sorted(name for name in needs if name not in self._resources)
        if missing:
            self._resources = set(self.ray.cluster_resources())
            missing = sorted(name for name in needs if name not in self._resources)
        if missing:
            raise ClusterError(
                f"task {task.id!r} needs {', '.join(missing)}, which no node of the cluster has: "
                "join a node that has it with `forge ray-node` (it says what each node lacks)"
            )

    def _objects(self, head: str) -> tuple[Any, list[Piece]]:
        """The base bundle's object (put once) and the pieces of the line up to `head`."""
        return self.shipping.base_object(), self.shipping.pieces(head)

    def _emit(self, task: MilestoneTask, stage: str, message: str) -> None:
        self.on_event(TaskEvent(task_id=task.id, stage=stage, message=message))

    def forget_run(self) -> None:
        """The run has ended (done, failed or stopped; not interrupted): every node alive with
        task slots removes its copy of the run, at once and in parallel. A node that does not
        answer in time, or was down, keeps its copy, to be removed by hand."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from forge.execution.ray_worker import forget_run

        ray = self.ray
        runners = {node.node_id: node for node in self.nodes.alive()}
        refs = [node.actor.forget.remote(self.run_id) for node in runners.values()]
        # A node alive without a runner of the run (its runner died, or it joined late) may
        # still hold a copy: a task pinned to it removes that, with no runner started for it.
        remote = ray.remote(forget_run)
        refs += [
            remote.options(
                num_cpus=0,
                max_retries=0,
                runtime_env=self._runtime_env,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(self.run_id)
            for node in ray.nodes()
            if node.get("Alive")
            and node.get("Resources", {}).get("CPU")
            and node.get("NodeID") not in runners
        ]
        if not refs:
            return
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=FORGET_SECONDS)
        for ref in done:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(ref)

    def close(self) -> None:
        self.nodes.close()
        self.stream.close()
        self.shipping.close()


@dataclass
class Node:
    """A node of the cluster that takes the run's tasks, through the run's runner there."""

    node_id: str
    slots: int  # tasks at once: one per CPU the node has
    resources: frozenset[str]
    actor: Any  # its NodeRunner
    busy: int = 0
    lost: bool = False  # its runner died: out of the pool


class NodePool:
    """The nodes that run the run's tasks: a runner on each node alive with CPUs (started when
    the node is first seen, for the run), and which of their slots are taken. A task goes to the
    node with the most free slots among those that have what it needs, and waits while they are
    all busy; a node whose runner died leaves the pool (see `lose`)."""

    # How often a task waiting for a slot asks the cluster again for nodes that joined.
    LOOK_AGAIN_SECONDS = 5.0

    def __init__(self, ray: Any, runtime_env: dict[str, Any], start: Callable[[], Any]) -> None:
        self.ray = ray
        self.runtime_env = runtime_env
        self.start = start  # what a runner is started with (a RunStart)
        self._lock = threading.Lock()  # runners are started from a thread of the driver's too
        self.nodes: dict[str, Node] = {}
        self.gone: set[str] = set()  # ids of nodes lost, never used again
        self.starts: dict[str, int] = {}  # runners started per node
        self.closed = False
        self._changed = asyncio.Event()  # a slot was given back or a node lost

    def refresh(self) -> None:
        """A runner on every node alive with CPUs that has none yet (blocking: the cluster is
        asked, and the first runners' start needs the run's base bundle)."""
        from forge.execution.ray_worker import NodeRunner

        nodes = self.ray.nodes()
        with self._lock:
            missing = not self.closed and any(self._wanted(info) for info in nodes)
        if not missing:
            return
        start = self.start()  # the base bundle, the first time: not while holding the lock
        with self._lock:
            if not self.closed:
                self._start_missing(self.ray.remote(NodeRunner), nodes, start)

    async def _look(self) -> None:
        """`refresh`, from the event loop."""
        await anyio.to_thread.run_sync(self.refresh)

    def _wanted(self, info: dict[str, Any]) -> bool:
        """Whether the node is alive with CPUs, has no runner of the run, and may have one."""
        node_id = info.get("NodeID", "")
        cpus = float(info.get("Resources", {}).get("CPU", 0))
        alive = bool(info.get("Alive")) and cpus > 0
        return alive and node_id not in self.nodes and node_id not in self.gone

    def _start_missing(self, runner: Any, nodes: list[dict[str, Any]], start: Any) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for info in nodes:
            if not self._wanted(info):
                continue
            node_id = info["NodeID"]
            have = info.get("Resources", {})
            cpus = float(have.get("CPU", 0))
            actor = runner.options(
                num_cpus=0,  # the node's CPUs are the slots counted here
                max_restarts=0,
                max_task_retries=0,
                max_concurrency=MAX_TASKS_IN_FLIGHT,
                runtime_env=self.runtime_env,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(start)
            self.starts[node_id] = self.starts.get(node_id, 0) + 1
            slots = max(1, min(MAX_TASKS_IN_FLIGHT, int(cpus // CPUS_PER_TASK)))
            self.nodes[node_id] = Node(node_id, slots, frozenset(have), actor)

    def alive(self) -> list[Node]:
        """The nodes whose runner is alive, as far as the run knows (a lost one leaves)."""
        with self._lock:
            return list(self.nodes.values())

    async def take(self, task_id: str, needs: dict[str, float]) -> Node:
        """A slot on a node that has every resource in `needs`, waiting for one to free."""
        while True:
            fitting = [n for n in self.alive() if n.resources.issuperset(needs)]
            if not fitting:
                await self._look()
                fitting = [n for n in self.alive() if n.resources.issuperset(needs)]
            if not fitting:
                raise ClusterError(
                    f"task {task_id!r}: no node alive has what it needs "
                    f"({', '.join(sorted(needs)) or 'a CPU'})"
                )
            node = max(fitting, key=lambda n: n.slots - n.busy)
            if node.busy < node.slots:
                node.busy += 1
                return node
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), self.LOOK_AGAIN_SECONDS)
            except TimeoutError:
                await self._look()  # a node may have joined

    def give_back(self, node: Node) -> None:
        node.busy -= 1
        self._changed.set()

    def lose(self, node: Node) -> None:
        """The node's runner died: its node with it, most likely, or the runner alone (the
        node's memory monitor killed it). The node gets a new runner when the cluster next
        lists it alive, RUNNER_STARTS times in all; after that no task goes there again."""
        if not node.lost:
            node.lost = True
            with contextlib.suppress(Exception):
                self.ray.kill(node.actor)
            with self._lock:
                if self.nodes.get(node.node_id) is node:
                    del self.nodes[node.node_id]
                if self.starts.get(node.node_id, 1) >= RUNNER_STARTS:
                    self.gone.add(node.node_id)
        self._changed.set()

    def close(self) -> None:
        """The runners end (the run's copies on the nodes stay unless forgotten first), and
        no runner starts after this."""
        with self._lock:
            self.closed = True
            ending, self.nodes = list(self.nodes.values()), {}
        for node in ending:
            with contextlib.suppress(Exception):
                self.ray.kill(node.actor)


def _identity(repo_dir: Path) -> tuple[str, str] | None:
    def get(key: str) -> str:
        done = subprocess.run(
            ["git", "config", "--get", key], cwd=repo_dir, capture_output=True, text=True
        )
        return done.stdout.strip()

    name, email = get("user.name"), get("user.email")
    return (name, email) if name and email else None


def _files_at(repo_dir: Path, commit: str) -> list[str]:
    done = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", commit],
        cwd=repo_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    return [p for p in done.stdout.split("\0") if p]
