"""What the ledger and the router need of a model call: its target, usage and cost.

Kept apart from the provider layer's other types (requests, results, stream events) so that
`forge route`, which reads the ledger but calls no model, does not build those at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

# `reservation`: the provider's usage was not trusted, so the call is charged its worst case.
CostSource = Literal["reported", "computed", "unpriced", "reservation"]
# Stop reasons of an answer cut off by its token limit (OpenAI, Anthropic).
TRUNCATED = frozenset({"length", "max_tokens"})


@dataclass(frozen=True)
class Target:
    """One concrete model to call: the alias users write and what the provider needs."""

    alias: str
    provider: str
    model_id: str
    tier: str | None = None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    reported_cost: Decimal | None = None
    # Why the provider's counts are not believed (negative, not a whole number, impossible for
    # this request); such a call is charged at its reservation.
    untrusted: str | None = None

    def distrust(self, reason: str) -> None:
        if self.untrusted is None:
            self.untrusted = reason
        elif reason not in self.untrusted:
            self.untrusted += f"; {reason}"


@dataclass(frozen=True)
class Cost:
    usd: Decimal | None
    source: CostSource

    def __str__(self) -> str:
        return "unpriced" if self.usd is None else f"${self.usd:.6f}"
