"""The model catalogue: configured and discovered models with prices, health and history."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from forge.config.schema import ForgeConfig
from forge.ledger.pricing import discovered_prices, resolve_prices
from forge.ledger.store import Ledger
from forge.providers.types import Target

HISTORY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class CatalogueEntry:
    alias: str
    provider: str
    model_id: str
    tier: str | None
    configured: bool
    context_window: int | None
    input_price: Decimal | None
    output_price: Decimal | None
    price_origin: str
    calls: int
    error_rate: float | None
    median_latency: float | None
    breaker_open_for: float | None
    last_error: str | None

    def target(self) -> Target:
        return Target(self.alias, self.provider, self.model_id, self.tier)


def build_catalogue(config: ForgeConfig, ledger: Ledger) -> list[CatalogueEntry]:
    """Configured models first (in file order), then discovered ones not configured."""
    found = ledger.discovered()
    prices = discovered_prices(found)
    stats = ledger.model_stats(time.time() - HISTORY_SECONDS)
    breakers = ledger.breakers()
    windows = {(p, str(i["id"])): i.get("context_window") for p, ms in found.items() for i in ms}
    targets = [Target(a, m.provider, m.id, m.tier) for a, m in config.models.items()]
    configured = {(t.provider, t.model_id) for t in targets}
    targets += [
        Target(f"{provider}/{info['id']}", provider, str(info["id"]))
        for provider, models in found.items()
        if provider in config.providers
        for info in models
        if (provider, str(info["id"])) not in configured
    ]
    entries = []
    for target in targets:
        model = config.models.get(target.alias)
        price = resolve_prices(config, target, prices)
        stat = stats.get(target.alias)
        saved = breakers.get((target.provider, target.model_id))
        open_until, last_error = (saved.open_until, saved.last_error) if saved else (0.0, None)
        remaining = open_until - time.time()
        entries.append(
            CatalogueEntry(
                alias=target.alias,
                provider=target.provider,
                model_id=target.model_id,
                tier=target.tier,
                configured=model is not None,
                context_window=(model.context_window if model else None)
                or windows.get((target.provider, target.model_id)),
                input_price=price.input if price else None,
                output_price=price.output if price else None,
                price_origin=price.origin if price else "unpriced",
                calls=stat.calls if stat else 0,
                error_rate=stat.error_rate if stat else None,
                median_latency=stat.median_latency if stat else None,
                breaker_open_for=remaining if remaining > 0 else None,
                last_error=last_error if remaining > 0 else None,
            )
        )
    return entries
