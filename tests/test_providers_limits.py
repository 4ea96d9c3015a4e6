"""Limits enforced before sending, and circuit breakers that only ever extend their cooldown."""

from __future__ import annotations

import time
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from forge.config import parse_config_text
from forge.ledger import Ledger
from forge.providers.breaker import Breaker
from forge.providers.client import CallFailed, ModelClient
from forge.providers.types import Pause
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import fake_config


def client(
    fake: FakeProvider, tmp_path: Path, provider_extra: str = "", extra: str = ""
) -> ModelClient:
    text = fake_config(fake.url, extra).replace(
        f'[providers.fake]\nbase_url = "{fake.url}/v1"\n',
        f'[providers.fake]\nbase_url = "{fake.url}/v1"\n{provider_extra}\n',
    )
    return ModelClient(parse_config_text(text), ledger=Ledger(tmp_path / "ledger.db"))


async def gather(
    c: ModelClient, count: int, model: str | list[str] = "alpha", **kw: object
) -> list[object]:
    results: list[object] = []

    async def one(i: int) -> None:
        try:
            results.append(await c.complete(model, f"call {i}", **kw))  # type: ignore[arg-type]
        except CallFailed as exc:
            results.append(exc)

    async with anyio.create_task_group() as group:
        for i in range(count):
            group.start_soon(one, i)
    return results


async def test_provider_concurrency_cap_holds(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(text="ok", ttft=0.15))
    async with client(fake, tmp_path, "max_concurrency = 3") as c:
        results = await gather(c, 12)
    assert all(not isinstance(r, Exception) for r in results)
    assert fake.max_concurrent_streams <= 3
    assert len(fake.requests) == 12


async def test_requests_per_minute_refuses_what_would_wait_past_the_deadline(
    fake: FakeProvider, tmp_path: Path
) -> None:
    async with client(fake, tmp_path, "requests_per_minute = 3") as c:
        results = await gather(c, 4, deadline=2)
    failed = [r for r in results if isinstance(r, CallFailed)]
    assert len(failed) == 1
    assert "rate limit would need" in str(failed[0])
    assert len(fake.requests) == 3, "the fourth request was never sent"


async def test_tokens_per_minute_is_enforced(fake: FakeProvider, tmp_path: Path) -> None:
    async with client(fake, tmp_path, "tokens_per_minute = 6000") as c:
        first = await c.complete("alpha", "hello", max_tokens=4000)
        with pytest.raises(CallFailed, match="rate limit"):
            await c.complete("alpha", "hello", max_tokens=4000, deadline=1)
    assert first.text == "ok"
    assert len(fake.requests) == 1


async def test_rate_limit_headers_pause_the_next_request(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script(
        "alpha-1",
        Reply(
            text="one",
            headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "600ms"},
        ),
        Reply(text="two"),
    )
    async with client(fake, tmp_path) as c:
        await c.complete("alpha", "a")
        await c.complete("alpha", "b")
    first, second = (r.received_at for r in fake.requests_for("alpha-1"))
    assert second - first >= 0.6


async def test_daily_request_quota_moves_to_another_provider(
    fake: FakeProvider, tmp_path: Path
) -> None:
    async with client(fake, tmp_path, "requests_per_day = 2") as c:
        answers = [await c.complete(["alpha", "claude"], f"q{i}") for i in range(3)]
    assert [a.target.alias for a in answers] == ["alpha", "alpha", "claude"]
    assert answers[2].attempts[0].error_kind == "quota"
    assert "2 requests a day" in (answers[2].attempts[0].error or "")


async def test_an_open_breaker_sends_calls_to_the_next_model(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.SERVER_ERROR))
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed):
            await c.complete("alpha", "x", deadline=5)
        sent = len(fake.requests_for("alpha-1"))
        assert sent == 3
        done = await c.complete(["alpha", "beta"], "y")
    assert done.target.alias == "beta"
    assert len(fake.requests_for("alpha-1")) == sent, "a cooling model gets no request"
    saved = Ledger(tmp_path / "ledger.db").breakers()[("fake", "alpha-1")]
    assert saved.open_until > time.time(), "the cooldown is shared with other processes"


