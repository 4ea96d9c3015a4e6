"""What a call costs: provider-reported, computed from prices, or honestly unpriced.

Prices come from the model's entry in forge.toml, else from prices a discovery endpoint listed,
else from the genai-prices library (offline data, matched on the provider's API URL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
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


@lru_cache(maxsize=256)
def library_prices(model_id: str, base_url: str) -> Prices | None:
    """Prices from genai-prices for a model served at `base_url`, if it knows them."""
    try:
        from genai_prices import Usage as LibUsage
        from genai_prices import calc_price
    except ImportError:  # pragma: no cover - a declared dependency, absent only in odd installs
        return None
    # Priced on a small call and scaled: a million-token call would hit long-context tiers.
    sample = 1_000
    try:
        per_input = calc_price(LibUsage(input_tokens=sample), model_id, provider_api_url=base_url)
        per_output = calc_price(LibUsage(output_tokens=sample), model_id, provider_api_url=base_url)
    except (LookupError, ValueError, TypeError):
        return None
    scale = MILLION / sample
    return Prices(
        per_input.total_price * scale, per_output.total_price * scale, origin="genai-prices"
    )


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
