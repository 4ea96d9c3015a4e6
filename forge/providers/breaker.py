"""A circuit breaker per (provider, model): repeated failures cool a model down."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Breaker:
    threshold: int = 3
    base_cooldown: float = 5.0
    max_cooldown: float = 300.0
    failures: int = 0
    open_until: float = 0.0  # time.time(), so that other processes can read it from the ledger
    last_error: str | None = None
    last_kind: str | None = None  # the FailureKind value of the last failure

    def is_open(self, now: float | None = None) -> bool:
        return self.open_until > (time.time() if now is None else now)

    def record_success(self) -> None:
        self.failures = 0
        self.last_error = None
        self.last_kind = None

    def record_failure(
        self, error: str, cooldown: float | None = None, kind: str | None = None
    ) -> bool:
        """Count a failure; returns True when this opened or extended the cooldown.

        `cooldown` is what the provider asked for (Retry-After); otherwise the breaker opens
        after `threshold` consecutive failures, doubling each time. The cooldown only extends:
        a shorter one never cuts a longer one short.
        """
        now = time.time()
        if self.open_until and now - self.open_until > self.max_cooldown:
            # The last cooldown ended long ago (an earlier run, yesterday): this failure starts
            # a new streak, rather than doubling a cooldown that no longer means anything.
            self.failures = 0
        self.failures += 1
        self.last_error = error
        self.last_kind = kind
        wait = cooldown
        if wait is None and self.failures >= self.threshold:
            wait = min(
                self.max_cooldown, self.base_cooldown * 2 ** (self.failures - self.threshold)
            )
        if wait is None:
            return False
        wait = min(
            wait, self.max_cooldown
        )  # a provider's "retry after a day" is not obeyed blindly
        until = now + wait
        if until <= self.open_until:
            return False
        self.open_until = until
        return True
