"""What a route may cost: its first attempt, and the worst case if every rung is tried.

Attempts are priced on the task's input (its context estimate plus its own words) and a typical
answer of TYPICAL_OUTPUT_TOKENS; the budget's reservation per call uses the model's maximum
output instead, which would make a forecast useless (64,000 tokens for some models). A model
with no known price is `unpriced`, never $0; a model priced at 0 (a local one) is $0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from forge.routing.fleet import ModelFacts

TYPICAL_OUTPUT_TOKENS = 1500
# What a call may use at most when the model does not say (also the provider client's default).
DEFAULT_MAX_OUTPUT_TOKENS = 4096


@dataclass(frozen=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    first_attempt_usd: Decimal | None
    # The priced part of the worst case; `unpriced` lists models whose attempts are not in it.
    worst_case_usd: Decimal
    worst_case_attempts: int
    unpriced: tuple[str, ...]
    budget_left_usd: Decimal | None

    @property
    def worst_case_known(self) -> bool:
        return not self.unpriced

    @property
    def over_budget(self) -> bool:
        left = self.budget_left_usd
        return left is not None and self.worst_case_usd > left


def attempt_cost(model: ModelFacts, input_tokens: int, output_tokens: int) -> Decimal | None:
    if model.prices is None:
        return None
    return model.prices.worst_case(input_tokens, output_tokens)


def worst_call_cost(model: ModelFacts, input_tokens: int) -> Decimal | None:
    """A call at the model's full output allowance: what the budget would reserve."""
    output = model.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    return attempt_cost(model, input_tokens, output)


def estimate(
    chain: Sequence[ModelFacts],
    input_tokens: int,
    *,
    attempts_per_rung: int,
    total_attempts: int,
    budget_left: Decimal | None,
) -> Estimate:
    """`chain` is the first model then one per escalation rung."""
    first = attempt_cost(chain[0], input_tokens, TYPICAL_OUTPUT_TOKENS) if chain else None
    worst = Decimal(0)
    unpriced: dict[str, None] = {}
    left = total_attempts
    for model in chain:
        tries = min(attempts_per_rung, left)
        if tries <= 0:
            break
        left -= tries
        cost = attempt_cost(model, input_tokens, TYPICAL_OUTPUT_TOKENS)
        if cost is None:
            unpriced.setdefault(model.alias, None)
        else:
            worst += cost * tries
    return Estimate(
        input_tokens=input_tokens,
        output_tokens=TYPICAL_OUTPUT_TOKENS,
        first_attempt_usd=first,
        worst_case_usd=worst,
        worst_case_attempts=total_attempts - left,
        unpriced=tuple(unpriced),
        budget_left_usd=budget_left,
    )


def money(value: Decimal | None) -> str:
    """Dollars as people read them; `unpriced` when the price is unknown, never $0."""
    if value is None:
        return "unpriced"
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:.2f}"
    return f"${value:.4f}" if value >= Decimal("0.01") else f"${value:.6f}"
