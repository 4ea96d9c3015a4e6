"""A run's tasks on a Ray node: the same engine as on one machine, in the node's own clone.

The driver starts one `NodeRunner` actor per node for the run, and sends it the tasks it places
there. The node keeps one clone per run (under its own forge home), made from the run's base
bundle by the runner as it starts (or by the run's first task there); each task brings the
integration line's newer commits as a small bundle, takes a worktree from the node's repository
of the run, runs the task engine (context, model calls, edits, validation, retries, escalation)
with the node's own API keys, and sends back its commit as a bundle with what its attempts did.
Nothing here touches the user's repository: that lives on the driver's machine only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from forge.errors import ForgeError
from forge.execution.bundles import Piece, take_bundle
from forge.execution.workspace import branch_part

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig
    from forge.execution.engine import EngineSettings, TaskEngine, TaskEvent, TaskOutcome
    from forge.planning.milestone import MilestoneTask
    from forge.routing.decision import RouteDecision

BASE_REF = "refs/forge/base"
# The most tasks one node's runner has in flight (the driver gives it one per CPU it has).
MAX_TASKS_IN_FLIGHT = 64
HEADS_REFS = "refs/forge/heads"
T = TypeVar("T")


@dataclass(frozen=True)
class RunShared:
    """What every task of a run carries alike: put in the object store once per run, taken
    from it once per worker process (the configuration alone is tens of kilobytes pickled)."""

    run_id: str
    base: str  # the run's base: what the base bundle holds
    config: ForgeConfig
    settings: EngineSettings
    repo_key: str  # the user's repository, as the ledger's route history names it
    identity: tuple[str, str] | None  # the user's git name and email, for the task's commit


@dataclass(frozen=True)
class RemoteJob:
    """What the driver sends with a task: everything but the bundles, which travel as objects."""

    task: MilestoneTask
    head: str  # the integration head the task starts from
    shared: list[Any]  # the run's RunShared object, wrapped so that Ray does not fetch it
    version: str  # forge's, on the driver: a node must run the same
    decision: RouteDecision | None = None  # the driver's route, made to place the task


@dataclass
class RemoteResult:
    outcome: TaskOutcome
    bundle: bytes | None  # the task's commit on top of `head`, when it made one
    events: list[TaskEvent] = field(default_factory=list)
    node: str = ""  # host name and Ray node id
    seconds: float = 0.0
    clone_seconds: float = 0.0  # taking the run's bundles into the node's clone


class NodeMismatch(ForgeError):
    """The node cannot run the driver's work as the driver would (another forge version)."""


