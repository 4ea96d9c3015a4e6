"""Limits enforced before a request is sent, so concurrent calls do not burst into 429s.

A `Throttle` guards one scope (a provider, or one model of it): a concurrency cap, sliding
one-minute windows for requests and tokens, and a pause learnt from the provider's own
rate-limit headers. Waiting longer than the caller can afford fails at once instead.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime

import anyio

from forge.providers.failures import FailureKind, ProviderError, parse_duration

WINDOW = 60.0


class Throttle:
    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        self._slots = anyio.Semaphore(max_concurrency) if max_concurrency else None
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._paused_until = 0.0
        self._lock = anyio.Lock()

    async def acquire(
        self, tokens: int, deadline: float, slot_deadline: float | None = None
    ) -> None:
        """Wait for room to send one request of `tokens` tokens, or fail if it comes too late.

        A busy concurrency slot is waited for until `slot_deadline` (default: `deadline`), so
        a caller with another model to try can hand over at once.
        """
        if self._slots is not None:
            wait = max(0.0, min(deadline, slot_deadline or deadline) - time.monotonic())
            got = False
            with anyio.move_on_after(wait):
                await self._slots.acquire()
                got = True
            if not got:
                raise ProviderError(
                    FailureKind.THROTTLED, "every concurrency slot is busy", retry_after=None
                )
        try:
            await self._admit(tokens, deadline)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _admit(self, tokens: int, deadline: float) -> None:
        """Take a place in the per-minute windows, sleeping outside the lock until there is one."""
        while True:
            async with self._lock:
                wait = self._wait_needed(tokens)
                if wait <= 0:
                    now = time.monotonic()
                    self._requests.append(now)
                    self._tokens.append((now, tokens))
                    return
            if time.monotonic() + wait > deadline:
                raise ProviderError(
                    FailureKind.THROTTLED,
                    f"rate limit would need a {wait:.1f}s wait, past the call's deadline",
                    retry_after=wait,
                )
            await anyio.sleep(wait)

    def _wait_needed(self, tokens: int) -> float:
        now = time.monotonic()
        while self._requests and self._requests[0] <= now - WINDOW:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= now - WINDOW:
            self._tokens.popleft()
        waits = [self._paused_until - now]
        if self._rpm and len(self._requests) >= self._rpm:
            waits.append(self._requests[len(self._requests) - self._rpm] + WINDOW - now)
        if self._tpm and self._tokens:
            used = sum(n for _, n in self._tokens)
            # A request larger than the whole budget waits for an empty window, not forever.
            excess = used + min(tokens, self._tpm) - self._tpm
            for stamp, n in self._tokens:
                if excess <= 0:
                    break
                excess -= n
                waits.append(stamp + WINDOW - now)
        return max(waits)

    def pause(self, seconds: float) -> None:
        """Hold every request in this scope for `seconds` (the cooldown only ever extends)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from the provider's rate-limit headers on any response, success or not."""
        for kind in ("requests", "tokens"):
            remaining, reset = _remaining_and_reset(headers, kind)
            if remaining is not None and remaining <= 0 and reset is not None:
                self.pause(reset)


def _remaining_and_reset(headers: Mapping[str, str], kind: str) -> tuple[int | None, float | None]:
    """OpenAI/Groq style `x-ratelimit-*-{kind}` or Anthropic's `anthropic-ratelimit-{kind}-*`."""
    remaining_raw = headers.get(f"x-ratelimit-remaining-{kind}") or headers.get(
        f"anthropic-ratelimit-{kind}-remaining"
    )
    reset_raw = headers.get(f"x-ratelimit-reset-{kind}")
    reset = parse_duration(reset_raw) if reset_raw else None
    anthropic_reset = headers.get(f"anthropic-ratelimit-{kind}-reset")
    if reset is None and anthropic_reset:
        try:
            reset = max(0.0, datetime.fromisoformat(anthropic_reset).timestamp() - time.time())
        except ValueError:
            reset = None
    try:
        remaining = int(float(remaining_raw)) if remaining_raw else None
    except ValueError:
        remaining = None
    return remaining, reset
