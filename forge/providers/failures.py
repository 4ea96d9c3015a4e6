"""Classifying what went wrong with a model call, and what the retry loop does about it."""

from __future__ import annotations

import ast
import email.utils
import ipaddress
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
        unreachable: bool = False,
    ) -> None:
        self.kind = kind
        self.alias = alias
        self.status = status
        self.retry_after = retry_after
        # Nothing listens where the model is served (a local server that is not running):
        # another try within the call cannot help, and it says nothing about the model's load.
        self.unreachable = unreachable
        self.detail = message
        super().__init__(self.describe())

    def describe(self) -> str:
        status = f" (HTTP {self.status})" if self.status else ""
        who = f"{self.alias}: " if self.alias else ""
        return f"{who}{self.kind.value}{status}: {self.detail}"


# How servers say a request does not fit the model's context: OpenAI, vLLM and transformers
# ("maximum context length"), llama-server ("exceeds the available context size",
# exceed_context_size_error), LiteLLM (ContextWindowExceededError), Anthropic.
_CONTEXT_WORDS = re.compile(
    r"context[_ ]length|maximum context|context window|context[_ ]size|contextwindowexceeded|"
    r"prompt is too long|too many tokens|reduce the length",
    re.IGNORECASE,
)
# How servers say they do not serve the model asked for: OpenAI (model_not_found), LiteLLM
# ("Invalid model name passed in model=foo"), vLLM ("The model `foo` does not exist."), Ollama
# ('model "foo" not found, try pulling it first'), transformers serve (the Hub's "is not a
# valid model identifier").
_MODEL_WORDS = re.compile(
    r"model_not_found|invalid model name|not a valid model identifier|unknown model|"
    r"no such model|model\b[^\n]{0,300}?\b(?:does not exist|not found|is not served)",
    re.IGNORECASE,
)
# Bounds on what an error body may put in a message: a server's words are untrusted.
MAX_MESSAGE = 2_000
MAX_SCANNED = 16_000


_KIND_IN_TEXT = re.compile(
    r"(?:^|: )(" + "|".join(re.escape(k.value) for k in FailureKind) + r")(?: \(HTTP \d+\))?(?::|$)"
)


def kind_named_in(text: str | None) -> FailureKind | None:
    """The kind a `ProviderError.describe()` text (or a bare kind value) names, if any."""
    found = _KIND_IN_TEXT.search(text or "")
    return FailureKind(found.group(1)) if found else None


OLLAMA_PORT = 11434


def is_loopback(host: str) -> bool:
    """The host is this machine: localhost, 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def nothing_listens(host: str, port: int, *, ollama: bool) -> str:
    """What a refused connection to a server on this machine means, and what to do about it."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if ollama:
        return f"nothing listens on {where} — is `ollama serve` running?"
    return f"nothing listens on {where} — is the server running?"


def says_unknown_model(text: str) -> bool:
    """The text is a server saying it does not know the model asked for."""
    return _MODEL_WORDS.search(text[:MAX_SCANNED]) is not None


def classify_status(status: int, body: Any) -> FailureKind:
    """The failure kind of an HTTP error status and its (parsed) body."""
    text = str(body)[:MAX_SCANNED]
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
    if status in (400, 404, 413, 422) and _CONTEXT_WORDS.search(text):
        return FailureKind.CONTEXT_TOO_LONG
    if status == 404 or says_unknown_model(text):
        return FailureKind.NOT_FOUND
    return FailureKind.BAD_REQUEST


def error_message(body: Any, fallback: str) -> str:
    """The human part of an error body: OpenAI's, Anthropic's, vLLM's and Ollama's shapes, and
    FastAPI's `{"detail": ...}` (a string, or a list of `{"loc": [...], "msg": ...}`)."""
    return _message(body, fallback)[:MAX_MESSAGE]


def _message(body: Any, fallback: str) -> str:
    if not isinstance(body, dict):
        return fallback
    err = body.get("error", body)
    if isinstance(err, dict) and err.get("message"):
        return _unwrapped(str(err["message"])[:MAX_MESSAGE])
    if isinstance(err, str) and err:
        return err
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(_validation_item(item) for item in detail[:5])
    return fallback


def _unwrapped(message: str) -> str:
    """LiteLLM's proxy passes some errors on as the printed Python dict of the router's error
    (`{'error': '/chat/completions: Invalid model name ...'}`): the words inside it."""
    text = message.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return message
    try:
        inner = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return message
    if not isinstance(inner, dict):
        return message
    found = _message(inner, "")
    return found if found and found != text else message


def _validation_item(item: Any) -> str:
    """One entry of FastAPI's validation errors: `body.messages.0.content: field required`."""
    if not isinstance(item, dict):
        return str(item)[:200]
    loc = item.get("loc")
    where = ".".join(str(part)[:40] for part in loc[:8]) if isinstance(loc, list) else ""
    msg = str(item.get("msg") or item.get("type") or "invalid")[:300]
    return f"{where}: {msg}" if where else msg


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
