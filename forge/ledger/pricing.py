"""What a call costs: provider-reported, computed from prices, or honestly unpriced.

Prices come from the model's entry in forge.toml, else from prices a discovery endpoint listed,
else from the genai-prices library (offline data, matched on the provider's API URL).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from forge.config.schema import ForgeConfig
from forge.providers.accounting import Cost, Target, Usage

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    origin: str = "config"

    def cost(self, usage: Usage) -> Decimal:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = self.cached_input if self.cached_input is not None else self.input
        fresh = usage.input_tokens - cached
        total = fresh * self.input + cached * cached_price + usage.output_tokens * self.output
        return total / MILLION

    def worst_case(self, input_tokens: int, max_output_tokens: int) -> Decimal:
        return (input_tokens * self.input + max_output_tokens * self.output) / MILLION


def call_cost(usage: Usage, prices: Prices | None) -> Cost:
    if usage.reported_cost is not None:
        return Cost(usage.reported_cost, "reported")
    if prices is not None:
        return Cost(prices.cost(usage), "computed")
    return Cost(None, "unpriced")


# What genai-prices answered, kept in FORGE_HOME for as long as the same copy of its data is
# installed: loading that data takes longer than the rest of a `forge route` (about 100 ms), and
# a config that leaves prices to the library would pay it at every start. Prices the library
# dates or varies by the hour are not kept.
PRICES_CACHE = Path("cache") / "library-prices.json"


@lru_cache(maxsize=256)
def library_prices(model_id: str, base_url: str) -> Prices | None:
    """Prices from genai-prices for a model served at `base_url`, if it knows them (from the
    cache of its answers when this copy of its data gave one before)."""
    stamp = _library_stamp()
    cache = _read_cache(stamp) if stamp else {}
    key = f"{model_id}\n{base_url}"
    if key in cache:
        known = cache[key]
        if known is None:
            return None
        return Prices(known[0], known[1], origin="genai-prices")
    prices, constant = _ask_library(model_id, base_url)
    if stamp and constant:
        answer = None if prices is None else [str(prices.input), str(prices.output)]
        _write_cache(stamp, {**_read_cache(stamp), key: answer})
    return prices


def _ask_library(model_id: str, base_url: str) -> tuple[Prices | None, bool]:
    """The library's prices for a call made now, and whether that answer holds at any date
    and hour: the library dates some prices (a new price from a given day) and varies others
    by the time of day, and those are asked again every time. A library that cannot be loaded
    has no answer to keep."""
    try:
        from genai_prices import Usage as LibUsage
        from genai_prices import calc_price
    except ImportError:  # pragma: no cover - a declared dependency, absent only in odd installs
        return None, False
    # Priced on a small call and scaled: a million-token call would hit long-context tiers.
    sample = 1_000
    try:
        per_input = calc_price(LibUsage(input_tokens=sample), model_id, provider_api_url=base_url)
        per_output = calc_price(LibUsage(output_tokens=sample), model_id, provider_api_url=base_url)
    except (LookupError, ValueError, TypeError):
        return None, True  # a model the library does not know, whatever the day
    scale = MILLION / sample
    # A model's prices are one set, or a list of sets each under a date or time constraint.
    constant = not isinstance(getattr(per_input.model, "prices", None), list)
    prices = Prices(
        per_input.total_price * scale, per_output.total_price * scale, origin="genai-prices"
    )
    return prices, constant


def _library_stamp() -> str:
    """Which copy of genai-prices' data is installed (its path, size and time), found without
    importing it; empty when it cannot be told, and then nothing is cached."""
    from importlib.util import find_spec

    try:
        spec = find_spec("genai_prices")
    except (ImportError, ValueError):
        return ""
    if spec is None or spec.origin is None:
        return ""
    data = Path(spec.origin).with_name("data.py")
    try:
        found = data.stat()
    except OSError:
        return ""
    return f"{data}:{found.st_size}:{found.st_mtime_ns}"


def _read_cache(stamp: str) -> dict[str, Any]:
    """The cached answers made with this copy of the data (best effort: none when unreadable)."""
    from forge.home import forge_home

    try:
        kept = json.loads((forge_home() / PRICES_CACHE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(kept, dict) or kept.get("library") != stamp:
        return {}
    answers = kept.get("prices")
    if not isinstance(answers, dict):
        return {}
    believed: dict[str, Any] = {}
    for key, value in answers.items():
        if value is None:
            believed[key] = None
        elif isinstance(value, list) and len(value) == 2:
            pair = [_price(v) for v in value]
            if pair[0] is not None and pair[1] is not None:
                believed[key] = pair
    return believed


# No model costs more than this per million tokens: a cached number beyond it was not the
# library's.
MAX_PRICE = Decimal(100_000)


def _price(value: object) -> Decimal | None:
    """A cached price as written here (a short decimal string, 0 to MAX_PRICE), else None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        price = Decimal(value)
    except ArithmeticError:
        return None
    return price if price.is_finite() and 0 <= price <= MAX_PRICE else None