class NodeRunner:
    """The run's worker on one node: a Ray actor, one process per node and run, that runs the
    tasks the driver places on it side by side, as the local executor runs a machine's tasks:
    one event loop with the run's model client, one repository with its worktrees, one ledger
    connection. (A Ray task per slot would start a worker process per slot, each importing and
    opening all of that for itself, and keep a ledger connection each.)"""

    def __init__(self, start: RunStart | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        # For the blocking parts of each task (taking bundles, under the node's lock, making
        # the result's): one thread per task in flight at most.
        self._threads = ThreadPoolExecutor(MAX_TASKS_IN_FLIGHT, thread_name_prefix="forge-node")
        self._warming = self._threads.submit(_warm_up, start) if start is not None else None

    async def run(
        self,
        job: RemoteJob,
        base_ref: list[Any],
        pieces: list[Piece],
        stream: tuple[Any, str] | None = None,
    ) -> RemoteResult:
        """One task. `base_ref` is the base bundle's object, wrapped in a list, and `pieces`
        hold the line's newer commits as objects: Ray fetches none of them by itself, so the
        node takes only what its clone lacks. `stream` is the run's event sink (an actor) and
        this send's key: each event goes there as it happens, for the driver's live view.
        Cancelled, the task's engine is cancelled with it."""
        started = time.monotonic()
        run, kept, clone = await self._blocking(_prepare, job, base_ref, pieces)
        cloned = time.monotonic() - started
        events: list[TaskEvent] = []
        stop = _Stop()
        running = asyncio.run_coroutine_threadsafe(
            _engine_run(job, run, kept, clone, _recorder(events, stream), stop), kept.loop
        )
        try:
            outcome = await asyncio.shield(asyncio.wrap_future(running))
        except asyncio.CancelledError:
            # Cancelled as on one machine: through the engine's cancel scope, so its shielded
            # steps (making the worktree, giving it back) finish; the cancel ends once they
            # have, not before (the run's end would close what they still use).
            kept.loop.call_soon_threadsafe(stop.cancel)
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(running)
            raise
        bundle = None
        if outcome.state == "done" and outcome.commit is not None:
            branch = f"refs/heads/forge/{branch_part(run.run_id)}/{branch_part(job.task.id)}"
            from forge.execution.bundles import make_bundle

            # The engine committed on that branch: it points at the commit (the driver checks
            # that the bundle holds it).
            making = functools.partial(make_bundle, since=job.head, ref_is_set=True)
            bundle = await self._blocking(making, kept.own, branch, outcome.commit)
        # Paths of this node mean nothing to the driver; its validation report is redone there.
        outcome = replace(outcome, worktree=None, report=None)
        return RemoteResult(
            outcome,
            bundle,
            events,
            node=_node_name(),
            seconds=time.monotonic() - started,
            clone_seconds=cloned,
        )

    async def forget(self, run_id: str) -> str:
        """The run has ended: see `forget_run` (once the warm-up is over, so that it leaves
        nothing behind)."""
        if self._warming is not None:
            await asyncio.wrap_future(self._warming)
        return await self._blocking(forget_run, run_id)

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)


@dataclass(frozen=True)
class RunStart:
    """What a node's runner is started with, to make ready for the run before its first task."""

    shared: list[Any]  # the run's RunShared object, wrapped so that Ray does not fetch it
    base: list[Any]  # the base bundle's object, wrapped
    version: str  # forge's, on the driver


def _warm_up(start: RunStart) -> None:
    """While the driver still prepares the run's first tasks: the modules the tasks need, the
    node's clone of the run, and the runner's repository, ledger connection, router and model
    client. Best effort: what fails here fails again in the first task, which says why."""
    from forge import __version__

    if start.version != __version__:
        return
    with contextlib.suppress(Exception):
        import forge.execution.engine  # noqa: F401  (imported by the first task otherwise)

        _ready(start.shared[0], None, start.base, [])


def _prepare(
    job: RemoteJob, base_ref: list[Any], pieces: list[Piece]
) -> tuple[RunShared, _Kept, Path]:
    """The run's shared part, the node's clone holding the task's head, and what this process
    keeps for the run (made by the run's first task here)."""
    from forge import __version__

    if job.version != __version__:
        raise NodeMismatch(
            f"node {socket.gethostname()} runs forge {__version__}, the driver forge "
            f"{job.version}: install the same version on every node"
        )
    return _ready(job.shared[0], job.head, base_ref, pieces)


def _ready(
    shared: Any, head: str | None, base_ref: list[Any], pieces: list[Piece]
) -> tuple[RunShared, _Kept, Path]:
    """The run's shared part (from its object), the node's clone holding `head` (the run's
    base when None), and what this process keeps for the run."""
    run = _shared(shared)
    folder = run_folder(run.run_id)
    clone = _clone(folder, head or run.base, run.base, base_ref, pieces)
    with _KEEPING:
        kept = _kept_for(run, folder, clone)
    return run, kept, clone


_SHARED: dict[str, RunShared] = {}  # this process's, by object id: the last run's only
_KEEPING = threading.Lock()  # the run's first tasks on a node arrive together


def _shared(ref: Any) -> RunShared:
    import ray

    key = ref.hex()
    with _KEEPING:
        known = _SHARED.get(key)
    if known is None:
        known = ray.get(ref)
        with _KEEPING:
            _SHARED.clear()
            _SHARED[key] = known
    return known


