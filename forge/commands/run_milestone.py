"""`forge run-milestone`: a milestone's tasks, in parallel, validated, merged into one branch.

Progress: a live table on a terminal, one line per event otherwise (on stderr); the report goes
to stdout (`--json` for a machine).
"""

from __future__ import annotations

import shlex
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption, JsonOption
from forge.errors import ForgeError
from forge.printable import printable

if TYPE_CHECKING:
    from decimal import Decimal

    from forge.commands.run_view import LiveTasks
    from forge.execution.engine import TaskEvent
    from forge.execution.run import RunOptions, RunResult
    from forge.execution.scheduler import RunEvent
    from forge.planning.milestone import Milestone


class OnBudget(StrEnum):
    finish = "finish"
    cancel = "cancel"


class Executor(StrEnum):
    local = "local"
    ray = "ray"


def run_milestone(
    milestone: Annotated[
        Path | None,
        typer.Argument(help="A milestone file: a Markdown checklist (.md) or TOML (.toml)."),
    ] = None,
    goal: Annotated[
        str | None, typer.Option("--goal", help="Run this one-sentence goal as a task.")
    ] = None,
    task_id: Annotated[
        str | None, typer.Option("--task", help="Run only this task of the milestone.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue the run with this id.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the graph, routes and estimate; run nothing."),
    ] = False,
    base: Annotated[
        str, typer.Option("--base", help="Start from this commit, branch or tag.")
    ] = "HEAD",
    tier: Annotated[str | None, typer.Option("--tier", help="Start on this tier.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Start on this model.")] = None,
    require_green: Annotated[
        bool,
        typer.Option(
            "--require-green",
            help="Accept an attempt only when every validator passes (not just no new finding).",
        ),
    ] = False,
    strict_files: Annotated[
        bool,
        typer.Option("--strict-files", help="Refuse edits to files the task does not list."),
    ] = False,
    keep_worktrees: Annotated[
        bool, typer.Option("--keep-worktrees", help="Keep each task's worktree for inspection.")
    ] = False,
    allow_test_edits: Annotated[
        bool,
        typer.Option(
            "--allow-test-edits",
            help="Let every task change the tests that exist at its base (by default only a "
            "task of type test, or one marked `tests: edit`, may).",
        ),
    ] = False,
    review: Annotated[
        str | None,
        typer.Option(
            "--review",
            metavar="MODEL",
            help="Have this model read each validated attempt's diff before it is committed; "
            "a rejection is fed back like a failing test (default: \\[routing] reviewer).",
        ),
    ] = None,
    on_budget: Annotated[
        OnBudget,
        typer.Option(
            "--on-budget", help="When the budget is reached: let tasks in flight finish, or cancel."
        ),
    ] = OnBudget.finish,
    executor: Annotated[
        Executor | None,
        typer.Option(
            "--executor",
            help="Where tasks run: this machine, or the nodes of a Ray cluster (merged here) "
            "(default: \\[execution] executor, else local).",
            show_default=False,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="HOST:PORT",
            help="The Ray cluster's head (default: \\[execution] ray_address, else RAY_ADDRESS).",
        ),
    ] = None,
    plan_with: Annotated[
        str | None,
        typer.Option("--plan-with", help="Ask this model to write the plan for --goal."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Run a model-written plan without asking.")
    ] = False,
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Fast-forward your branch to the result when that is safe."),
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run a milestone: independent tasks in parallel, each in its own worktree, validated.

    Each attempt is checked with the project's real build, lint and test tools; a failure is
    retried with the findings, then escalated up the tier ladder. Validated work is merged into
    the branch forge/RUN. Your working tree, index and branch are never touched (unless --apply).
    """
    import anyio

    from forge.errors import ExitCode, UsageError
    from forge.execution.run import RunOptions, run_plan
    from forge.routing.decision import Pins

    if resume is not None and (milestone is not None or goal is not None):
        raise UsageError("--resume RUN carries on a saved run; give no milestone or --goal")
    if resume is not None and (tier or model or review or base != "HEAD"):
        raise UsageError("--resume runs with the run's own --base, --tier, --model and --review")
    if resume is None and milestone is None and goal is None:
        raise UsageError("give a milestone file, --goal TEXT, or --resume RUN")
    if task_id is not None and (milestone is None or goal is not None):
        raise UsageError("--task chooses a task of a milestone file (without --goal)")
    if plan_with is not None and goal is None:
        raise UsageError("--plan-with writes a plan for --goal TEXT")
    options = RunOptions(
        base=base,
        pins=Pins(tier=tier, model=model),
        require_green=require_green,
        strict_files=strict_files,
        keep_worktrees=keep_worktrees,
        allow_test_edits=allow_test_edits,
        review=review,
        on_budget=on_budget.value,
        executor=executor.value if executor is not None else None,
        ray_address=ray_address,
    )
    plan: Milestone | None = None
    source = ""
    if resume is None:
        plan, source = _plan(milestone, goal, task_id, config, base, plan_with, yes)
        if not plan.pending():
            typer.echo("forge: nothing to do: every task is done", err=True)
            if json_output:
                from forge.commands.output import print_json

                print_json({"run": None, "state": "done", "exit_code": 0, "tasks": []})
            return
    if dry_run:
        if plan is None:
            raise UsageError("--dry-run shows a new run's plan; it does not go with --resume")
        _dry_run(plan, options, config, json_output)
        return
    view = _View(json_output)
    try:
        result = anyio.run(
            lambda: run_plan(
                plan if plan is not None else _empty(),
                source=source,
                options=options,
                config_path=config,
                resume=resume,
                on_event=view.event,
                on_start=view.start,
            )
        )
    except KeyboardInterrupt:
        view.stop()
        if view.run_id is None:
            raise  # nothing was started: there is nothing to carry on
        again = _resume_command(view.run_id, config)
        typer.echo(printable(f"forge: interrupted; to carry on: {again}"), err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except ForgeError as exc:
        from forge.ledger.store import LedgerError

        view.stop()
        if view.run_id is None or not isinstance(exc, LedgerError):
            raise
        # The database went away for longer than the ledger waits: the run stops where it is,
        # and carries on as after a crash once the database is back.
        again = _resume_command(view.run_id, config)
        typer.echo(printable(f"forge: error: {exc}"), err=True)
        typer.echo(
            printable(f"forge: the run stopped; once the ledger is back, carry on: {again}"),
            err=True,
        )
        raise typer.Exit(int(exc.exit_code)) from None
    finally:
        view.stop()
    if json_output:
        from forge.commands.output import print_json
        from forge.execution.report import result_json

        print_json(result_json(result))
    else:
        _render(result)
    if apply:
        _apply(result)
    raise typer.Exit(int(result.outcome.exit_code))


def _plan(
    milestone: Path | None,
    goal: str | None,
    task_id: str | None,
    config: Path | None,
    base: str,
    plan_with: str | None,
    yes: bool,
) -> tuple[Milestone, str]:
    from forge.execution.run import goal_plan, only_task
    from forge.planning.milestone import load_milestone

    plan = load_milestone(milestone) if milestone is not None else None
    if goal is None:
        assert plan is not None and milestone is not None
        return (only_task(plan, task_id) if task_id is not None else plan), str(milestone)
    if plan_with is not None:
        return _model_plan(goal, plan_with, config, yes), f"--goal (planned by {plan_with})"
    planned, notes = goal_plan(goal, milestone=plan, config_path=config, base=base)
    for note in notes:
        typer.echo(printable(f"forge: {note}"), err=True)
    return planned, "--goal" if milestone is None else f"--goal with {milestone}"


def _model_plan(goal: str, model: str, config_path: Path | None, yes: bool) -> Milestone:
    """`--plan-with`: the model writes the checklist; it is shown, and run once confirmed."""
    import sys

    import anyio

    from forge.config import load_config
    from forge.errors import UsageError
    from forge.execution.context import module_tree
    from forge.ledger import Ledger
    from forge.planning.plan_model import plan_with_model
    from forge.providers.client import ModelClient
    from forge.validation.tree import list_files, repository_root

    config = load_config(config_path).config
    tree = module_tree(list_files(repository_root(Path.cwd())))

    async def ask() -> Milestone:
        async with ModelClient(config, ledger=Ledger.configured(config)) as client:
            return await plan_with_model(client, model, goal, context=tree)

    plan = anyio.run(ask)
    typer.echo(f"forge: {model} planned {len(plan.tasks)} task(s):", err=True)
    for task in plan.tasks:
        after = f" (after: {', '.join(task.after)})" if task.after else ""
        files = f" (files: {', '.join(task.files)})" if task.files else ""
        typer.echo(printable(f"  - [ ] {task.id}: {task.title}{files}{after}"), err=True)
    if yes:
        return plan
    if not sys.stdin.isatty():
        raise UsageError("a model-written plan runs only once confirmed: add --yes to run it")
    if not typer.confirm("Run this plan?", err=True):
        raise typer.Exit(0)
    return plan


def _empty() -> Milestone:
    from forge.planning.milestone import Milestone

    return Milestone("resumed run", ())


# -- --dry-run ---------------------------------------------------------------------------------


def _dry_run(
    plan: Milestone, options: RunOptions, config_path: Path | None, json_output: bool
) -> None:
    from forge.commands.output import console, print_json, usd
    from forge.config import load_config
    from forge.ledger import Ledger
    from forge.planning.graph import critical_path, levels, task_graph
    from forge.planning.routes import route_plan
    from forge.routing.analysis import analyse
    from forge.routing.codebase import codebase_at
    from forge.routing.decision import Router
    from forge.routing.fleet import load_fleet

    config = load_config(config_path).config
    ledger = Ledger.configured(config)
    codebase = codebase_at(Path.cwd())
    repo = str(codebase.root if codebase else Path.cwd().resolve())
    router = Router(load_fleet(config, ledger, repo))
    router.check(options.pins)
    pending = plan.pending()
    analyses = [analyse(t.text, codebase=codebase, files=t.files) for t in pending]
    routes = route_plan(plan, analyses, router, options.pins)
    graph = task_graph(plan)
    worst = {tid: d.estimate.worst_case_usd for tid, d in routes.decisions.items()}
    path = critical_path(graph, lambda tid: 0.0 if plan.task(tid).done else 1.0)
    path = [tid for tid in path if not plan.task(tid).done]
    totals = routes.totals()
    if json_output:
        print_json(
            routes.to_json()
            | {"levels": levels(graph), "critical_path": path, "run": None, "dry_run": True}
        )
        return
    out = console()
    for number, level in enumerate(levels(graph), 1):
        out.print(f"[bold]level {number}[/] ({len(level)} task(s) at once)")
        for tid in level:
            task = plan.task(tid)
            after = f" after {', '.join(task.after)}" if task.after else ""
            if task.done:
                out.print(f"  {tid}: {task.title} — done{after}")
                continue
            decision = routes.decisions[tid]
            first = decision.first
            model = f"{first.rung}/{first.model}" if first.model else f"{first.rung} (no model)"
            estimate = decision.estimate
            out.print(
                f"  {tid}: {task.title}{after}\n"
                f"      {decision.analysis.type}, {decision.analysis.band} -> {model}; "
                f"first attempt {usd(estimate.first_attempt_usd)}, worst case {usd(worst[tid])}"
            )
    out.print(f"critical path: {' -> '.join(path) or 'none'} ({len(path)} task(s))")
    budget = usd(totals.budget_left_usd) if totals.budget_left_usd is not None else "no limit"
    run_budget = config.cost.run_budget_usd
    per_run = f"; run_budget_usd {usd(run_budget)}" if run_budget is not None else ""
    out.print(
        f"estimate: first attempts {usd(totals.first_attempts_usd)}, worst case "
        f"{usd(totals.worst_case_usd)}; budget left today {budget}{per_run}"
    )


def _resume_command(run_id: str, config: Path | None) -> str:
    again = f"forge run-milestone --resume {run_id}"
    if config is not None:
        again += f" -c {shlex.quote(str(config))}"
    return again


# -- progress ----------------------------------------------------------------------------------


class _View:
    """One plain line per event, or a Rich live table of tasks on a terminal."""

    def __init__(self, json_output: bool) -> None:
        import sys

        self.live_table: LiveTasks | None = None
        self.run_id: str | None = None  # once the run has started
        self.terminal = sys.stderr.isatty()
        self.json_output = json_output

    def start(self, run_id: str, plan: Milestone, budget: Decimal | None) -> None:
        self.run_id = run_id
        typer.echo(f"forge: run {run_id} ({len(plan.tasks)} task(s))", err=True)
        if self.terminal:
            from forge.commands.run_view import LiveTasks

            self.live_table = LiveTasks(plan, budget)
            self.live_table.start()

    def event(self, event: TaskEvent | RunEvent) -> None:
        if self.live_table is not None:
            self.live_table.update(event)
            return
        from forge.execution.engine import TaskEvent

        if isinstance(event, TaskEvent):
            if event.stage in ("failed", "stopped"):
                return  # the run's own line for the task says the same
            where = f" [{event.rung}/{event.model}]" if event.model else ""
            line = f"{event.task_id}{where} {event.stage}: {event.message}"
        else:
            line = f"{event.task_id} {event.state}: {event.message}"
        typer.echo(printable(line), err=True)

    def stop(self) -> None:
        if self.live_table is not None:
            self.live_table.stop()
            self.live_table = None


# -- the report --------------------------------------------------------------------------------


def _render(result: RunResult) -> None:
    from rich.text import Text

    from forge.commands.output import console, usd
    from forge.commands.tables import Column, FittedTable
    from forge.execution.report import totals

    out = console()
    outcome = result.outcome
    colours = {"done": "green", "failed": "red", "stopped": "yellow"}
    out.print(f"run {result.run_id}: [{colours.get(outcome.state, 'white')}]{outcome.state}[/]")
    if result.dirty:
        out.print("note: your uncommitted changes are not part of the base and were left alone")
    table = FittedTable(
        Column("task"),
        Column("state"),
        Column("tiers tried", drop=2),
        Column("attempts", drop=1),
        Column("cost", drop=3),  # the total follows the table
        Column("time", drop=0),
        Column("why", prose=True),
    )
    records = list(outcome.records.values())
    for record in records:
        seconds = f"{record.seconds:.1f}s" if record.seconds is not None else "-"
        table.add_row(
            record.task.id,
            record.state,
            " -> ".join(record.rungs) or "-",
            str(record.attempts),
            usd(record.cost),
            seconds,
            record.reason[:100],
        )
    out.print(table)
    for record in records:
        last = record.outcomes[-1] if record.outcomes else None
        if record.state == "done" and last and last.review:
            title = (f"{record.task.id}: review before merging:", "bold yellow")
            out.print(Text.assemble(title, " " + ", ".join(last.review)))
        if record.state == "failed" and last and last.last_findings:
            out.print(f"[bold]{record.task.id}[/]: last findings")
            out.print(Text(printable(last.last_findings)), highlight=False)
    summed = totals(result)
    top = summed.top_tier
    compared = f" (the same work at the top tier: {usd(top)})" if top is not None else ""
    share = ", ".join(f"{t} {n}" for t, n in summed.finished_per_tier.items()) or "none"
    done = summed.states.get("done", 0)
    out.print(f"tasks: {done} of {summed.tasks} done; finished per tier: {share}")
    out.print(f"cost: {usd(summed.cost)}{compared}")
    if outcome.stop_reason:
        out.print(f"stopped by the budget: {outcome.stop_reason}")
    if outcome.branch:
        out.print(f"branch to review: [bold]{outcome.branch}[/] ({(outcome.head or '')[:10]})")
    else:
        out.print("nothing was merged, so no branch was made")


def _apply(result: RunResult) -> None:
    from forge.execution.apply import fast_forward

    outcome = result.outcome
    message = fast_forward(result.repo, outcome.branch, state=outcome.state, base=outcome.base)
    typer.echo(printable(f"forge: {message}"), err=True)
