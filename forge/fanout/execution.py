"""Every request at once: answers stream into their `Answer` rows as they arrive.

Only the provider layer holds requests back (each provider's concurrency, rate limits and the
budget reservation); a failure, a refusal or a timeout ends one row with its cause and never the
run. `--deadline` stops waiting and marks what is still running as late; an interrupt (Ctrl-C)
cancels what is in flight and keeps what arrived.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from forge.errors import ForgeError
from forge.fanout.answers import Answer, Settings, Status
from forge.providers.client import BudgetRefused, CallFailed, ModelClient
from forge.providers.failures import FailureKind, ProviderError
from forge.providers.types import (
    Accepted,
    Finished,
    Message,
    Pause,
    Restart,
    Sending,
    StreamEvent,
    Target,
    TextDelta,
)

# The provider layer's own deadline sits a little past --deadline, so that a late answer is
# reported as late by the run rather than as a timeout by the call.
DEADLINE_GRACE = 5.0

OnFinish = Callable[[Answer], None]
# Called after an answer's status changed (sent, accepted, streaming, waiting to retry).
OnChange = Callable[[Answer], None]


@dataclass(frozen=True)
class Request:
    """One model asked one prompt; `answer` is the row it fills."""

    answer: Answer
    target: Target
    messages: tuple[Message, ...]


@dataclass
class Outcome:
    interrupted: bool = False
    deadline_passed: bool = False
    duration: float = 0.0


def request_for(
    target: Target,
    prompt: str,
    system: str | None,
    *,
    key: str | None = None,
    role: str | None = None,
    prompt_index: int = 0,
) -> Request:
    answer = Answer(
        key=key or target.alias,
        alias=target.alias,
        provider=target.provider,
        model_id=target.model_id,
        tier=target.tier,
        role=role,
        prompt_index=prompt_index,
    )
    messages = ((Message("system", system),) if system else ()) + (Message("user", prompt),)
    return Request(answer, target, messages)


async def execute(
    client: ModelClient,
    requests: Sequence[Request],
    settings: Settings,
    *,
    on_finish: OnFinish | None = None,
    stop: anyio.Event | None = None,
    concurrency: int | None = None,
    on_change: OnChange | None = None,
) -> Outcome:
    """Ask every request at once (or `concurrency` at a time); returns when all are done,
    the deadline passes, or `stop` is set."""
    outcome = Outcome()
    started = time.monotonic()
    limiter = anyio.CapacityLimiter(concurrency) if concurrency else None
    with anyio.CancelScope() as everything:
        async with anyio.create_task_group() as watchers:
            if stop is not None:
                watchers.start_soon(_stop_when_set, stop, everything, outcome)
            with anyio.move_on_after(settings.deadline or math.inf) as timer:
                async with anyio.create_task_group() as asks:
                    for request in requests:
                        asks.start_soon(
                            _ask, client, request, settings, on_finish, on_change, limiter
                        )
            outcome.deadline_passed = timer.cancelled_caught
            watchers.cancel_scope.cancel()
    outcome.duration = time.monotonic() - started
    await _charge_from_ledger(client, requests)
    _close_unfinished(requests, outcome, on_finish)
    return outcome


async def _charge_from_ledger(client: ModelClient, requests: Sequence[Request]) -> None:
    """Answers that did not finish (cut off, late, failed mid-stream) still cost what their
    attempts were charged in the ledger; the run's totals must say so."""
    if client.ledger is None or client.run_id is None:
        return
    open_keys = {r.answer.key for r in requests if r.answer.cost_usd is None}
    if not open_keys:
        return
    rows = await anyio.to_thread.run_sync(
        partial(client.ledger.attempts, limit=None, run_id=client.run_id)
    )
    charged: dict[str, Decimal] = {}
    for row in rows:
        if row.task_id in open_keys and row.cost_usd is not None and row.cost_usd > 0:
            charged[row.task_id] = charged.get(row.task_id, Decimal(0)) + row.cost_usd
    for request in requests:
        answer = request.answer
        if answer.key in charged:
            answer.cost_usd = charged[answer.key]
            answer.cost_source = "computed"


