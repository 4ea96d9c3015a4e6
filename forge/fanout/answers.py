"""The typed values of a fan-out: one `Answer` per model asked, and the `FanoutRun` holding them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from forge.providers.types import Pause


class Status(StrEnum):
    WAITING = "waiting"  # not sent yet: held by a provider's limits
    CONNECTING = "connecting"  # an attempt is on its way to the server
    FIRST_TOKEN = "waiting (first token)"  # the server took it; no text yet
    STREAMING = "streaming"  # text is arriving
    RETRYING = "retrying"  # waiting before another attempt; `pause` says why and how long
    OK = "ok"
    FAILED = "failed"  # the provider failed; `cause` says how
    TIMEOUT = "timeout"  # a provider timer (first token, idle, total) ran out
    REFUSED = "refused"  # the budget refused to reserve the call; it was never sent
    LATE = "late"  # still running when --deadline passed; what arrived is kept
    CANCELLED = "cancelled"  # interrupted (Ctrl-C); what arrived is kept


MIN_STREAMING_SECONDS = 0.05
IN_FLIGHT = frozenset({Status.CONNECTING, Status.FIRST_TOKEN, Status.STREAMING, Status.RETRYING})
DONE = frozenset({Status.OK, Status.FAILED, Status.TIMEOUT, Status.REFUSED})
UNFINISHED = frozenset({Status.LATE, Status.CANCELLED})


@dataclass
class Answer:
    """One model's answer to one prompt, filled in as it streams."""

    key: str  # unique in its run: the alias, or "role/alias", or "prompt#/alias" in a batch
    alias: str
    provider: str
    model_id: str
    tier: str | None = None
    role: str | None = None
    prompt_index: int = 0
    status: Status = Status.WAITING
    pieces: list[str] = field(default_factory=list)
    started: float | None = None  # monotonic, when the request left the queue
    attempt_started: float | None = None  # monotonic, when its latest attempt was sent
    ttft: float | None = None
    latency: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    cost_source: str | None = None
    error_kind: str | None = None
    cause: str | None = None
    attempts: int = 0
    truncated: bool = False  # it stopped at its token limit (finish_reason length / max_tokens)
    pause: Pause | None = None  # RETRYING: the wait before the next attempt
    pause_ends: float | None = None  # monotonic, when that wait ends

    def state(self, now: float) -> str:
        """The status as a live view shows it at `now` (monotonic): a wait says why, and
        counts down."""
        if self.status is Status.RETRYING and self.pause is not None:
            ends = self.pause_ends if self.pause_ends is not None else now
            return self.pause.describe(ends - now)
        return self.label

    def elapsed(self, now: float) -> float | None:
        """Its latency once finished; before, the seconds its latest attempt has taken so far
        (a retry starts the clock again, as the latency is that of the attempt that answers).
        None before it is sent."""
        if self.finished:
            return self.latency
        began = self.attempt_started or self.started
        return None if began is None else now - began

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def label(self) -> str:
        """The status as shown: `done` for an answer (the JSON's `ok`); one cut off at its token
        limit says so."""
        if self.status is Status.OK:
            return "cut off" if self.truncated else "done"
        return self.status.value

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def finished(self) -> bool:
        return self.status in DONE or self.status in UNFINISHED

    @property
    def first_line(self) -> str:
        for line in self.text.splitlines():
            if line.strip() and not line.strip().startswith("```"):
                return line.strip()
        return ""

    @property
    def tokens_per_second(self) -> float | None:
        if not self.output_tokens or self.latency is None:
            return None
        streaming = self.latency - (self.ttft or 0.0)
        # An answer that arrived in one burst has no meaningful streaming rate.
        return self.output_tokens / streaming if streaming >= MIN_STREAMING_SECONDS else None


@dataclass(frozen=True)
class Settings:
    """What every request of a run shares."""

    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    deadline: float | None = None  # seconds from the start; None: wait for every answer
    attempts: int | None = None  # HTTP attempts per model; None: [routing] max_call_attempts


@dataclass
class FanoutRun:
    """A whole run as it is shown, saved and printed again."""

    run_id: str
    prompt: str
    settings: Settings
    answers: list[Answer]
    started_at: float  # wall clock
    duration: float = 0.0
    interrupted: bool = False
    deadline_passed: bool = False
    roles: dict[str, str] = field(default_factory=dict)  # role -> its system prompt

    def answered(self) -> list[Answer]:
        return [a for a in self.answers if a.ok]

    @property
    def cost_usd(self) -> Decimal:
        return sum((a.cost_usd for a in self.answers if a.cost_usd is not None), Decimal(0))
