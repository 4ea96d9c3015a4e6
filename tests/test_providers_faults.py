"""The fault matrix: every fault the fake provider can produce, and what forge does about it."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import parse_config_text
from forge.ledger import Ledger
from forge.providers.client import CallFailed, ModelClient
from forge.providers.types import Finished, Pause, Restart, StreamEvent
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import fake_config

DEADLINE = 6.0
TIMEOUTS = """
[providers.fake.timeout]
connect = 2
first_token = 1.5
idle = 0.5
total = 4

[providers.ant.timeout]
connect = 2
first_token = 1.5
idle = 0.5
total = 4
"""


def client(fake: FakeProvider, tmp_path: Path) -> ModelClient:
    text = fake_config(fake.url, f"[routing]\ncall_deadline_seconds = {DEADLINE}\n")
    # The [providers.*.timeout] tables must follow their providers; append them at the end.
    config = parse_config_text(text + TIMEOUTS)
    return ModelClient(config, ledger=Ledger(tmp_path / "ledger.db"))


async def call_with_waits(
    c: ModelClient, model: str | list[str]
) -> tuple[Finished | CallFailed, list[Pause]]:
    """The call's outcome and every wait it planned: how a test sees time without a clock."""
    events: list[StreamEvent] = []
    try:
        async for event in c.stream(model, "hello"):
            events.append(event)
    except CallFailed as failed:
        return failed, [e for e in events if isinstance(e, Pause)]
    finished = events[-1]
    assert isinstance(finished, Finished)
    return finished, [e for e in events if isinstance(e, Pause)]


RECOVERABLE = [
    Fault.RATE_LIMIT,
    Fault.SERVER_ERROR,
    Fault.BAD_GATEWAY,
    Fault.UNAVAILABLE,
    Fault.DROP,
    Fault.STALL,
    Fault.MALFORMED,
    Fault.ERROR_200,
    Fault.MID_STREAM_ERROR,
    Fault.FINISH_ERROR,
]


@pytest.mark.parametrize("fault", RECOVERABLE, ids=lambda f: f.value)
async def test_transient_fault_succeeds_after_a_retry_on_the_same_model(
    fake: FakeProvider, tmp_path: Path, fault: Fault
) -> None:
    fake.script(
        "alpha-1", Reply(fault=fault, retry_after=0.2, stall_seconds=10), Reply(text="fine")
    )
    async with client(fake, tmp_path) as c:
        outcome, waits = await call_with_waits(c, "alpha")
    assert isinstance(outcome, Finished)
    done = outcome.completion
    assert done.text == "fine"
    assert done.target.alias == "alpha"
    assert [a.outcome for a in done.attempts] == ["error", "ok"]
    assert len(fake.requests_for("alpha-1")) == 2
    assert len(waits) <= 1 and sum(w.seconds for w in waits) < DEADLINE


async def test_anthropic_overloaded_is_retried(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("claude-x", Reply(fault=Fault.OVERLOADED), Reply(text="calm again"))
    async with client(fake, tmp_path) as c:
        done = await c.complete("claude", "hello")
    assert done.text == "calm again"
    assert done.attempts[0].error_kind == "overloaded"


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.AUTH, "auth"),
        (Fault.NOT_FOUND, "not_found"),
        (Fault.CONTEXT_TOO_LONG, "context_too_long"),
        (Fault.BAD_REQUEST, "bad_request"),
    ],
    ids=lambda v: str(v),
)
async def test_permanent_fault_falls_through_to_the_next_model_without_retry(
    fake: FakeProvider, tmp_path: Path, fault: Fault, kind: str
) -> None:
    fake.script("alpha-1", Reply(fault=fault))
    fake.script("beta-1", Reply(text="from beta"))
    async with client(fake, tmp_path) as c:
        done = await c.complete(["alpha", "beta"], "hello")
    assert done.text == "from beta"
    assert len(fake.requests_for("alpha-1")) == 1, "a permanent fault is never retried"
    assert done.attempts[0].error_kind == kind


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.SERVER_ERROR, "server_error"),
        (Fault.AUTH, "auth"),
        (Fault.NOT_FOUND, "not_found"),
        (Fault.STALL, "timeout"),
        (Fault.DROP, "connection"),
        (Fault.MALFORMED, "malformed_response"),
        (Fault.ERROR_200, "server_error"),  # its error object says code 502
        (Fault.MID_STREAM_ERROR, "server_error"),
        (Fault.FINISH_ERROR, "error_in_body"),
    ],
    ids=lambda v: str(v),
)
async def test_persistent_fault_fails_naming_the_cause_within_the_deadline(
    fake: FakeProvider, tmp_path: Path, fault: Fault, kind: str
) -> None:
    fake.script("alpha-1", Reply(fault=fault, stall_seconds=10))
    async with client(fake, tmp_path) as c:
        failed, waits = await call_with_waits(c, "alpha")
    assert isinstance(failed, CallFailed)
    assert failed.kind is not None and failed.kind.value == kind
    assert kind in str(failed)
    assert sum(w.seconds for w in waits) < DEADLINE, "no wait planned past the call's deadline"
    if kind in ("auth", "not_found"):
        assert len(fake.requests_for("alpha-1")) == 1


