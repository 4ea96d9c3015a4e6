"""The official `openai` and `anthropic` SDKs read every answer and every fault forge's fake
provider sends, streamed and not, the way they read the real servers'.

If the fake drifts from the real wire format, forge's own tests could pass against a server no
one runs; these tests make the vendors' own parsers the judge of the fake.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from forge.testing.fake_provider import FakeProvider, Fault, Reply

TEXT = "Paris is the capital of France."
PROMPT = [{"role": "user", "content": "Capital of France?"}]


def openai_client(fake: FakeProvider, timeout: float = 10.0, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake.url + "/v1", api_key="sk-test", max_retries=retries, timeout=timeout
    )


def anthropic_client(fake: FakeProvider, timeout: float = 10.0) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=fake.url, api_key="sk-ant-test", max_retries=0, timeout=timeout
    )


def openai_call(client: openai.OpenAI, stream: bool) -> tuple[str, Any, str | None]:
    """(text, usage, finish reason) as a user of the SDK reads them."""
    if not stream:
        done = client.chat.completions.create(model="m", messages=PROMPT)  # type: ignore[arg-type]
        return done.choices[0].message.content or "", done.usage, done.choices[0].finish_reason
    text, usage, finish = "", None, None
    chunks = client.chat.completions.create(
        model="m",
        messages=PROMPT,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, usage, finish


def anthropic_call(client: anthropic.Anthropic, stream: bool) -> Any:
    """The final Message, read whole or accumulated from the stream by the SDK."""
    if not stream:
        return client.messages.create(model="claude-x", max_tokens=100, messages=PROMPT)  # type: ignore[arg-type]
    with client.messages.stream(model="claude-x", max_tokens=100, messages=PROMPT) as events:  # type: ignore[arg-type]
        for _ in events.text_stream:
            pass
        return events.get_final_message()


STREAMED = pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])


# -- success shapes ------------------------------------------------------------------------------


@STREAMED
def test_openai_sdk_reads_text_usage_and_finish_reason(fake: FakeProvider, stream: bool) -> None:
    fake.script("m", Reply(text=TEXT, input_tokens=12, output_tokens=7, cached_tokens=4))
    text, usage, finish = openai_call(openai_client(fake), stream)
    assert text == TEXT
    assert finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 7, 19)
    assert usage.prompt_tokens_details.cached_tokens == 4


@STREAMED
def test_openai_sdk_reads_a_truncated_answer_and_openrouters_cost(
    fake: FakeProvider, stream: bool
) -> None:
    fake.script("m", Reply(text=TEXT, finish_reason="length", cost="0.00042"))
    text, usage, finish = openai_call(openai_client(fake), stream)
    assert (text, finish) == (TEXT, "length")
    assert usage.model_extra["cost"] == "0.00042", "OpenRouter's usage.cost survives the SDK"


def test_openai_sdk_streams_without_usage_unless_asked(fake: FakeProvider) -> None:
    fake.script("m", Reply(text=TEXT))
    chunks = list(
        openai_client(fake).chat.completions.create(model="m", messages=PROMPT, stream=True)  # type: ignore[arg-type]
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert all(c.usage is None for c in chunks)


def test_openai_sdk_ignores_keep_alive_comments_in_a_stalled_stream(fake: FakeProvider) -> None:
    fake.script("m", Reply(text=TEXT, fault=Fault.STALL, stall_seconds=0.6, stall_after_tokens=2))
    text, usage, finish = openai_call(openai_client(fake), stream=True)
    assert (text, finish) == (TEXT, "stop")
    assert usage.completion_tokens == len(TEXT.split())


@STREAMED
def test_anthropic_sdk_reads_text_usage_and_stop_reason(fake: FakeProvider, stream: bool) -> None:
    fake.script("claude-x", Reply(text=TEXT, input_tokens=12, output_tokens=7, cached_tokens=4))
    message = anthropic_call(anthropic_client(fake), stream)
    assert [block.text for block in message.content] == [TEXT]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.cache_creation_input_tokens == 0


@STREAMED
def test_anthropic_sdk_reads_a_truncated_answer(fake: FakeProvider, stream: bool) -> None:
    fake.script("claude-x", Reply(text=TEXT, finish_reason="max_tokens"))
    message = anthropic_call(anthropic_client(fake), stream)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == TEXT


def test_anthropic_sdk_ignores_keep_alive_comments_in_a_stalled_stream(fake: FakeProvider) -> None:
    fake.script(
        "claude-x", Reply(text=TEXT, fault=Fault.STALL, stall_seconds=0.6, stall_after_tokens=2)
    )
    message = anthropic_call(anthropic_client(fake), stream=True)
    assert message.content[0].text == TEXT and message.stop_reason == "end_turn"


# -- HTTP errors ---------------------------------------------------------------------------------

OPENAI_ERRORS = [
    (Fault.RATE_LIMIT, openai.RateLimitError),
    (Fault.SERVER_ERROR, openai.InternalServerError),
    (Fault.BAD_GATEWAY, openai.InternalServerError),
    (Fault.UNAVAILABLE, openai.InternalServerError),
    (Fault.OVERLOADED, openai.InternalServerError),
    (Fault.AUTH, openai.AuthenticationError),
    (Fault.NOT_FOUND, openai.NotFoundError),
    (Fault.BAD_REQUEST, openai.BadRequestError),
    (Fault.CONTEXT_TOO_LONG, openai.BadRequestError),
]
ANTHROPIC_ERRORS = [
    (Fault.RATE_LIMIT, anthropic.RateLimitError),
    (Fault.SERVER_ERROR, anthropic.InternalServerError),
    (Fault.BAD_GATEWAY, anthropic.InternalServerError),
    (Fault.UNAVAILABLE, anthropic.InternalServerError),
    (Fault.OVERLOADED, anthropic.OverloadedError),
    (Fault.AUTH, anthropic.AuthenticationError),
    (Fault.NOT_FOUND, anthropic.NotFoundError),
    (Fault.BAD_REQUEST, anthropic.BadRequestError),
    (Fault.CONTEXT_TOO_LONG, anthropic.BadRequestError),
]


@STREAMED
@pytest.mark.parametrize(("fault", "error"), OPENAI_ERRORS, ids=lambda v: str(v))
def test_openai_sdk_raises_its_own_class_for_each_http_error(
    fake: FakeProvider, fault: Fault, error: type[openai.APIStatusError], stream: bool
) -> None:
    fake.script("m", Reply(text=TEXT, fault=fault))
    with pytest.raises(error) as caught:
        openai_call(openai_client(fake), stream)
    assert caught.value.status_code == {Fault.OVERLOADED: 529}.get(fault, caught.value.status_code)
    assert caught.value.message  # the server's words reach the user
    if fault is Fault.CONTEXT_TOO_LONG:
        assert caught.value.code == "context_length_exceeded"
    if fault is Fault.AUTH:
        assert caught.value.code == "invalid_api_key"


@STREAMED
@pytest.mark.parametrize(("fault", "error"), ANTHROPIC_ERRORS, ids=lambda v: str(v))
def test_anthropic_sdk_raises_its_own_class_for_each_http_error(
    fake: FakeProvider, fault: Fault, error: type[anthropic.APIStatusError], stream: bool
) -> None:
    fake.script("claude-x", Reply(text=TEXT, fault=fault))
    with pytest.raises(error) as caught:
        anthropic_call(anthropic_client(fake), stream)
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["message"]


def test_openai_sdk_honours_the_fakes_retry_after(fake: FakeProvider) -> None:
    fake.script("m", Reply(fault=Fault.RATE_LIMIT, retry_after=0.05), Reply(text=TEXT))
    text, _, _ = openai_call(openai_client(fake, retries=1), stream=False)
    assert text == TEXT
    assert len(fake.requests_for("m")) == 2, "the SDK retried the 429 once"


def test_rate_limit_headers_reach_the_sdk_user(fake: FakeProvider) -> None:
    fake.script("m", Reply(fault=Fault.RATE_LIMIT, retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        openai_call(openai_client(fake), stream=False)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "7"
    assert headers["x-ratelimit-remaining-requests"] == "0"


# The error bodies of other OpenAI-compatible servers, as the SDK classifies them.
OTHER_SERVERS = [
    ("litellm", Fault.NOT_FOUND, openai.BadRequestError, "Invalid model name"),
    ("vllm", Fault.NOT_FOUND, openai.NotFoundError, "does not exist"),
    ("ollama", Fault.NOT_FOUND, openai.NotFoundError, "not found, try pulling it first"),
    ("llama-server", Fault.CONTEXT_TOO_LONG, openai.BadRequestError, "exceeds the available"),
    ("vllm", Fault.CONTEXT_TOO_LONG, openai.BadRequestError, "maximum context length"),
    ("transformers", Fault.BAD_REQUEST, openai.UnprocessableEntityError, "field required"),
]


@pytest.mark.parametrize(("server", "fault", "error", "words"), OTHER_SERVERS, ids=str)
def test_openai_sdk_classifies_other_servers_errors(
    fake: FakeProvider,
    server: str,
    fault: Fault,
    error: type[openai.APIStatusError],
    words: str,
) -> None:
    fake.script("m", Reply(fault=fault, server=server))
    with pytest.raises(error) as caught:
        openai_call(openai_client(fake), stream=True)
    assert words in str(caught.value)


# -- transport faults ----------------------------------------------------------------------------


def test_sdks_report_a_dropped_connection_before_the_answer(fake: FakeProvider) -> None:
    fake.script("m", Reply(fault=Fault.DROP))
    fake.script("claude-x", Reply(fault=Fault.DROP))
    with pytest.raises(openai.APIConnectionError):
        openai_call(openai_client(fake), stream=False)
    with pytest.raises(anthropic.APIConnectionError):
        anthropic_call(anthropic_client(fake), stream=False)


def test_sdks_let_a_reset_midway_through_a_stream_surface_from_httpx(fake: FakeProvider) -> None:
    """Neither SDK retries or wraps a stream cut after it began: the httpx error reaches the
    caller, as it does when a real server's connection resets."""
    fake.script("m", Reply(text=TEXT, fault=Fault.DROP))
    fake.script("claude-x", Reply(text=TEXT, fault=Fault.DROP))
    with pytest.raises(httpx.RemoteProtocolError):
        openai_call(openai_client(fake), stream=True)
    with pytest.raises(httpx.RemoteProtocolError):
        anthropic_call(anthropic_client(fake), stream=True)