def test_a_breaker_cooldown_only_ever_extends() -> None:
    breaker = Breaker()
    assert breaker.record_failure("429", cooldown=30)
    long_until = breaker.open_until
    assert not breaker.record_failure("429", cooldown=1)
    assert breaker.open_until == long_until
    assert breaker.record_failure("429", cooldown=60)
    assert breaker.open_until > long_until


def test_a_failure_long_after_a_cooldown_ended_starts_a_new_streak() -> None:
    """Failures of a run days ago do not double today's first cooldown."""
    breaker = Breaker(failures=8, open_until=time.time() - 3600)
    assert not breaker.record_failure("connection", kind="connection")
    assert breaker.failures == 1 and not breaker.is_open()


async def first_pause(c: ModelClient, alias: str) -> Pause:
    """The wait a call announces before it sleeps through it; the call is left there."""
    async with aclosing(c.stream(alias, "hi")) as events:
        async for event in events:
            if isinstance(event, Pause):
                return event
    raise AssertionError("the call never waited")


async def test_a_saved_cooldown_is_announced_with_its_end_and_failures(
    fake: FakeProvider, tmp_path: Path
) -> None:
    until = time.time() + 120
    Ledger(tmp_path / "ledger.db").save_breaker(
        "fake", "alpha-1", 3, until, "alpha: server_error (HTTP 500): boom", "server_error"
    )
    async with client(fake, tmp_path) as c:
        pause = await first_pause(c, "alpha")
    clock = time.strftime("%H:%M:%S", time.localtime(pause.until))
    assert pause.reason == "cooldown" and pause.failures == 3
    assert pause.describe() == f"cooling down until {clock} after 3 failures"
    assert abs(pause.until - until) < 1
    assert not fake.requests_for("alpha-1"), "nothing is sent while it cools"


async def test_a_breaker_that_opens_during_a_call_is_announced_as_a_cooldown(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", *[Reply(fault=Fault.SERVER_ERROR)] * 3)
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed):
            await c.complete("alpha", "x", max_attempts=2)
        first = await first_pause(c, "alpha")  # the third failure in a row opens the breaker
    assert first.reason == "cooldown" and first.failures == 3 and first.cause == "server_error"
    assert first.describe().startswith("cooling down until ")


async def test_a_long_retry_after_is_announced_as_a_rate_limit(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.RATE_LIMIT, retry_after=30))
    async with client(fake, tmp_path) as c:
        pause = await first_pause(c, "alpha")
    assert pause.reason == "rate_limit" and pause.cause == "429"
    assert pause.describe() == "rate limited: retrying in 30 s"
    assert pause.describe(remaining=12.5) == "rate limited: retrying in 13 s"


async def test_a_cooldown_past_the_deadline_fails_with_the_failure_behind_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """A cooldown a refused connection left (saved by a forge that did not record the kind) is
    reported as the connection failure it was, not as an overloaded model."""
    Ledger(tmp_path / "ledger.db").save_breaker(
        "fake", "alpha-1", 8, time.time() + 280, "alpha: connection: ConnectError: refused"
    )
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed) as failed:
            await c.complete("alpha", "x", deadline=2)
    error = failed.value.errors[-1]
    assert error.kind.value == "connection"
    assert "cooling down until" in error.detail and "after 8 failures" in error.detail
    assert "forge models --reset alpha" in error.detail


async def test_a_busy_model_hands_over_to_the_next_one_at_once(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="slow", ttft=1.5))
    text = fake_config(fake.url).replace(
        'id = "alpha-1"\n', 'id = "alpha-1"\nmax_concurrency = 1\n'
    )
    ledger = Ledger(tmp_path / "l.db")
    async with (
        ModelClient(parse_config_text(text), ledger=ledger) as c,
        anyio.create_task_group() as g,
    ):
        g.start_soon(c.complete, "alpha", "first")
        await anyio.sleep(0.3)
        second = await c.complete(["alpha", "beta"], "second")
    assert second.target.alias == "beta", "it did not queue behind the busy model"
    assert len(fake.requests_for("alpha-1")) == 1
