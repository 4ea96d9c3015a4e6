"""`forge runs`: the runs in the ledger, newest first, with their state.

`--json` prints `{"runs": [...]}`; forge.execution.stats documents an entry's shape.
"""

from __future__ import annotations

from typing import Annotated

import typer

from forge.commands.options import ConfigOption, JsonOption


def runs(
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many runs.")] = 20,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """List runs, newest first: state, start, duration, source, tasks and cost.

    A run that was interrupted or crashed can be continued with its id.
    """
    import time

    from rich.text import Text

    from forge.commands.output import console, print_json, usd
    from forge.commands.tables import Column, FittedTable
    from forge.config import load_config
    from forge.execution.stats import list_runs
    from forge.ledger import Ledger

    ledger = Ledger.configured(load_config(config).config)
    try:
        found = list_runs(ledger, count)
    finally:
        ledger.close()
    if json_output:
        print_json({"runs": [r.as_json() for r in found]})
        return
    out = console()
    if not found:
        out.print("no runs yet")
        return
    table = FittedTable(
        Column("run"),
        Column("state"),
        Column("started", drop=1),
        Column("duration", drop=0),
        Column("source", drop=2),
        Column("done/failed/skipped/total", drop=3),
        Column("cost"),
        title="Runs (newest first)",
    )
    for r in found:
        t = r.tasks
        unpriced = f" (+{r.unpriced_calls} unpriced)" if r.unpriced_calls else ""
        table.add_row(
            r.run_id,
            r.state,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started_at)),
            _duration(r.duration_s),
            Text(r.source or "-"),  # a path, never read as markup
            f"{t['done']}/{t['failed']}/{t['skipped']}/{t['total']}",
            usd(r.cost_usd) + unpriced,
        )
    out.print(table)


def _duration(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"
