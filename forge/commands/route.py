"""`forge route`: analyse a task, choose its tier and model, explain why, estimate the cost.

Nothing is sent to a model unless `--classifier model` is asked for.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from forge.commands.options import ConfigOption, FileOption, JsonOption

if TYPE_CHECKING:
    from forge.config import ForgeConfig
    from forge.ledger import Ledger
    from forge.planning.routes import PlanRoutes
    from forge.routing.analysis import TaskAnalysis
    from forge.routing.codebase import Codebase
    from forge.routing.decision import Pins, RouteDecision, Router


class Classifier(StrEnum):
    heuristic = "heuristic"
    model = "model"


def route(
    task: Annotated[
        str | None,
        typer.Argument(help="The task; @PATH reads a file, '-' (or a pipe) reads stdin."),
    ] = None,
    file: FileOption = None,
    milestone: Annotated[
        Path | None,
        typer.Option("--milestone", help="Route every task of a milestone file (.md or .toml)."),
    ] = None,
    batch: Annotated[
        Path | None,
        typer.Option(
            "--batch", help='Route each {"id", "text"} line of a JSONL file; print JSON lines.'
        ),
    ] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="Start on this tier.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Start on this model.")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Worker processes for --batch (default: one per CPU).",
            show_default=False,
        ),
    ] = None,
    classifier: Annotated[
        Classifier,
        typer.Option(
            "--classifier",
            help="heuristic (default, no model call) or model (asks local_models.router).",
        ),
    ] = Classifier.heuristic,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what forge would do with a task: type, complexity, tier, model, escalation, cost.

    Calls no model unless --classifier model is given. The --json shape is documented in
    forge/routing/report.py. Exit codes: 0 ok, 2 bad input or configuration (unknown --tier or
    --model, unreadable file, bad milestone).
    """
    from forge.errors import UsageError

    modes = [m for m in (file or task is not None, milestone, batch) if m]
    if len(modes) > 1:
        raise UsageError("give one of: a TASK (or --file), --milestone, --batch")
    if batch is not None and classifier is Classifier.model:
        raise UsageError("--classifier model is not available with --batch (one call per line)")
    session = _Session.open(config, tier, model, classifier is Classifier.model)
    if batch is not None:
        _route_batch(session, batch, jobs)
    elif milestone is not None:
        _route_milestone(session, milestone, json_output)
    else:
        _route_one(session, _task_text(task, file), json_output)