def _recorder(events: list[TaskEvent], stream: tuple[Any, str] | None) -> Any:
    """Each event kept for the result and, as it happens, given to this process's outbox for
    the run's sink."""
    from forge.execution.ray_events import Outbox

    global _OUTBOX
    with _KEEPING:
        if _OUTBOX is None:
            _OUTBOX = Outbox()
        outbox = _OUTBOX

    def record(event: TaskEvent) -> None:
        if stream is not None:
            sink, key = stream
            outbox.put(sink, (key, len(events), event))
        events.append(event)

    return record


_OUTBOX: Any = None  # this process's (an Outbox), made with its first task


@dataclass
class _Kept:
    """What the node's runner keeps for the run's tasks, side by side and one after another:
    its repository and worktrees, moved from task to task as on one machine, the ledger's
    connection, the run's router, and one event loop on a thread of its own with the run's
    model client open in it, where the tasks' engines run."""

    run_id: str
    own: Path
    repo: Any
    worktrees: Any
    ledger: Any
    router: Any
    loop: asyncio.AbstractEventLoop
    client: Any
    bases: Any  # the engine's BaseReports: each head the node's tasks start from, validated once

    def close(self) -> None:
        closing = self.client.__aexit__(None, None, None)
        asyncio.run_coroutine_threadsafe(closing, self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.own.is_dir():  # else the run's folder went when the run ended (forget_run)
            self.worktrees.close()
        self.ledger.close()
        shutil.rmtree(self.own.parent, ignore_errors=True)


_KEPT: list[_Kept] = []  # at most one: this process's, for the run it works for


def _kept_for(run: RunShared, folder: Path, clone: Path) -> _Kept:
    from git import Repo

    from forge.execution.engine import BaseReports
    from forge.execution.workspace import WorktreePool
    from forge.providers.client import ModelClient
    from forge.routing.decision import Router
    from forge.routing.fleet import load_fleet

    if _KEPT and _KEPT[0].run_id == run.run_id:
        return _KEPT[0]
    while _KEPT:
        _KEPT.pop().close()
    home = folder / "workers" / f"{os.getpid()}-{secrets.token_hex(4)}"
    own = _own_repository(clone, home / "repo", run.identity)
    repo = Repo(own)
    ledger = open_ledger(run.config)
    router = Router(load_fleet(run.config, ledger, run.repo_key))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="forge-node-loop", daemon=True).start()
    client = ModelClient(run.config, ledger=ledger, run_id=run.run_id)
    asyncio.run_coroutine_threadsafe(client.__aenter__(), loop).result()
    worktrees = WorktreePool(repo, run.run_id, home=home / "trees")
    kept = _Kept(run.run_id, own, repo, worktrees, ledger, router, loop, client, BaseReports())
    _KEPT.append(kept)
    return kept


def forget_run(run_id: str) -> str:
    """On a node, once the driver says the run has ended: its clone and the repositories of its
    tasks go (this process's session of the run first). A run that did not end (the driver was
    interrupted or killed) is never forgotten, so `--resume` finds its clone. Returns the node."""
    if _KEPT and _KEPT[0].run_id == run_id:
        _KEPT.pop().close()
    folder = run_folder(run_id)
    if folder.is_dir():
        with _locked(folder / "lock"):  # not while a late task of the run takes its bundles
            shutil.rmtree(folder, ignore_errors=True)
    return _node_name()


def run_folder(run_id: str) -> Path:
    from forge.home import forge_home

    return forge_home() / "ray" / branch_part(run_id)


def _node_name() -> str:
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # outside Ray (a test calling the body directly)
        node = "local"
    return f"{socket.gethostname()}/{node}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process at a time per node: tasks of a run share its clone."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _git(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=False)


