"""Streaming from both wire formats: text as it arrives, usage, costs and the three timers."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from forge.config import parse_config_text
from forge.errors import BudgetExceeded
from forge.ledger import Ledger
from forge.providers.client import CallFailed, ModelClient
from forge.providers.types import Finished, TextDelta
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import fake_config

TIMERS = """
[providers.fake.timeout]
first_token = {first}
idle = {idle}
total = {total}
"""


def client(fake: FakeProvider, tmp_path: Path, timers: str = "") -> ModelClient:
    config = parse_config_text(fake_config(fake.url) + timers)
    return ModelClient(config, ledger=Ledger(tmp_path / "ledger.db"))


async def test_openai_stream_arrives_in_pieces_with_usage_and_cost(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="one two three four", input_tokens=1000, output_tokens=500))
    async with client(fake, tmp_path) as c:
        events = [e async for e in c.stream("alpha", "count")]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4 and "".join(deltas) == "one two three four"
    done = events[-1]
    assert isinstance(done, Finished)
    assert done.completion.usage.input_tokens == 1000
    # alpha costs $1 / $2 per million tokens
    assert done.completion.cost.usd == Decimal("0.002")
    assert done.completion.cost.source == "computed"
    body = fake.requests_for("alpha-1")[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_anthropic_stream_with_cache_tokens(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("claude-x", Reply(text="bonjour le monde", input_tokens=100, cached_tokens=40))
    async with client(fake, tmp_path) as c:
        done = await c.complete(
            "claude", [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        )
    assert done.text == "bonjour le monde"
    assert done.usage.cached_tokens == 40
    request = fake.requests_for("claude-x")[0]
    assert request.path.endswith("/v1/messages")
    assert request.body["system"] == "be brief"
    assert [m["role"] for m in request.body["messages"]] == ["user"]


async def test_provider_reported_cost_wins(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(text="ok", cost="0.0123"))
    async with client(fake, tmp_path) as c:
        done = await c.complete("alpha", "hi")
    assert done.cost.usd == Decimal("0.0123") and done.cost.source == "reported"


async def test_non_streaming_mode(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(text="whole answer"))
    async with client(fake, tmp_path) as c:
        done = await c.complete("alpha", "hi", stream=False)
    assert done.text == "whole answer"
    assert fake.requests_for("alpha-1")[0].body["stream"] is False


async def test_first_token_timer(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(ttft=3))
    async with client(fake, tmp_path, TIMERS.format(first=0.5, idle=5, total=10)) as c:
        with pytest.raises(CallFailed, match="first-token"):
            await c.complete("alpha", "hi", max_attempts=1)


async def test_keep_alive_comments_are_not_progress(fake: FakeProvider, tmp_path: Path) -> None:
    # The stall sends ": keep-alive" comments every 0.2 s; they must not hold the timer off.
    fake.script("alpha-1", Reply(text="a b c", fault=Fault.STALL, stall_seconds=5))
    async with client(fake, tmp_path, TIMERS.format(first=0.7, idle=0.5, total=10)) as c:
        with pytest.raises(CallFailed, match="timeout: no first token"):
            await c.complete("alpha", "hi", max_attempts=1)


async def test_idle_gap_timer(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(text="slow words here", tokens_per_second=0.5))
    async with client(fake, tmp_path, TIMERS.format(first=5, idle=0.5, total=10)) as c:
        with pytest.raises(CallFailed, match="idle"):
            await c.complete("alpha", "hi", max_attempts=1)


async def test_total_timer(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(text=" ".join(["w"] * 40), tokens_per_second=20))
    async with client(fake, tmp_path, TIMERS.format(first=2, idle=2, total=0.8)) as c:
        with pytest.raises(CallFailed, match="total time"):
            await c.complete("alpha", "hi", max_attempts=1)


async def test_unknown_model_is_a_usage_error(fake: FakeProvider, tmp_path: Path) -> None:
    from forge.errors import BudgetExceeded, UsageError

    async with client(fake, tmp_path) as c:
        with pytest.raises(UsageError, match="did you mean 'alpha'"):
            await c.complete("alpah", "hi")
        # No price known and not a local model: the default daily budget cannot hold it, so it
        # is not sent (on 127.0.0.1 too: a proxy there bills). Never counted as $0.
        with pytest.raises(BudgetExceeded, match="price of fake/some-model is unknown"):
            await c.complete("fake/some-model", "hi")
    assert fake.requests_for("some-model") == []


async def test_keep_alive_comments_do_not_hold_off_the_idle_timer(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script(
        "alpha-1",
        Reply(text="one two three", fault=Fault.STALL, stall_after_tokens=1, stall_seconds=5),
    )
    async with client(fake, tmp_path, TIMERS.format(first=5, idle=0.6, total=10)) as c:
        with pytest.raises(CallFailed, match="idle") as caught:
            await c.complete("alpha", "hi", max_attempts=1)
    assert "total" not in str(caught.value), "the idle limit, not the total one, ended the call"


async def test_a_slow_whole_answer_is_not_cut_by_the_first_token_limit(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="complete", latency=1.2))
    async with client(fake, tmp_path, TIMERS.format(first=0.5, idle=5, total=10)) as c:
        done = await c.complete("alpha", "hi", stream=False)
    assert done.text == "complete"


async def test_unexpected_shapes_are_malformed_answers_not_crashes(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="ok", cost="NaN"), Reply(text="ok", cost="-100"))
    async with client(fake, tmp_path) as c:
        first = await c.complete("alpha", "hi")
        second = await c.complete("alpha", "hi")
    # An untrusted reported cost that is not a finite, non-negative number is ignored.
    assert first.cost.source == "computed" and second.cost.source == "computed"
    assert second.cost.usd is not None and second.cost.usd > 0


async def test_an_unpriced_remote_model_is_refused_while_a_budget_is_set(
    tmp_path: Path,
) -> None:
    config = parse_config_text(
        '[providers.far]\nbase_url = "https://models.example.invalid/v1"\n'
        '[models.mystery]\nprovider = "far"\nid = "mystery-1"\n'
    )
    async with ModelClient(config, ledger=Ledger(tmp_path / "l.db")) as c:
        with pytest.raises(BudgetExceeded, match="price of mystery is unknown"):
            await c.complete("mystery", "hi")


async def test_cancelling_a_call_settles_its_reservation(
    fake: FakeProvider, tmp_path: Path
) -> None:
    import anyio

    fake.script("alpha-1", Reply(text="a b c d e f", tokens_per_second=2))
    ledger = Ledger(tmp_path / "ledger.db")
    async with ModelClient(parse_config_text(fake_config(fake.url)), ledger=ledger) as c:
        with anyio.move_on_after(0.8):
            await c.complete("alpha", "hi")
    rows = ledger.attempts()
    assert [(r.status, r.outcome) for r in rows] == [("settled", "cancelled")]
    assert rows[0].cost_usd is not None and rows[0].cost_usd > 0, "what arrived is paid for"


async def test_non_ascii_answers_arrive_whole(fake: FakeProvider, tmp_path: Path) -> None:
    text = "naïve café — 東京 🚀 done"
    fake.script("alpha-1", Reply(text=text))
    async with client(fake, tmp_path) as c:
        done = await c.complete("alpha", "hi")
    assert done.text == text


async def test_a_stream_timer_leaves_the_task_free_of_its_cancellation() -> None:
    """The read a limit stops fails as a timeout, and the task goes on with no cancel pending."""
    import asyncio

    import anyio

    from forge.providers.client import _StreamClock, _Timing
    from forge.providers.failures import ProviderError

    now = time.monotonic()
    clock = _StreamClock(_Timing(start=now), first_by=now + 0.05, end=now + 10, idle=1)
    with anyio.fail_after(5), pytest.raises(ProviderError, match="first-token"), clock:
        await asyncio.Event().wait()
    clock.close()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # would raise CancelledError if a cancellation were left over


async def test_a_cancellation_from_outside_at_the_same_moment_stays_a_cancellation() -> None:
    """Ctrl-C or a fanout deadline that lands with a stream limit is not turned into a timeout."""
    import asyncio

    import anyio

    from forge.providers.client import _StreamClock, _Timing

    now = time.monotonic()
    with anyio.CancelScope() as outer:
        clock = _StreamClock(_Timing(start=now), first_by=now, end=now + 10, idle=1)
        asyncio.get_running_loop().call_soon(outer.cancel)  # in the loop turn the timer fires in
        with clock:
            await asyncio.Event().wait()
    clock.close()
    assert outer.cancelled_caught
    assert clock.expired is not None, "the limit had passed too"


async def test_a_token_that_came_in_time_counts_even_when_the_loop_was_busy(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """The second token arrives within the idle limit while the loop is held up past that limit:
    it is read as the progress it was, not dropped by a timeout."""
    fake.script("alpha-1", Reply(text="one two", tokens_per_second=5))  # a token every 0.2 s
    async with client(fake, tmp_path, TIMERS.format(first=5, idle=0.25, total=10)) as c:
        texts = []
        async for event in c.stream("alpha", "count"):
            if isinstance(event, TextDelta):
                texts.append(event.text)
                if len(texts) == 1:
                    time.sleep(0.4)  # another part of the program holds the loop
    assert "".join(texts) == "one two"


async def test_leaving_a_stream_early_settles_its_row_and_frees_its_slot(
    fake: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script("alpha-1", Reply(text="a b c d e f g h", tokens_per_second=10))
    ledger = Ledger(tmp_path / "ledger.db")
    solo = '[models.solo]\nprovider = "fake"\nid = "alpha-1"\ninput_price = 1\noutput_price = 2\n'
    config = parse_config_text(fake_config(fake.url, solo + "max_concurrency = 1\n"))
    async with ModelClient(config, ledger=ledger) as c:
        async for event in c.stream("solo", "hi"):
            if isinstance(event, TextDelta):
                break  # no aclose(): the generator is left for the garbage collector
        fake.script("alpha-1", Reply(text="second"))
        second = await c.complete("solo", "again")
        async for _event in c.stream("solo", "third"):
            break
    assert second.text == "second", "the slot the first stream held was given back"
    rows = list(reversed(ledger.attempts()))
    assert [(r.status, r.outcome) for r in rows] == [
        ("settled", "cancelled"),
        ("settled", "ok"),
        ("settled", "cancelled"),
    ]
    # Charged on what arrived, not at the whole reservation a later run would find.
    assert rows[0].cost_usd is not None and 0 < rows[0].cost_usd < Decimal("0.005")
    assert ledger.spend_today().held == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_an_answer_cut_off_at_its_token_limit_says_so(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="the first half of", finish_reason="length"))
    fake.script("claude-x", Reply(text="the first half of", finish_reason="max_tokens"))
    fake.script("beta-1", Reply(text="whole"))
    async with client(fake, tmp_path) as c:
        openai = await c.complete("alpha", "hi")
        anthropic = await c.complete("claude", "hi")
        whole = await c.complete("beta", "hi", stream=False)
    assert (openai.truncated, openai.finish_reason) == (True, "length")
    assert (anthropic.truncated, anthropic.finish_reason) == (True, "max_tokens")
    assert (whole.truncated, whole.finish_reason) == (False, "stop")
    rows = {r.model: r for r in Ledger(tmp_path / "ledger.db").attempts()}
    assert rows["alpha"].truncated and rows["alpha"].finish_reason == "length"
    assert rows["claude"].truncated and not rows["beta"].truncated


@pytest.mark.parametrize("model", ["alpha", "claude"])
async def test_a_stream_with_no_answer_in_it_is_a_failure_not_an_empty_answer(
    fake: FakeProvider, tmp_path: Path, model: str
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.NO_CHOICES))
    fake.script("claude-x", Reply(fault=Fault.NO_CHOICES))
    async with client(fake, tmp_path) as c:
        with pytest.raises(CallFailed) as caught:
            await c.complete(model, "hi", max_attempts=2)
    assert caught.value.kind is not None and caught.value.kind.value == "malformed_response"
    assert "without any answer" in str(caught.value)
    rows = Ledger(tmp_path / "ledger.db").attempts()
    assert [r.outcome for r in rows] == ["error", "error"], "retried like any malformed answer"


@pytest.mark.parametrize(
    ("model", "usage", "why"),
    [
        ("alpha", {"prompt_tokens": -5000}, "prompt_tokens is -5000"),
        ("alpha", {"completion_tokens": -1}, "completion_tokens is -1"),
        ("alpha", {"completion_tokens": 1.5}, "completion_tokens is 1.5"),
        ("alpha", {"completion_tokens": "12"}, "completion_tokens is 12"),
        ("alpha", {"prompt_tokens": 1e308}, "prompt_tokens is 1e+308"),
        ("alpha", {"prompt_tokens": float("inf")}, "prompt_tokens is inf"),
        ("alpha", {"prompt_tokens_details": "lots"}, "prompt_tokens_details is not an object"),
        ("alpha", {"completion_tokens": 100_000}, "100000 output tokens, max_tokens 100"),
        ("alpha", {"prompt_tokens": 10_000_000}, "10000000 input tokens from a prompt of at most"),
        ("claude", {"output_tokens": -3}, "output_tokens is -3"),
    ],
    ids=lambda v: str(v)[:30],
)
async def test_usage_that_cannot_be_true_is_charged_at_the_reservation(
    fake: FakeProvider,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    model: str,
    usage: dict[str, object],
    why: str,
) -> None:
    fake.script("alpha-1", Reply(text="an answer", usage=usage))
    fake.script("claude-x", Reply(text="an answer", usage=usage))
    ledger = Ledger(tmp_path / "ledger.db")
    async with ModelClient(parse_config_text(fake_config(fake.url)), ledger=ledger) as c:
        first = await c.complete(model, "hi", max_tokens=100)
        await c.complete(model, "hi", max_tokens=100, stream=False)
    assert first.text == "an answer", "the answer itself is kept"
    assert first.cost.source == "reservation"
    row = ledger.attempts()[0]
    assert row.status == "settled" and row.cost_source == "reservation"
    # The worst case the call was allowed: every prompt byte a token, and all of max_tokens.
    assert row.cost_usd == first.cost.usd and row.cost_usd is not None and row.cost_usd > 0
    assert row.output_tokens == 100
    assert row.note is not None and why in row.note and "usage not trusted" in row.note
    assert ledger.spend_today().settled == 2 * row.cost_usd, "never lowered, never absurd"
    warnings = [r.message for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and why in warnings[0], "one warning, however many calls"