def test_sdks_time_out_a_body_that_never_comes(fake: FakeProvider) -> None:
    fake.script("m", Reply(fault=Fault.STALL, stall_seconds=30))
    fake.script("claude-x", Reply(fault=Fault.STALL, stall_seconds=30))
    with pytest.raises(openai.APITimeoutError):
        openai_call(openai_client(fake, timeout=0.3), stream=False)
    with pytest.raises(anthropic.APITimeoutError):
        anthropic_call(anthropic_client(fake, timeout=0.3), stream=False)


# -- in-band errors and malformed answers --------------------------------------------------------


@STREAMED
def test_sdks_fail_to_decode_a_malformed_body(fake: FakeProvider, stream: bool) -> None:
    fake.script("m", Reply(text=TEXT, fault=Fault.MALFORMED))
    fake.script("claude-x", Reply(text=TEXT, fault=Fault.MALFORMED))
    with pytest.raises(ValueError, match="Expecting value"):
        openai_call(openai_client(fake), stream)
    with pytest.raises(ValueError, match="Expecting value"):
        anthropic_call(anthropic_client(fake), stream)


def test_openai_sdk_raises_on_an_error_event_in_a_stream(fake: FakeProvider) -> None:
    fake.script("m", Reply(text=TEXT, fault=Fault.ERROR_200))
    with pytest.raises(openai.APIError, match="Upstream provider returned an error"):
        openai_call(openai_client(fake), stream=True)
    fake.script("m", Reply(text=TEXT, fault=Fault.MID_STREAM_ERROR))
    with pytest.raises(openai.APIError, match="Provider disconnected"):
        openai_call(openai_client(fake), stream=True)


