"""The one way forge calls a model: `ModelClient.complete()` and `ModelClient.stream()`.

Every call goes through one retry loop. Each attempt is throttled (concurrency, requests and
tokens per minute), reserved against the budget in the ledger, sent, timed (first token, idle
gap, total), classified when it fails, and settled in the ledger. Retries and fallbacks to the
next model draw on one attempt budget and one deadline.
"""

from __future__ import annotations

import asyncio
import codecs
import difflib
import logging
import os
import random
import re
import socket
import ssl
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread
import httpx

from forge.config.schema import ForgeConfig
from forge.errors import BudgetExceeded, NoModelAvailable, UsageError
from forge.ledger.pricing import (
    Prices,
    call_cost,
    discovered_prices,
    estimate_input_tokens,
    resolve_prices,
)
from forge.ledger.store import Ledger, Limits, Refusal, Reservation
from forge.providers.api import SSEDecoder, StreamState, api_for, load_json
from forge.providers.breaker import Breaker
from forge.providers.failures import (
    MODEL_OUT,
    NEXT_MODEL,
    OLLAMA_PORT,
    FailureKind,
    ProviderError,
    classify_status,
    error_message,
    is_loopback,
    kind_named_in,
    nothing_listens,
    parse_retry_after,
    says_unknown_model,
)
from forge.providers.limits import Throttle
from forge.providers.secrets import Redactor, expand_headers
from forge.providers.types import (
    Accepted,
    AttemptRecord,
    AttemptResult,
    ChatRequest,
    Completion,
    Cost,
    Finished,
    Message,
    Pause,
    Restart,
    Sending,
    StreamEvent,
    Target,
    TextDelta,
    Usage,
)

log = logging.getLogger("forge.providers")

DEFAULT_MAX_TOKENS = 4096
# Connections per httpx pool. httpcore scans a pool's connections on every request and every
# release, so one pool's cost grows with the square of the calls in flight: a fan-out to a
# thousand models spent most of its time there. Calls spread over pools of this size instead.
POOL_SIZE = 50
MAX_TRIES_PER_MODEL = 3
# A server's Retry-After this long or longer is a rate limit to show as such, not a retry.
LONG_RETRY_AFTER = 10.0
MAX_ERROR_BODY = 64 * 1024
# The tier of models on this machine (Ollama, llama.cpp): the only ones free without a price.
LOCAL_TIER = "local"
MessagesLike = str | Sequence[Message | Mapping[str, str]]


class CallFailed(NoModelAvailable):
    """Every candidate model failed; `errors` holds each attempt's classified cause."""

    def __init__(self, errors: list[ProviderError]) -> None:
        self.errors = errors
        last: dict[str, ProviderError] = {e.alias: e for e in errors}
        causes = "; ".join(e.describe() for e in last.values()) or "no attempt was possible"
        super().__init__(f"no model could answer: {causes}")

    @property
    def kind(self) -> FailureKind | None:
        return self.errors[-1].kind if self.errors else None


class BudgetRefused(BudgetExceeded):
    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(dict.fromkeys(reasons)))


@dataclass
class _CallState:
    """What one call has learnt so far, shared by its attempts."""

    deadline: float
    attempts_left: int
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    records: list[AttemptRecord] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    not_before: dict[str, float] = field(default_factory=dict)
    tries: Counter[str] = field(default_factory=Counter)


def to_messages(messages: MessagesLike) -> tuple[Message, ...]:
    if isinstance(messages, str):
        return (Message("user", messages),)
    out = []
    for m in messages:
        if isinstance(m, Message):
            out.append(m)
        else:
            role = m.get("role", "user")
            if role not in ("system", "user", "assistant"):
                raise UsageError(f"unknown message role {role!r}")
            out.append(Message(role, str(m.get("content", ""))))  # type: ignore[arg-type]
    return tuple(out)


