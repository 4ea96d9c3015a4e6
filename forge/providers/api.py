"""The seam between forge and a provider's wire format.

A `ChatAPI` turns a `ChatRequest` into an HTTP request and reads the answer back, whole or as
server-sent events. OpenAI chat completions and Anthropic Messages implement it; a new wire format
is one more class with these four methods.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from forge.providers.failures import FailureKind, ProviderError, classify_status, error_message
from forge.providers.types import ChatRequest, Target, Usage


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str


class SSEDecoder:
    """Incremental server-sent-events decoder fed one line at a time."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


@dataclass
class StreamState:
    parts: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    done: bool = False
    tokens_seen: bool = False  # any answer or reasoning token: the first-token timer stops
    answer_seen: bool = False  # a choice (OpenAI) or a message_start (Anthropic) arrived

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ChatAPI(Protocol):
    def build(
        self, target: Target, request: ChatRequest, key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(path below base_url, headers, JSON body) for one request."""

    def read_body(self, body: Any) -> StreamState:
        """A complete, non-streamed answer."""

    def read_event(self, event: SSEEvent, state: StreamState) -> str:
        """Fold one event into `state`; return the new text (may be empty)."""


def load_json(data: str, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ProviderError(FailureKind.MALFORMED, f"{what} is not valid JSON") from None
    except RecursionError:  # `[[[[...` a hundred thousand deep
        raise ProviderError(FailureKind.MALFORMED, f"{what} is nested too deeply") from None


# The HTTP status an error code or type inside a 200 answer stands for.
_CODE_STATUS = {
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "overloaded": 529,
    "overloaded_error": 529,
    "server_error": 500,
    "api_error": 500,
    "timeout": 504,
    "context_length_exceeded": 400,
    "context_window_exceeded": 400,
    "exceed_context_size_error": 400,  # llama-server
    "invalid_request_error": 400,
    "invalid_api_key": 401,
    "authentication_error": 401,
    "permission_error": 403,
    "model_not_found": 404,
    "NotFoundError": 404,  # vLLM
    "not_found_error": 404,
}


def _in_band_error(body: Any) -> ProviderError | None:
    """An error object delivered with HTTP 200, as several gateways do, whole or mid-stream
    (OpenRouter sends one beside `finish_reason: "error"`). It is classified as the HTTP
    status its code stands for would be: a 502 is a server error and is retried, a 429 is
    rate limited; a code that says nothing is `error_in_body`, also retried."""
    if not (isinstance(body, dict) and body.get("error")):
        return None
    message = error_message(body, "an error object")
    error = body["error"]
    code = error.get("code") if isinstance(error, dict) else None
    named = error.get("type") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        status = code
    elif isinstance(code, str) and code.isdigit() and len(code) == 3:
        status = int(code)
    else:
        status = _CODE_STATUS.get(str(code), _CODE_STATUS.get(str(named), 0))
    kind = classify_status(status, body) if 400 <= status < 600 else FailureKind.ERROR_IN_BODY
    said = f" (code {str(code)[:40]})" if code is not None else ""
    return ProviderError(kind, f"error inside an HTTP 200 answer{said}: {message}")


def _failed_finish(finish_reason: Any) -> ProviderError | None:
    """`finish_reason: "error"` without an error object: the provider failed midway."""
    if finish_reason != "error":
        return None
    return ProviderError(
        FailureKind.ERROR_IN_BODY,
        'the answer ended with finish_reason "error": the provider failed before it finished',
    )


def _reason(value: Any) -> str | None:
    """A stop reason as sent; untrusted, so a short string whatever it was."""
    return None if value is None or value == "" else str(value)[:64]


def _no_answer() -> ProviderError:
    return ProviderError(
        FailureKind.MALFORMED, "the stream ended without any answer in it (no choices): empty"
    )


# More tokens than any call can use: a count past it is not a count.
MAX_TOKEN_COUNT = 10**9


def _int(value: Any, name: str, state: StreamState) -> int:
    """A token count as the provider sent it, if it is one: a whole number from 0 to
    MAX_TOKEN_COUNT. Anything else is recorded as a reason not to trust the usage, and counts 0."""
    if value is None:
        return 0
    count = value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        count = int(value)
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_TOKEN_COUNT:
        return count
    state.usage.distrust(f"{name} is {str(value)[:40]}")
    return 0


def _object(usage: dict[str, Any], name: str, state: StreamState) -> dict[str, Any]:
    value = usage.get(name)
    if value is None or isinstance(value, dict):
        return value or {}
    state.usage.distrust(f"{name} is not an object")
    return {}


class OpenAIChat:
    """OpenAI chat completions, spoken by OpenAI, Groq, OpenRouter, Ollama, vLLM, DeepSeek..."""

    def build(
        self, target: Target, request: ChatRequest, key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {
            "model": target.model_id,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "stream": request.stream,
        }
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return "/chat/completions", headers, body

    def read_body(self, body: Any) -> StreamState:
        if (error := _in_band_error(body)) is not None:
            raise error
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(
                FailureKind.MALFORMED, "response has no choices[0].message"
            ) from None
        if (error := _failed_finish(choice.get("finish_reason"))) is not None:
            raise error
        state = StreamState(parts=[str(text)], finish_reason=_reason(choice.get("finish_reason")))
        self._read_usage(body.get("usage"), state)
        state.done = True
        return state

    def read_event(self, event: SSEEvent, state: StreamState) -> str:
        if event.data.strip() == "[DONE]":
            state.done = True
            if not state.answer_seen:
                raise _no_answer()
            return ""
        chunk = load_json(event.data, "a stream chunk")
        if (error := _in_band_error(chunk)) is not None:
            raise error
        if not isinstance(chunk, dict):
            raise ProviderError(FailureKind.MALFORMED, "a stream chunk is not a JSON object")
        self._read_usage(chunk.get("usage"), state)
        text = ""
        choices = chunk.get("choices") or []
        state.answer_seen = state.answer_seen or bool(choices)
        for choice in choices:
            delta = choice.get("delta") or {}
            text += str(delta.get("content") or "")
            # DeepSeek and OpenRouter stream reasoning apart from the answer; it is progress.
            if text or delta.get("reasoning_content") or delta.get("reasoning"):
                state.tokens_seen = True
            state.finish_reason = _reason(choice.get("finish_reason")) or state.finish_reason
            if (error := _failed_finish(state.finish_reason)) is not None:
                raise error
        if text:
            state.parts.append(text)
        return text

    @staticmethod
    def _read_usage(usage: Any, state: StreamState) -> None:
        if not isinstance(usage, dict):
            return
        from decimal import Decimal, InvalidOperation

        details = _object(usage, "prompt_tokens_details", state)
        completion = _object(usage, "completion_tokens_details", state)
        state.usage.input_tokens = _int(usage.get("prompt_tokens"), "prompt_tokens", state)
        state.usage.output_tokens = _int(usage.get("completion_tokens"), "completion_tokens", state)
        state.usage.cached_tokens = _int(details.get("cached_tokens"), "cached_tokens", state)
        state.usage.reasoning_tokens = _int(
            completion.get("reasoning_tokens"), "reasoning_tokens", state
        )
        if usage.get("cost") is not None:
            try:
                cost = Decimal(str(usage["cost"]))
            except InvalidOperation:
                cost = None
            # Untrusted: a negative or non-finite cost would corrupt every budget check.
            state.usage.reported_cost = (
                cost if cost is not None and cost.is_finite() and (cost >= 0) else None
            )


class AnthropicMessages:
    """Anthropic's native Messages API, with its event types and cache-token usage."""

    version = "2023-06-01"

    def build(
        self, target: Target, request: ChatRequest, key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": target.model_id,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
            "max_tokens": request.max_tokens,
            "stream": request.stream,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {"anthropic-version": self.version}
        if key:
            headers["x-api-key"] = key
        return "/messages", headers, body

    def read_body(self, body: Any) -> StreamState:
        if isinstance(body, dict) and body.get("type") == "error":
            raise self._error(body)
        try:
            blocks = body["content"]
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        except (KeyError, TypeError, AttributeError):
            raise ProviderError(FailureKind.MALFORMED, "response has no content blocks") from None
        state = StreamState(parts=[text], finish_reason=_reason(body.get("stop_reason")), done=True)
        self._read_usage(body.get("usage"), state)
        return state

    def read_event(self, event: SSEEvent, state: StreamState) -> str:
        payload = load_json(event.data, f"the {event.event} event")
        if not isinstance(payload, dict):
            raise ProviderError(FailureKind.MALFORMED, f"the {event.event} event is not an object")
        kind = payload.get("type", event.event)
        if kind == "error":
            raise self._error(payload)
        if kind == "message_start":
            state.answer_seen = True
            self._read_usage((payload.get("message") or {}).get("usage"), state)
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            text = str(delta.get("text") or "")
            if text or delta.get("thinking"):
                state.tokens_seen = True
            if text:
                state.parts.append(text)
            return text
        elif kind == "message_delta":
            state.finish_reason = _reason((payload.get("delta") or {}).get("stop_reason"))
            self._read_usage(payload.get("usage"), state)
        elif kind == "message_stop":
            state.done = True
            if not state.answer_seen:
                raise _no_answer()
        return ""

    @staticmethod
    def _read_usage(usage: Any, state: StreamState) -> None:
        if not isinstance(usage, dict):
            return
        counts = {
            name: _int(usage.get(name), name, state)
            for name in (
                "input_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "output_tokens",
            )
        }
        if "input_tokens" in usage:
            state.usage.input_tokens = (
                counts["input_tokens"]
                + counts["cache_read_input_tokens"]
                + counts["cache_creation_input_tokens"]
            )
        if "cache_read_input_tokens" in usage:
            state.usage.cached_tokens = counts["cache_read_input_tokens"]
        if "output_tokens" in usage:
            state.usage.output_tokens = counts["output_tokens"]

    @staticmethod
    def _error(payload: dict[str, Any]) -> ProviderError:
        err = payload.get("error") or {}
        kind_name = str(err.get("type", "")) if isinstance(err, dict) else ""
        status = {
            "rate_limit_error": 429,
            "overloaded_error": 529,
            "api_error": 500,
            "authentication_error": 401,
            "permission_error": 403,
            "not_found_error": 404,
        }.get(kind_name)
        if kind_name == "invalid_request_error":
            status = 400
        message = error_message(payload, kind_name or "error event")
        kind = classify_status(status, payload) if status else FailureKind.ERROR_IN_BODY
        return ProviderError(kind, message)


def api_for(name: str) -> ChatAPI:
    return AnthropicMessages() if name == "anthropic" else OpenAIChat()