def _write_cache(stamp: str, answers: dict[str, Any]) -> None:
    """Replaced whole, atomically; a cache that cannot be written is simply not kept."""
    from forge.home import forge_home
    from forge.validation.atomic import write_cache_entry

    text = json.dumps({"library": stamp, "prices": answers}, indent=1, sort_keys=True)
    write_cache_entry(forge_home() / PRICES_CACHE, text)


# What a chat template adds to the text, billed as prompt tokens. Per message, the role's
# header and end marker: ChatML `<|im_start|>user\n ... <|im_end|>\n` is 5, Llama-3
# `<|start_header_id|>user<|end_header_id|>\n\n ... <|eot_id|>` 5, Gemma
# `<start_of_turn>user\n ... <end_of_turn>\n` 5; 16 covers them three times over, and a name or
# tool marker. Per request, what is there with no message at all: `<|begin_of_text|>` or
# `<bos>`, the assistant header that primes the answer (4 to 5), and the system block some
# templates add unasked (Llama 3.1's "Cutting Knowledge Date ... Today Date ..." is about 25).
TEMPLATE_TOKENS_PER_MESSAGE = 16
TEMPLATE_TOKENS_PER_REQUEST = 32


def estimate_input_tokens(texts: list[str]) -> int:
    """An upper bound on the prompt's tokens: BPE tokenizers never emit more tokens than bytes,
    and the chat template's own tokens come on top (a one-byte prompt bills about 40).

    Reservations must not undershoot, or concurrent calls could pass the stop threshold.
    """
    text = sum(len(t.encode("utf-8")) for t in texts)
    return TEMPLATE_TOKENS_PER_REQUEST + text + TEMPLATE_TOKENS_PER_MESSAGE * len(texts)


def resolve_prices(
    config: ForgeConfig, target: Target, discovered: Mapping[tuple[str, str], Prices]
) -> Prices | None:
    """forge.toml's prices, else a discovery endpoint's, else the pricing library's."""
    model = config.models.get(target.alias)
    if model is not None and model.input_price is not None and model.output_price is not None:
        return Prices(model.input_price, model.output_price, model.cached_input_price)
    found = discovered.get((target.provider, target.model_id))
    if found is not None:
        return found
    return library_prices(target.model_id, config.providers[target.provider].base_url)


def discovered_prices(
    found: Mapping[str, list[dict[str, Any]]],
) -> dict[tuple[str, str], Prices]:
    """Prices that discovery listed (stored in the ledger), keyed by (provider, model id)."""
    prices = {}
    for provider, models in found.items():
        for info in models:
            if info.get("input_price") is not None and info.get("output_price") is not None:
                prices[(provider, str(info["id"]))] = Prices(
                    Decimal(info["input_price"]), Decimal(info["output_price"]), origin="discovered"
                )
    return prices