class ModelClient:
    """Calls models as configured. Use as `async with ModelClient(config, ledger=...) as c:`."""

    def __init__(
        self,
        config: ForgeConfig,
        *,
        ledger: Ledger | None = None,
        run_id: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.run_id = run_id
        self.env = os.environ if env is None else env
        self.redact = Redactor.for_config(config, self.env)
        self.warnings: list[str] = []
        self._pools: _Pools | None = None
        self._throttles: dict[str, Throttle] = {}
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self._out: dict[str, ProviderError] = {}
        self._discovered_prices: dict[tuple[str, str], Prices] | None = None
        # Attempts whose ledger row is reserved and not yet settled, by reservation id.
        self._unsettled: dict[int, tuple[Target, Reservation, _Timing]] = {}
        self._distrusted: set[str] = set()  # models whose untrusted usage was warned about
        self._overcharged: set[str] = set()  # models whose unforeseen cost was warned about

    async def __aenter__(self) -> ModelClient:
        self._pools = _Pools(self.config)
        if self.ledger is not None:
            # Cooldowns other forge processes started still hold here.
            for key, saved in self.ledger.breakers().items():
                self._breakers[key] = Breaker(
                    failures=saved.failures,
                    open_until=saved.open_until,
                    last_error=saved.last_error,
                    # A ledger from before the kind was saved: read it from the message.
                    last_kind=saved.last_kind or kind_named_in(saved.last_error),
                )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._settle_abandoned()
        if self._pools is not None:
            await self._pools.aclose()
            self._pools = None

    async def _settle_abandoned(self) -> None:
        """Settle the attempts of streams their caller left without closing (a `break` out of
        `async for event in client.stream(...)`): Python closes such a generator only when it
        is collected, which may be after this client is gone. Each is settled as `cancelled`,
        priced on what had arrived, as any cancelled attempt is; the late close then finds its
        row settled and leaves it."""
        for target, reservation, timing in list(self._unsettled.values()):
            cut = ProviderError(
                FailureKind.CONNECTION,
                "the caller stopped reading the answer before it finished",
            )
            await self._settle_failure(target, reservation, cut, timing, "cancelled")
        self._unsettled.clear()

    # -- public API --------------------------------------------------------------------------

    def resolve(self, ref: str) -> Target:
        """A model alias from forge.toml, or `provider/model-id` for any configured provider."""
        model = self.config.models.get(ref)
        if model is not None:
            return Target(ref, model.provider, model.id, model.tier)
        provider, _, model_id = ref.partition("/")
        if model_id and provider in self.config.providers:
            return Target(ref, provider, model_id, None)
        known = list(self.config.models)
        guess = difflib.get_close_matches(ref, known, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise UsageError(
            f"unknown model {ref!r}{hint} (use an alias from [models] or provider/model-id)"
        )

    async def complete(
        self,
        model: str | Sequence[str],
        messages: MessagesLike,
        **options: Any,
    ) -> Completion:
        """The whole answer. Options as for `stream()`."""
        async with aclosing(self.stream(model, messages, **options)) as events:
            async for event in events:
                if isinstance(event, Finished):
                    return event.completion
        raise AssertionError("stream() ends with Finished or raises")  # pragma: no cover

    async def stream(
        self,
        model: str | Sequence[str],
        messages: MessagesLike,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = True,
        deadline: float | None = None,
        max_attempts: int | None = None,
        task_id: str | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Text as it arrives, a `Restart` when a failed attempt's text must be discarded, and
        `Finished` with the completion. `model` may be a list: the fallback order.

        For a live view, it also says what the call is doing while no text arrives: `Sending`
        when an attempt leaves, `Accepted` when the server took it, and `Pause` before a wait
        (a retry's backoff, a Retry-After, a breaker's cooldown). A caller that only wants the
        text ignores them.

        Raises `CallFailed` (exit 4) when no model answered, `BudgetRefused` (exit 3) when the
        budget refused every attempt, `UsageError` for an unknown model.
        """
        targets = [self.resolve(m) for m in ([model] if isinstance(model, str) else model)]
        routing = self.config.routing
        call = _CallState(
            deadline=time.monotonic() + (deadline or routing.call_deadline_seconds),
            attempts_left=max_attempts or routing.max_call_attempts,
        )
        msgs = to_messages(messages)
        while call.attempts_left > 0:
            choice = self._choose(targets, call)
            if isinstance(choice, Pause):
                yield choice
                await anyio.sleep(choice.seconds)
                continue
            if choice is None:
                break
            target = choice
            call.attempts_left -= 1
            call.tries[target.alias] += 1
            request = ChatRequest(
                messages=msgs,
                max_tokens=max_tokens or self._max_tokens(target),
                temperature=temperature if temperature is not None else self._temperature(target),
                stream=stream,
            )
            last = target.alias == self._last_candidate(targets, call)
            streamed = False
            result: AttemptResult | None = None
            # A model may repeat a key it saw (in an error, a file, a prompt): masked here, so
            # no caller, output, saved run or ledger row ever holds it.
            masked = self.redact.stream()
            try:
                async with aclosing(self._attempt(target, request, call, task_id, last)) as run:
                    async for piece in run:
                        if isinstance(piece, AttemptResult):
                            result = piece
                            break
                        if isinstance(piece, Sending | Accepted):
                            yield piece
                        elif shown := masked.feed(piece):
                            streamed = True
                            yield TextDelta(shown, target.alias)
            except ProviderError as err:
                await self._after_failure(target, err, call)
                if streamed:
                    yield Restart(target.alias, err.describe())
                continue
            if result is not None:
                if rest := masked.flush():
                    yield TextDelta(rest, target.alias)
                yield Finished(self._completion(target, result, call))
                return
        raise self._final_error(call)

    # -- the loop's decisions ----------------------------------------------------------------

    def _choose(self, targets: list[Target], call: _CallState) -> Target | Pause | None:
        """The first usable candidate; or, when every one must wait, the shortest wait if the
        deadline allows it; or None, with the cause in `call.errors`."""
        waits: list[tuple[float, Target]] = []
        for target in targets:
            if target.alias in call.skipped or target.alias in self._out:
                continue
            wait = max(
                call.not_before.get(target.alias, 0.0) - time.monotonic(),
                self._breaker(target).open_until - time.time(),
            )
            if wait <= 0:
                return target
            waits.append((wait, target))
        if not waits:
            return None
        wait, target = min(waits, key=lambda w: w[0])
        pause = self._pause(target, call, wait)
        if time.monotonic() + wait < call.deadline:
            return pause
        if not any(e.alias == target.alias for e in call.errors):
            # The cause is the failure behind the cooldown (a refused connection is not
            # `overloaded`); a cooldown of unknown cause is taken for an overloaded model.
            breaker = self._breaker(target)
            kind = kind_named_in(breaker.last_kind) or FailureKind.OVERLOADED
            call.errors.append(
                ProviderError(
                    kind,
                    f"{pause.describe()}, past the call's deadline (last: "
                    f"{breaker.last_error or 'a recent failure'}); `forge models --reset "
                    f"{target.alias}` clears it once the cause is fixed",
                    alias=target.alias,
                )
            )
        return None

    def _pause(self, target: Target, call: _CallState, wait: float) -> Pause:
        """What the wait before the next attempt on `target` is, in terms a user can act on."""
        alias = target.alias
        breaker = self._breaker(target)
        retry = call.not_before.get(alias, 0.0) - time.monotonic()
        last = next((e for e in reversed(call.errors) if e.alias == alias), None)
        tries = call.tries[alias]
        attempts = min(MAX_TRIES_PER_MODEL, tries + call.attempts_left)
        if last is None or wait > retry + 1.0:
            # The breaker holds it longer than this call's own backoff would.
            return Pause(
                alias,
                "cooldown",
                wait,
                time.time() + wait,
                cause=last.kind.value if last else breaker.last_kind or "failures",
                error=last.detail if last else breaker.last_error or "",
                attempt=tries + 1,
                attempts=attempts,
                failures=breaker.failures,
            )
        asked = last.retry_after is not None and last.retry_after >= LONG_RETRY_AFTER
        return Pause(
            alias,
            "rate_limit" if asked else "retry",
            wait,
            time.time() + wait,
            cause=str(last.status) if last.status else last.kind.value,
            error=last.detail,
            attempt=tries + 1,
            attempts=attempts,
            failures=breaker.failures,
        )

    def _last_candidate(self, targets: list[Target], call: _CallState) -> str | None:
        usable = [
            t.alias for t in targets if t.alias not in call.skipped and t.alias not in self._out
        ]
        return usable[-1] if usable else None

    async def _after_failure(self, target: Target, err: ProviderError, call: _CallState) -> None:
        call.errors.append(err)
        alias = target.alias
        if err.kind is FailureKind.THROTTLED:
            # Never sent: forge's own limits said no. It costs no attempt and no breaker count.
            call.attempts_left += 1
            call.tries[alias] -= 1
            call.skipped.add(alias)
            return
        call.records.append(AttemptRecord(alias, "error", err.kind.value, err.detail))
        if err.unreachable:
            # Nothing listens there: it fails the same way at once until someone starts the
            # server, and no cooldown would help, so the breaker does not count it.
            call.skipped.add(alias)
            return
        if err.kind in MODEL_OUT:
            self._out[alias] = err  # a bad key or a missing model will not fix itself this run
            return
        if err.kind in NEXT_MODEL:
            call.skipped.add(alias)
            return
        wait = err.retry_after
        if wait is None:
            wait = min(8.0, 0.25 * 2 ** (call.tries[alias] - 1)) * (0.5 + random.random() / 2)
        call.not_before[alias] = time.monotonic() + wait
        if call.tries[alias] >= MAX_TRIES_PER_MODEL:
            call.skipped.add(alias)
        breaker = self._breaker(target)
        cooldown = err.retry_after if err.kind is FailureKind.RATE_LIMIT else None
        opened = breaker.record_failure(err.describe(), cooldown, err.kind.value)
        if opened and self.ledger is not None:
            await anyio.to_thread.run_sync(
                partial(
                    self.ledger.save_breaker,
                    target.provider,
                    target.model_id,
                    breaker.failures,
                    breaker.open_until,
                    breaker.last_error,
                    breaker.last_kind,
                )
            )

    def _final_error(self, call: _CallState) -> Exception:
        errors = call.errors or list(self._out.values())
        if errors and all(e.kind is FailureKind.BUDGET for e in errors):
            return BudgetRefused([e.detail for e in errors])
        return CallFailed(errors)

    def _completion(self, target: Target, result: AttemptResult, call: _CallState) -> Completion:
        call.records.append(AttemptRecord(target.alias, "ok", latency=result.latency))
        return Completion(
            text=self.redact(result.text),
            target=target,
            usage=result.usage,
            cost=result.cost or call_cost(result.usage, self.prices(target)),
            ttft=result.ttft,
            latency=result.latency,
            finish_reason=result.finish_reason,
            attempts=call.records,
        )

    def _priced(
        self, target: Target, request: ChatRequest, input_estimate: int, result: AttemptResult
    ) -> AttemptResult:
        """The result with its cost. Usage is the provider's word, and is not taken when it
        cannot be true: a count that is not a whole number from zero up, more output than
        `max_tokens` allowed (with a margin), or more input than the prompt's bytes could make.
        Then the call is charged its reservation, the worst case it was allowed to cost, and
        its tokens are recorded as that worst case."""
        usage = result.usage
        if usage.output_tokens > request.max_tokens + request.max_tokens // 10 + 64:
            usage.distrust(f"{usage.output_tokens} output tokens, max_tokens {request.max_tokens}")
        if usage.input_tokens > 2 * input_estimate + 1024:
            usage.distrust(
                f"{usage.input_tokens} input tokens from a prompt of at most {input_estimate}"
            )
        prices = self.prices(target)
        if usage.untrusted is None:
            result.cost = call_cost(usage, prices)
            return result
        result.usage = Usage(
            input_estimate, request.max_tokens, 0, 0, None, untrusted=usage.untrusted
        )
        worst = prices.worst_case(input_estimate, request.max_tokens) if prices else None
        result.cost = Cost(worst, "reservation" if worst is not None else "unpriced")
        return result

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(
        self,
        target: Target,
        request: ChatRequest,
        call: _CallState,
        task_id: str | None,
        last_candidate: bool,
    ) -> AsyncGenerator[str | Sending | Accepted | AttemptResult, None]:
        """`Sending` once forge's limits let the attempt go, `Accepted` when the server took
        it, text as it arrives, then the settled result last; raises ProviderError.

        Whatever happens after the reservation (an error, a cancellation, the consumer walking
        away), the ledger row is settled: a reservation is never left behind by a live process.
        """
        key = self._key(target)
        input_tokens = estimate_input_tokens([m.content for m in request.messages])
        throttles = [self._throttle(f"provider:{target.provider}"), self._throttle(target.alias)]
        # Only the last candidate waits for a busy slot; the others hand over to the next model.
        slot_deadline = call.deadline if last_candidate else time.monotonic()
        acquired: list[Throttle] = []
        result: AttemptResult | None = None
        reservation: Reservation | None = None
        try:
            for throttle in throttles:
                await throttle.acquire(
                    input_tokens + request.max_tokens, call.deadline, slot_deadline
                )
                acquired.append(throttle)
            reservation = await self._reserve(target, request, input_tokens, call, task_id)
            timing = _Timing(start=time.monotonic(), input_estimate=input_tokens)
            if reservation is not None:
                self._unsettled[reservation.id] = (target, reservation, timing)
            yield Sending(
                target.alias,
                call.tries[target.alias],
                min(MAX_TRIES_PER_MODEL, call.tries[target.alias] + call.attempts_left),
            )
            try:
                exchange = self._exchange(target, request, key, call.deadline, timing)
                async with aclosing(exchange) as texts:
                    async for text in texts:
                        yield text
                result = self._priced(target, request, input_tokens, timing.result())
            except ProviderError as err:
                err = self._clean(err, target)
                with anyio.CancelScope(shield=True):
                    await self._settle_failure(target, reservation, err, timing)
                raise err from None
            except BaseException:
                cut = ProviderError(FailureKind.CONNECTION, "the call was cancelled")
                with anyio.CancelScope(shield=True):
                    await self._settle_failure(target, reservation, cut, timing, "cancelled")
                raise
            self._breaker(target).record_success()
            with anyio.CancelScope(shield=True):
                await self._settle_success(target, reservation, result)
        except ProviderError as err:
            raise self._clean(err, target) from None
        finally:
            if reservation is not None:
                self._unsettled.pop(reservation.id, None)
            for throttle in acquired:
                throttle.release()
        assert result is not None
        yield result

    def _key(self, target: Target) -> str | None:
        """The provider's key from its variable; a key that cannot go in a header is refused."""
        provider = self.config.providers[target.provider]
        if not provider.api_key_env:
            return None
        key = self.env.get(provider.api_key_env)
        if not key:
            raise ProviderError(
                FailureKind.AUTH, f"{provider.api_key_env} is not set", alias=target.alias
            )
        if not key.isascii() or not key.isprintable() or key != key.strip():
            raise ProviderError(
                FailureKind.AUTH,
                f"{provider.api_key_env} holds spaces, control or non-ASCII characters; "
                "check how the key was pasted",
                alias=target.alias,
            )
        return key

    async def _exchange(
        self,
        target: Target,
        request: ChatRequest,
        key: str | None,
        deadline: float,
        timing: _Timing,
    ) -> AsyncGenerator[str | Accepted, None]:
        assert self._pools is not None, "use ModelClient inside `async with`"
        pools = self._pools
        provider = self.config.providers[target.provider]
        limits = provider.timeout
        api = api_for(provider.api)
        end = min(timing.start + limits.total, deadline)
        # A whole (non-streamed) answer sends its headers only when it is complete.
        first_by = min(timing.start + limits.first_token, end) if request.stream else end
        http = pools.lease(target.provider)
        try:
            path, headers, body = api.build(target, request, key)
            headers.update(self._headers(target))
            http_request = http.build_request(
                "POST",
                provider.base_url + path,
                json=body,
                headers=headers,
                timeout=httpx.Timeout(
                    connect=limits.connect, read=None, write=limits.connect, pool=None
                ),
            )
            with _timer(first_by, "no response within the first-token limit"):
                response = await http.send(http_request, stream=True)
            try:
                # OpenAI, Groq and Anthropic count these limits per model.
                self._throttle(target.alias).observe(response.headers)
                if response.status_code != 200:
                    raise await self._http_error(response, first_by)
                yield Accepted(target.alias)
                content_type = response.headers.get("content-type", "")
                if not request.stream or content_type.startswith("application/json"):
                    with _timer(end, "no complete answer within the total time limit"):
                        raw = await response.aread()
                    timing.state = api.read_body(
                        load_json(raw.decode("utf-8", "replace"), "the body")
                    )
                    timing.first_token = time.monotonic()
                    yield timing.state.text
                    return
                async for text in self._read_stream(
                    response, api, timing, first_by, end, limits.idle
                ):
                    yield text
            finally:
                await response.aclose()
        except ProviderError:
            raise
        except httpx.TimeoutException as exc:
            raise ProviderError(FailureKind.TIMEOUT, f"{type(exc).__name__}: {exc}") from None
        except httpx.ConnectError as exc:
            raise self._connect_error(target, exc) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                FailureKind.CONNECTION, f"{type(exc).__name__}: {exc or 'connection failed'}"
            ) from None
        except (
            AttributeError,
            TypeError,
            KeyError,
            IndexError,
            ValueError,
            ArithmeticError,
            RecursionError,
        ) as exc:
            # Model and gateway output is untrusted: an unexpected shape is a malformed answer.
            raise ProviderError(
                FailureKind.MALFORMED, f"unexpected answer shape ({type(exc).__name__})"
            ) from None
        finally:
            pools.release(http)

    def _connect_error(self, target: Target, exc: httpx.ConnectError) -> ProviderError:
        """A connection that could not be made. Refused on this machine, it means nothing
        listens on the port, so the message says which server to start."""
        provider = self.config.providers[target.provider]
        url = httpx.URL(provider.base_url)
        where = f"(base_url of [providers.{target.provider}])"
        tls = _tls_failure(exc, proxied=bool(provider.proxy))
        if tls is not None:
            # The server is there; what it answered with will not change on a retry.
            return ProviderError(FailureKind.CONNECTION, f"{tls} {where}", unreachable=True)
        named = _name_failure(exc, url.host, proxied=bool(provider.proxy))
        if named is not None:
            return ProviderError(
                FailureKind.CONNECTION, f"{named[0]} {where}", unreachable=named[1]
            )
        refused = any(isinstance(cause, ConnectionRefusedError) for cause in _causes(exc))
        if provider.proxy or not is_loopback(url.host) or not refused:
            return ProviderError(
                FailureKind.CONNECTION, f"{type(exc).__name__}: {exc or 'connection failed'}"
            )
        port = url.port or (443 if url.scheme == "https" else 80)
        ollama = port == OLLAMA_PORT or provider.discover == "ollama" or "ollama" in target.provider
        return ProviderError(
            FailureKind.CONNECTION,
            f"{nothing_listens(url.host, port, ollama=ollama)} {where}",
            unreachable=True,
        )

    def _headers(self, target: Target) -> dict[str, str]:
        provider = self.config.providers[target.provider]
        missing = [
            name
            for value in provider.headers.values()
            for name in re.findall(r"\$\{(\w+)\}", value)
            if not self.env.get(name)
        ]
        if missing:
            raise ProviderError(
                FailureKind.AUTH,
                f"{', '.join(sorted(set(missing)))} (used in [providers.{target.provider}] "
                "headers) is not set",
            )
        return expand_headers(provider.headers, self.env)

    async def _read_stream(
        self,
        response: httpx.Response,
        api: Any,
        timing: _Timing,
        first_by: float,
        end: float,
        idle: float,
    ) -> AsyncIterator[str]:
        decoder = SSEDecoder()
        state = timing.state
        # Raw chunks, split into lines here, with one timer for the whole stream rather than
        # one per read: that keeps the client's CPU cost low when a thousand streams arrive.
        chunks = response.aiter_bytes()
        text_of = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span reads
        pending = ""
        clock = _StreamClock(timing, first_by, end, idle)
        try:
            while True:
                with clock:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                *lines, pending = (pending + text_of.decode(chunk)).split("\n")
                texts = []
                for raw in lines:
                    line = raw.removesuffix("\r")
                    if line.startswith(":"):
                        continue  # SSE comments keep a connection warm; they are not progress
                    if line:
                        clock.progress = time.monotonic()  # blank lines only end events
                    event = decoder.feed(line)
                    if event is None:
                        continue
                    text = api.read_event(event, state)
                    if timing.first_token is None and (text or state.tokens_seen):
                        timing.first_token = time.monotonic()
                        clock.rearm()  # from the first-token limit to the idle limit
                    if text:
                        texts.append(text)
                    if state.done:
                        break
                if texts:
                    yield "".join(texts)
                if state.done:
                    return
        finally:
            clock.close()
        if not state.done and state.finish_reason is None:
            raise ProviderError(FailureKind.CONNECTION, "the stream ended before the answer did")

    async def _http_error(self, response: httpx.Response, by: float) -> ProviderError:
        raw = b""
        with anyio.move_on_after(max(0.1, by - time.monotonic())):
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > MAX_ERROR_BODY:
                    break
        text = self.redact(raw.decode("utf-8", "replace"))  # before any cut splits a key
        try:
            body: Any = load_json(text, "the error body")
        except ProviderError:
            body = text
        status = response.status_code
        return ProviderError(
            classify_status(status, body),
            error_message(body, text[:200] or response.reason_phrase),
            status=status,
            retry_after=parse_retry_after(response.headers),
        )

    # -- ledger --------------------------------------------------------------------------------

    async def _reserve(
        self,
        target: Target,
        request: ChatRequest,
        input_tokens: int,
        call: _CallState,
        task_id: str | None,
    ) -> Reservation | None:
        if self.ledger is None:
            return None
        prices = self.prices(target)
        amount = prices.worst_case(input_tokens, request.max_tokens) if prices else Decimal(0)
        cost = self.config.cost
        provider = self.config.providers[target.provider]
        limited = cost.daily_stop is not None or cost.run_budget_usd is not None
        # Unpriced is refused under a budget, wherever the server is: a proxy on 127.0.0.1
        # (LiteLLM) bills upstream. Only the local tier's models go unpriced (and free).
        if prices is None and limited and target.tier != LOCAL_TIER:
            raise ProviderError(
                FailureKind.BUDGET,
                f"budget: the price of {target.alias} is unknown, so the budget cannot hold it; "
                f"set input_price and output_price in [models.{target.alias}] "
                "(or run `forge models --discover`)",
            )
        # A call that cannot cost anything (priced at $0, or a local model without prices) is
        # never refused by a budget, however far over it the day is; a provider's request quota
        # still counts it. A model that reported a cost in this run is no longer taken as free.
        free = amount == 0 and target.alias not in self._overcharged
        limits = Limits(
            None if free else cost.daily_stop,
            None if free else cost.run_budget_usd,
            provider.requests_per_day,
        )
        outcome = await anyio.to_thread.run_sync(
            partial(
                self.ledger.reserve,
                target,
                amount,
                limits,
                run_id=self.run_id,
                task_id=task_id,
                call_id=call.call_id,
                attempt=call.tries[target.alias],
                hold_seconds=max(60.0, call.deadline - time.monotonic() + 60.0),
            )
        )
        if isinstance(outcome, Refusal):
            kind = FailureKind.BUDGET if outcome.kind == "budget" else FailureKind.QUOTA
            raise ProviderError(kind, outcome.reason)
        return outcome

    async def _settle_failure(
        self,
        target: Target,
        reservation: Reservation | None,
        err: ProviderError,
        timing: _Timing,
        outcome: str = "error",
    ) -> None:
        if self.ledger is None or reservation is None:
            return
        # An error response is not billed; a stream cut off mid-answer may be, so it is priced
        # on what arrived.
        started = timing.state.text or timing.state.tokens_seen
        usage = timing.usage() if started else Usage()
        cost = call_cost(usage, self.prices(target)) if started else None
        await anyio.to_thread.run_sync(
            partial(
                self.ledger.settle,
                reservation,
                outcome=outcome,
                usage=usage,
                cost=cost,
                latency=time.monotonic() - timing.start,
                ttft=timing.ttft,
                error_kind=err.kind.value,
                error=err.detail,
            )
        )

    async def _settle_success(
        self, target: Target, reservation: Reservation | None, result: AttemptResult
    ) -> None:
        if self.ledger is None or reservation is None:
            return
        untrusted = result.usage.untrusted
        note = f"usage not trusted: {untrusted}; charged at the reservation" if untrusted else None
        settled = await anyio.to_thread.run_sync(
            partial(
                self.ledger.settle,
                reservation,
                outcome="ok",
                usage=result.usage,
                cost=result.cost or call_cost(result.usage, self.prices(target)),
                latency=result.latency,
                ttft=result.ttft,
                warn_at=self.config.cost.daily_warn,
                finish_reason=result.finish_reason,
                note=self.redact(note) if note else None,
            )
        )
        if untrusted and target.alias not in self._distrusted:
            self._distrusted.add(target.alias)
            message = self.redact(
                f"{target.alias} sent usage forge does not trust ({untrusted}): its calls are "
                f"charged at their reservation (${reservation.amount:.6f} for this one)"
            )
            self.warnings.append(message)
            log.warning(message)
        reported = result.usage.reported_cost
        if reported is not None and reported > reservation.amount:
            self._warn_reported(target, reported, reservation.amount)
        if settled.warn_crossed:
            message = (
                f"today's spend ${settled.spent_today:.4f} has passed the warning threshold "
                f"${self.config.cost.daily_warn}"
            )
            self.warnings.append(message)
            log.warning(message)

    def _warn_reported(self, target: Target, reported: Decimal, reserved: Decimal) -> None:
        """A cost the prices did not foresee (a model taken as free that bills): charged as
        reported, and said once per model for the run, not on every call."""
        if target.alias in self._overcharged:
            return
        self._overcharged.add(target.alias)
        if reserved == 0:
            message = (
                f"{target.alias} is priced at $0 (or is a local model) but its provider "
                f"reported a cost of ${_amount(reported)}: its calls are charged what is "
                "reported; set its input_price and output_price in forge.toml"
            )
        else:
            message = (
                f"{target.alias} reported a cost of ${_amount(reported)} above its reservation "
                f"of ${_amount(reserved)}: check its prices in forge.toml"
            )
        self.warnings.append(message)
        log.warning(message)

    # -- lookups -------------------------------------------------------------------------------

    def prices(self, target: Target) -> Prices | None:
        if self._discovered_prices is None:
            found = self.ledger.discovered() if self.ledger is not None else {}
            self._discovered_prices = discovered_prices(found)
        return resolve_prices(self.config, target, self._discovered_prices)

    def _max_tokens(self, target: Target) -> int:
        model = self.config.models.get(target.alias)
        return (model.max_output_tokens if model else None) or DEFAULT_MAX_TOKENS

    def _temperature(self, target: Target) -> float | None:
        model = self.config.models.get(target.alias)
        return model.temperature if model else None

    def _throttle(self, scope: str) -> Throttle:
        throttle = self._throttles.get(scope)
        if throttle is None:
            if scope.startswith("provider:"):
                p = self.config.providers[scope.removeprefix("provider:")]
                throttle = Throttle(
                    max_concurrency=p.max_concurrency,
                    requests_per_minute=p.requests_per_minute,
                    tokens_per_minute=p.tokens_per_minute,
                )
            else:
                model = self.config.models.get(scope)
                throttle = Throttle(max_concurrency=model.max_concurrency if model else None)
            self._throttles[scope] = throttle
        return throttle

    def _breaker(self, target: Target) -> Breaker:
        key = (target.provider, target.model_id)
        if key not in self._breakers:
            self._breakers[key] = Breaker()
        return self._breakers[key]

    def _clean(self, err: ProviderError, target: Target) -> ProviderError:
        """The same error, attributed to its model, with any secret removed from its text."""
        if err.alias and err.detail == self.redact(err.detail):
            return err
        detail = self.redact(err.detail)
        if err.kind is FailureKind.NOT_FOUND and not err.alias:
            detail = self._not_found(target, detail)
        return ProviderError(
            err.kind,
            detail,
            alias=err.alias or target.alias,
            status=err.status,
            retry_after=err.retry_after,
            unreachable=err.unreachable,
        )

    def _not_found(self, target: Target, said: str) -> str:
        """What a user does about a model the server does not know: the `id` is the usual
        culprit (a typo, a model not pulled); a 404 that names no model may be the base_url."""
        where = (
            f"`id` in [models.{target.alias}] of forge.toml"
            if target.alias in self.config.models
            else f"the model id in {target.alias!r}"
        )
        if says_unknown_model(said):
            return (
                f"the model id {target.model_id!r} is unknown to the server of "
                f"[providers.{target.provider}]: check {where} (the server said: {said})"
            )
        return (
            f"the server of [providers.{target.provider}] has no model {target.model_id!r} or "
            f"no such path: check {where} and its base_url (the server said: {said})"
        )


class _Pools:
    """httpx clients per provider, each holding at most POOL_SIZE connections.

    A call leases the first pool of its provider with room, so kept-alive connections are
    reused and a new pool opens only when every other one is full. The pools share one TLS
    context: loading the certificate store for each would cost more than the pool saves.
    Each provider's first pool opens at once, so the first call does not pay for setting up.
    The store (about 50 ms of CPU) is loaded only for an https server; a pool for a plain-HTTP
    server gets a context that trusts no certificate, so TLS there would fail closed.
    """

    def __init__(self, config: ForgeConfig) -> None:
        self._config = config
        self._tls: ssl.SSLContext | None = None
        self._pools: dict[str, list[httpx.AsyncClient]] = {
            name: [self._open(name)] for name in config.providers
        }
        self._busy: dict[httpx.AsyncClient, int] = {
            pool: 0 for pools in self._pools.values() for pool in pools
        }

    def lease(self, provider: str) -> httpx.AsyncClient:
        pools = self._pools.setdefault(provider, [])
        pool = next((p for p in pools if self._busy[p] < POOL_SIZE), None)
        if pool is None:
            pool = self._open(provider)
            pools.append(pool)
            self._busy[pool] = 0
        self._busy[pool] += 1
        return pool

    def release(self, pool: httpx.AsyncClient) -> None:
        # A stream its caller left unclosed may end after the pools did.
        if pool in self._busy:
            self._busy[pool] -= 1

    def _trusted(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = httpx.create_ssl_context(trust_env=True)
        return self._tls

    async def aclose(self) -> None:
        for pools in self._pools.values():
            for pool in pools:
                await pool.aclose()
        self._pools.clear()
        self._busy.clear()

    def _open(self, provider: str) -> httpx.AsyncClient:
        settings = self._config.providers[provider]
        tls = self._trusted() if _speaks_tls(settings.base_url) else _trusts_none()
        mounts = (
            {_origin(settings.base_url): httpx.AsyncHTTPTransport(proxy=settings.proxy, verify=tls)}
            if settings.proxy
            else None
        )
        return httpx.AsyncClient(
            limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
            verify=tls,
            mounts=mounts,
            trust_env=True,
        )


@dataclass
class _Timing:
    start: float
    input_estimate: int = 0
    first_token: float | None = None
    state: StreamState = field(default_factory=StreamState)

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start

    def result(self) -> AttemptResult:
        return AttemptResult(
            text=self.state.text,
            usage=self.usage(),
            finish_reason=self.state.finish_reason,
            ttft=self.ttft,
            latency=time.monotonic() - self.start,
        )

    def usage(self) -> Usage:
        """The provider's usage; where it is missing or cut short, a generous estimate.

        An answer is never recorded as free because a provider did not say what it cost.
        """
        usage = self.state.usage
        finished = self.state.done or self.state.finish_reason is not None
        received = len(self.state.text.encode("utf-8")) // 3 + 1 if self.state.text else 0
        output = (
            usage.output_tokens
            if finished and usage.output_tokens
            else max(usage.output_tokens, received)
        )
        return Usage(
            usage.input_tokens or self.input_estimate,
            output,
            usage.cached_tokens,
            usage.reasoning_tokens,
            usage.reported_cost,
            usage.untrusted,
        )


class _StreamClock:
    """The time limits of one stream's reads, kept by one timer for the whole stream.

    A timer per network read costs more than the read when a thousand streams arrive at once.
    Here progress only moves a number; the timer, when it fires, either sets itself again for
    the deadline as it now stands or cancels the read in progress (or the next one) and says
    which limit passed. Used as a context manager around each read.
    """

    def __init__(self, timing: _Timing, first_by: float, end: float, idle: float) -> None:
        self.timing, self.first_by, self.end, self.idle = timing, first_by, end, idle
        self.progress = time.monotonic()  # the last line that was not a comment
        self.expired: str | None = None
        self._scope: anyio.CancelScope | None = None
        self._loop = asyncio.get_running_loop()  # its clock is time.monotonic()
        self._handle = self._loop.call_at(self._due()[0], self._check)

    def _due(self) -> tuple[float, str]:
        if self.timing.first_token is None:
            by, why = self.first_by, "no first token within the first-token limit"
        else:
            by, why = min(self.progress + self.idle, self.end), "stream stalled past the idle limit"
        if self.end <= by:
            why = "answer not finished within the total time limit"
        return min(by, self.end), why

    def _check(self) -> None:
        by, why = self._due()
        if by > time.monotonic():
            self._handle = self._loop.call_at(by, self._check)
            return
        self.expired = why
        if self._scope is not None:
            self._scope.cancel()

    def rearm(self) -> None:
        """The deadline may now be earlier than the one the timer waits for."""
        self._handle.cancel()
        self._handle = self._loop.call_at(self._due()[0], self._check)

    def close(self) -> None:
        self._handle.cancel()

    def __enter__(self) -> None:
        if self.expired is not None:
            if self._due()[0] > time.monotonic():  # the read that beat the timer made progress
                self.expired = None
                self.rearm()
            else:
                raise ProviderError(FailureKind.TIMEOUT, self.expired)
        self._scope = anyio.CancelScope()
        self._scope.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        scope, self._scope = self._scope, None
        assert scope is not None
        swallowed = bool(scope.__exit__(kind, exc, tb))
        if scope.cancelled_caught and self.expired is not None:
            raise ProviderError(FailureKind.TIMEOUT, self.expired)
        return swallowed


class _timer:
    """Fail with a TIMEOUT ProviderError if the block has not finished by `by` (monotonic)."""

    def __init__(self, by: float, why: str) -> None:
        self._scope = anyio.fail_after(max(0.0, by - time.monotonic()))
        self._why = why

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._scope.__exit__(kind, exc, tb)
        except TimeoutError:
            raise ProviderError(FailureKind.TIMEOUT, self._why) from None


def _amount(value: Decimal) -> str:
    """Dollars as a plain Decimal string, without a float's noise (0.00007439999999999999 is
    0.0000744): twelve places are finer than any provider bills."""
    return f"{value.quantize(Decimal('1e-12')).normalize():f}"


def _speaks_tls(base_url: str) -> bool:
    """Whether the pool's context is used in a handshake: only to an https server (a proxy's
    own TLS, https:// or from the environment, is verified by httpcore against certifi)."""
    return httpx.URL(base_url).scheme == "https"


# OpenSSL's verify codes that call for other advice than a bundle holding the issuer.
_WRONG_HOST = {62, 64}  # the certificate names another host (or IP address)
_EXPIRED = {10}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what lies under it: httpx wraps httpcore's error, which wraps the socket's or
    the ssl module's."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return
        yield seen
        # What the error was raised from; or what it wraps (httpcore's hides its context and
        # holds the error as its argument); or what it was raised during, unless that is hidden.
        held = next((a for a in seen.args if isinstance(a, BaseException)), None)
        seen = seen.__cause__ or held or (None if seen.__suppress_context__ else seen.__context__)


def _tls_failure(exc: BaseException, proxied: bool) -> str | None:
    """What a TLS handshake that failed says, and what to do, if that is why `exc` happened.
    A connection closed mid-handshake is not one: that is a dropped connection, retried."""
    for seen in _causes(exc):
        if isinstance(seen, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            reason = (seen.verify_message or "certificate verify failed").rstrip(". ")
            whose = "the server's TLS certificate"
            if proxied:
                whose = "a TLS certificate on the way (the server's or the proxy's)"
            if seen.verify_code in _WRONG_HOST:
                advice = "check the host in base_url"
            elif seen.verify_code in _EXPIRED:
                advice = "the server must renew it"
            else:
                advice = "set SSL_CERT_FILE to a bundle that holds its issuer"
            return f"{whose} is not trusted ({reason}): {advice}"
        if isinstance(seen, ssl.SSLError):
            reason = getattr(seen, "reason", None) or type(seen).__name__
            return f"the TLS handshake failed ({reason}): does the server speak https?"
    return None


# getaddrinfo's answers that a retry within the call will not change: no such name, no address.
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _name_failure(exc: BaseException, host: str, proxied: bool) -> tuple[str, bool] | None:
    """What a host name that did not resolve says, and whether it is final (no such name, as
    opposed to a resolver that did not answer this time), if that is why `exc` happened."""
    for seen in _causes(exc):
        if isinstance(seen, socket.gaierror):
            said = seen.strerror or str(seen)
            name = "a host name on the way (base_url's or the proxy's)" if proxied else host
            if seen.errno in _NO_SUCH_NAME:
                return f"{name} does not resolve ({said}): check the host in base_url", True
            return f"{name} could not be resolved now ({said}): is the network up?", False
    return None


def _trusts_none() -> ssl.SSLContext:
    """A context that verifies certificates against an empty store: every handshake fails."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _origin(url: str) -> str:
    """`scheme://host[:port]`, the key of an httpx mount; an IPv6 host keeps its brackets."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
