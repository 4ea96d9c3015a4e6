"""A fake language-model provider served over real HTTP, for tests.

Forge's tests point their provider ``base_url`` at :class:`FakeProvider` instead of a real model
API. The server speaks enough of the OpenAI chat-completions, Anthropic Messages, OpenRouter and
Ollama protocols to exercise forge's clients, and can be scripted per model to answer slowly,
stream at a given pace, or fail in the ways real providers fail (:class:`Fault`).

The server is plain ``asyncio`` with a hand-written HTTP/1.1 layer, so it needs no extra
dependencies and one event loop in one background thread can hold a thousand streams open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import http
import itertools
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["FakeProvider", "Fault", "ModelInfo", "RecordedRequest", "Reply", "main"]

# Largest request body accepted; far above any prompt a test sends, small enough to fail fast.
_MAX_BODY_BYTES = 64 * 1024 * 1024
# The default listen backlog (100) drops SYNs when a test opens a thousand connections at once,
# and a dropped SYN costs the client a one-second retransmit.
_LISTEN_BACKLOG = 4096
_KEEPALIVE_INTERVAL = 0.2
HOLD_SECONDS = 30.0  # how long `hold_until_open` keeps a request waiting for the others
_TOKEN_PATTERN = re.compile(r"\S+\s*|\s+")


class Fault(enum.StrEnum):
    """A way for a scripted reply to fail, mirroring failures seen from real providers.

    Error bodies take the shape of the route's provider (OpenAI or Anthropic). Any error fault
    sends ``Retry-After`` when :attr:`Reply.retry_after` is set; ``RATE_LIMIT`` always does.
    """

    RATE_LIMIT = "rate_limit"  # 429 with Retry-After and x-ratelimit-* headers
    SERVER_ERROR = "server_error"  # 500
    BAD_GATEWAY = "bad_gateway"  # 502
    UNAVAILABLE = "unavailable"  # 503
    OVERLOADED = "overloaded"  # 529, Anthropic's shape on every route
    AUTH = "auth"  # 401 echoing the presented key, so secret redaction can be tested
    NOT_FOUND = "not_found"  # 404 model not found
    BAD_REQUEST = "bad_request"  # 400
    CONTEXT_TOO_LONG = "context_too_long"  # 400 context_length_exceeded
    DROP = "drop"  # stream: half the text, then a reset; otherwise: close without responding
    STALL = "stall"  # headers (and opening event), then stall_seconds of keep-alive comments only
    MALFORMED = "malformed"  # 200 whose body, or one stream data line, is not JSON
    ERROR_200 = "error_200"  # 200 carrying an error object (as a body or as one stream event)
    # OpenRouter's documented mid-stream error: half the text, then a chunk carrying an `error`
    # object and `finish_reason: "error"`, then [DONE] (Anthropic: an `error` event). A whole
    # answer carries the same error beside its choices.
    MID_STREAM_ERROR = "mid_stream_error"
    FINISH_ERROR = "finish_error"  # half the text, then a bare `finish_reason: "error"`
    NO_CHOICES = "no_choices"  # a stream whose chunks carry no choices: usage, then [DONE]


@dataclass
class Reply:
    """How the fake answers one chat request.

    ``latency`` delays the response headers; ``ttft`` further delays the first streamed content
    chunk; ``tokens_per_second`` paces the stream (``None`` sends as fast as possible). Token and
    usage counts default to rough values derived from the request and ``text``.
    """

    text: str = "ok"
    fault: Fault | None = None
    latency: float = 0.0
    ttft: float = 0.0
    tokens_per_second: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    cost: str | None = None
    retry_after: float | None = None
    stall_seconds: float = 30.0
    stall_after_tokens: int = 0  # STALL: stream this many answer tokens first, then stall
    headers: dict[str, str] = field(default_factory=dict)
    error_code: int | str = 502  # the `code` of ERROR_200's and MID_STREAM_ERROR's error object
    # The stop reason sent instead of "stop" / "end_turn", e.g. "length" or "max_tokens".
    finish_reason: str | None = None
    # Fields merged into the usage object as sent, untrusted numbers included (-5, 1e308).
    usage: dict[str, Any] = field(default_factory=dict)
    body: bytes | None = None  # a 200 JSON body sent as it is, streamed request or not
    # Whose error shape NOT_FOUND, CONTEXT_TOO_LONG and BAD_REQUEST take (see SERVERS); None is
    # the route's own provider (OpenAI or Anthropic).
    server: str | None = None
    # Only for a request whose messages contain this text; the first queued reply that fits is
    # used, so parallel requests to one model can each get the answer meant for them.
    when: str | None = None
    # Held (before the headers) until this is true, checked every 50 ms for up to HOLD_SECONDS:
    # a test of ordering ("A merges before B answers") waits for the thing, not for a delay.
    after: Callable[[], bool] | None = None


@dataclass
class ModelInfo:
    """A model as listed by the discovery endpoints; prices are USD per token, as strings."""

    id: str
    context_window: int = 8192
    # llama-server's `meta.n_ctx_train` (what the model was trained for; the server may run
    # it with less, its `n_ctx`, which is `context_window` here). None: the same.
    trained_context: int | None = None
    input_price_per_token: str | None = None
    output_price_per_token: str | None = None


@dataclass
class RecordedRequest:
    """One request as the fake received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float


