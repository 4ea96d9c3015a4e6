"""The starter configuration `forge init` writes: what is running here and which keys are set.

Only the NAME of a key variable ever goes into the result; its value is never read beyond
"is it set", so a starter file can be committed safely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from forge.config.presets import (
    KEYED_PRESETS,
    OLLAMA,
    PresetModel,
    ProviderPreset,
    ollama_base_url,
)

# Cheapest first: the ladder keeps this order and drops the tiers nothing was found for.
TIER_ORDER = ("local", "free", "cheap", "premium")
DAILY_BUDGET_USD = 5
WARN_THRESHOLD_USD = 4
STOP_THRESHOLD_USD = 5


async def find_ollama_models(base: str, timeout: float = 1.0) -> list[str]:
    """Names of the models a running Ollama serves at `base`, or [] when there is none.

    Ollama being absent is the normal case, so every failure (refused, timed out, not Ollama,
    bad JSON) means "no models" rather than an error.
    """
    import httpx

    # trust_env=False: a proxy from the environment must not swallow a request to localhost.
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        try:
            response = await client.get(f"{base.rstrip('/')}/api/tags")
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError):
            return []
    listed = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(listed, list):
        return []
    names = (entry.get("name") or entry.get("model") for entry in listed if isinstance(entry, dict))
    return [name for name in names if isinstance(name, str) and name]


def starter_config(ollama_models: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    """A forge.toml as a dict: the Ollama models found, and every preset whose key is set."""
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    if ollama_models:
        providers[OLLAMA.name] = _provider_table(OLLAMA, base_url=ollama_base_url(env))
        for model_id in ollama_models:
            _add_model(models, OLLAMA, model_id, alias=model_alias(model_id))
    for preset in KEYED_PRESETS:
        if not key_is_set(preset, env):
            continue
        providers[preset.name] = _provider_table(preset, base_url=preset.base_url)
        for model in preset.models:
            _add_model(models, preset, model.id, alias=model.alias, extra=_known_facts(model))
    # Empty tables would only be noise in the file; `forge init` says what to do instead.
    config: dict[str, Any] = {}
    if providers:
        config |= {"providers": providers, "models": models}
    tiers = _tiers(models)
    if tiers:
        config["tiers"] = tiers
    config["routing"] = {
        "max_concurrent_tasks": 4,
        "enable_parallel_execution": True,
        "strategy": "cost",
        "max_attempts_per_tier": 2,
        "max_total_attempts": 6,
    }
    config["cost"] = {
        "daily_budget_usd": DAILY_BUDGET_USD,
        "warn_threshold_usd": WARN_THRESHOLD_USD,
        "stop_threshold_usd": STOP_THRESHOLD_USD,
    }
    return config


def key_is_set(preset: ProviderPreset, env: Mapping[str, str]) -> bool:
    """Whether the preset's key variable holds something (its value is not looked at further)."""
    return bool(preset.api_key_env and env.get(preset.api_key_env, "").strip())


def model_alias(model_id: str) -> str:
    """A TOML bare key for a model id: "llama3.2:3b" -> "llama3-2-3b", ":latest" dropped."""
    base = model_id.removesuffix(":latest").lower()
    alias = re.sub(r"[^a-z0-9_-]+", "-", base).strip("-")
    return re.sub(r"-{2,}", "-", alias) or "model"


def _provider_table(preset: ProviderPreset, *, base_url: str) -> dict[str, Any]:
    table: dict[str, Any] = {"api": preset.api, "base_url": base_url}
    if preset.api_key_env:
        table["api_key_env"] = preset.api_key_env
    table["discover"] = preset.discover
    if preset.requests_per_minute:
        table["requests_per_minute"] = preset.requests_per_minute
    if preset.requests_per_day:
        table["requests_per_day"] = preset.requests_per_day
    return table


def _known_facts(model: PresetModel) -> dict[str, Any]:
    """The optional facts a preset model carries (context window, prices) that are filled in."""
    facts = {f.name: getattr(model, f.name) for f in fields(model)}
    return {k: v for k, v in facts.items() if k not in {"alias", "id"} and v is not None}


def _add_model(
    models: dict[str, Any],
    preset: ProviderPreset,
    model_id: str,
    *,
    alias: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    # Two providers can offer the same name (qwen3-coder on Ollama and OpenRouter).
    if alias in models:
        alias = f"{alias}-{preset.name}"
    entry: dict[str, Any] = {"provider": preset.name, "id": model_id, "tier": preset.tier}
    if preset.flat_price is not None:
        entry["input_price"] = entry["output_price"] = preset.flat_price
    models[alias] = entry | dict(extra or {})


def _tiers(models: Mapping[str, Any]) -> dict[str, Any]:
    present = {entry["tier"] for entry in models.values()}
    ladder = [tier for tier in TIER_ORDER if tier in present]
    if not ladder:
        return {}
    tiers: dict[str, Any] = {"ladder": ladder}
    if "premium" in present:
        tiers["critical"] = ["premium"]  # security, payments, public API: go straight to the top
    return tiers
