"""Runs a milestone's task graph: ready tasks in parallel, validated work merged one at a time.

A task is ready when every task it comes after is merged. Up to `max_concurrent_tasks` run at
once, each through the task engine from the integration head as it stands when the task starts,
so it sees the work it depends on. Finished work is merged here, in the one loop that also starts
tasks, so merges never race. A merge conflict re-runs the task once on the new head; a task that
fails takes its dependents with it (skipped, with the reason) while independent tasks go on.
When the budget is reached no task or attempt starts; those in flight finish, or are cancelled
with `on_budget="cancel"`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from forge.errors import ExitCode, ForgeError
from forge.execution.engine import TaskEngine, TaskOutcome
from forge.execution.integration import Integration
from forge.execution.store import RunStore, TaskAttemptRow
from forge.planning.graph import dependents, ready, task_graph
from forge.planning.milestone import Milestone, MilestoneTask

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig
    from forge.ledger.store import Ledger

TaskState = Literal[
    "waiting", "running", "done", "failed", "skipped", "stopped", "not_started", "interrupted"
]
MAX_CONFLICT_RERUNS = 1


@dataclass(frozen=True)
class RunEvent:
    """A task changed state in the run (the engine's own events say what happens inside)."""

    task_id: str
    state: TaskState
    message: str


@dataclass
class TaskRecord:
    task: MilestoneTask
    state: TaskState = "waiting"
    reason: str = ""
    outcomes: list[TaskOutcome] = field(default_factory=list)  # one per engine run
    commit: str | None = None  # on the integration line
    conflicts: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def attempts(self) -> int:
        return sum(len(o.attempts) for o in self.outcomes) + self.conflicts

    @property
    def cost(self) -> Decimal:
        return sum((o.cost for o in self.outcomes), Decimal(0))

    @property
    def rungs(self) -> list[str]:
        return [rung for o in self.outcomes for rung in o.rungs]

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @property
    def tier(self) -> str | None:
        """The rung whose attempt passed, for a finished task."""
        if self.state != "done" or not self.outcomes or not self.outcomes[-1].attempts:
            return None
        return self.outcomes[-1].attempts[-1].rung


@dataclass
class PlanOutcome:
    run_id: str
    base: str
    records: dict[str, TaskRecord]
    state: str  # done, failed, stopped
    exit_code: ExitCode
    stop_reason: str | None = None
    branch: str | None = None
    head: str | None = None


class Scheduler:
    def __init__(
        self,
        *,
        plan: Milestone,
        engine: TaskEngine,
        integration: Integration,
        ledger: Ledger,
        config: ForgeConfig,
        on_event: Callable[[RunEvent], None] = lambda event: None,
        on_budget: Literal["finish", "cancel"] = "finish",
    ) -> None:
        self.plan = plan
        self.engine = engine
        self.integration = integration
        self.ledger = ledger
        self.config = config
        self.on_event = on_event
        self.on_budget = on_budget
        self.store = RunStore(ledger)
        self.run_id = engine.settings.run_id
        self.graph = task_graph(plan)
        self.records = {t.id: TaskRecord(t) for t in plan.tasks}
        self.limit = config.routing.max_concurrent_tasks
        if not config.routing.enable_parallel_execution:
            self.limit = 1

    async def run(self, base: str, merged: frozenset[str] = frozenset()) -> PlanOutcome:
        done: set[str] = set()
        for task in self.plan.tasks:
            if task.done or task.id in merged:
                record = self.records[task.id]
                record.state = "done"
                record.reason = "already done" if task.done else "merged before the run resumed"
                done.add(task.id)
        for record in self.records.values():
            if record.state == "waiting":
                self._save(record)
        running: set[str] = set()
        blocked: set[str] = set()
        stop: str | None = None
        send, receive = anyio.create_memory_object_stream[tuple[str, TaskOutcome | ForgeError]](
            math.inf
        )
        async with anyio.create_task_group() as group:
            while True:
                if stop is None:
                    stop = self._start_ready(group, send, done, running, blocked)
                if not running:
                    break
                task_id, result = await receive.receive()
                running.discard(task_id)
                record = self.records[task_id]
                if isinstance(result, ForgeError):
                    self._fail(record, f"{type(result).__name__}: {result}", blocked)
                    continue
                record.outcomes.append(result)
                if result.state == "done":
                    if self._merge(record, result, done):
                        continue
                    running.add(task_id)  # re-run on the new head after a conflict
                    group.start_soon(self._one, record.task, send.clone())
                elif result.state == "stopped":
                    stop = stop or result.reason
                    self._set(record, "stopped", result.reason)
                    blocked.add(task_id)
                    if self.on_budget == "cancel":
                        group.cancel_scope.cancel()
                else:
                    self._fail(record, result.reason, blocked)
        return self._outcome(base, stop)

    # -- starting --------------------------------------------------------------------------

    def _start_ready(
        self,
        group: anyio.abc.TaskGroup,
        send: MemoryObjectSendStream[tuple[str, TaskOutcome | ForgeError]],
        done: set[str],
        running: set[str],
        blocked: set[str],
    ) -> str | None:
        for task_id in ready(self.graph, done, running | blocked):
            if len(running) >= self.limit:
                break
            reached = self._budget_reached()
            if reached is not None:
                return reached
            running.add(task_id)
            record = self.records[task_id]
            record.started = time.monotonic()
            self._set(record, "running", "started")
            group.start_soon(self._one, record.task, send.clone())
        return None

    async def _one(
        self,
        task: MilestoneTask,
        send: MemoryObjectSendStream[tuple[str, TaskOutcome | ForgeError]],
    ) -> None:
        async with send:
            try:
                outcome: TaskOutcome | ForgeError = await self.engine.run(
                    task, self.integration.head()
                )
            except ForgeError as exc:
                outcome = exc
            await send.send((task.id, outcome))

    def _budget_reached(self) -> str | None:
        """Why no task may start now: the run's or the day's budget is used up."""
        cost = self.config.cost
        if cost.run_budget_usd is not None:
            spend = self.ledger.spend_of_run(self.run_id)
            if spend.settled + spend.held >= cost.run_budget_usd:
                return (
                    f"the run has spent ${spend.settled:.4f} (plus ${spend.held:.4f} in flight) "
                    f"of run_budget_usd ${cost.run_budget_usd}"
                )
        stop = cost.daily_stop
        if stop is not None:
            spend = self.ledger.spend_today()
            if spend.settled + spend.held >= stop:
                return f"today's spend ${spend.settled:.4f} reached the stop threshold ${stop}"
        return None

    # -- finishing -------------------------------------------------------------------------

    def _merge(self, record: TaskRecord, outcome: TaskOutcome, done: set[str]) -> bool:
        """Merge the task's commit; False when it conflicted and should run again."""
        assert outcome.commit is not None
        merge = self.integration.merge(outcome.commit)
        if merge.head is not None:
            record.commit = merge.head
            record.finished = time.monotonic()
            done.add(record.task.id)
            self._set(record, "done", f"merged as {merge.head[:10]}")
            return True
        files = ", ".join(merge.conflicts) or "unknown files"
        record.conflicts += 1
        self._log_conflict(record, outcome, files)
        if record.conflicts > MAX_CONFLICT_RERUNS:
            self._fail(record, f"its change still conflicts with the integration line in {files}")
            return True
        self._set(record, "running", f"conflict in {files}: running again on the new head")
        return False

    def _fail(self, record: TaskRecord, reason: str, blocked: set[str] | None = None) -> None:
        record.finished = time.monotonic()
        self._set(record, "failed", reason)
        blocked = blocked if blocked is not None else set()
        blocked.add(record.task.id)
        for task_id in sorted(dependents(self.graph, record.task.id)):
            other = self.records[task_id]
            if other.state in ("waiting", "not_started"):
                blocked.add(task_id)
                self._set(other, "skipped", f"it comes after {record.task.id}, which failed")

    def _outcome(self, base: str, stop: str | None) -> PlanOutcome:
        for record in self.records.values():
            if record.state == "waiting":
                why = "the budget stopped the run first" if stop else "not reached"
                self._set(record, "not_started", why)
            elif record.state == "running":  # in flight when --on-budget cancel stopped it
                record.finished = time.monotonic()
                self._set(record, "interrupted", "cancelled when the budget stopped the run")
        states = [r.state for r in self.records.values()]
        if stop is not None:
            state, code = "stopped", ExitCode.BUDGET
        elif "failed" in states:
            state, code = "failed", ExitCode.FAILED
            failed = [r for r in self.records.values() if r.state == "failed"]
            if all(o.exit_code is ExitCode.UNREACHABLE for r in failed for o in r.outcomes[-1:]):
                code = ExitCode.UNREACHABLE
        else:
            state, code = "done", ExitCode.OK
        return PlanOutcome(self.run_id, base, self.records, state, code, stop)

    # -- records ---------------------------------------------------------------------------

    def _set(self, record: TaskRecord, state: TaskState, reason: str) -> None:
        record.state = state
        record.reason = reason
        self._save(record)
        self.on_event(RunEvent(record.task.id, state, reason))

    def _save(self, record: TaskRecord) -> None:
        last = record.outcomes[-1] if record.outcomes else None
        self.store.set_task(
            self.run_id,
            record.task.id,
            record.task.title,
            record.state,
            branch=last.branch if last else None,
            commit_id=record.commit,
            rungs=record.rungs,
            attempts=record.attempts,
            cost_usd=record.cost,
            reason=record.reason,
        )

    def _log_conflict(self, record: TaskRecord, outcome: TaskOutcome, files: str) -> None:
        last = outcome.attempts[-1] if outcome.attempts else None
        self.store.record_attempt(
            TaskAttemptRow(
                run_id=self.run_id,
                task_id=record.task.id,
                number=len(outcome.attempts) + 1,
                kind="merge",
                rung=last.rung if last else "",
                model=last.model if last else "",
                input_tokens=0,
                output_tokens=0,
                cost_usd=Decimal(0),
                well_formed=True,
                format_error=None,
                validation="conflict",
                new_findings=0,
                targets_left=0,
                detail=f"merge conflict in {files}",
                started_at=time.time(),
                duration_s=0.0,
            )
        )
