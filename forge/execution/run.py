"""A run: the tasks of a milestone (or a one-sentence goal) through the task engine.

This version runs one task per run; the task-graph runner builds on it. The run is recorded in
the ledger (runs, run_tasks, task_attempts) under an id that also names its branches.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.errors import UsageError
from forge.execution.engine import EngineSettings, TaskEngine, TaskEvent, TaskOutcome
from forge.planning.milestone import Milestone, MilestoneTask, slug
from forge.routing.decision import Pins


@dataclass(frozen=True)
class RunOptions:
    base: str = "HEAD"
    pins: Pins = field(default_factory=Pins)
    require_green: bool = False
    strict_files: bool = False
    keep_worktrees: bool = False


@dataclass
class RunResult:
    run_id: str
    repo: Path
    base: str
    source: str
    outcome: TaskOutcome
    dirty: bool  # the user had uncommitted changes, which the base does not contain


def new_run_id() -> str:
    """Short, sortable by time, safe in a branch name: 1122-1530-3fa9."""
    return time.strftime("%m%d-%H%M") + "-" + secrets.token_hex(2)


def goal_task(goal: str) -> MilestoneTask:
    text = goal.strip()
    if not text:
        raise UsageError("--goal is empty")
    title, _, rest = text.partition("\n")
    return MilestoneTask(id=slug(title) or "goal", title=title.strip(), description=rest.strip())


def pick_task(plan: Milestone, task_id: str | None) -> MilestoneTask:
    """The task to run: the one named, or the milestone's only pending one."""
    if task_id is not None:
        try:
            return plan.task(task_id)
        except KeyError:
            known = ", ".join(t.id for t in plan.tasks)
            raise UsageError(f"{plan.source} has no task {task_id!r} (tasks: {known})") from None
    pending = plan.pending()
    if not pending:
        raise UsageError(f"every task of {plan.source} is already done")
    if len(pending) > 1:
        ids = ", ".join(t.id for t in pending)
        raise UsageError(
            f"{plan.source} has {len(pending)} pending tasks ({ids}); this version runs one "
            "task per run: choose it with --task ID"
        )
    return pending[0]


async def run_task(
    task: MilestoneTask,
    *,
    source: str,
    options: RunOptions,
    config_path: Path | None = None,
    on_event: Callable[[TaskEvent], None] = lambda event: None,
    on_start: Callable[[str], None] = lambda run_id: None,
) -> RunResult:
    from forge.config import load_config
    from forge.execution.store import RunStore
    from forge.execution.workspace import open_repository, resolve_base
    from forge.ledger import Ledger
    from forge.providers.client import ModelClient
    from forge.routing.codebase import codebase_at
    from forge.routing.decision import Router
    from forge.routing.fleet import load_fleet

    config = load_config(config_path).config
    repo = open_repository(Path.cwd())
    root = Path(repo.working_dir)
    base = resolve_base(repo, options.base)
    dirty = repo.is_dirty(untracked_files=True)
    ledger = Ledger.open()
    codebase = codebase_at(root)
    router = Router(load_fleet(config, ledger, str(codebase.root if codebase else root)))
    router.check(options.pins)
    run_id = new_run_id()
    store = RunStore(ledger)
    store.start_run(run_id, repo=str(root), base=base, source=source, options=_plain(options))
    on_start(run_id)
    settings = EngineSettings(
        run_id=run_id,
        require_green=options.require_green,
        strict_files=options.strict_files,
        keep_worktrees=options.keep_worktrees,
        pins=options.pins,
    )
    state = "interrupted"
    try:
        async with ModelClient(config, ledger=ledger, run_id=run_id) as client:
            engine = TaskEngine(
                config=config,
                ledger=ledger,
                client=client,
                router=router,
                repo=repo,
                codebase=codebase,
                settings=settings,
                on_event=on_event,
            )
            outcome = await engine.run(task, base)
        state = outcome.state
    finally:
        store.finish_run(run_id, state)
        ledger.close()
    return RunResult(run_id, root, base, source, outcome, dirty)


def _plain(options: RunOptions) -> dict[str, Any]:
    return {
        "base": options.base,
        "tier": options.pins.tier,
        "model": options.pins.model,
        "require_green": options.require_green,
        "strict_files": options.strict_files,
        "keep_worktrees": options.keep_worktrees,
        "pid": os.getpid(),
    }
