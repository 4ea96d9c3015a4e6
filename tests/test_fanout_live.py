"""What `forge fanout`'s live view says while answers are in flight: each row's state (connecting,
waiting for the first token, streaming, retrying with the cause, the attempt and a countdown),
and clocks that move between events.

The states come from the real client talking to the fake provider; the table is rendered at
chosen moments of a clock the test holds, so no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import io
from contextlib import aclosing
from pathlib import Path

from rich.console import Console

from forge.commands.fanout import _answers_table
from forge.config import parse_config_text
from forge.fanout.answers import Answer, Settings, Status
from forge.fanout.execution import execute, request_for, track
from forge.ledger import Ledger
from forge.providers.client import ModelClient
from forge.providers.types import Pause, TextDelta
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge
from tests.test_fanout import fanout_config, write


def at_its_start(answer: Answer) -> str:
    """The row's state as the live table shows it the moment the state began."""
    now = 0.0
    if answer.pause is not None and answer.pause_ends is not None:
        now = answer.pause_ends - answer.pause.seconds
    return answer.state(now)


def rendered(answers: list[Answer], now: float) -> str:
    out = io.StringIO()
    Console(file=out, width=200, no_color=True).print(_answers_table(answers, now=now))
    return out.getvalue()


def row_of(table: str, key: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"│ {key} "))
    return [cell.strip() for cell in line.strip("│").split("│")]


async def test_a_row_says_what_its_call_is_doing_from_sending_to_the_answer(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script(
        "alpha-1",
        Reply(fault=Fault.RATE_LIMIT, retry_after=1),
        Reply(text="half of an answer that is cut off", fault=Fault.DROP),
        Reply(text="Paris is the capital.", latency=0.1, ttft=0.1),
    )
    config = parse_config_text(fanout_config(fake.url, ["alpha"]))
    states: list[str] = []
    async with ModelClient(config, ledger=Ledger(tmp_path / "ledger.db")) as client:
        request = request_for(client.resolve("alpha"), "Capital?", None)
        assert request.answer.state(0.0) == "waiting", "not sent yet"
        await execute(
            client, [request], Settings(), on_change=lambda a: states.append(at_its_start(a))
        )
    assert states == [
        "connecting",
        "retrying (429, 2/3) in 1 s",
        "connecting",
        "waiting (first token)",
        "streaming",
        # The stream broke: its text is dropped and the restart is a state of its own.
        "retrying (connection, 3/3) in 1 s",
        "connecting",
        "waiting (first token)",
        "streaming",
        "done",
    ]
    assert request.answer.text == "Paris is the capital."
    assert request.answer.cause is None, "the causes of the retries do not outlive the answer"


async def test_a_retry_counts_down_and_the_latency_column_ticks_between_events(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.RATE_LIMIT, retry_after=4), Reply(text="fine"))
    fake.script("beta-1", Reply(text="Paris is the capital of France, on the Seine."))
    config = parse_config_text(fanout_config(fake.url, ["alpha", "beta"]))
    async with ModelClient(config, ledger=Ledger(tmp_path / "ledger.db")) as client:
        alpha = request_for(client.resolve("alpha"), "Capital?", None).answer
        beta = request_for(client.resolve("beta"), "Capital?", None).answer
        # The real events of each call, applied at moments of the test's own clock.
        alpha.started = beta.started = 100.0
        async with aclosing(client.stream("alpha", "Capital?")) as events:
            async for event in events:
                track(alpha, event, 100.0)
                if isinstance(event, Pause):
                    break  # the wait goes on by the test's clock from here
        async with aclosing(client.stream("beta", "Capital?")) as events:
            async for event in events:
                track(beta, event, 100.0)
                if isinstance(event, TextDelta):
                    break
    assert alpha.status is Status.RETRYING and beta.status is Status.STREAMING
    first = rendered([alpha, beta], now=100.2)
    assert row_of(first, "alpha")[2] == "retrying (429, 2/3) in 4 s"
    assert row_of(first, "alpha")[4] == "0s"
    assert row_of(first, "beta")[2] == "streaming"
    # No event between the two renders: only the clock moved.
    later = rendered([alpha, beta], now=102.7)
    assert row_of(later, "alpha")[2] == "retrying (429, 2/3) in 2 s"
    assert row_of(later, "alpha")[4] == "2s"
    assert row_of(later, "beta")[4] == "2s"
    assert "Rate limit reached" in row_of(later, "alpha")[8], "the row says what failed"


def test_without_a_terminal_a_long_wait_is_said_on_stderr_as_it_starts(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.RATE_LIMIT, retry_after=2.5), Reply(text="fine"))
    config = write(tmp_path, fanout_config(fake.url, ["alpha"]))
    done = run_forge("fanout", "Capital?", "-m", "alpha", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "alpha: retrying (429, 2/3) in 3 s (Rate limit reached" in done.stderr
    assert "fine" in done.stdout