async def test_retry_after_is_honoured_on_every_attempt(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script(
        "alpha-1",
        Reply(fault=Fault.RATE_LIMIT, retry_after=0.3),
        Reply(fault=Fault.RATE_LIMIT, retry_after=0.7),
        Reply(text="at last"),
    )
    async with client(fake, tmp_path) as c:
        done = await c.complete("alpha", "hello")
    assert done.text == "at last"
    times = [r.received_at for r in fake.requests_for("alpha-1")]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.3
    assert times[2] - times[1] >= 0.7, "the second Retry-After must be read, not the first reused"


async def test_a_wait_longer_than_the_deadline_moves_to_the_next_model_at_once(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.RATE_LIMIT, retry_after=60))
    fake.script("beta-1", Reply(text="beta answers"))
    async with client(fake, tmp_path) as c:
        outcome, waits = await call_with_waits(c, ["alpha", "beta"])
    assert isinstance(outcome, Finished) and outcome.completion.text == "beta answers"
    assert waits == [], "forge must not sleep through Retry-After"


async def test_a_wait_past_the_deadline_with_no_other_model_fails_with_the_real_cause(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.RATE_LIMIT, retry_after=60))
    async with client(fake, tmp_path) as c:
        failed, waits = await call_with_waits(c, "alpha")
    assert isinstance(failed, CallFailed) and "rate_limit" in str(failed)
    assert waits == [], "a wait past the deadline is not started"
    assert len(fake.requests_for("alpha-1")) == 1


async def test_retries_and_fallbacks_share_one_attempt_budget(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.SERVER_ERROR))
    fake.script("beta-1", Reply(fault=Fault.SERVER_ERROR))
    fake.script("claude-x", Reply(fault=Fault.SERVER_ERROR))
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed) as caught:
            await c.complete(["alpha", "beta", "claude"], "hello", max_attempts=4)
    assert len(caught.value.errors) == 4
    assert len(fake.requests) == 4, "a fallback never resets the attempt count"


async def test_a_dropped_stream_tells_the_consumer_to_discard_its_text(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script(
        "alpha-1",
        Reply(text="half of a long answer that breaks", fault=Fault.DROP),
        Reply(text="whole"),
    )
    async with client(fake, tmp_path) as c:
        events = [e async for e in c.stream("alpha", "hello")]
    restarts = [e for e in events if isinstance(e, Restart)]
    assert len(restarts) == 1 and "connection" in restarts[0].reason


async def test_every_attempt_is_a_ledger_row(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(fault=Fault.SERVER_ERROR), Reply(text="ok now"))
    async with client(fake, tmp_path) as c:
        await c.complete("alpha", "hello")
    rows = Ledger(tmp_path / "ledger.db").attempts()
    assert [(r.outcome, r.error_kind) for r in reversed(rows)] == [
        ("error", "server_error"),
        ("ok", None),
    ]
    assert rows[0].cost_source == "computed" and rows[0].cost_usd is not None


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("code", "kind", "retried"),
    [
        (502, "server_error", True),
        ("503", "overloaded", True),
        (429, "rate_limit", True),
        ("rate_limit_exceeded", "rate_limit", True),
        (400, "bad_request", False),
        ("context_length_exceeded", "context_too_long", False),
        ("no idea", "error_in_body", True),
    ],
    ids=lambda v: str(v),
)
async def test_an_error_inside_a_200_is_classified_by_its_code(
    fake: FakeProvider, tmp_path: Path, stream: bool, code: int | str, kind: str, retried: bool
) -> None:
    fault = Fault.MID_STREAM_ERROR if stream else Fault.ERROR_200
    fake.script(
        "alpha-1",
        Reply(text="half of an answer that breaks", fault=fault, error_code=code),
        Reply(text="whole answer"),
    )
    async with client(fake, tmp_path) as c:
        if retried:
            done = await c.complete("alpha", "hello", stream=stream)
            assert done.text == "whole answer", "never the broken half"
            assert done.attempts[0].error_kind == kind
        else:
            with pytest.raises(CallFailed) as caught:
                await c.complete("alpha", "hello", stream=stream)
            assert caught.value.kind is not None and caught.value.kind.value == kind
    assert len(fake.requests_for("alpha-1")) == (2 if retried else 1)
    rows = Ledger(tmp_path / "ledger.db").attempts()
    assert (rows[-1].outcome, rows[-1].error_kind) == ("error", kind)


