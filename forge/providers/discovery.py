"""Listing the models a provider serves: Ollama /api/tags, OpenAI /v1/models, OpenRouter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from forge.config.schema import ProviderConfig
from forge.providers.failures import FailureKind, ProviderError, classify_status, error_message

PER_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class DiscoveredModel:
    provider: str
    id: str
    context_window: int | None = None
    input_price: Decimal | None = None  # USD per million tokens
    output_price: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("input_price", "output_price"):
            data[key] = None if data[key] is None else str(data[key])
        return data


def ollama_root(base_url: str) -> str:
    """Ollama's native API lives beside its OpenAI-compatible /v1."""
    return base_url.removesuffix("/v1")


async def discover(
    http: httpx.AsyncClient,
    name: str,
    provider: ProviderConfig,
    env: Mapping[str, str],
    timeout: float = 10.0,
) -> list[DiscoveredModel]:
    """The provider's models, or a classified ProviderError."""
    if provider.discover == "none":
        return []
    url = (
        ollama_root(provider.base_url) + "/api/tags"
        if provider.discover == "ollama"
        else provider.base_url + "/models"
    )
    key = env.get(provider.api_key_env) if provider.api_key_env else None
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if provider.api == "anthropic" and key:
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    try:
        response = await http.get(url, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise ProviderError(FailureKind.TIMEOUT, f"no answer from {url}", alias=name) from None
    except httpx.HTTPError as exc:
        raise ProviderError(
            FailureKind.CONNECTION, f"cannot reach {url} ({type(exc).__name__})", alias=name
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        kind = classify_status(response.status_code, body)
        message = error_message(body, response.reason_phrase)
        raise ProviderError(kind, message, alias=name, status=response.status_code)
    if not isinstance(body, dict):
        raise ProviderError(
            FailureKind.MALFORMED, f"{url} did not return a JSON object", alias=name
        )
    return _parse(name, provider.discover, body)


def _parse(name: str, style: str, body: dict[str, Any]) -> list[DiscoveredModel]:
    if style == "ollama":
        return [
            DiscoveredModel(name, str(m.get("name") or m.get("model")))
            for m in body.get("models") or []
            if isinstance(m, dict) and (m.get("name") or m.get("model"))
        ]
    found = []
    for m in body.get("data") or []:
        if not isinstance(m, dict) or not m.get("id"):
            continue
        pricing = m.get("pricing") or {}
        window = m.get("context_length") or m.get("context_window")
        found.append(
            DiscoveredModel(
                provider=name,
                id=str(m["id"]),
                context_window=int(window) if isinstance(window, int | float) else None,
                input_price=_per_million(pricing.get("prompt")),
                output_price=_per_million(pricing.get("completion")),
            )
        )
    return found


def _per_million(per_token: Any) -> Decimal | None:
    """OpenRouter sends USD per token as a string; forge speaks USD per million tokens."""
    if per_token is None:
        return None
    try:
        value = Decimal(str(per_token))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:  # OpenRouter lists "-1" for variable-price routers
        return None
    return (value * PER_MILLION).normalize()
