"""`forge run-milestone`: a milestone task, or a one-sentence goal, to a validated commit.

Progress goes to stderr, one line per event; the report goes to stdout (`--json` for a machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption, JsonOption

if TYPE_CHECKING:
    from forge.execution.engine import TaskEvent
    from forge.execution.run import RunResult


def run_milestone(
    milestone: Annotated[
        Path | None,
        typer.Argument(help="A milestone file: a Markdown checklist (.md) or TOML (.toml)."),
    ] = None,
    goal: Annotated[
        str | None, typer.Option("--goal", help="Run this one-sentence goal as a task.")
    ] = None,
    task_id: Annotated[
        str | None, typer.Option("--task", help="Run this task of the milestone.")
    ] = None,
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
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run a milestone's task (or --goal) in its own worktree: ask, edit, validate, commit.

    Each attempt is validated with the project's real build, lint and test tools; a failure is
    retried with the findings, then escalated up the tier ladder. Your working tree, index and
    branch are never touched: the work lands on the branch forge/RUN/TASK.
    """
    import anyio

    from forge.errors import UsageError
    from forge.execution.run import RunOptions, goal_task, pick_task, run_task
    from forge.routing.decision import Pins

    if (milestone is None) == (goal is None):
        raise UsageError("give a milestone file or --goal TEXT (one of them)")
    if goal is not None:
        if task_id is not None:
            raise UsageError(
                "--task chooses a task of a milestone file; it does not go with --goal"
            )
        task, source = goal_task(goal), "--goal"
    else:
        from forge.planning.milestone import load_milestone

        assert milestone is not None
        task, source = pick_task(load_milestone(milestone), task_id), str(milestone)
    options = RunOptions(
        base=base,
        pins=Pins(tier=tier, model=model),
        require_green=require_green,
        strict_files=strict_files,
        keep_worktrees=keep_worktrees,
    )
    result = anyio.run(
        lambda: run_task(
            task,
            source=source,
            options=options,
            config_path=config,
            on_event=_print_event,
            on_start=lambda run_id: typer.echo(f"forge: run {run_id}", err=True),
        )
    )
    if json_output:
        from forge.commands.output import print_json
        from forge.execution.report import result_json

        print_json(result_json(result))
    else:
        _render(result)
    raise typer.Exit(int(result.outcome.exit_code))


def _print_event(event: TaskEvent) -> None:
    where = f" [{event.rung}/{event.model}]" if event.model else ""
    typer.echo(f"{event.task_id}{where} {event.stage}: {event.message}", err=True)


def _render(result: RunResult) -> None:
    from rich.table import Table

    from forge.commands.output import console, usd

    out = console()
    outcome = result.outcome
    task = outcome.task
    colour = {"done": "green", "failed": "red", "stopped": "yellow"}[outcome.state]
    out.print(f"[bold]{task.id}[/]: {task.title}")
    out.print(f"[{colour}]{outcome.state}[/]: {outcome.reason}")
    if result.dirty:
        out.print("note: your uncommitted changes are not part of the base and were left alone")
    if outcome.base_note:
        out.print(f"base: {outcome.base_note}")
    if outcome.route is not None:
        ladder = " -> ".join(outcome.route.ladder)
        out.print(f"ladder: {ladder}; tried: {', '.join(outcome.rungs) or 'none'}")
    if outcome.attempts:
        table = Table("#", "tier", "model", "outcome", "tokens in/out", "cost", "what happened")
        for a in outcome.attempts:
            repairs = f" (+{a.repairs} repair)" if a.repairs else ""
            table.add_row(
                str(a.number),
                a.rung,
                a.model,
                a.outcome + repairs,
                f"{a.input_tokens}/{a.output_tokens}",
                usd(a.cost),
                a.headline[:120],
            )
        out.print(table)
    out.print(f"cost: {usd(outcome.cost)}")
    if outcome.state == "done":
        out.print(f"branch to review: [bold]{outcome.branch}[/] (commit {outcome.commit})")
    elif outcome.last_findings:
        out.print("last findings:")
        out.print(outcome.last_findings, markup=False, highlight=False)
    if outcome.worktree:
        out.print(f"worktree kept at {outcome.worktree}")
