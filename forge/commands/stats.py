"""`forge stats`: how past runs went, and what that says about the ladder.

The numbers come from forge.execution.stats; its docstring documents the `--json` shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption, JsonOption

if TYPE_CHECKING:
    from rich.console import Console

    from forge.execution.stats import Stats


def stats(
    run: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only runs started on or after this day (YYYY-MM-DD)."),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """First-attempt success, escalation, work per tier, each model's record, and the savings.

    Over every run in the ledger, one run (--run) or the runs since a day (--since). The best
    model per task type is suggested for `[tiers]`; the cost is set against the same work priced
    at the top tier of the ladder.
    """
    from forge.commands.output import console, print_json
    from forge.config import load_config
    from forge.execution.stats import Scope, day_start, gather
    from forge.ledger import Ledger

    if since is not None:
        day_start(since)  # a bad date is a usage error before anything is read
    cfg = load_config(config).config
    ledger = Ledger.configured(cfg)
    try:
        found = gather(ledger, Scope(run_id=run, since_day=since), cfg)
    finally:
        ledger.close()
    if json_output:
        print_json(found.as_json())
        return
    out = console()
    if not found.runs:
        out.print(f"no runs since {since}" if since else "no runs yet")
        return
    _render(out, found)


def _render(out: Console, found: Stats) -> None:
    scope = found.scope
    where = (
        f"run {scope.run_id}"
        if scope.run_id
        else f"{found.runs} run(s) since {scope.since_day}"
        if scope.since_day
        else f"{found.runs} run(s)"
    )
    t = found.tasks
    out.print(f"Stats over {where}", markup=False)
    out.print(
        f"tasks: {t.total} ({t.done} done, {t.failed} failed, {t.skipped} skipped"
        + (f", {t.other} stopped or unfinished" if t.other else "")
        + ")"
    )
    first = _pc(t.first_attempt_rate)
    out.print(f"finished on the first attempt: {t.first_attempt} of {t.ran} that ran{first}")
    out.print(f"escalated: {t.escalated} of {t.ran}{_pc(t.escalation_rate)}")
    _tiers(out, found)
    _models(out, found)
    _recommendations(out, found)
    _cost(out, found)


def _pc(rate: float | None) -> str:
    return "" if rate is None else f" ({rate:.0%})"


def _share(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _tiers(out: Console, found: Stats) -> None:
    from forge.commands.tables import Column, FittedTable

    if not found.tiers:
        return
    table = FittedTable(
        Column("tier"),
        Column("tasks finished"),
        Column("share", drop=2),
        Column("attempts", drop=1),
        Column("share of attempts", drop=0),
        title="Work per tier",
    )
    for tier in found.tiers:
        table.add_row(
            tier.tier,
            str(tier.tasks_finished),
            _share(tier.task_share),
            str(tier.attempts),
            _share(tier.attempt_share),
        )
    out.print(table)


def _models(out: Console, found: Stats) -> None:
    from forge.commands.output import seconds, usd
    from forge.commands.tables import Column, FittedTable

    if not found.models:
        return
    table = FittedTable(
        Column("model"),
        Column("tier", drop=2),
        Column("calls", drop=3),
        Column("success", drop=6),
        Column("latency p50", drop=4),
        Column("p95", drop=1),
        Column("tokens in/out", drop=0),
        Column("cost"),
        Column("attempts passed", drop=5),
        title="Models",
    )
    for m in found.models:
        cost = usd(m.cost_usd) + (f" (+{m.unpriced_calls} unpriced)" if m.unpriced_calls else "")
        table.add_row(
            m.model,
            m.tier or "-",
            str(m.calls),
            _share(m.success_rate),
            seconds(m.latency_p50_s),
            seconds(m.latency_p95_s),
            f"{m.input_tokens}/{m.output_tokens}",
            cost,
            f"{m.passed}/{m.attempts}{_pc(m.pass_rate)}" if m.attempts else "-",
        )
    out.print(table)


def _recommendations(out: Console, found: Stats) -> None:
    from forge.commands.output import usd
    from forge.execution.stats import MIN_ATTEMPTS_TO_RECOMMEND

    if not found.recommendations:
        out.print(
            "no recommendation for [tiers] yet: no model has passed a task type in "
            f"{MIN_ATTEMPTS_TO_RECOMMEND} or more attempts",
            markup=False,
        )
        return
    out.print("best models per task type, for [tiers]:", markup=False)
    for r in found.recommendations:
        ladder = ", ".join(f'"{rung}"' for rung in r.ladder)
        if len(r.ladder) == 1:
            ladder += ", ..."
        out.print(
            f"  {r.task_type}: {r.model} passed {r.passed}/{r.attempts} ({r.pass_rate:.0%}) "
            f"at {usd(r.cost_per_attempt_usd)} per attempt -> consider "
            f"{r.task_type} = [{ladder}]",
            markup=False,
        )


def _cost(out: Console, found: Stats) -> None:
    from forge.commands.output import usd

    c = found.cost
    unpriced = f", {c.unpriced_attempts} attempt(s) unpriced" if c.unpriced_attempts else ""
    if not c.finished_tasks:
        out.print(f"cost {usd(c.work_usd)}{unpriced}; no finished work to compare", markup=False)
    elif c.top_tier_usd is None:
        out.print(f"cost {usd(c.work_usd)}{unpriced}; top tier unpriced", markup=False)
    else:
        saved = "" if c.saved is None else f" (saved {c.saved:.0%})"
        out.print(
            f"cost {usd(c.work_usd)}{unpriced}; the {c.finished_tasks} finished task(s) "
            f"{usd(c.finished_usd)} vs {usd(c.top_tier_usd)} at the top tier{saved}"
            f"; top tier {c.top_tier} priced as {c.top_model}",
            markup=False,
        )
    if c.total_usd != c.work_usd or c.unpriced_calls:
        calls = f", {c.unpriced_calls} call(s) unpriced" if c.unpriced_calls else ""
        out.print(f"all model calls of these runs: {usd(c.total_usd)}{calls}")