async def watch_interrupts(
    stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Set `stop` on the first SIGINT. A second one gets Python's default: KeyboardInterrupt."""
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            stop.set()
            return


async def _stop_when_set(stop: anyio.Event, scope: anyio.CancelScope, outcome: Outcome) -> None:
    await stop.wait()
    outcome.interrupted = True
    scope.cancel()


async def _ask(
    client: ModelClient,
    request: Request,
    settings: Settings,
    on_finish: OnFinish | None,
    on_change: OnChange | None,
    limiter: anyio.CapacityLimiter | None,
) -> None:
    if limiter is None:
        await _stream_into(client, request, settings, on_change)
    else:
        async with limiter:
            await _stream_into(client, request, settings, on_change)
    if on_finish is not None:
        on_finish(request.answer)


async def _stream_into(
    client: ModelClient, request: Request, settings: Settings, on_change: OnChange | None
) -> None:
    answer = request.answer
    answer.started = time.monotonic()
    deadline = settings.deadline + DEADLINE_GRACE if settings.deadline else None
    events = client.stream(
        request.target.alias,
        request.messages,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        deadline=deadline,
        max_attempts=settings.attempts,
        task_id=answer.key,
    )
    try:
        async with aclosing(events) as stream:
            async for event in stream:
                before = answer.status
                track(answer, event, time.monotonic())
                if on_change is not None and (answer.status != before or isinstance(event, Pause)):
                    on_change(answer)
    except BudgetRefused as err:
        _fail(answer, Status.REFUSED, FailureKind.BUDGET.value, str(err))
    except CallFailed as err:
        _failed_call(answer, err)
    except ForgeError as err:  # e.g. a model that cannot be resolved
        _fail(answer, Status.FAILED, type(err).__name__, str(err))


def track(answer: Answer, event: StreamEvent, now: float) -> None:
    """What one event of the call says about its answer at `now` (monotonic)."""
    if isinstance(event, Sending):
        answer.status = Status.CONNECTING
        answer.attempt_started = now
        answer.pause = answer.pause_ends = None
        answer.cause = None
    elif isinstance(event, Accepted):
        answer.status = Status.FIRST_TOKEN
    elif isinstance(event, TextDelta):
        began = answer.attempt_started or answer.started
        if answer.ttft is None and began is not None:
            answer.ttft = now - began
        answer.status = Status.STREAMING
        answer.pieces.append(event.text)
    elif isinstance(event, Restart):
        # What streamed is dropped; the Pause (or the failure) that follows says what next.
        answer.pieces.clear()
        answer.ttft = None
        answer.cause = event.reason
    elif isinstance(event, Pause):
        answer.status = Status.RETRYING
        answer.pause = event
        answer.pause_ends = now + event.seconds
        answer.cause = f"{event.cause}: {event.error}" if event.error else event.cause
    elif isinstance(event, Finished):
        _finish(answer, event)


def _finish(answer: Answer, event: Finished) -> None:
    done = event.completion
    answer.pieces[:] = [done.text]
    answer.status = Status.OK
    answer.ttft = done.ttft
    answer.latency = done.latency
    answer.input_tokens = done.usage.input_tokens
    answer.output_tokens = done.usage.output_tokens
    answer.cost_usd = done.cost.usd
    answer.cost_source = done.cost.source
    answer.attempts = len(done.attempts)
    answer.truncated = done.truncated
    answer.cause = None
    answer.pause = answer.pause_ends = None


def _failed_call(answer: Answer, err: CallFailed) -> None:
    last: ProviderError | None = err.errors[-1] if err.errors else None
    status = Status.TIMEOUT if err.kind is FailureKind.TIMEOUT else Status.FAILED
    if last is None:
        _fail(answer, status, None, str(err))
        return
    http = f" (HTTP {last.status})" if last.status else ""
    _fail(answer, status, last.kind.value, f"{last.kind.value}{http}: {last.detail}")
    answer.attempts = len(err.errors)


def _fail(answer: Answer, status: Status, kind: str | None, cause: str) -> None:
    answer.status = status
    answer.error_kind = kind
    answer.cause = cause
    answer.pause = answer.pause_ends = None
    answer.pieces.clear()
    if answer.started is not None:
        answer.latency = time.monotonic() - answer.started


def _close_unfinished(
    requests: Sequence[Request], outcome: Outcome, on_finish: OnFinish | None
) -> None:
    now = time.monotonic()
    for request in requests:
        answer = request.answer
        if answer.finished:
            continue
        answer.status = Status.CANCELLED if outcome.interrupted else Status.LATE
        answer.pause = answer.pause_ends = None
        answer.cause = (
            "interrupted before it finished"
            if outcome.interrupted
            else "still running when the deadline passed"
        )
        if answer.started is not None:
            answer.latency = now - answer.started
        if on_finish is not None:
            on_finish(answer)