class _Session:
    """What every task of one invocation shares: config, ledger, repository, router."""

    def __init__(
        self,
        config: ForgeConfig,
        ledger: Ledger,
        codebase: Codebase | None,
        router: Router,
        pins: Pins,
        use_model: bool,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.codebase = codebase
        self.router = router
        self.pins = pins
        self.use_model = use_model

    @classmethod
    def open(
        cls, config_path: Path | None, tier: str | None, model: str | None, use_model: bool
    ) -> _Session:
        from forge.config import load_config
        from forge.ledger import Ledger
        from forge.routing.classifier import router_model
        from forge.routing.codebase import codebase_at
        from forge.routing.decision import Pins, Router
        from forge.routing.fleet import load_fleet

        config = load_config(config_path).config
        if use_model:
            router_model(config)  # no router configured: a usage error before any work
        ledger = Ledger.configured(config)
        codebase = codebase_at(Path.cwd())
        repo = str(codebase.root if codebase else Path.cwd().resolve())
        router = Router(load_fleet(config, ledger, repo))
        pins = Pins(tier=tier, model=model)
        router.check(pins)
        return cls(config, ledger, codebase, router, pins, use_model)

    def analyse(self, texts: list[tuple[str, tuple[str, ...]]]) -> list[TaskAnalysis]:
        """Analyses of (text, files) pairs, classified by the router model when asked."""
        from forge.routing.analysis import analyse

        found = [analyse(t, codebase=self.codebase, files=files) for t, files in texts]
        if self.use_model and found:
            from forge.routing.classifier import classify

            found = classify(self.config, self.ledger, found)
        return found


# -- one task ------------------------------------------------------------------------------


def _task_text(task: str | None, file: Path | None) -> str:
    from forge.commands.options import given_text

    usage = 'give a task: forge route "TASK", --file PATH, @PATH, or pipe it on stdin'
    return given_text(task, file, what="task", usage=usage)


def _route_one(session: _Session, text: str, json_output: bool) -> None:
    from forge.routing.report import decision_json, explain, subtask_json

    (analysis,) = session.analyse([(text, ())])
    decision = session.router.decide(analysis, session.pins)
    parts = [
        (s.index, s.after, session.router.decide(s.analysis, session.pins))
        for s in analysis.subtasks
    ]
    if json_output:
        from forge.commands.output import print_json

        print_json(decision_json(decision) | {"subtasks": [subtask_json(*p) for p in parts]})
        return
    import sys

    # Plain lines need no terminal library; Rich loads only for the table of subtasks.
    first_line = text.strip().splitlines()[0]
    sys.stdout.write(f"Task: {first_line[:120]}\n")
    sys.stdout.write("".join(f"  {line}\n" for line in explain(decision)))
    if parts:
        from forge.commands.output import console

        console().print(_subtask_table(parts))


def _subtask_table(parts: list[tuple[int, tuple[int, ...], RouteDecision]]) -> Any:
    from forge.commands.tables import Column, FittedTable
    from forge.routing.estimate import money

    table = FittedTable(
        Column("#"),
        Column("after", drop=1),
        Column("part", prose=True),
        Column("type", drop=2),
        Column("band", drop=0),
        Column("tier", drop=3),
        Column("model"),
        Column("first attempt"),
        title="Subtasks",
    )
    for index, after, d in parts:
        table.add_row(
            str(index + 1),
            ", ".join(str(a + 1) for a in after) or "-",
            d.analysis.text,
            d.analysis.type,
            d.analysis.band,
            d.first.rung,
            d.first.model or "-",
            money(d.estimate.first_attempt_usd) if d.first.model else "-",
        )
    return table


# -- a milestone ---------------------------------------------------------------------------


def _route_milestone(session: _Session, path: Path, json_output: bool) -> None:
    from forge.planning.milestone import load_milestone
    from forge.planning.routes import route_plan

    plan = load_milestone(path)
    pending = plan.pending()
    analyses = session.analyse([(t.text, t.files) for t in pending])
    routes = route_plan(plan, analyses, session.router, session.pins)
    if json_output:
        from forge.commands.output import print_json

        print_json(routes.to_json())
        return
    _render_milestone(routes)


def _render_milestone(routes: PlanRoutes) -> None:
    from forge.commands.output import console
    from forge.commands.tables import Column, FittedTable
    from forge.routing.estimate import money

    table = FittedTable(
        Column("id"),
        Column("after", drop=3),
        Column("type", drop=2),
        Column("band", drop=0),
        Column("quality", drop=1),
        Column("tier", drop=4),
        Column("model"),
        Column("first"),
        Column("worst"),
        title=f"Milestone {routes.plan.source}",
    )
    for t in routes.plan.tasks:
        d = routes.decisions.get(t.id)
        if d is None:
            table.add_row(t.id, ", ".join(t.after) or "-", "done", "", "", "", "", "", "")
            continue
        e = d.estimate
        table.add_row(
            t.id,
            ", ".join(t.after) or "-",
            d.analysis.type,
            d.analysis.band,
            d.analysis.quality,
            d.first.rung,
            d.first.model or "-",
            money(e.first_attempt_usd) if d.first.model else "-",
            money(e.worst_case_usd) + ("+" if e.unpriced else "") if d.first.model else "-",
        )
    out = console()
    out.print(table)
    out.print(_totals_line(routes), markup=False)


def _totals_line(routes: PlanRoutes) -> str:
    from forge.routing.estimate import money

    totals = routes.totals()
    left = totals.budget_left_usd
    line = (
        f"Total for {len(routes.decisions)} tasks: first attempts "
        f"{money(totals.first_attempts_usd)}, worst case {money(totals.worst_case_usd)}, "
        f"budget left today {'no daily limit' if left is None else money(left)}"
    )
    if totals.unpriced_models:
        line += f"; unpriced (not in the totals): {', '.join(totals.unpriced_models)}"
    if totals.tasks_without_model:
        line += f"; no usable model for: {', '.join(totals.tasks_without_model)}"
    return line


# -- a batch -------------------------------------------------------------------------------


def _route_batch(session: _Session, path: Path, jobs: int | None) -> None:
    """One JSON decision per input line; a bad line gets an error object, not a crash."""
    import sys

    from forge.errors import UsageError
    from forge.routing.batch import BatchRouter, default_workers, route_lines

    try:
        stream = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
        with stream:
            lines = stream.readlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the batch file {path}: {exc}") from None
    batch = BatchRouter(session.router, session.codebase, session.pins)
    workers = jobs if jobs is not None else default_workers(len(lines), sum(map(len, lines)))
    write = sys.stdout.write
    for line in route_lines(batch, lines, workers):
        write(line + "\n")
