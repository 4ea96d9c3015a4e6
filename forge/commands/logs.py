"""`forge logs`: the most recent model attempts from the ledger."""

from __future__ import annotations

from typing import Annotated

import typer

from forge.commands.options import ConfigOption, JsonOption


def logs(
    config: ConfigOption = None,
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many attempts.")] = 20,
    model: Annotated[str | None, typer.Option("--model", help="Only this model alias.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Show recent model attempts: tokens, latency, cost and outcome."""
    import time
    from dataclasses import asdict

    from forge.commands.output import console, print_json, seconds, usd
    from forge.config import load_config
    from forge.ledger import Ledger
    from forge.printable import printable

    ledger = Ledger.configured(load_config(config).config)
    try:
        rows = ledger.attempts(limit=count, model=model, run_id=run)
    finally:
        ledger.close()
    if json_output:
        print_json({"attempts": [asdict(r) | {"cost_usd": _text(r.cost_usd)} for r in rows]})
        return
    out = console()
    if not rows:
        out.print("No model calls recorded yet.")
        return
    from rich.text import Text

    from forge.commands.tables import Column, FittedTable

    # A narrow terminal keeps which model, what came of it, its cost and its error.
    table = FittedTable(
        Column("when", drop=5),
        Column("run", drop=3),
        Column("model"),
        Column("tier", drop=2),
        Column("outcome", drop=6),
        Column("in/out tok", drop=1),
        Column("ttft", drop=0),
        Column("latency", drop=4),
        Column("cost"),
        Column("error", prose=True),
        title="Recent attempts (newest first)",
    )
    for r in rows:
        outcome = r.outcome or "in flight"
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(r.started_at)),
            r.run_id or "-",
            Text(printable(r.model)),
            r.tier or "-",
            outcome if not r.error_kind else f"{outcome} ({r.error_kind})",
            f"{r.input_tokens or 0}/{r.output_tokens or 0}",
            seconds(r.ttft_s),
            seconds(r.latency_s),
            usd(r.cost_usd, r.cost_source) if r.outcome != "refused" else "-",
            Text(printable((r.error or "")[:200])),  # provider text, never read as markup
        )
    out.print(table)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
