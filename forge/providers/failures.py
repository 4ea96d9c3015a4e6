"""Classifying what went wrong with a model call, and what the retry loop does about it."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from forge.errors import ForgeError


class FailureKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    CONTEXT_TOO_LONG = "context_too_long"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    MALFORMED = "malformed_response"
    ERROR_IN_BODY = "error_in_body"
    QUOTA = "quota"
    BUDGET = "budget"
    THROTTLED = "throttled"  # forge's own limits held the request back; it was never sent


# Worth another try on the same model after a wait.
TRANSIENT = frozenset(
    {
        FailureKind.RATE_LIMIT,
        FailureKind.OVERLOADED,
        FailureKind.SERVER_ERROR,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.MALFORMED,
        FailureKind.ERROR_IN_BODY,
    }
)
# The model cannot be used by this run at all: never retried.
MODEL_OUT = frozenset({FailureKind.AUTH, FailureKind.NOT_FOUND})
# Not worth another try on this model for this call; the next model may do.
NEXT_MODEL = frozenset(
    {
        FailureKind.CONTEXT_TOO_LONG,
        FailureKind.BAD_REQUEST,
        FailureKind.QUOTA,
        FailureKind.BUDGET,
    }
)


class ProviderError(ForgeError):
    """A failed attempt, classified. The message never carries a secret (see Redactor)."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        alias: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.alias = alias
        self.status = status
        self.retry_after = retry_after
        self.detail = message
        super().__init__(self.describe())

    def describe(self) -> str:
        status = f" (HTTP {self.status})" if self.status else ""
        who = f"{self.alias}: " if self.alias else ""
        return f"{who}{self.kind.value}{status}: {self.detail}"


_CONTEXT_WORDS = re.compile(
    r"context[_ ]length|maximum context|context window|prompt is too long|too many tokens|"
    r"reduce the length",
    re.IGNORECASE,
)


def classify_status(status: int, body: Any) -> FailureKind:
    """The failure kind of an HTTP error status and its (parsed) body."""
    text = str(body)
    if status == 429:
        return FailureKind.QUOTA if "insufficient_quota" in text else FailureKind.RATE_LIMIT
    if status in (503, 529) or "overloaded" in text:
        return FailureKind.OVERLOADED
    if status == 408 or status == 504:
        return FailureKind.TIMEOUT
    if status >= 500:
        return FailureKind.SERVER_ERROR
    if status in (401, 403):
        return FailureKind.AUTH
    if status == 404:
        return FailureKind.NOT_FOUND
    if _CONTEXT_WORDS.search(text):
        return FailureKind.CONTEXT_TOO_LONG
    return FailureKind.BAD_REQUEST


def error_message(body: Any, fallback: str) -> str:
    """The human part of an error body in OpenAI's or Anthropic's shape."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return fallback


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str) -> float | None:
    """Seconds in '1s', '6m0s', '250ms', '1h2m3.5s' or a bare number of seconds."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = parse_duration(raw)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