async def test_an_openrouter_error_beside_the_choices_of_a_whole_answer_is_a_failure(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="cut short", fault=Fault.MID_STREAM_ERROR))
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed) as caught:
            await c.complete("alpha", "hello", stream=False, max_attempts=1)
    assert "server_error" in str(caught.value) and "Provider disconnected" in str(caught.value)


@pytest.mark.parametrize("server", [None, "litellm", "vllm", "transformers", "ollama"])
async def test_an_unknown_model_is_not_found_and_out_of_the_run_whatever_the_server(
    fake: FakeProvider, tmp_path: Path, server: str | None
) -> None:
    """A typo in `id`: each server says so in its own words and status (LiteLLM and
    transformers with a 400); forge calls the model once in the run and says what to fix."""
    fake.script("alpha-1", Reply(fault=Fault.NOT_FOUND, server=server))
    fake.script("beta-1", Reply(text="from beta"))
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed) as caught:
            await c.complete("alpha", "hello")
        done = await c.complete(["alpha", "beta"], "hello again")
        with pytest.raises(CallFailed) as again:
            await c.complete("alpha", "and again")
    assert done.text == "from beta"
    assert len(fake.requests_for("alpha-1")) == 1, "a model the server does not know is out"
    message = str(caught.value)
    assert caught.value.kind is not None and caught.value.kind.value == "not_found"
    assert "'alpha-1' is unknown to the server" in message
    assert "check `id` in [models.alpha] of forge.toml" in message
    assert "alpha-1" in message.partition("the server said:")[2], "the server's own words"
    assert '{"' not in message and "{'" not in message, "a message, not a raw body"
    assert "not_found" in str(again.value)


@pytest.mark.parametrize("server", [None, "llama-server", "transformers", "vllm", "litellm"])
async def test_a_context_overflow_is_context_too_long_whatever_the_server(
    fake: FakeProvider, tmp_path: Path, server: str | None
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.CONTEXT_TOO_LONG, server=server))
    fake.script("beta-1", Reply(text="a larger window"))
    async with client(fake, tmp_path) as c:
        done = await c.complete(["alpha", "beta"], "a long prompt")
        assert done.text == "a larger window"
        with pytest.raises(CallFailed) as caught:
            await c.complete("alpha", "a long prompt")
    assert [a.error_kind for a in done.attempts] == ["context_too_long", None]
    assert len(fake.requests_for("alpha-1")) == 2, "not retried, but not out of the run"
    message = str(caught.value)
    assert "context_too_long (HTTP 400)" in message
    assert "context" in message and '{"' not in message and "{'" not in message


async def test_a_fastapi_validation_error_shows_its_messages_not_its_json(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.BAD_REQUEST, server="transformers"))
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed) as caught:
            await c.complete("alpha", "hello")
    assert "bad_request (HTTP 422): body.messages.0.content: field required" in str(caught.value)
    assert len(fake.requests_for("alpha-1")) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"detail": [{"loc": "not a list", "msg": {"deep": [1] * 5}}] * 1000},
        {"detail": [["x" * 100_000]]},
        {"detail": {"msg": "a dict"}},
        {"detail": None, "error": {"message": None}},
        {"error": {"message": "m" * 100_000}},
        {"object": "error", "message": 3},
        ["not", "an", "object"],
    ],
    ids=lambda b: str(b)[:30],
)
def test_odd_error_bodies_give_a_short_message_and_no_traceback(body: object) -> None:
    from forge.providers.failures import classify_status, error_message

    message = error_message(body, "Bad Request")
    assert isinstance(message, str) and 0 < len(message) <= 2_000
    assert classify_status(400, body).value in ("bad_request", "not_found", "context_too_long")