def test_openai_sdk_hands_back_a_whole_200_error_without_raising(fake: FakeProvider) -> None:
    """The SDK does not look inside a 200 body: the caller finds the error and no choices,
    which is why forge checks for it itself."""
    fake.script("m", Reply(text=TEXT, fault=Fault.ERROR_200, error_code=429))
    done = openai_client(fake).chat.completions.create(model="m", messages=PROMPT)  # type: ignore[arg-type]
    assert not done.choices
    assert done.model_extra["error"] == {
        "message": "Upstream provider returned an error",
        "code": 429,
    }
    fake.script("m", Reply(text=TEXT, fault=Fault.MID_STREAM_ERROR))
    done = openai_client(fake).chat.completions.create(model="m", messages=PROMPT)  # type: ignore[arg-type]
    assert done.choices[0].finish_reason == "error"
    assert done.model_extra["error"]["message"] == "Provider disconnected"


@STREAMED
def test_openai_sdk_passes_finish_reason_error_through(fake: FakeProvider, stream: bool) -> None:
    fake.script("m", Reply(text=TEXT, fault=Fault.FINISH_ERROR))
    text, _, finish = openai_call(openai_client(fake), stream)
    assert finish == "error"
    assert TEXT.startswith(text) and text


def test_openai_sdk_reads_a_stream_of_usage_without_choices(fake: FakeProvider) -> None:
    fake.script("m", Reply(text=TEXT, fault=Fault.NO_CHOICES, input_tokens=3, output_tokens=0))
    text, usage, finish = openai_call(openai_client(fake), stream=True)
    assert (text, finish) == ("", None)
    assert usage.prompt_tokens == 3


@pytest.mark.parametrize("fault", [Fault.ERROR_200, Fault.MID_STREAM_ERROR, Fault.FINISH_ERROR])
def test_anthropic_sdk_raises_on_an_error_event_in_a_stream(
    fake: FakeProvider, fault: Fault
) -> None:
    fake.script("claude-x", Reply(text=TEXT, fault=fault))
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_call(anthropic_client(fake), stream=True)
    assert caught.value.body["type"] == "error"  # type: ignore[index]


def test_anthropic_sdk_hands_back_a_whole_200_error_as_a_message(fake: FakeProvider) -> None:
    fake.script("claude-x", Reply(text=TEXT, fault=Fault.ERROR_200))
    message = anthropic_call(anthropic_client(fake), stream=False)
    assert message.type == "error" and not message.content


def test_anthropic_sdk_refuses_a_stream_without_message_start(fake: FakeProvider) -> None:
    """Forge calls it malformed (no answer in it); the SDK refuses the event order."""
    fake.script("claude-x", Reply(text=TEXT, fault=Fault.NO_CHOICES))
    with pytest.raises(RuntimeError, match="message_start"):
        anthropic_call(anthropic_client(fake), stream=True)