# --------------------------------------------------------------------------------------------
# HTTP/1.1 wire layer


class _BadHttp(Exception):
    """The peer sent something that is not a request we can parse."""


@dataclass
class _HttpRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


async def _read_request(reader: asyncio.StreamReader) -> _HttpRequest | None:
    """Read one request; None when the peer closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadHttp("connection closed inside request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise _BadHttp("request head too large") from exc
    request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise _BadHttp(f"bad request line: {request_line!r}")
    headers = _parse_headers(header_lines)
    body = await _read_body(reader, headers)
    return _HttpRequest(parts[0].upper(), parts[1], parts[2], headers, body)


def _parse_headers(lines: Iterable[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadHttp(f"bad header line: {line!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked_body(reader)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise _BadHttp("bad Content-Length") from exc
    if not 0 <= length <= _MAX_BODY_BYTES:
        raise _BadHttp("Content-Length out of range")
    return await reader.readexactly(length)


async def _read_chunked_body(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BadHttp("bad chunk size") from exc
        if size == 0:
            # Skip trailers up to the blank line that ends the body.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return bytes(body)
        if len(body) + size > _MAX_BODY_BYTES:
            raise _BadHttp("chunked body too large")
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        # 529 is Anthropic's own "overloaded" status; the stdlib does not know it.
        return "Site Overloaded" if status == 529 else "Unknown"


class _Response:
    """Writes one HTTP response, either whole (Content-Length) or as a chunked stream."""

    def __init__(self, writer: asyncio.StreamWriter, keep_alive: bool) -> None:
        self._writer = writer
        self._keep_alive = keep_alive

    async def send_head(self, status: int, headers: dict[str, str], length: int | None) -> None:
        """Send the status line and headers; ``length=None`` starts a chunked body."""
        lines = [f"HTTP/1.1 {status} {_reason(status)}", "server: forge-fake-provider"]
        framing = {"transfer-encoding": "chunked"}
        if length is not None:
            framing = {"content-length": str(length)}
        connection = {"connection": "keep-alive" if self._keep_alive else "close"}
        merged = {**headers, **framing, **connection}
        lines += [f"{name}: {value}" for name, value in merged.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self._writer.drain()

    async def send_body(self, body: bytes) -> None:
        self._writer.write(body)
        await self._writer.drain()

    async def send_whole(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        await self.send_head(status, headers, len(body))
        await self.send_body(body)

    async def send_json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        body = json.dumps(payload).encode()
        await self.send_whole(status, body, {"content-type": "application/json", **headers})

    async def send_chunk(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self._writer.drain()

    async def send_chunks(self, events: list[bytes]) -> None:
        """Several chunks in one write (one syscall, one drain)."""
        framed = [b"%x\r\n%s\r\n" % (len(data), data) for data in events if data]
        if framed:
            self._writer.write(b"".join(framed))
            await self._writer.drain()

    async def end_chunks(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    def abort(self) -> None:
        """Drop the connection without finishing the response (RST, no final chunk)."""
        self._writer.transport.abort()


# --------------------------------------------------------------------------------------------
# Provider dialects


@dataclass(frozen=True)
class _ErrorSpec:
    """How one error fault looks; ``message`` may use {model} and {key} placeholders."""

    status: int
    message: str
    openai_type: str
    openai_code: str | int | None
    anthropic_type: str


_ERRORS: dict[Fault, _ErrorSpec] = {
    Fault.RATE_LIMIT: _ErrorSpec(
        429,
        "Rate limit reached for {model}. Please try again later.",
        "requests",
        "rate_limit_exceeded",
        "rate_limit_error",
    ),
    Fault.SERVER_ERROR: _ErrorSpec(
        500,
        "The server had an error while processing your request.",
        "server_error",
        None,
        "api_error",
    ),
    Fault.BAD_GATEWAY: _ErrorSpec(502, "Bad gateway.", "server_error", 502, "api_error"),
    Fault.UNAVAILABLE: _ErrorSpec(
        503,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        "api_error",
    ),
    Fault.OVERLOADED: _ErrorSpec(529, "Overloaded", "overloaded_error", None, "overloaded_error"),
    Fault.AUTH: _ErrorSpec(
        401,
        "Incorrect API key provided: {key}",
        "invalid_request_error",
        "invalid_api_key",
        "authentication_error",
    ),
    Fault.NOT_FOUND: _ErrorSpec(
        404,
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
        "not_found_error",
    ),
    Fault.BAD_REQUEST: _ErrorSpec(
        400, "Invalid request.", "invalid_request_error", None, "invalid_request_error"
    ),
    Fault.CONTEXT_TOO_LONG: _ErrorSpec(
        400,
        "This model's maximum context length is 8192 tokens. However, your messages resulted"
        " in 9000 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
        "invalid_request_error",
    ),
}

# The error bodies of OpenAI-compatible servers other than OpenAI, as they send them:
# (fault, server) -> (status, body); {model} is the model asked for.
_SERVER_ERRORS: dict[tuple[Fault, str], tuple[int, Any]] = {
    # As LiteLLM's proxy 1.80 sends it (tests/interop checks it against the real proxy): the
    # router's error dict as a string inside the message, and Python's None as strings.
    (Fault.NOT_FOUND, "litellm"): (
        400,
        {
            "error": {
                "message": "{'error': '/chat/completions: Invalid model name passed in "
                "model={model}. Call `/v1/models` to view available models for your key.'}",
                "type": "None",
                "param": "None",
                "code": "400",
            }
        },
    ),
    (Fault.NOT_FOUND, "vllm"): (
        404,
        {
            "object": "error",
            "message": "The model `{model}` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        },
    ),
    (Fault.NOT_FOUND, "transformers"): (
        400,
        {
            "detail": "{model} is not a local folder and is not a valid model identifier listed"
            " on 'https://huggingface.co/models'"
        },
    ),
    (Fault.NOT_FOUND, "ollama"): (
        404,
        {"error": 'model "{model}" not found, try pulling it first'},
    ),
    (Fault.CONTEXT_TOO_LONG, "llama-server"): (
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 1200,
                "n_ctx": 1024,
            }
        },
    ),
    (Fault.CONTEXT_TOO_LONG, "transformers"): (
        400,
        {
            "detail": "This model's maximum context length is 1024 tokens. However, you "
            "requested 1200 tokens in the messages."
        },
    ),
    (Fault.CONTEXT_TOO_LONG, "vllm"): (
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 1024 tokens. However, you "
            "requested 1300 tokens (1200 in the messages, 100 in the completion). Please "
            "reduce the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    (Fault.CONTEXT_TOO_LONG, "litellm"): (
        400,
        {
            "error": {
                "message": "litellm.ContextWindowExceededError: litellm.BadRequestError: "
                "ContextWindowExceededError: input is too long for {model}",
                "type": None,
                "param": None,
                "code": "400",
            }
        },
    ),
    (Fault.BAD_REQUEST, "transformers"): (
        422,
        {
            "detail": [
                {
                    "loc": ["body", "messages", 0, "content"],
                    "msg": "field required",
                    "type": "value_error.missing",
                }
            ]
        },
    ),
}
# The servers `Reply.server` and `FakeProvider.server` may name.
SERVERS = ("openai", "litellm", "vllm", "transformers", "ollama", "llama-server")


def _filled(value: Any, model: str) -> Any:
    """`value` with {model} put in every string."""
    if isinstance(value, str):
        return value.replace("{model}", model)
    if isinstance(value, dict):
        return {k: _filled(v, model) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, model) for v in value]
    return value


_ERROR_200_MESSAGE = "Upstream provider returned an error"
_MALFORMED_JSON = b'{"id": "broken", "choices": [{"delta": '


@dataclass
class _Turn:
    """Everything a dialect needs to render one chat answer."""

    id: str
    model: str
    created: int
    tokens: list[str]
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: str | None
    include_usage: bool
    finish_reason: str | None = None
    usage_fields: dict[str, Any] = field(default_factory=dict)
    error_code: int | str = 502

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def _anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _sse(payload: Any, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + data + b"\n\n"


class _OpenAIDialect:
    """OpenAI chat completions (also OpenRouter and other OpenAI-compatible APIs)."""

    id_prefix = "chatcmpl-fake-"

    def error_body(self, spec: _ErrorSpec, message: str) -> dict[str, Any]:
        if spec.status == 529:
            # 529 only ever comes from Anthropic, so it keeps Anthropic's shape on every route.
            return _anthropic_error(spec.anthropic_type, message)
        return {"error": {"message": message, "type": spec.openai_type, "code": spec.openai_code}}

    def error_200(self, code: int | str = 502) -> dict[str, Any]:
        return {"error": {"message": _ERROR_200_MESSAGE, "code": code}}

    def completion(self, turn: _Turn, fault: Fault | None = None) -> dict[str, Any]:
        message = {"role": "assistant", "content": turn.text}
        finish = turn.finish_reason or "stop"
        if fault in (Fault.MID_STREAM_ERROR, Fault.FINISH_ERROR):
            finish = "error"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        body = {**self._envelope(turn, "chat.completion", [choice]), "usage": self._usage(turn)}
        if fault is Fault.MID_STREAM_ERROR:
            body["error"] = {"code": turn.error_code, "message": "Provider disconnected"}
        return body

    def stream_open(self, turn: _Turn) -> list[bytes]:
        return [self._chunk(turn, {"role": "assistant", "content": ""}, None)]

    def stream_token(self, turn: _Turn, token: str) -> bytes:
        return self._chunk(turn, {"content": token}, None)

    def stream_close(self, turn: _Turn) -> list[bytes]:
        events = [self._chunk(turn, {}, turn.finish_reason or "stop")]
        if turn.include_usage:
            usage_chunk = self._envelope(turn, "chat.completion.chunk", [])
            events.append(_sse({**usage_chunk, "usage": self._usage(turn)}))
        return [*events, b"data: [DONE]\n\n"]

    def stream_malformed(self) -> bytes:
        return _sse(_MALFORMED_JSON)

    def stream_error(self, code: int | str = 502) -> bytes:
        return _sse(self.error_200(code))

    def stream_failure(self, turn: _Turn, fault: Fault) -> list[bytes]:
        """How a stream that fails midway ends (MID_STREAM_ERROR, FINISH_ERROR)."""
        choice = {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}
        chunk = self._envelope(turn, "chat.completion.chunk", [choice])
        if fault is Fault.MID_STREAM_ERROR:
            chunk["error"] = {"code": turn.error_code, "message": "Provider disconnected"}
        return [_sse(chunk), b"data: [DONE]\n\n"]

    def stream_without_choices(self, turn: _Turn) -> list[bytes]:
        usage_chunk = self._envelope(turn, "chat.completion.chunk", [])
        return [_sse({**usage_chunk, "usage": self._usage(turn)}), b"data: [DONE]\n\n"]

    def _envelope(self, turn: _Turn, kind: str, choices: list[Any]) -> dict[str, Any]:
        return {
            "id": turn.id,
            "object": kind,
            "created": turn.created,
            "model": turn.model,
            "choices": choices,
        }

    def _chunk(self, turn: _Turn, delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(self._envelope(turn, "chat.completion.chunk", [choice]))

    def _usage(self, turn: _Turn) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": turn.input_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.output_tokens,
            "prompt_tokens_details": {"cached_tokens": turn.cached_tokens},
        }
        if turn.cost is not None:
            usage["cost"] = turn.cost
        return {**usage, **turn.usage_fields}


class _AnthropicDialect:
    """Anthropic Messages API."""

    id_prefix = "msg_fake_"

    def error_body(self, spec: _ErrorSpec, message: str) -> dict[str, Any]:
        return _anthropic_error(spec.anthropic_type, message)

    def error_200(self, code: int | str = 502) -> dict[str, Any]:
        return _anthropic_error("api_error", _ERROR_200_MESSAGE)

    def completion(self, turn: _Turn, fault: Fault | None = None) -> dict[str, Any]:
        if fault is Fault.MID_STREAM_ERROR:
            return self.error_200()
        return {
            **self._message(turn, [{"type": "text", "text": turn.text}]),
            "stop_reason": turn.finish_reason or "end_turn",
            "stop_sequence": None,
            "usage": self._usage(turn, turn.output_tokens),
        }

    def stream_open(self, turn: _Turn) -> list[bytes]:
        # Like the real API, message_start reports a provisional output count; the final count
        # arrives in message_delta, so clients must not add the two.
        start = {**self._message(turn, []), "stop_reason": None, "stop_sequence": None}
        start["usage"] = self._usage(turn, min(1, turn.output_tokens))
        block = {"type": "text", "text": ""}
        return [
            _sse({"type": "message_start", "message": start}, "message_start"),
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            ),
            _sse({"type": "ping"}, "ping"),
        ]

    def stream_token(self, turn: _Turn, token: str) -> bytes:
        delta = {"type": "text_delta", "text": token}
        return _sse(
            {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
        )

    def stream_close(self, turn: _Turn) -> list[bytes]:
        delta = {"stop_reason": turn.finish_reason or "end_turn", "stop_sequence": None}
        usage = {"output_tokens": turn.output_tokens, **turn.usage_fields}
        return [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"),
            _sse({"type": "message_stop"}, "message_stop"),
        ]

    def stream_malformed(self) -> bytes:
        return _sse(_MALFORMED_JSON, "content_block_delta")

    def stream_error(self, code: int | str = 502) -> bytes:
        return _sse(self.error_200(code), "error")

    def stream_failure(self, turn: _Turn, fault: Fault) -> list[bytes]:
        """Anthropic reports a failure midway as an `error` event."""
        return [_sse(_anthropic_error("overloaded_error", "Overloaded"), "error")]

    def stream_without_choices(self, turn: _Turn) -> list[bytes]:
        return [_sse({"type": "message_stop"}, "message_stop")]

    def _message(self, turn: _Turn, content: list[Any]) -> dict[str, Any]:
        return {
            "id": turn.id,
            "type": "message",
            "role": "assistant",
            "model": turn.model,
            "content": content,
        }

    def _usage(self, turn: _Turn, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": turn.input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": turn.cached_tokens,
            "cache_creation_input_tokens": 0,
            **turn.usage_fields,
        }


_Dialect = _OpenAIDialect | _AnthropicDialect
_OPENAI = _OpenAIDialect()
_ANTHROPIC = _AnthropicDialect()


def _content_chars(content: Any) -> int:
    """Characters of text in a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        parts = [part.get("text") for part in content if isinstance(part, dict)]
        return sum(len(text) for text in parts if isinstance(text, str))
    return 0


