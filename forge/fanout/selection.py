"""Which models a fan-out asks: `-m a,b,c`, `--tier NAME`, `--all`, capped by `-n`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forge.config.schema import ForgeConfig
from forge.errors import UsageError
from forge.ledger.store import Ledger
from forge.providers.client import ModelClient
from forge.providers.types import Target


@dataclass(frozen=True)
class Selection:
    models: tuple[str, ...] = ()  # aliases or provider/model-id, in the order given
    tiers: tuple[str, ...] = ()
    every: bool = False  # --all: every configured and discovered model
    cap: int | None = None  # -n


def select(config: ForgeConfig, selection: Selection, ledger: Ledger | None = None) -> list[Target]:
    """The targets, each once, in the order asked; an unknown name is a usage error.

    With no models, tiers or --all, the `[fanout]` defaults of forge.toml are asked."""
    if not (selection.models or selection.tiers or selection.every):
        selection = _configured(config, selection)
    refs = list(selection.models)
    for tier in selection.tiers:
        found = config.models_in(tier)
        if not found:
            known = ", ".join(sorted(config.tier_names())) or "none configured"
            raise UsageError(f"no model is in tier {tier!r} (tiers: {known})")
        refs += found
    if selection.every:
        refs += list(config.models) + _discovered(config, ledger)
    if not refs:
        raise UsageError(_how_to_choose(config))
    targets = _resolve(config, refs)
    return targets[: selection.cap] if selection.cap else targets


def _configured(config: ForgeConfig, selection: Selection) -> Selection:
    defaults = config.fanout
    tiers = (defaults.tier,) if defaults.tier else ()
    return Selection(tuple(defaults.models), tiers, False, selection.cap)


def _how_to_choose(config: ForgeConfig) -> str:
    """The error when no model is chosen, with the TOML that would choose them for next time."""
    aliases = list(config.models)[:3] or ["MODEL", "OTHER"]
    tiers = sorted(config.tier_names())
    listed = ", ".join(f'"{a}"' for a in aliases)
    return (
        "choose the models to ask: -m a,b,c, --tier NAME or --all; or name the ones to ask by "
        "default in forge.toml:\n\n"
        f"[fanout]\nmodels = [{listed}]\n"
        f'# or every model of a tier: tier = "{tiers[0] if tiers else "free"}"'
    )


def split_names(values: Sequence[str]) -> tuple[str, ...]:
    """`-m a,b -m c` and `-m "a, b"` both mean a, b, c."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _resolve(config: ForgeConfig, refs: list[str]) -> list[Target]:
    client = ModelClient(config)  # only its name resolution: nothing is opened
    seen: set[tuple[str, str]] = set()
    targets = []
    for ref in refs:
        target = client.resolve(ref)
        if (target.provider, target.model_id) in seen:
            continue
        seen.add((target.provider, target.model_id))
        targets.append(target)
    return targets


def _discovered(config: ForgeConfig, ledger: Ledger | None) -> list[str]:
    """Models the providers listed (`forge models --discover`) that no alias already names."""
    if ledger is None:
        return []
    configured = {(m.provider, m.id) for m in config.models.values()}
    return [
        f"{provider}/{info['id']}"
        for provider, models in ledger.discovered().items()
        if provider in config.providers
        for info in models
        if (provider, str(info["id"])) not in configured
    ]
