"""A run: a milestone's task graph through the scheduler, recorded so it can be resumed.

The run's plan, base and options are saved in the ledger when it starts; its progress is the
integration line in git (each merged commit names its task in a `Forge-Task:` trailer) and the
task rows in the ledger. `--resume RUN` reads them back and runs what is not merged yet.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread

from forge.errors import UsageError
from forge.execution.engine import EngineSettings, TaskEngine, TaskEvent
from forge.execution.scheduler import PlanOutcome, RunEvent, Scheduler, TaskRunner, first_wave
from forge.execution.workspace import WorktreePool, resolve_base
from forge.planning.milestone import Milestone, MilestoneTask
from forge.routing.decision import Pins

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig
    from forge.execution.store import RunRow, RunStore, RunTaskRow


@dataclass(frozen=True)
class RunOptions:
    base: str = "HEAD"
    pins: Pins = field(default_factory=Pins)
    require_green: bool = False
    strict_files: bool = False
    keep_worktrees: bool = False
    allow_test_edits: bool = False
    # The model that reviews each validated attempt (--review); else [routing] reviewer.
    review: str | None = None
    on_budget: Literal["finish", "cancel"] = "finish"
    # Where the tasks run: None takes [execution] executor and ray_address. Not saved with the
    # run: a run started on one machine may be resumed on a cluster, and the other way round.
    executor: Literal["local", "ray"] | None = None
    ray_address: str | None = None


@dataclass
class RunResult:
    run_id: str
    repo: Path
    source: str
    plan: Milestone
    outcome: PlanOutcome
    dirty: bool  # the user had uncommitted changes, which the base does not contain
    resumed: bool = False
    # The top tier's dearest model, and the run's tokens at its prices, when it is priced.
    top_tier: tuple[str, Decimal] | None = None


def new_run_id() -> str:
    """Short, sortable by time, safe in a branch name: 1122-1530-3fa9."""
    return time.strftime("%m%d-%H%M") + "-" + secrets.token_hex(2)


def only_task(plan: Milestone, task_id: str) -> Milestone:
    """`--task ID`: that task alone (what it comes after is taken as done)."""
    try:
        task = plan.task(task_id)
    except KeyError:
        known = ", ".join(t.id for t in plan.tasks)
        raise UsageError(f"{plan.source} has no task {task_id!r} (tasks: {known})") from None
    if task.done:
        raise UsageError(f"task {task_id!r} of {plan.source} is marked done ([x]); nothing to run")
    alone = MilestoneTask(**{**_task_fields(task), "after": (), "done": False})
    return Milestone(plan.source, (alone,), plan.title)


def goal_plan(
    goal: str, *, milestone: Milestone | None, config_path: Path | None, base: str
) -> tuple[Milestone, tuple[str, ...]]:
    """`--goal`: its parts as tasks; "fix the build / tests / lint" parts become one task per
    file with findings, found by validating `base` in a scratch worktree (never the checkout)."""
    from forge.config import load_config
    from forge.execution.workspace import open_repository
    from forge.planning.goals import plan_goal, split_goal

    if not goal.strip():
        raise UsageError("--goal is empty")
    config = load_config(config_path).config
    _sandbox_ready(config)
    repo = open_repository(Path.cwd())
    validate_fn = None
    if any(part.fix for part in split_goal(goal)):
        from forge.providers.secrets import key_names

        validate_fn = _validator_at(repo, resolve_base(repo, base), key_names(config))
    planned = plan_goal(
        goal,
        root=Path(repo.working_dir),
        validation=config.validation,
        milestone=milestone,
        **({"validate_fn": validate_fn} if validate_fn else {}),
    )
    return planned.milestone, planned.notes


def _validator_at(repo: Any, commit: str, secrets: tuple[str, ...]) -> Callable[..., Any]:
    from forge.execution.workspace import validate_commit

    def validate_base(root: Path, settings: Any) -> Any:
        from forge.validation.runner import NothingToValidate

        report = validate_commit(repo, commit, settings, secrets=secrets)
        if report is None:
            raise NothingToValidate("nothing to validate at the base")
        return report

    return validate_base


def _sandbox_ready(config: ForgeConfig) -> None:
    """With `[validation] sandbox = "bwrap"`, a working bubblewrap before anything is made
    (a branch, a worktree): a run whose attempts could not be validated stops at once."""
    if config.validation.sandbox == "bwrap":
        from forge.validation.sandbox import require_bwrap

        require_bwrap()


@dataclass
class _Setup:
    """What a run needs, opened once: configuration, repository, ledger, router, client."""

    config: Any
    repo: Any
    root: Path
    ledger: Any
    codebase: Any
    router: Any


def _open(config_path: Path | None, pins: Pins) -> _Setup:
    from forge.config import load_config
    from forge.execution.workspace import open_repository
    from forge.ledger import Ledger
    from forge.routing.codebase import codebase_at
    from forge.routing.decision import Router
    from forge.routing.fleet import load_fleet

    config = load_config(config_path).config
    _sandbox_ready(config)
    repo = open_repository(Path.cwd())
    root = Path(repo.working_dir)
    ledger = Ledger.configured(config)
    codebase = codebase_at(root)
    router = Router(load_fleet(config, ledger, str(codebase.root if codebase else root)))
    router.check(pins)
    return _Setup(config, repo, root, ledger, codebase, router)


async def run_plan(
    plan: Milestone,
    *,
    source: str,
    options: RunOptions,
    config_path: Path | None = None,
    resume: str | None = None,
    on_event: Callable[[TaskEvent | RunEvent], None] = lambda event: None,
    on_start: Callable[[str, Milestone, Decimal | None], None] = lambda run_id, plan, budget: None,
) -> RunResult:
    """Run `plan` as a new run, or (with `resume`) carry on with the saved run of that id."""
    from forge.execution.integration import Integration
    from forge.execution.store import RunStore
    from forge.providers.client import ModelClient
    from forge.validation.tree import GIT_LOCATION

    if found := sorted(GIT_LOCATION.intersection(os.environ)):
        raise UsageError(
            f"{', '.join(found)} is set (as inside a git hook): git would act on that repository "
            "instead of the run's own worktrees; run forge run-milestone without it"
        )
    setup = _open(config_path, options.pins)
    execution = setup.config.execution
    executor = options.executor or execution.executor
    address = options.ray_address or execution.ray_address
    if options.ray_address and executor != "ray":
        raise UsageError("--ray-address names a Ray cluster: it goes with --executor ray")
    if executor == "ray":
        _cluster_ready(setup.config, options, address)
    store = RunStore(setup.ledger)
    if resume is not None:
        saved = store.run(resume)
        if saved is None:
            raise UsageError(f"no run {resume!r} in the ledger (`forge runs` lists them)")
        _resumable(saved, setup.root)
        run_id, base = resume, saved.base
        source = saved.source
        plan, options = _saved_plan(saved.options, source), _saved_options(saved.options)
        _some_model_usable(setup.config, plan, options.pins)
        integration = Integration(setup.root, run_id)
        integration.resume()
        on_line = integration.on_line(base)
        merged = frozenset(integration.merged_tasks(base) | _done_on(on_line, store, run_id))
        earlier = _earlier_work(store, run_id, merged)
        store.set_run_state(run_id, "running")
    else:
        run_id, base = new_run_id(), resolve_base(setup.repo, options.base)
        _some_model_usable(setup.config, plan, options.pins)
        integration = Integration(setup.root, run_id)
        integration.start(base)
        merged, earlier = frozenset(), {}
        _distinct_branches(plan)
        saved_options = _options_json(options) | {"tasks": [_task_fields(t) for t in plan.tasks]}
        store.start_run(
            run_id, repo=str(setup.root), base=base, source=source, options=saved_options
        )
    state = "interrupted"
    worktrees = WorktreePool(setup.repo, run_id)
    try:
        _check_tiers(plan, setup.router, options.pins)
        reviewer = options.review or setup.config.routing.reviewer
        if reviewer is not None:
            from forge.execution.review import check_reviewer

            check_reviewer(setup.config, reviewer)
        if resume is not None:
            await anyio.to_thread.run_sync(worktrees.clear_stale)
        if executor == "local":
            # The first tasks' worktrees are checked out while the run starts up.
            worktrees.prepare(first_wave(plan, merged, setup.config), integration.head())
        dirty = setup.repo.is_dirty(untracked_files=True)
        cost = setup.config.cost
        budget = cost.run_budget_usd if cost.run_budget_usd is not None else cost.daily_stop
        on_start(run_id, plan, budget)
        closing: list[Callable[[], None]] = []
        ending: list[Callable[[], None]] = []  # once the run has ended, not when interrupted
        settings = EngineSettings(
            run_id=run_id,
            require_green=options.require_green,
            strict_files=options.strict_files,
            keep_worktrees=options.keep_worktrees,
            allow_test_edits=options.allow_test_edits,
            reviewer=reviewer,
            pins=options.pins,
        )
        try:
            async with ModelClient(setup.config, ledger=setup.ledger, run_id=run_id) as client:
                engine: TaskRunner
                if executor == "ray":
                    from forge.execution.ray_executor import RayTasks

                    engine = cluster = RayTasks(
                        config=setup.config,
                        repo=setup.repo,
                        router=setup.router,
                        settings=settings,
                        base=base,
                        address=address,
                        codebase=setup.codebase,
                        on_event=on_event,
                    )
                    closing.append(cluster.close)
                    ending.append(cluster.forget_run)
                else:
                    engine = TaskEngine(
                        config=setup.config,
                        ledger=setup.ledger,
                        client=client,
                        router=setup.router,
                        repo=setup.repo,
                        codebase=setup.codebase,
                        settings=settings,
                        on_event=on_event,
                        worktrees=worktrees,
                    )
                scheduler = Scheduler(
                    plan=plan,
                    engine=engine,
                    integration=integration,
                    ledger=setup.ledger,
                    config=setup.config,
                    on_event=on_event,
                    on_budget=options.on_budget,
                    worktrees=worktrees,
                )
                try:
                    outcome = await scheduler.run(base, merged, earlier)
                finally:
                    scheduler.close()
                for end in ending:
                    await anyio.to_thread.run_sync(end)
        finally:
            # On the event loop's own thread, without an await: a Ctrl-C here cancels the main
            # task through any shield, and the worktrees must not be left half removed. Nothing
            # else runs by now, so blocking the loop for it costs nothing.
            worktrees.close()
            for close in closing:
                close()
        kept = tuple(o.worktree for r in outcome.records.values() for o in r.outcomes if o.worktree)
        outcome.branch = integration.finish(base, kept)
        outcome.head = integration.head()
        state = outcome.state
        top = top_tier_work(setup.config, setup.ledger, store, run_id)
    finally:
        store.set_run_state(run_id, state, finished=True)
        setup.ledger.close()
    return RunResult(
        run_id,
        setup.root,
        source,
        plan,
        outcome,
        dirty,
        resumed=resume is not None,
        top_tier=top,
    )


def _cluster_ready(config: ForgeConfig, options: RunOptions, address: str | None) -> None:
    """Before a branch or a worktree is made: Ray installed, a ledger every node shares (the
    budget holds across machines only there), and the cluster reachable."""
    from forge.execution.ray_executor import connect, import_ray

    import_ray()
    if options.keep_worktrees:
        raise UsageError(
            "--keep-worktrees keeps worktrees on this machine; with --executor ray the tasks' "
            "worktrees are on the cluster's nodes, which remove them"
        )
    require_shared_ledger(config)
    connect(address)


def require_shared_ledger(config: ForgeConfig) -> None:
    from forge.ledger.url import is_postgres

    if not is_postgres(config.ledger.url):
        raise UsageError(
            "--executor ray needs a ledger every node shares, so one budget holds across "
            'machines: set [ledger] url = "postgresql://..." in forge.toml (or FORGE_LEDGER_URL)'
        )


def top_tier_work(config: ForgeConfig, ledger: Any, store: RunStore, run_id: str) -> Any:
    """The run's attempts (all of its processes) priced at the top tier: (model, USD) or None."""
    from forge.execution.stats import top_tier

    rows = [r for r in store.attempts(run_id) if r.kind == "attempt"]
    tokens_in = sum(r.input_tokens for r in rows)
    tokens_out = sum(r.output_tokens for r in rows)
    return top_tier(config, ledger, tokens_in, tokens_out)


