"""The models a route can use, and what the ledger says about them right now.

Read once (a handful of queries) and then consulted for every task, so routing a batch of
thousands of tasks touches the ledger once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from forge.config.schema import ForgeConfig
from forge.ledger.pricing import Prices, discovered_prices, resolve_prices
from forge.ledger.store import Ledger
from forge.providers.accounting import Target
from forge.routing.history import HistoryRates

PREMIUM_TIER = "premium"
LONG_CONTEXT = "long_context"
LATENCY_WINDOW_SECONDS = 7 * 24 * 3600
LOAD_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class ModelFacts:
    alias: str
    provider: str
    model_id: str
    tier: str | None
    context_window: int | None
    max_output_tokens: int | None
    long_context: bool
    prices: Prices | None

    @property
    def premium(self) -> bool:
        return self.tier == PREMIUM_TIER


@dataclass(frozen=True)
class Fleet:
    config: ForgeConfig
    models: Mapping[str, ModelFacts]
    now: float = field(default_factory=time.time)
    # alias -> (open until, last error) for breakers still open
    open_breakers: Mapping[str, tuple[float, str | None]] = field(default_factory=dict)
    sent_by_provider: Mapping[str, int] = field(default_factory=dict)
    attempts_today: Mapping[str, int] = field(default_factory=dict)
    attempts_last_minute: Mapping[str, int] = field(default_factory=dict)
    median_latency: Mapping[str, float] = field(default_factory=dict)
    premium_calls_today: int = 0
    spent_today: Decimal = Decimal(0)
    held_today: Decimal = Decimal(0)
    history: HistoryRates = field(default_factory=HistoryRates)

    @property
    def budget_left(self) -> Decimal | None:
        stop = self.config.cost.daily_stop
        if stop is None:
            return None
        return max(Decimal(0), stop - self.spent_today - self.held_today)

    def quota(self, provider: str) -> tuple[int, int] | None:
        """(sent today, requests_per_day) when the provider has a daily quota."""
        limit = self.config.providers[provider].requests_per_day
        return None if limit is None else (self.sent_by_provider.get(provider, 0), limit)

    def premium_limit_reached(self) -> bool:
        limit = self.config.cost.max_premium_calls_per_day
        return limit is not None and self.premium_calls_today >= limit


def model_facts(
    config: ForgeConfig,
    discovered: Mapping[str, list[dict[str, Any]]] | None = None,
) -> dict[str, ModelFacts]:
    """Every configured model with its prices (forge.toml, discovery, pricing library)."""
    found = discovered or {}
    prices = discovered_prices(found)
    windows = {
        (p, str(i.get("id"))): i.get("context_window") for p, ms in found.items() for i in ms
    }
    facts = {}
    for alias, model in config.models.items():
        target = Target(alias, model.provider, model.id, model.tier)
        window = model.context_window or windows.get((model.provider, model.id))
        facts[alias] = ModelFacts(
            alias=alias,
            provider=model.provider,
            model_id=model.id,
            tier=model.tier,
            context_window=window if isinstance(window, int) else None,
            max_output_tokens=model.max_output_tokens,
            long_context=LONG_CONTEXT in model.capabilities,
            prices=resolve_prices(config, target, prices),
        )
    return facts


def load_fleet(config: ForgeConfig, ledger: Ledger | None, repo: str) -> Fleet:
    """The fleet as the ledger sees it now; without a ledger, a fresh day with no history."""
    if ledger is None:
        return Fleet(config, model_facts(config))
    from forge.routing.history import RouteHistory

    now = time.time()
    facts = model_facts(config, ledger.discovered())
    # Breakers are kept per (provider, model id): every alias of that model is cooling.
    cooling = {key: (b.open_until, b.last_error) for key, b in ledger.breakers().items()}
    breakers = {
        m.alias: cooling[(m.provider, m.model_id)]
        for m in facts.values()
        if cooling.get((m.provider, m.model_id), (0.0, None))[0] > now
    }
    today = ledger.attempts(limit=None, since=_start_of_day(now))
    sent = [r for r in today if r.outcome != "refused"]
    spend = ledger.spend_today()
    stats = ledger.model_stats(now - LATENCY_WINDOW_SECONDS)
    return Fleet(
        config=config,
        models=facts,
        now=now,
        open_breakers=breakers,
        sent_by_provider=dict(spend.sent_by_provider),
        attempts_today=Counter(r.model for r in sent),
        attempts_last_minute=Counter(
            r.model for r in sent if r.started_at >= now - LOAD_WINDOW_SECONDS
        ),
        median_latency={a: s.median_latency for a, s in stats.items() if s.median_latency},
        premium_calls_today=sum(1 for r in sent if r.tier == PREMIUM_TIER),
        spent_today=spend.settled,
        held_today=spend.held,
        history=RouteHistory(ledger).rates(repo),
    )


def _start_of_day(now: float) -> float:
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