def _estimate_input_tokens(payload: dict[str, Any]) -> int:
    messages = payload.get("messages")
    chars = _content_chars(payload.get("system"))
    if isinstance(messages, list):
        chars += sum(_content_chars(m.get("content")) for m in messages if isinstance(m, dict))
    return chars // 4 + 1


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}"


# --------------------------------------------------------------------------------------------
# One chat exchange


class _Exchange:
    """Answers one chat request according to its scripted :class:`Reply`."""

    def __init__(
        self,
        request: _HttpRequest,
        payload: dict[str, Any],
        reply: Reply,
        dialect: _Dialect,
        turn: _Turn,
    ) -> None:
        self.request = request
        self.payload = payload
        self.reply = reply
        self.dialect = dialect
        self.turn = turn

    async def run(self, response: _Response) -> bool:
        """Send the answer; False when the connection must not be reused."""
        if self.reply.after is not None:
            waited = 0.0
            while waited < HOLD_SECONDS and not await asyncio.to_thread(self.reply.after):
                await asyncio.sleep(0.05)
                waited += 0.05
        await asyncio.sleep(self.reply.latency)
        fault = self.reply.fault
        if fault in _ERRORS:
            await self._send_error(response, _ERRORS[fault])
            return True
        if fault is Fault.DROP and not self.payload.get("stream"):
            response.abort()
            return False
        if self.payload.get("stream") and self.reply.body is None:
            return await self._stream(response)
        await self._complete(response)
        return True

    async def _send_error(self, response: _Response, spec: _ErrorSpec) -> None:
        fault = self.reply.fault
        shaped = _SERVER_ERRORS.get((fault, self.reply.server or "")) if fault else None
        if shaped is not None:
            status, body = shaped
            headers = {**self._error_headers(), **self.reply.headers}
            await response.send_json(status, _filled(body, self.turn.model), headers)
            return
        message = spec.message.format(model=self.turn.model, key=self._presented_key())
        headers = {**self._error_headers(), **self.reply.headers}
        await response.send_json(spec.status, self.dialect.error_body(spec, message), headers)

    def _presented_key(self) -> str:
        headers = self.request.headers
        value = headers.get("x-api-key") or headers.get("authorization", "")
        return value.removeprefix("Bearer ").strip()

    def _error_headers(self) -> dict[str, str]:
        retry_after = self.reply.retry_after
        if self.reply.fault is Fault.RATE_LIMIT:
            seconds = _format_seconds(1.0 if retry_after is None else retry_after)
            return {
                "retry-after": seconds,
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{seconds}s",
            }
        return {} if retry_after is None else {"retry-after": _format_seconds(retry_after)}

    async def _complete(self, response: _Response) -> None:
        fault = self.reply.fault
        if self.reply.body is not None:
            body = self.reply.body
        elif fault is Fault.MALFORMED:
            body = _MALFORMED_JSON
        elif fault is Fault.ERROR_200:
            body = json.dumps(self.dialect.error_200(self.reply.error_code)).encode()
        else:
            body = json.dumps(self.dialect.completion(self.turn, fault)).encode()
        headers = {"content-type": "application/json", **self.reply.headers}
        await response.send_head(200, headers, len(body))
        if fault is Fault.STALL:
            await asyncio.sleep(self.reply.stall_seconds)
        await response.send_body(body)

    async def _stream(self, response: _Response) -> bool:
        await self._open_stream(response)
        fault = self.reply.fault
        tokens = self.turn.tokens
        if fault is Fault.STALL:
            head, tokens = (
                tokens[: self.reply.stall_after_tokens],
                tokens[self.reply.stall_after_tokens :],
            )
            await self._send_tokens(response, head)
            await self._stall(response)
        if fault is Fault.ERROR_200:
            await response.send_chunk(self.dialect.stream_error(self.reply.error_code))
            await response.end_chunks()
            return True
        if fault in (Fault.MID_STREAM_ERROR, Fault.FINISH_ERROR, Fault.NO_CHOICES):
            if fault is not Fault.NO_CHOICES:
                await self._send_tokens(response, tokens[: max(1, len(tokens) // 2)])
                await response.send_chunks(self.dialect.stream_failure(self.turn, fault))
            else:
                await response.send_chunks(self.dialect.stream_without_choices(self.turn))
            await response.end_chunks()
            return True
        await asyncio.sleep(self.reply.ttft)
        if fault is Fault.DROP:
            await self._drop_midway(response)
            return False
        if fault is Fault.MALFORMED:
            await response.send_chunk(self.dialect.stream_malformed())
        await self._send_tokens(response, tokens)
        await self._close_stream(response)
        return True

    async def _open_stream(self, response: _Response) -> None:
        headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
        await response.send_head(200, {**headers, **self.reply.headers}, None)
        if self.reply.fault is Fault.NO_CHOICES:
            return
        for event in self.dialect.stream_open(self.turn):
            await response.send_chunk(event)

    async def _drop_midway(self, response: _Response) -> None:
        """Half the text (at least one token), then a reset: no finish event, no [DONE]."""
        tokens = self.turn.tokens
        await self._send_tokens(response, tokens[: max(1, len(tokens) // 2)])
        response.abort()

    async def _close_stream(self, response: _Response) -> None:
        for event in self.dialect.stream_close(self.turn):
            await response.send_chunk(event)
        await response.end_chunks()

    async def _send_tokens(self, response: _Response, tokens: list[str]) -> None:
        pace = self.reply.tokens_per_second
        if not pace:  # as fast as possible: every event in one write, as a busy server's would
            await response.send_chunks(self._token_events(tokens))
            return
        for index, token in enumerate(tokens):
            if index:
                await asyncio.sleep(1.0 / pace)
            await response.send_chunk(self.dialect.stream_token(self.turn, token))

    def _token_events(self, tokens: list[str]) -> list[bytes]:
        """The events for `tokens`, rendered once around a marker and filled in per token.

        Encoding every event as a whole made the server, not the client under test, the slow
        side of a thousand streams at once.
        """
        marker = "\x00token\x00"
        encoded = json.dumps(marker).encode()
        head, found, tail = self.dialect.stream_token(self.turn, marker).partition(encoded)
        if not found or encoded in tail:
            return [self.dialect.stream_token(self.turn, t) for t in tokens]
        return [head + json.dumps(t).encode() + tail for t in tokens]

    async def _stall(self, response: _Response) -> None:
        """Hold the stream open without progress, sending only SSE comments."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reply.stall_seconds
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(_KEEPALIVE_INTERVAL, remaining))
            await response.send_chunk(b": keep-alive\n\n")


# --------------------------------------------------------------------------------------------
# The server


class FakeProvider:
    """A scripted fake model provider on ``127.0.0.1``, served from one background thread.

    Use as a context manager (or call :meth:`start` / :meth:`stop`), point clients at
    :attr:`url`, and script replies per model with :meth:`script`. Requests are matched on the
    path suffix, so one server can stand in for several providers with different base URLs.
    """

    def __init__(
        self,
        models: list[ModelInfo] | None = None,
        *,
        port: int = 0,
        default: Reply | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._tls = tls  # a server context: the fake speaks HTTPS with its certificate
        self._models: dict[str, ModelInfo] = {info.id: info for info in models or []}
        self._default = default or Reply()  # the reply of a model no script speaks for
        self._scripts: dict[str, list[Reply]] = {}
        self._last_reply: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._requested_port = port
        self._port: int | None = None
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._open_streams = 0
        self.requests: list[RecordedRequest] = []
        self.max_concurrent_streams = 0
        # Which server's discovery the fake speaks besides OpenAI's listing (see SERVERS):
        # "llama-server" adds `meta` to /v1/models and serves /props, "vllm" adds
        # `max_model_len`, "litellm" serves /model/info.
        self.server = "openai"
        # Set to N: every chat request waits (up to HOLD_SECONDS) until N are open at once, so
        # a test of concurrency waits for the thing instead of for a latency long enough.
        self.hold_until_open: int | None = None
        self._all_open: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, or https with `tls`; valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("FakeProvider is not started")
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self._port}"

    def start(self) -> FakeProvider:
        """Bind the port and start serving; returns self once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider already started")
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise RuntimeError("FakeProvider failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection, stalled ones included, and join the server thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(stopping.set)
        thread.join()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if self._ready.is_set():
                raise  # a crash while serving: let the thread report it
            self._startup_error = exc  # e.g. port in use: start() re-raises it in the caller
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._on_connection,
            "127.0.0.1",
            self._requested_port,
            backlog=_LISTEN_BACKLOG,
            ssl=self._tls,
            # A client stalled in its handshake must not hold up stop() for long.
            ssl_handshake_timeout=5.0 if self._tls else None,
        )
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await self._close_connections()
            await server.wait_closed()

    async def _close_connections(self) -> None:
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- scripting ---------------------------------------------------------------------------

    def script(self, model: str, *replies: Reply) -> None:
        """Queue replies for ``model``, one per chat request; the last one then repeats."""
        with self._lock:
            self._scripts.setdefault(model, []).extend(replies)
            if replies:
                self._last_reply[model] = replies[-1]
            self._models.setdefault(model, ModelInfo(id=model))

    def add_model(self, info: ModelInfo) -> None:
        """List ``info`` on the discovery endpoints (replacing any model with the same id)."""
        with self._lock:
            self._models[info.id] = info

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """Recorded requests whose JSON body names ``model``."""
        with self._lock:
            recorded = list(self.requests)
        return [r for r in recorded if isinstance(r.body, dict) and r.body.get("model") == model]

    def _next_reply(self, model: str, payload: dict[str, Any] | None = None) -> Reply:
        text = json.dumps((payload or {}).get("messages", ""))
        with self._lock:
            queue = self._scripts.get(model) or []
            for index, reply in enumerate(queue):
                if reply.when is None or json.dumps(reply.when)[1:-1] in text:
                    return queue.pop(index)
            last = self._last_reply.get(model, self._default)
            if last.when is None or json.dumps(last.when)[1:-1] in text:
                return last
            return self._default

    def _listed_models(self) -> list[ModelInfo]:
        with self._lock:
            return list(self._models.values())

    # -- connections -------------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away; nothing left to answer
        except asyncio.CancelledError:
            # Only stop() cancels these tasks. Ending normally rather than re-raising matters on
            # Python 3.11, whose start_server callback logs a traceback for cancelled handlers.
            writer.transport.abort()  # and don't wait to flush to a client that may be stalled
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer requests on one connection until the client or a fault closes it."""
        while True:
            try:
                request = await _read_request(reader)
            except _BadHttp as exc:
                error = {"error": {"message": str(exc), "type": "invalid_request_error"}}
                await _Response(writer, keep_alive=False).send_json(400, error, {})
                return
            if request is None:
                return
            response = _Response(writer, request.keep_alive)
            if not await self._dispatch(request, response) or not request.keep_alive:
                return

    async def _dispatch(self, request: _HttpRequest, response: _Response) -> bool:
        """Route one request; False when the connection must be closed afterwards."""
        self._record(request)
        path, method = request.path.rstrip("/"), request.method
        if method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(request, response, _OPENAI)
        if method == "POST" and path.endswith("/messages"):
            return await self._chat(request, response, _ANTHROPIC)
        if method == "GET" and path.endswith("/props") and self.server == "llama-server":
            await response.send_json(200, self._llama_props(), {})
        elif method == "GET" and path.endswith("/model/info") and self.server == "litellm":
            await response.send_json(200, self._litellm_model_info(), {})
        elif method == "GET" and path.endswith("/api/v1/models"):
            await response.send_json(200, self._openrouter_models(), {})
        elif method == "GET" and path.endswith("/models"):
            await response.send_json(200, self._openai_models(), {})
        elif method == "GET" and path.endswith("/api/tags"):
            await response.send_json(200, self._ollama_models(), {})
        else:
            error = {"error": {"message": f"No route for {method} {path}", "type": "not_found"}}
            await response.send_json(404, error, {})
        return True

    def _record(self, request: _HttpRequest) -> None:
        recorded = RecordedRequest(
            method=request.method,
            path=request.target,
            headers=dict(request.headers),
            body=request.json(),
            received_at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(recorded)

    # -- chat --------------------------------------------------------------------------------

    async def _chat(self, request: _HttpRequest, response: _Response, dialect: _Dialect) -> bool:
        payload = request.json()
        if not isinstance(payload, dict):
            spec = _ERRORS[Fault.BAD_REQUEST]
            await response.send_json(400, dialect.error_body(spec, "Body must be JSON."), {})
            return True
        reply = self._next_reply(str(payload.get("model", "")), payload)
        exchange = _Exchange(request, payload, reply, dialect, self._turn(payload, reply, dialect))
        self._open_streams += 1
        self.max_concurrent_streams = max(self.max_concurrent_streams, self._open_streams)
        try:
            await self._hold()
            return await exchange.run(response)
        finally:
            self._open_streams -= 1

    async def _hold(self) -> None:
        if self.hold_until_open is None:
            return
        if self._all_open is None:
            self._all_open = asyncio.Event()
        if self._open_streams >= self.hold_until_open:
            self._all_open.set()
        # Past the limit, go on: the test then sees fewer open at once than it asked for.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_open.wait(), HOLD_SECONDS)

    def _turn(self, payload: dict[str, Any], reply: Reply, dialect: _Dialect) -> _Turn:
        tokens = _TOKEN_PATTERN.findall(reply.text)
        stream_options = payload.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        return _Turn(
            id=f"{dialect.id_prefix}{next(self._ids)}",
            model=str(payload.get("model", "")),
            created=int(time.time()),
            tokens=tokens,
            input_tokens=(
                _estimate_input_tokens(payload)
                if reply.input_tokens is None
                else reply.input_tokens
            ),
            output_tokens=len(tokens) if reply.output_tokens is None else reply.output_tokens,
            cached_tokens=reply.cached_tokens,
            cost=reply.cost,
            include_usage=include_usage,
            finish_reason=reply.finish_reason,
            usage_fields=reply.usage,
            error_code=reply.error_code,
        )

    # -- discovery ---------------------------------------------------------------------------

    def _openai_models(self) -> dict[str, Any]:
        data = [self._openai_entry(m) for m in self._listed_models()]
        return {"object": "list", "data": data}

    def _openai_entry(self, info: ModelInfo) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": info.id, "object": "model", "created": 0}
        if self.server == "llama-server":
            trained = info.context_window if info.trained_context is None else info.trained_context
            meta = {"vocab_type": 2, "n_vocab": 151936, "n_ctx_train": trained, "n_embd": 2048}
            return {**entry, "owned_by": "llamacpp", "meta": meta}
        if self.server == "vllm":
            return {
                **entry,
                "owned_by": "vllm",
                "root": info.id,
                "max_model_len": info.context_window,
            }
        return {**entry, "owned_by": "fake"}

    def _llama_props(self) -> dict[str, Any]:
        """llama-server's /props: the context it runs its (one) model with."""
        models = self._listed_models()
        n_ctx = models[0].context_window if models else 4096
        return {
            "default_generation_settings": {"n_ctx": n_ctx, "temperature": 0.8},
            "total_slots": 1,
            "model_path": f"/models/{models[0].id}" if models else "",
        }

    def _litellm_model_info(self) -> dict[str, Any]:
        """LiteLLM's /model/info: each deployment, its limits in `model_info`."""
        data = [
            {
                "model_name": m.id,
                "litellm_params": {"model": f"openai/{m.id}"},
                "model_info": {
                    "id": f"deployment-{index}",
                    "max_input_tokens": m.context_window,
                    "max_output_tokens": 4096,
                },
            }
            for index, m in enumerate(self._listed_models())
        ]
        return {"data": data}

    def _openrouter_models(self) -> dict[str, Any]:
        data = [
            {
                "id": m.id,
                "name": m.id,
                "context_length": m.context_window,
                "pricing": {
                    "prompt": m.input_price_per_token or "0",
                    "completion": m.output_price_per_token or "0",
                },
            }
            for m in self._listed_models()
        ]
        return {"data": data}

    def _ollama_models(self) -> dict[str, Any]:
        return {"models": [_ollama_entry(m) for m in self._listed_models()]}


def _ollama_entry(info: ModelInfo) -> dict[str, Any]:
    """An Ollama /api/tags entry; size and family are guessed from a name like ``llama3.2:3b``."""
    name, _, tag = info.id.partition(":")
    family = re.match(r"[a-zA-Z]*", name)
    details = {
        "parameter_size": tag.upper() if re.fullmatch(r"[\d.]+[bBmM]", tag) else "unknown",
        "family": (family.group(0) if family else "") or name,
    }
    return {"name": info.id, "model": info.id, "size": 123, "details": details}


def main(argv: list[str] | None = None) -> None:
    """Serve a fake provider until Ctrl-C, for trying forge against it by hand."""
    parser = argparse.ArgumentParser(description="Serve a fake language-model provider.")
    parser.add_argument("--port", type=int, default=8799, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--model", action="append", default=[], help="model id to list")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each answer's first token, to watch the live views",
    )
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        default=None,
        metavar="N",
        help="stream each answer at this pace (default: at once)",
    )
    args = parser.parse_args(argv)
    if args.latency < 0 or (args.tokens_per_second is not None and args.tokens_per_second <= 0):
        parser.error("--latency must be 0 or more, and --tokens-per-second more than 0")
    default = Reply(ttft=args.latency, tokens_per_second=args.tokens_per_second)
    provider = FakeProvider([ModelInfo(id=m) for m in args.model], port=args.port, default=default)
    with provider:
        print(f"fake provider listening on {provider.url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