def _distinct_branches(plan: Milestone) -> None:
    """Two ids that make the same branch name would share a worktree: refuse them up front."""
    from forge.execution.workspace import branch_part
    from forge.planning.milestone import MilestoneError

    seen: dict[str, str] = {"_merged": "_merged (forge's own merge-checking worktree)"}
    for task in plan.tasks:
        name = branch_part(task.id)
        if name in seen:
            raise MilestoneError(
                f"{plan.source}: task ids {seen[name]!r} and {task.id!r} both become the branch "
                f"name {name!r}; rename one of them"
            )
        seen[name] = task.id


def _some_model_usable(
    config: ForgeConfig, plan: Milestone, pins: Pins, env: Mapping[str, str] = os.environ
) -> None:
    """Before a branch or a worktree is made: some model the run may call can be called. A run
    whose ladders hold no model, or whose every model's provider lacks its key, would make them
    and then fail every task on the first call."""
    rungs = {rung for ladder in config.tiers.ladders().values() for rung in ladder}
    rungs |= {task.tier for task in plan.pending() if task.tier}
    if pins.tier is not None:
        rungs.add(pins.tier)
    aliases = sorted({alias for rung in rungs for alias in config.models_in(rung)})
    if pins.model is not None:
        aliases = sorted({*aliases, pins.model})
    if not aliases:
        named = ", ".join(config.tiers.ladder)
        raise UsageError(
            f"no model to run the tasks with: no model in forge.toml has a tier of the ladder "
            f"({named}) or is named on it; give a model one of these tiers"
        )
    unset: dict[str, list[str]] = {}
    for alias in aliases:
        variable = config.providers[config.models[alias].provider].api_key_env
        if not variable or env.get(variable):
            return
        unset.setdefault(variable, []).append(alias)
    missing = "; ".join(f"{name} is not set (for {', '.join(a)})" for name, a in unset.items())
    raise UsageError(f"no model to run the tasks with can be called: {missing}")


