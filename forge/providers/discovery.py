"""Listing the models a provider serves: Ollama /api/tags, OpenAI /v1/models, OpenRouter.

OpenAI-compatible servers other than OpenAI say how much context a model takes in their own
places: vLLM's `max_model_len` and llama-server's `meta` in the listing itself, llama-server's
`/props` (the context it runs with, `default_generation_settings.n_ctx`, which may be less than
the model was trained for) and LiteLLM's `/model/info` (`model_info.max_input_tokens`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from forge.config.schema import ProviderConfig
from forge.providers.api import load_json
from forge.providers.failures import FailureKind, ProviderError, classify_status, error_message

PER_MILLION = Decimal(1_000_000)
# What one discovery answer may weigh; OpenRouter's full listing is a few hundred kilobytes.
MAX_LISTING_BYTES = 16 * 1024 * 1024
# Larger than any model's context: a number past it is not a context size.
MAX_CONTEXT_WINDOW = 100_000_000


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
        status, reason, body = await _get(http, url, headers, timeout)
    except httpx.TimeoutException:
        raise ProviderError(FailureKind.TIMEOUT, f"no answer from {url}", alias=name) from None
    except httpx.HTTPError as exc:
        raise ProviderError(
            FailureKind.CONNECTION, f"cannot reach {url} ({type(exc).__name__})", alias=name
        ) from None
    if status != 200:
        kind = classify_status(status, body)
        raise ProviderError(kind, error_message(body, reason), alias=name, status=status)
    if not isinstance(body, dict):
        raise ProviderError(
            FailureKind.MALFORMED, f"{url} did not return a JSON object", alias=name
        )
    found = _parse(name, provider.discover, body)
    if provider.discover == "openai" and found:
        found = await _served_windows(http, provider.base_url, headers, timeout, body, found)
    return found


async def _get(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], timeout: float
) -> tuple[int, str, Any]:
    """(status, reason, JSON body or None), reading at most MAX_LISTING_BYTES."""
    async with http.stream("GET", url, headers=headers, timeout=timeout) as response:
        raw = b""
        async for chunk in response.aiter_bytes():
            raw += chunk
            if len(raw) > MAX_LISTING_BYTES:
                raise ProviderError(
                    FailureKind.MALFORMED,
                    f"{url} sent more than {MAX_LISTING_BYTES // 1024 // 1024} MB",
                )
        try:
            body = load_json(raw.decode("utf-8", "replace"), url) if raw else None
        except ProviderError:
            body = None
        return response.status_code, response.reason_phrase, body


def _parse(name: str, style: str, body: dict[str, Any]) -> list[DiscoveredModel]:
    if style == "ollama":
        return [
            DiscoveredModel(name, str(m.get("name") or m.get("model")))
            for m in _list(body.get("models"))
            if isinstance(m, dict) and (m.get("name") or m.get("model"))
        ]
    found = []
    for m in _list(body.get("data")):
        if not isinstance(m, dict) or not m.get("id"):
            continue
        pricing = m.get("pricing")
        pricing = pricing if isinstance(pricing, dict) else {}
        meta = m.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        # llama-server's `meta.n_ctx` is what it runs with; `n_ctx_train` only what the model
        # was trained for, the last resort.
        window = (
            _window(meta.get("n_ctx"))
            or _window(m.get("context_length"))
            or _window(m.get("context_window"))
            or _window(m.get("max_model_len"))  # vLLM
            or _window(meta.get("n_ctx_train"))
        )
        found.append(
            DiscoveredModel(
                provider=name,
                id=str(m["id"]),
                context_window=window,
                input_price=_per_million(pricing.get("prompt")),
                output_price=_per_million(pricing.get("completion")),
            )
        )
    return found


async def _served_windows(
    http: httpx.AsyncClient,
    base_url: str,
    headers: dict[str, str],
    timeout: float,
    listing: dict[str, Any],
    found: list[DiscoveredModel],
) -> list[DiscoveredModel]:
    """The windows the server runs its models with, where it says so apart from the listing:
    llama-server's /props for the model it serves, LiteLLM's /model/info for the models the
    listing left without one. A server without these endpoints (OpenAI answers 404) changes
    nothing, and neither does an answer forge cannot read."""
    entries = [m for m in _list(listing.get("data")) if isinstance(m, dict)]
    llama = any(isinstance(m.get("meta"), dict) or m.get("owned_by") == "llamacpp" for m in entries)
    if llama and len(found) == 1:
        props = await _probe(http, ollama_root(base_url) + "/props", headers, timeout)
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = _window(settings.get("n_ctx")) if isinstance(settings, dict) else None
        if n_ctx is not None:
            found = [replace(found[0], context_window=n_ctx)]
    if all(m.context_window is not None for m in found):
        return found
    info = await _probe(http, base_url + "/model/info", headers, timeout)
    windows: dict[str, int] = {}
    for entry in _list(info.get("data") if isinstance(info, dict) else None):
        if not isinstance(entry, dict) or not isinstance(entry.get("model_info"), dict):
            continue
        window = _window(entry["model_info"].get("max_input_tokens"))
        model = str(entry.get("model_name"))
        if window is not None:  # several deployments of one name: the smallest holds for all
            windows[model] = min(window, windows.get(model, window))
    return [
        replace(m, context_window=windows.get(m.id)) if m.context_window is None else m
        for m in found
    ]


async def _probe(http: httpx.AsyncClient, url: str, headers: dict[str, str], timeout: float) -> Any:
    """The JSON a server sends at `url`, or None whatever went wrong."""
    try:
        status, _, body = await _get(http, url, headers, timeout)
    except (httpx.HTTPError, ProviderError):
        return None
    return body if status == 200 else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _window(value: Any) -> int | None:
    """A context size as a server sent it, if it is one: a whole number of tokens from 1 to
    MAX_CONTEXT_WINDOW (not a bool, not a string, not 1e308)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_CONTEXT_WINDOW:
        return value
    return None


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
