"""Typed values that flow through the provider layer: requests, usage, results, stream events."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

from forge.providers.accounting import TRUNCATED as TRUNCATED
from forge.providers.accounting import Cost as Cost
from forge.providers.accounting import CostSource as CostSource
from forge.providers.accounting import Target as Target
from forge.providers.accounting import Usage as Usage

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    stream: bool = True


@dataclass
class AttemptResult:
    """What one HTTP exchange produced when it succeeded."""

    text: str
    usage: Usage
    finish_reason: str | None
    ttft: float | None
    latency: float
    cost: Cost | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a call, successful or not, as the caller sees it."""

    alias: str
    outcome: Literal["ok", "error", "refused"]
    error_kind: str | None = None
    error: str | None = None
    latency: float | None = None


@dataclass
class Completion:
    text: str
    target: Target
    usage: Usage
    cost: Cost
    ttft: float | None
    latency: float
    finish_reason: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        """The answer stopped at its token limit: it looks whole and is not."""
        return self.finish_reason in TRUNCATED


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer as it streams in."""

    text: str
    alias: str


@dataclass(frozen=True)
class Restart:
    """The attempt that was streaming failed; discard its text: another attempt follows."""

    alias: str
    reason: str


@dataclass(frozen=True)
class Sending:
    """An attempt leaves: forge's own limits let it through, and it is connecting."""

    alias: str
    attempt: int  # this model's attempt in the call, from 1
    attempts: int  # the most attempts this model may have in the call


@dataclass(frozen=True)
class Accepted:
    """The server took the request (HTTP 200); the answer's first token has not come yet."""

    alias: str


# Why a call waits before its next attempt: a retry's backoff, a server's Retry-After, or a
# circuit breaker's cooldown (this call's failures or those of an earlier run).
PauseReason = Literal["retry", "rate_limit", "cooldown"]


@dataclass(frozen=True)
class Pause:
    """The call waits `seconds` (until `until`, wall clock) before trying `alias` again."""

    alias: str
    reason: PauseReason
    seconds: float
    until: float  # time.time() when the wait ends
    cause: str  # what failed, short: "429", "503", "connection", "timeout"
    error: str  # what failed, in the server's or forge's words
    attempt: int  # the attempt that follows the wait
    attempts: int
    failures: int = 0  # a cooldown: the consecutive failures behind it

    def describe(self, remaining: float | None = None) -> str:
        """The wait in a user's words, `remaining` seconds before it ends: `retrying (429,
        2/3) in 4 s`, `rate limited: retrying in 45 s`, `cooling down until 14:03:20 after 3
        failures`."""
        left = math.ceil(self.seconds if remaining is None else remaining)
        when = f" in {left} s" if left > 0 else ""
        if self.reason == "cooldown":
            clock = time.strftime("%H:%M:%S", time.localtime(self.until))
            failures = f"{self.failures} failure{'s' if self.failures != 1 else ''}"
            return f"cooling down until {clock} after {failures}"
        if self.reason == "rate_limit":
            return f"rate limited: retrying{when}"
        return f"retrying ({self.cause}, {self.attempt}/{self.attempts}){when}"


@dataclass(frozen=True)
class Finished:
    completion: Completion


StreamEvent = Sending | Accepted | TextDelta | Restart | Pause | Finished
