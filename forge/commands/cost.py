"""`forge cost`: today's and this month's spend by provider, model and tier, against budget."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from forge.commands.options import ConfigOption, JsonOption

if TYPE_CHECKING:
    from forge.ledger.store import AttemptRow


def cost(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Spend today and this month, grouped by provider, model and tier, against the budget."""
    import time

    from forge.commands.output import console, print_json, usd
    from forge.config import load_config
    from forge.ledger import Ledger

    cfg = load_config(config).config
    ledger = Ledger.configured(cfg)
    month_start = time.mktime((*time.localtime()[:2], 1, 0, 0, 0, 0, 0, -1))
    month = ledger.attempts(limit=None, since=month_start)
    day = time.strftime("%Y-%m-%d")
    today = [r for r in month if time.strftime("%Y-%m-%d", time.localtime(r.started_at)) == day]
    spend = ledger.spend_today()
    budget = {
        "daily_budget_usd": cfg.cost.daily_budget_usd,
        "warn_threshold_usd": cfg.cost.daily_warn,
        "stop_threshold_usd": cfg.cost.daily_stop,
        "spent_today_usd": spend.settled,
        "held_by_calls_in_flight_usd": spend.held,
        "left_today_usd": None
        if cfg.cost.daily_stop is None
        else max(Decimal(0), cfg.cost.daily_stop - spend.settled - spend.held),
    }
    report = {
        "budget": {k: None if v is None else str(v) for k, v in budget.items()},
        "today": _as_json(_groups(today)),
        "month": _as_json(_groups(month)),
    }
    if json_output:
        print_json(report)
        return
    from forge.commands.tables import Column, FittedTable

    out = console()
    stop = cfg.cost.daily_stop
    out.print(
        f"Today: {usd(spend.settled)} spent, {usd(spend.held)} held by calls in flight"
        + (f", stop at {usd(stop)}" if stop is not None else ", no daily limit")
        + (f", {usd(budget['left_today_usd'])} left" if stop is not None else "")
    )
    for title, rows in (("Today", today), ("This month", month)):
        groups = _groups(rows)
        table = FittedTable(
            Column("by", drop=3),
            Column("name"),
            Column("calls", drop=1),
            Column("tokens in/out", drop=0),
            Column("cost"),
            Column("unpriced calls", drop=2),
            title=title,
        )
        for by in ("provider", "model", "tier"):
            for name, g in groups[by].items():
                table.add_row(
                    by,
                    name,
                    str(g.calls),
                    f"{g.input_tokens}/{g.output_tokens}",
                    usd(g.cost_usd),
                    str(g.unpriced_calls),
                )
        out.print(table if rows else f"{title}: no calls.")


@dataclass
class Tally:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced_calls: int = 0

    def add(self, row: AttemptRow) -> None:
        self.calls += 1
        self.input_tokens += row.input_tokens or 0
        self.output_tokens += row.output_tokens or 0
        if row.status == "reserved":
            return  # in flight: `forge cost` shows what it holds in the budget line
        if row.cost_usd is None:
            self.unpriced_calls += 1  # flagged, never counted as $0
        else:
            self.cost_usd += row.cost_usd


def _groups(rows: list[AttemptRow]) -> dict[str, dict[str, Tally]]:
    groups: dict[str, dict[str, Tally]] = {"provider": {}, "model": {}, "tier": {}}
    for r in rows:
        if r.outcome == "refused":
            continue
        for by, name in (("provider", r.provider), ("model", r.model), ("tier", r.tier or "-")):
            groups[by].setdefault(name, Tally()).add(r)
    return groups


def _as_json(groups: dict[str, dict[str, Tally]]) -> dict[str, dict[str, dict[str, object]]]:
    from dataclasses import asdict

    return {
        by: {name: asdict(t) | {"cost_usd": str(t.cost_usd)} for name, t in tallies.items()}
        for by, tallies in groups.items()
    }
