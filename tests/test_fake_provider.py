"""Tests for forge.testing.fake_provider, driven by httpx over real sockets."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from forge.testing.fake_provider import FakeProvider, Fault, ModelInfo, Reply

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider([ModelInfo(id="gpt-fake", context_window=128_000)]) as fake:
        yield fake


@pytest.fixture
def client(provider: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=provider.url, timeout=10) as http_client:
        yield http_client


def chat_body(model: str = "gpt-fake", stream: bool = False, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Say hello, please."}]
    return {"model": model, "messages": messages, "stream": stream, **extra}


def stream_lines(client: httpx.Client, path: str, body: dict[str, Any]) -> list[str]:
    """POST a streaming request and return every non-empty line of the event stream."""
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        return [line for line in response.iter_lines() if line]


def data_payloads(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def openai_stream_text(lines: list[str]) -> str:
    chunks = [json.loads(data) for data in data_payloads(lines) if data != "[DONE]"]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    return "".join(delta.get("content", "") for delta in deltas)


# -- OpenAI chat completions ---------------------------------------------------------------


def test_openai_non_streaming_reply_reports_usage(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script(
        "gpt-fake", Reply(text="hello there", input_tokens=12, cached_tokens=3, cost="0.00042")
    )

    body = client.post(CHAT, json=chat_body()).json()

    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-fake"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 2,
        "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 3},
        "cost": "0.00042",
    }


def test_unscripted_model_answers_ok_with_estimated_usage(client: httpx.Client) -> None:
    request = {"model": "never-heard-of-it", "messages": [{"role": "user", "content": "x" * 40}]}

    body = client.post(CHAT, json=request).json()

    assert body["choices"][0]["message"]["content"] == "ok"
    assert body["usage"]["prompt_tokens"] == 11  # 40 chars // 4 + 1
    assert body["usage"]["completion_tokens"] == 1
    assert "cost" not in body["usage"]


def test_openai_stream_sends_role_content_finish_usage_and_done(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script("gpt-fake", Reply(text="one two three", output_tokens=7))
    body = chat_body(stream=True, stream_options={"include_usage": True})

    payloads = data_payloads(stream_lines(client, CHAT, body))

    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(data) for data in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:4]]
    assert contents == ["one ", "two ", "three"]
    assert chunks[4]["choices"][0]["finish_reason"] == "stop"
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["completion_tokens"] == 7
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_openai_stream_omits_usage_unless_asked(client: httpx.Client) -> None:
    payloads = data_payloads(stream_lines(client, CHAT, chat_body(stream=True)))

    assert payloads[-1] == "[DONE]"
    assert all("usage" not in json.loads(data) for data in payloads[:-1])


# -- Anthropic messages --------------------------------------------------------------------


def test_anthropic_non_streaming_message(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("claude-fake", Reply(text="bonjour", input_tokens=30, cached_tokens=20))
    request = {"model": "claude-fake", "system": "Be brief.", "messages": [], "max_tokens": 50}

    body = client.post(MESSAGES, json=request).json()

    assert body["type"] == "message"
    assert body["content"] == [{"type": "text", "text": "bonjour"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"] == {
        "input_tokens": 30,
        "output_tokens": 1,
        "cache_read_input_tokens": 20,
        "cache_creation_input_tokens": 0,
    }


def test_anthropic_stream_events_arrive_in_order(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script("claude-fake", Reply(text="alpha beta", input_tokens=9))
    request = {"model": "claude-fake", "messages": [], "max_tokens": 50, "stream": True}

    lines = stream_lines(client, MESSAGES, request)

    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [json.loads(data) for data in data_payloads(lines)]
    assert [p["type"] for p in payloads] == events
    assert payloads[0]["message"]["usage"]["input_tokens"] == 9
    texts = [p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta"]
    assert texts == ["alpha ", "beta"]
    assert payloads[6]["delta"]["stop_reason"] == "end_turn"
    assert payloads[6]["usage"]["output_tokens"] == 2


# -- faults --------------------------------------------------------------------------------

OPENAI_ERRORS = [
    (Fault.RATE_LIMIT, 429, "rate_limit_exceeded"),
    (Fault.SERVER_ERROR, 500, None),
    (Fault.BAD_GATEWAY, 502, 502),
    (Fault.UNAVAILABLE, 503, None),
    (Fault.AUTH, 401, "invalid_api_key"),
    (Fault.NOT_FOUND, 404, "model_not_found"),
    (Fault.BAD_REQUEST, 400, None),
    (Fault.CONTEXT_TOO_LONG, 400, "context_length_exceeded"),
]


@pytest.mark.parametrize(("fault", "status", "code"), OPENAI_ERRORS)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_error_faults_have_status_and_shape(
    provider: FakeProvider,
    client: httpx.Client,
    fault: Fault,
    status: int,
    code: str | int | None,
    stream: bool,
) -> None:
    provider.script("gpt-fake", Reply(fault=fault))

    response = client.post(CHAT, json=chat_body(stream=stream))

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_rate_limit_sends_retry_after_and_ratelimit_headers(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script(
        "gpt-fake", Reply(fault=Fault.RATE_LIMIT), Reply(fault=Fault.RATE_LIMIT, retry_after=7)
    )

    first, second = (client.post(CHAT, json=chat_body()) for _ in range(2))

    assert first.headers["retry-after"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.headers["x-ratelimit-reset-requests"] == "1s"
    assert second.headers["retry-after"] == "7"


def test_unavailable_sends_retry_after_only_when_set(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script(
        "gpt-fake", Reply(fault=Fault.UNAVAILABLE), Reply(fault=Fault.UNAVAILABLE, retry_after=0.5)
    )

    first, second = (client.post(CHAT, json=chat_body()) for _ in range(2))

    assert "retry-after" not in first.headers
    assert second.headers["retry-after"] == "0.5"


def test_auth_fault_echoes_the_presented_key(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-fake", Reply(fault=Fault.AUTH))
    provider.script("claude-fake", Reply(fault=Fault.AUTH))
    anthropic_request = {"model": "claude-fake", "messages": [], "max_tokens": 5}

    openai = client.post(CHAT, json=chat_body(), headers={"Authorization": "Bearer sk-secret-1"})
    anthropic = client.post(MESSAGES, json=anthropic_request, headers={"x-api-key": "sk-ant-2"})

    assert openai.json()["error"] == {
        "message": "Incorrect API key provided: sk-secret-1",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
    assert anthropic.json()["error"]["type"] == "authentication_error"
    assert "sk-ant-2" in anthropic.json()["error"]["message"]


def test_overloaded_is_anthropic_shaped_529(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-fake", Reply(fault=Fault.OVERLOADED))

    response = client.post(CHAT, json=chat_body())

    assert response.status_code == 529
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        (Fault.RATE_LIMIT, 429, "rate_limit_error"),
        (Fault.SERVER_ERROR, 500, "api_error"),
        (Fault.OVERLOADED, 529, "overloaded_error"),
        (Fault.AUTH, 401, "authentication_error"),
        (Fault.NOT_FOUND, 404, "not_found_error"),
        (Fault.CONTEXT_TOO_LONG, 400, "invalid_request_error"),
    ],
)
def test_anthropic_error_faults_have_anthropic_shape(
    provider: FakeProvider, client: httpx.Client, fault: Fault, status: int, error_type: str
) -> None:
    provider.script("claude-fake", Reply(fault=fault))
    request = {"model": "claude-fake", "messages": [], "max_tokens": 5}

    response = client.post(MESSAGES, json=request)

    assert response.status_code == status
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == error_type


def test_drop_truncates_a_stream(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-fake", Reply(text="a b c d e f g h", fault=Fault.DROP))
    lines: list[str] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", CHAT, json=chat_body(stream=True)) as response,
    ):
        lines.extend(line for line in response.iter_lines() if line)

    assert "[DONE]" not in data_payloads(lines)
    assert openai_stream_text(lines) == "a b c d "


def test_drop_without_stream_closes_before_responding(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script("gpt-fake", Reply(fault=Fault.DROP), Reply(text="back"))

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CHAT, json=chat_body())

    assert client.post(CHAT, json=chat_body()).json()["choices"][0]["message"]["content"] == "back"


def test_stall_sends_keepalive_comments_but_no_content(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script("gpt-fake", Reply(text="never", fault=Fault.STALL, stall_seconds=30))
    lines: list[str] = []

    with client.stream("POST", CHAT, json=chat_body(stream=True)) as response:
        watch_until = time.monotonic() + 1.0
        for line in response.iter_lines():
            lines.append(line)
            if time.monotonic() > watch_until:
                break

    assert lines.count(": keep-alive") >= 3
    assert openai_stream_text(lines) == ""
    assert len(data_payloads(lines)) == 1  # only the opening role chunk


def test_stall_without_stream_sends_headers_then_nothing(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script("gpt-fake", Reply(fault=Fault.STALL, stall_seconds=30))

    with pytest.raises(httpx.ReadTimeout):
        client.post(CHAT, json=chat_body(), timeout=httpx.Timeout(5, read=0.5))


def test_malformed_bodies_are_not_json(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-fake", Reply(fault=Fault.MALFORMED))

    response = client.post(CHAT, json=chat_body())
    lines = stream_lines(client, CHAT, chat_body(stream=True))

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    with pytest.raises(json.JSONDecodeError):
        [json.loads(data) for data in data_payloads(lines) if data != "[DONE]"]


def test_error_200_carries_an_error_object(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-fake", Reply(fault=Fault.ERROR_200))
    provider.script("claude-fake", Reply(fault=Fault.ERROR_200))
    anthropic_request = {"model": "claude-fake", "messages": [], "max_tokens": 5, "stream": True}

    response = client.post(CHAT, json=chat_body())
    openai_lines = stream_lines(client, CHAT, chat_body(stream=True))
    anthropic_lines = stream_lines(client, MESSAGES, anthropic_request)

    assert response.status_code == 200
    assert response.json()["error"]["code"] == 502
    errors = [json.loads(d) for d in data_payloads(openai_lines) if '"error"' in d]
    assert len(errors) == 1
    assert errors[0]["error"]["code"] == 502
    assert "event: error" in anthropic_lines


def test_mid_stream_error_is_openrouters_documented_chunk(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script("gpt-fake", Reply(text="one two three four", fault=Fault.MID_STREAM_ERROR))

    lines = stream_lines(client, CHAT, chat_body(stream=True))

    assert openai_stream_text(lines) == "one two "
    chunks = [json.loads(d) for d in data_payloads(lines) if d != "[DONE]"]
    assert chunks[-1]["error"] == {"code": 502, "message": "Provider disconnected"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "error"
    assert lines[-1] == "data: [DONE]"


def test_finish_error_no_choices_and_shaped_replies(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script(
        "gpt-fake",
        Reply(text="a b", fault=Fault.FINISH_ERROR),
        Reply(fault=Fault.NO_CHOICES),
        Reply(text="a b c", finish_reason="length", usage={"prompt_tokens": -5}),
        Reply(body=b"[[[]]]"),
    )

    finish = [
        json.loads(d)
        for d in data_payloads(stream_lines(client, CHAT, chat_body(stream=True)))
        if d != "[DONE]"
    ]
    bare = stream_lines(
        client, CHAT, chat_body(stream=True, stream_options={"include_usage": True})
    )
    shaped = client.post(CHAT, json=chat_body()).json()
    raw = client.post(CHAT, json=chat_body(stream=True))

    assert finish[-1]["choices"][0]["finish_reason"] == "error" and "error" not in finish[-1]
    assert all(not json.loads(d)["choices"] for d in data_payloads(bare) if d != "[DONE]")
    assert shaped["choices"][0]["finish_reason"] == "length"
    assert shaped["usage"]["prompt_tokens"] == -5
    assert raw.headers["content-type"] == "application/json" and raw.content == b"[[[]]]"


# -- scripting, discovery, recording -------------------------------------------------------


def test_scripted_replies_are_consumed_then_the_last_repeats(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.script("gpt-fake", Reply(fault=Fault.SERVER_ERROR), Reply(text="first"))
    provider.script("gpt-fake", Reply(text="second"))

    answers = [client.post(CHAT, json=chat_body()) for _ in range(5)]

    assert answers[0].status_code == 500
    contents = [a.json()["choices"][0]["message"]["content"] for a in answers[1:]]
    assert contents == ["first", "second", "second", "second"]


def test_discovery_endpoints_list_every_known_model(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.add_model(
        ModelInfo("llama3.2:3b", input_price_per_token="0.000001", output_price_per_token="2e-6")
    )
    provider.script("scripted-model", Reply())

    openai = client.get("/v1/models").json()
    openrouter = client.get("/api/v1/models").json()
    ollama = client.get("/api/tags").json()

    ids = ["gpt-fake", "llama3.2:3b", "scripted-model"]
    assert openai["object"] == "list"
    assert [m["id"] for m in openai["data"]] == ids
    assert openai["data"][0]["owned_by"] == "fake"
    assert [m["id"] for m in openrouter["data"]] == ids
    assert openrouter["data"][0]["context_length"] == 128_000
    assert openrouter["data"][1]["pricing"] == {"prompt": "0.000001", "completion": "2e-6"}
    llama = ollama["models"][1]
    assert llama["name"] == llama["model"] == "llama3.2:3b"
    assert llama["details"] == {"parameter_size": "3B", "family": "llama"}


def test_routes_match_on_path_suffix(client: httpx.Client) -> None:
    reply = client.post("/some/proxy/openai/chat/completions", json=chat_body())
    models = client.get("/gemini/v1beta/openai/models")

    assert reply.json()["choices"][0]["message"]["content"] == "ok"
    assert models.json()["data"][0]["id"] == "gpt-fake"
    assert client.get("/v1/nope").status_code == 404
    assert client.get(CHAT).status_code == 404


def test_requests_are_recorded_with_headers_and_body(
    provider: FakeProvider, client: httpx.Client
) -> None:
    started = time.monotonic()
    client.post(CHAT, json=chat_body(), headers={"Authorization": "Bearer sk-x", "X-Trace": "t1"})
    client.post(CHAT, json=chat_body(model="other"))
    client.get("/v1/models?limit=5")

    first, second, third = provider.requests
    assert (first.method, first.path) == ("POST", CHAT)
    assert first.headers["authorization"] == "Bearer sk-x"
    assert first.headers["x-trace"] == "t1"
    assert first.body["messages"][0]["content"] == "Say hello, please."
    assert started <= first.received_at <= second.received_at <= third.received_at
    assert (third.method, third.path, third.body) == ("GET", "/v1/models?limit=5", None)
    assert provider.requests_for("other") == [second]


def test_chunked_request_bodies_are_read(client: httpx.Client) -> None:
    payload = json.dumps(chat_body()).encode()
    pieces = iter([payload[:10], payload[10:]])

    response = client.post(CHAT, content=pieces, headers={"content-type": "application/json"})

    assert response.json()["choices"][0]["message"]["content"] == "ok"


def test_keep_alive_serves_several_requests_on_one_socket(provider: FakeProvider) -> None:
    port = int(provider.url.rsplit(":", 1)[1])
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request + request + b"BROKEN\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk

    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert b"HTTP/1.1 400 Bad Request" in received


# -- timing and concurrency ----------------------------------------------------------------


def test_latency_delays_the_response(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-fake", Reply(latency=0.3))

    started = time.monotonic()
    client.post(CHAT, json=chat_body())

    assert time.monotonic() - started >= 0.25


def test_ttft_and_pace_delay_stream_content(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-fake", Reply(text="a b c d", ttft=0.3, tokens_per_second=10))

    with client.stream("POST", CHAT, json=chat_body(stream=True)) as response:
        headers_at = time.monotonic()
        arrivals = [
            time.monotonic() for line in response.iter_lines() if '"content": "' in line[:200]
        ]

    content_arrivals = arrivals[1:]  # arrivals[0] is the empty opening chunk
    assert content_arrivals[0] - headers_at >= 0.2
    assert content_arrivals[-1] - content_arrivals[0] >= 0.25  # 3 gaps of 0.1 s


def test_stop_is_prompt_with_a_stalled_stream_open() -> None:
    threads_before = set(threading.enumerate())
    provider = FakeProvider().start()
    server_threads = set(threading.enumerate()) - threads_before
    provider.script("m", Reply(fault=Fault.STALL, stall_seconds=60))

    with (
        httpx.Client(base_url=provider.url, timeout=10) as client,
        client.stream("POST", CHAT, json=chat_body(model="m", stream=True)) as response,
    ):
        next(response.iter_lines())  # the stream is open and stalled
        stopper = threading.Thread(target=provider.stop)
        stopper.start()
        stopper.join(timeout=5)

    assert not stopper.is_alive()
    assert server_threads
    assert not any(thread.is_alive() for thread in server_threads)


async def test_a_thousand_concurrent_streams_all_complete(provider: FakeProvider) -> None:
    text = "streamed to a thousand clients at once"
    provider.script("gpt-fake", Reply(text=text))
    # Each stream waits until all 1,000 are open (not for a fixed time, which a loaded machine
    # can outlast before the last connection opens).
    provider.hold_until_open = 1000
    # httpcore's pool scans every connection for every queued request (quadratic), costing
    # ~20 s of client CPU for one 1,000-connection pool; ten pools of 100 cost ~1 s. The server
    # still sees 1,000 simultaneous connections either way.
    pools, per_pool = 10, 100
    clients = [
        httpx.AsyncClient(
            base_url=provider.url,
            timeout=30,
            limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
        )
        for _ in range(pools)
    ]

    async def stream_one(http_client: httpx.AsyncClient) -> str:
        async with http_client.stream("POST", CHAT, json=chat_body(stream=True)) as response:
            lines = [line async for line in response.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        return openai_stream_text(lines)

    try:
        texts = await asyncio.gather(*(stream_one(c) for c in clients for _ in range(per_pool)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))

    assert texts == [text] * 1000
    assert provider.max_concurrent_streams == 1000


# -- command line --------------------------------------------------------------------------


def test_module_serves_from_the_command_line() -> None:
    command = [sys.executable, "-m", "forge.testing.fake_provider", "--port", "0"]

    with subprocess.Popen(
        [*command, "--model", "cli-model"], stdout=subprocess.PIPE, text=True
    ) as cli:
        try:
            assert cli.stdout is not None
            url = cli.stdout.readline().split()[4]
            models = httpx.get(f"{url}/v1/models", timeout=5).json()
        finally:
            cli.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                returncode = cli.wait(timeout=5)
            except subprocess.TimeoutExpired:
                cli.kill()  # leave no server behind, and fail below
                returncode = cli.wait()

    assert [m["id"] for m in models["data"]] == ["cli-model"]
    assert returncode == 0
