"""`forge cost`: today's and this month's spend by provider, model and tier, against budget."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption, JsonOption

if TYPE_CHECKING:
    from forge.ledger.store import AttemptRow, Ledger


class By(StrEnum):
    PROVIDER = "provider"
    MODEL = "model"
    TIER = "tier"
    USER = "user"


def cost(
    config: ConfigOption = None,
    by: Annotated[
        list[By] | None,
        typer.Option(
            "--by", help="Group by this only (repeat for more); `user`: a team's spend per person."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Spend today and this month, grouped by provider, model and tier, against the budget.

    On a team's shared ledger the budget line is the day of `[cost] scope`: yours, or the team's.
    """
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
    ledger.close()
    whose = _whose(ledger, cfg.cost.scope)
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
        "ledger": ledger.where,
        "budget_of": whose,
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
        (f"Today ({whose}): " if ledger.shared else "Today: ")
        + f"{usd(spend.settled)} spent, {usd(spend.held)} held by calls in flight"
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
        for group in by or list(By):
            if group is By.USER and not by and not ledger.shared:
                continue  # one person's ledger: the user rows would repeat the total
            for name, g in groups[group].items():
                table.add_row(
                    group.value,
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
    groups: dict[str, dict[str, Tally]] = {by.value: {} for by in By}
    for r in rows:
        if r.outcome == "refused":
            continue
        names = {
            "provider": r.provider,
            "model": r.model,
            "tier": r.tier or "-",
            "user": r.username or "-",
        }
        for by, name in names.items():
            groups[by].setdefault(name, Tally()).add(r)
    return groups


def _whose(ledger: Ledger, scope: str) -> str:
    """Whose day the budget line counts: this person's, or a shared ledger's team's."""
    if not ledger.shared:
        return "this machine"
    if scope == "team":
        return "the team"
    from forge.ledger.store import user_name

    return user_name()


def _as_json(groups: dict[str, dict[str, Tally]]) -> dict[str, dict[str, dict[str, object]]]:
    from dataclasses import asdict

    return {
        by: {name: asdict(t) | {"cost_usd": str(t.cost_usd)} for name, t in tallies.items()}
        for by, tallies in groups.items()
    }