def _clone(folder: Path, head: str, base: str, base_ref: list[Any], pieces: list[Piece]) -> Path:
    """The node's clone of the run (from `base`), holding `head`: made once per node and run,
    then only ever given objects (under the node's lock), never a worktree."""
    import ray

    folder.mkdir(parents=True, exist_ok=True)
    clone = folder / "repo"
    with _locked(folder / "lock"):
        if not (clone / ".git").is_dir():
            fresh = folder / f"repo-{os.getpid()}"
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
            _git(fresh, "init", "--quiet")
            # Tasks' repositories borrow its objects: nothing may prune them.
            _git(fresh, "config", "gc.auto", "0")
            take_bundle(fresh, ray.get(base_ref[0]), BASE_REF)
            # A checkout of the base: what the route's analysis reads, as it reads the user's
            # checkout on one machine.
            done = _git(fresh, "checkout", "--quiet", "--detach", base)
            if done.returncode != 0:
                raise ForgeError(f"cannot check out the run's base: {done.stderr.strip()}")
            fresh.rename(clone)
        lacking: list[Piece] = []
        for piece in reversed(pieces):  # newest first, down to what the clone has
            if _has(clone, piece.head, base):
                break
            lacking.append(piece)
            if _has(clone, piece.since, base):
                break
        lacking.reverse()
        for piece, data in zip(lacking, ray.get([p.data for p in lacking]), strict=True):
            take_bundle(clone, data, f"{HEADS_REFS}/{piece.head}")
        if not _has(clone, head, base):
            raise ForgeError(f"the node's clone lacks {head} and no bundle brought it")
    return clone


def _has(clone: Path, commit: str, base: str) -> bool:
    """Whether the clone holds `commit`, the run's base or a piece's head, said without a git
    process: the clone was made from the base's bundle, and each piece is taken with a ref of
    its head's name, set once its objects are in (the clone packs no refs: gc is off). A ref
    missing only makes the piece be taken again."""
    return commit == base or (clone / ".git" / HEADS_REFS / commit).is_file()


def _own_repository(clone: Path, path: Path, identity: tuple[str, str] | None) -> Path:
    """The runner's repository, borrowing the node clone's objects (`clone --shared`): its
    worktrees, branches and refs are its own, so the clone only ever takes objects and refs
    (git trips over a worktree half made while another repository's bundle is taken)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _git(path.parent, "clone", "--quiet", "--shared", "--no-checkout", str(clone), path.name)
    if done.returncode != 0:
        raise ForgeError(f"cannot make the task's repository: {done.stderr.strip()}")
    if identity is not None:
        _git(path, "config", "user.name", identity[0])
        _git(path, "config", "user.email", identity[1])
    return path


class _Stop:
    """A task's cancel, asked from the runner's loop and carried out on the engine's (both
    only ever touched on the engine's loop, so a cancel that comes before the engine starts
    is not missed)."""

    def __init__(self) -> None:
        self.asked = False
        self.scope: Any = None  # the engine's anyio CancelScope, once it runs

    def cancel(self) -> None:
        self.asked = True
        if self.scope is not None:
            self.scope.cancel()


async def _engine_run(
    job: RemoteJob, run: RunShared, kept: _Kept, clone: Path, on_event: Any, stop: _Stop
) -> TaskOutcome:
    import anyio

    engine = _engine(run, kept, clone, kept.client, on_event)
    with anyio.CancelScope() as scope:
        stop.scope = scope
        if stop.asked:
            scope.cancel()
        return await engine.run(job.task, job.head, routed=job.decision)
    raise asyncio.CancelledError  # the scope took the cancel: the task did not finish


def _engine(run: RunShared, kept: _Kept, clone: Path, client: Any, on_event: Any) -> TaskEngine:
    from forge.execution.engine import TaskEngine
    from forge.routing.codebase import codebase_at

    return TaskEngine(
        config=run.config,
        ledger=kept.ledger,
        client=client,
        router=kept.router,
        repo=kept.repo,
        codebase=codebase_at(clone),  # checked out at the run's base, as the user's checkout
        settings=run.settings,
        on_event=on_event,
        worktrees=kept.worktrees,
        base_reports=kept.bases,
    )


def open_ledger(config: ForgeConfig) -> Any:
    """The ledger every node and the driver share (the run requires a PostgreSQL one)."""
    from forge.ledger import Ledger

    return Ledger.configured(config)
