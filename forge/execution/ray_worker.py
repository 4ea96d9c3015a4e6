"""One task on a Ray node: the same engine as on one machine, in the node's own clone.

The node keeps one clone per run (under its own forge home), made from the run's base bundle
the first time one of the run's tasks lands there; each task brings the integration line's
newer commits as a small bundle, takes a worktree of its own from that clone, runs the task
engine (context, model calls, edits, validation, retries, escalation) with the node's own API
keys, and sends back its commit as a bundle with what its attempts did. Nothing here touches the
user's repository: that lives on the driver's machine only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge.errors import ForgeError
from forge.execution.bundles import take_bundle
from forge.execution.workspace import branch_part

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig
    from forge.execution.engine import EngineSettings, TaskEngine, TaskEvent, TaskOutcome
    from forge.planning.milestone import MilestoneTask

BASE_REF = "refs/forge/base"
HEADS_REFS = "refs/forge/heads"


@dataclass(frozen=True)
class RemoteJob:
    """What the driver sends with a task: everything but the bundles, which travel as objects."""

    task: MilestoneTask
    run_id: str
    base: str  # the run's base: what the base bundle holds
    head: str  # the integration head the task starts from
    config: ForgeConfig
    settings: EngineSettings
    repo_key: str  # the user's repository, as the ledger's route history names it
    identity: tuple[str, str] | None  # the user's git name and email, for the task's commit
    version: str  # forge's, on the driver: a node must run the same


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


def run_remote(job: RemoteJob, base_ref: list[Any], increment: bytes | None) -> RemoteResult:
    """The Ray task's body. `base_ref` is the base bundle's object, wrapped in a list so that
    Ray does not fetch it for a node whose clone already has the base."""
    import anyio

    from forge import __version__

    if job.version != __version__:
        raise NodeMismatch(
            f"node {socket.gethostname()} runs forge {__version__}, the driver forge "
            f"{job.version}: install the same version on every node"
        )
    started = time.monotonic()
    folder = run_folder(job.run_id)
    clone = _clone(folder, job, base_ref, increment)
    cloned = time.monotonic() - started
    events: list[TaskEvent] = []
    task_home = folder / "tasks" / f"{branch_part(job.task.id)}-{secrets.token_hex(4)}"
    try:
        own = _own_repository(clone, task_home / "repo", job.identity)
        outcome = anyio.run(_engine_run, job, own, clone, task_home / "trees", events.append)
        bundle = None
        if outcome.state == "done" and outcome.commit is not None:
            branch = f"refs/heads/forge/{branch_part(job.run_id)}/{branch_part(job.task.id)}"
            from forge.execution.bundles import make_bundle

            bundle = make_bundle(own, branch, outcome.commit, since=job.head)
    finally:
        shutil.rmtree(task_home, ignore_errors=True)
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


def _clone(folder: Path, job: RemoteJob, base_ref: list[Any], increment: bytes | None) -> Path:
    """The node's clone of the run, holding `job.head`: made once per node and run, then
    only ever given objects (under the node's lock), never a worktree."""
    folder.mkdir(parents=True, exist_ok=True)
    clone = folder / "repo"
    with _locked(folder / "lock"):
        if not (clone / ".git").is_dir():
            import ray

            fresh = folder / f"repo-{os.getpid()}"
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
            _git(fresh, "init", "--quiet")
            # Tasks' repositories borrow its objects: nothing may prune them.
            _git(fresh, "config", "gc.auto", "0")
            take_bundle(fresh, ray.get(base_ref[0]), BASE_REF)
            # A checkout of the base: what the route's analysis reads, as it reads the user's
            # checkout on one machine.
            done = _git(fresh, "checkout", "--quiet", "--detach", job.base)
            if done.returncode != 0:
                raise ForgeError(f"cannot check out the run's base: {done.stderr.strip()}")
            fresh.rename(clone)
        has_head = _git(clone, "cat-file", "-e", f"{job.head}^{{commit}}").returncode == 0
        if not has_head:
            if increment is None:
                raise ForgeError(f"the node's clone lacks {job.head} and no bundle brought it")
            take_bundle(clone, increment, f"{HEADS_REFS}/{job.head}")
    return clone


def _own_repository(clone: Path, path: Path, identity: tuple[str, str] | None) -> Path:
    """The task's own repository, borrowing the node clone's objects (`clone --shared`): its
    worktree, branch and refs are its own, so tasks side by side on a node never see each
    other's worktrees come and go (git trips over a worktree half made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _git(path.parent, "clone", "--quiet", "--shared", "--no-checkout", str(clone), path.name)
    if done.returncode != 0:
        raise ForgeError(f"cannot make the task's repository: {done.stderr.strip()}")
    if identity is not None:
        _git(path, "config", "user.name", identity[0])
        _git(path, "config", "user.email", identity[1])
    return path


async def _engine_run(
    job: RemoteJob, own: Path, clone: Path, trees: Path, on_event: Any
) -> TaskOutcome:
    from git import Repo

    from forge.execution.workspace import WorktreePool
    from forge.providers.client import ModelClient

    repo = Repo(own)
    worktrees = WorktreePool(repo, job.run_id, home=trees)
    ledger = open_ledger(job.config)
    try:
        async with ModelClient(job.config, ledger=ledger, run_id=job.run_id) as client:
            engine = _engine(job, repo, clone, ledger, client, worktrees, on_event)
            return await engine.run(job.task, job.head)
    finally:
        worktrees.close()
        ledger.close()


def _engine(
    job: RemoteJob,
    repo: Any,
    clone: Path,
    ledger: Any,
    client: Any,
    worktrees: Any,
    on_event: Any,
) -> TaskEngine:
    from forge.execution.engine import TaskEngine
    from forge.routing.codebase import codebase_at
    from forge.routing.decision import Router
    from forge.routing.fleet import load_fleet

    router = Router(load_fleet(job.config, ledger, job.repo_key))
    return TaskEngine(
        config=job.config,
        ledger=ledger,
        client=client,
        router=router,
        repo=repo,
        codebase=codebase_at(clone),  # checked out at the run's base, as the user's checkout
        settings=job.settings,
        on_event=on_event,
        worktrees=worktrees,
    )


def open_ledger(config: ForgeConfig) -> Any:
    """The ledger every node and the driver share (the run requires a PostgreSQL one)."""
    from forge.ledger import Ledger

    return Ledger.configured(config)