def _check_tiers(plan: Milestone, router: Any, pins: Pins) -> None:
    """A task's unknown tier is a usage error before any work starts, not a failure mid-run."""
    from forge.planning.milestone import MilestoneError

    if pins.tier is not None or pins.model is not None:
        return  # the command line's pin wins over the file's, and was checked already
    for task in plan.pending():
        if task.tier is not None:
            try:
                router.check(Pins(tier=task.tier))
            except UsageError as exc:
                raise MilestoneError(f"task {task.id!r} ({task.where}): {exc}") from None


def _resumable(saved: RunRow, root: Path) -> None:
    from forge.ledger.store import host_name, pid_alive

    if Path(saved.repo) != root:
        raise UsageError(f"run {saved.run_id} belongs to {saved.repo}; resume it from there")
    if saved.state == "running" and saved.host not in (None, host_name()):
        raise UsageError(
            f"run {saved.run_id} is marked running on {saved.host} (process {saved.pid}): "
            "resume it there, or once that process has ended"
        )
    if saved.state == "running" and saved.pid and pid_alive(saved.pid):
        raise UsageError(f"run {saved.run_id} is still running (process {saved.pid})")
    if saved.state == "done":
        raise UsageError(f"run {saved.run_id} is already done: every task was merged")


def _done_on(line: set[str], store: RunStore, run_id: str) -> set[str]:
    """Tasks saved as done at a commit of the line. Most are named by their commit's trailer
    too; one whose change was already on the line (a merge that added nothing) is not."""
    return {
        row.task_id
        for row in store.tasks(run_id)
        if row.state == "done" and row.commit_id is not None and row.commit_id in line
    }


def _earlier_work(
    store: RunStore, run_id: str, merged: frozenset[str]
) -> dict[str, tuple[RunTaskRow, str | None]]:
    """What an earlier process spent on the tasks it merged, and the tier that finished each."""
    passed = {
        row.task_id: row.rung
        for row in store.attempts(run_id)
        if row.kind == "attempt" and row.validation == "passed"
    }
    return {
        row.task_id: (row, passed.get(row.task_id))
        for row in store.tasks(run_id)
        if row.task_id in merged
    }


def _task_fields(task: MilestoneTask) -> dict[str, Any]:
    fields = asdict(task)
    fields["files"], fields["after"] = tuple(task.files), tuple(task.after)
    return fields


def _saved_plan(options: dict[str, Any], source: str) -> Milestone:
    tasks = tuple(
        MilestoneTask(**{**t, "files": tuple(t["files"]), "after": tuple(t["after"])})
        for t in options["tasks"]
    )
    return Milestone(source, tasks)


def _options_json(options: RunOptions) -> dict[str, Any]:
    return {
        "base": options.base,
        "tier": options.pins.tier,
        "model": options.pins.model,
        "require_green": options.require_green,
        "strict_files": options.strict_files,
        "keep_worktrees": options.keep_worktrees,
        "allow_test_edits": options.allow_test_edits,
        "review": options.review,
        "on_budget": options.on_budget,
    }


def _saved_options(saved: dict[str, Any]) -> RunOptions:
    return RunOptions(
        base=saved["base"],
        pins=Pins(tier=saved.get("tier"), model=saved.get("model")),
        require_green=saved.get("require_green", False),
        strict_files=saved.get("strict_files", False),
        keep_worktrees=saved.get("keep_worktrees", False),
        allow_test_edits=saved.get("allow_test_edits", False),
        review=saved.get("review"),
        on_budget=saved.get("on_budget", "finish"),
    )
