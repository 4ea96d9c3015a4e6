"""Runs a milestone's task graph: ready tasks in parallel, validated work merged one at a time.

A task is ready when every task it comes after is merged. Up to `max_concurrent_tasks` run at
once, each through the task engine from the integration head as it stands when the task starts,
so it sees the work it depends on. Finished work is merged by one merger beside the loop that
starts tasks, so merges never race; work that finished during a merge goes on next as one batch,
validated once (one task at a time if that fails). A merge conflict re-runs the task once
on the new head; a task that fails takes its dependents with it (skipped, with the reason) while
independent tasks go on. When the budget is reached no task or attempt starts; those in flight
finish, or are cancelled with `on_budget="cancel"` (work already finished is still merged).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from forge.errors import ExitCode, ForgeError
from forge.execution.engine import EngineSettings, TaskOutcome
from forge.execution.integration import Integration, Merge
from forge.execution.store import RunStore, RunTaskRow, TaskAttemptRow
from forge.planning.graph import dependents, ready, task_graph
from forge.planning.milestone import Milestone, MilestoneTask

if TYPE_CHECKING:
    from pathlib import Path

    from git import Repo

    from forge.config.schema import ForgeConfig
    from forge.execution.workspace import WorktreePool
    from forge.ledger.store import Ledger
    from forge.validation.types import ValidationReport

TaskState = Literal[
    "waiting", "running", "done", "failed", "skipped", "stopped", "not_started", "interrupted"
]
MAX_CONFLICT_RERUNS = 1
# What the scheduler's loop hears: ("finished", task, the engine's outcome or the error that
# broke it) from a task, ("merged", task, False when it must run again) from the merger.
_Message = tuple[Literal["finished", "merged"], str, TaskOutcome | Exception | bool]


class TaskRunner(Protocol):
    """What runs one task for the scheduler: the task engine on this machine, or the Ray
    executor's stand-in for it on a cluster (forge.execution.ray_executor)."""

    settings: EngineSettings
    repo: Repo

    async def run(
        self,
        task: MilestoneTask,
        base: str,
        base_report: tuple[ValidationReport | None] | tuple[()] = (),
    ) -> TaskOutcome: ...


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
    # What an earlier process did for this task, when a resumed run finds it merged.
    earlier: RunTaskRow | None = None
    earlier_tier: str | None = None

    @property
    def attempts(self) -> int:
        before = self.earlier.attempts if self.earlier else 0
        return before + sum(len(o.attempts) for o in self.outcomes) + self.conflicts

    @property
    def cost(self) -> Decimal:
        before = self.earlier.cost_usd if self.earlier else Decimal(0)
        return before + sum((o.cost for o in self.outcomes), Decimal(0))

    @property
    def rungs(self) -> list[str]:
        before = list(self.earlier.rungs) if self.earlier else []
        return before + [rung for o in self.outcomes for rung in o.rungs]

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @property
    def tier(self) -> str | None:
        """The rung whose attempt passed, for a finished task."""
        if self.state != "done":
            return None
        if not self.outcomes or not self.outcomes[-1].attempts:
            return self.earlier_tier
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
        engine: TaskRunner,
        integration: Integration,
        ledger: Ledger,
        config: ForgeConfig,
        on_event: Callable[[RunEvent], None] = lambda event: None,
        on_budget: Literal["finish", "cancel"] = "finish",
        worktrees: WorktreePool | None = None,
    ) -> None:
        self.plan = plan
        self.worktrees = worktrees  # the engine's, made smaller near the end
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
        self.blocked: set[str] = set()  # failed, stopped or skipped: never to start
        self.merging: set[str] = set()  # finished tasks whose results wait for the merge
        self.again: list[str] = []  # tasks to run again on the new head after a conflict
        self._checking: Path | None = None  # where merged trees are validated
        self._reports: dict[str, ValidationReport | None] = {}  # by commit, the latest few
        self.limit = concurrency(config)

    async def run(
        self,
        base: str,
        merged: frozenset[str] = frozenset(),
        earlier: dict[str, tuple[RunTaskRow, str | None]] | None = None,
    ) -> PlanOutcome:
        """Run the plan from `base`; `merged` tasks (a resumed run's) are done, `earlier` says
        what they took (their row and the tier that finished them)."""
        done: set[str] = set()
        for task in self.plan.tasks:
            if task.done or task.id in merged:
                record = self.records[task.id]
                record.state = "done"
                record.reason = "already done" if task.done else "merged before the run resumed"
                if earlier and task.id in earlier:
                    record.earlier, record.earlier_tier = earlier[task.id]
                done.add(task.id)
        waiting = [(r.task.id, r.task.title) for r in self.records.values() if r.state == "waiting"]
        self.store.add_waiting(self.run_id, waiting)
        running: set[str] = set()
        stop: str | None = None
        send, receive = anyio.create_memory_object_stream[_Message](math.inf)
        to_merge, merge_jobs = anyio.create_memory_object_stream[tuple[TaskRecord, TaskOutcome]](
            math.inf
        )
        async with anyio.create_task_group() as group:
            # Merges happen one at a time in their own task: a finished task's slot is given to
            # the next ready task at once, while its work waits for (or goes through) the merge.
            group.start_soon(self._merger, merge_jobs, send.clone(), done)
            async with to_merge:
                # The tasks run in a group of their own: `--on-budget cancel` cancels them, not
                # the merges of work already validated and paid for.
                async with anyio.create_task_group() as runners:
                    while True:
                        if stop is None:
                            stop = self._start_ready(runners, send, done, running)
                            if stop is not None and self.on_budget == "cancel":
                                runners.cancel_scope.cancel()
                        self._spare_worktrees(stop, running)
                        if not (running or self.merging):
                            break
                        message = await receive.receive()
                        reason = await self._heard(message, running, to_merge)
                        if reason is not None:
                            stop = stop or reason
                            if self.on_budget == "cancel":
                                runners.cancel_scope.cancel()
                # Cancelled: what finished before (even unheard yet) is still merged.
                while self.merging or running:
                    try:
                        message = receive.receive_nowait()
                    except anyio.WouldBlock:
                        if not self.merging:
                            break
                        message = await receive.receive()
                    await self._heard(message, running, to_merge)
        return self._outcome(base, stop)

    async def _heard(
        self,
        message: _Message,
        running: set[str],
        to_merge: MemoryObjectSendStream[tuple[TaskRecord, TaskOutcome]],
    ) -> str | None:
        """Act on what a task or the merger said; returns why the run must stop, if it must."""
        kind, task_id, result = message
        record = self.records[task_id]
        if kind == "merged":
            self.merging.discard(task_id)
            if result is False:  # a conflict: run again on the new head, first in line
                self.again.append(task_id)
            return None
        running.discard(task_id)
        if isinstance(result, Exception):
            self._fail(record, _describe(result))
            return None
        assert isinstance(result, TaskOutcome)
        record.outcomes.append(result)
        if result.state == "done":
            self.merging.add(task_id)  # neither running nor ready until merged
            await to_merge.send((record, result))
        elif result.state == "stopped":
            self._set(record, "stopped", result.reason)
            self.blocked.add(task_id)
            return result.reason
        else:
            self._fail(record, result.reason)
        return None

    # -- starting --------------------------------------------------------------------------

    def _start_ready(
        self,
        group: anyio.abc.TaskGroup,
        send: MemoryObjectSendStream[_Message],
        done: set[str],
        running: set[str],
    ) -> str | None:
        waiting = running | self.blocked | self.merging | set(self.again)
        for task_id in [*self.again, *ready(self.graph, done, waiting)]:
            if len(running) >= self.limit:
                break
            reached = self._budget_reached()
            if reached is not None:
                return reached
            running.add(task_id)
            record = self.records[task_id]
            if task_id in self.again:
                self.again.remove(task_id)
                self._set(record, "running", "running again on the new head")
            else:
                record.started = time.monotonic()
                self._set(record, "running", "started")
            group.start_soon(self._one, record.task, send.clone())
        return None

    def _spare_worktrees(self, stop: str | None, running: set[str]) -> None:
        """Near the end, worktrees no task will take again are removed while the last tasks
        run, not after them. A task running may not have taken its worktree yet, and one
        waiting for its merge may conflict and run again: both count."""
        left = 0 if stop is not None else sum(r.state == "waiting" for r in self.records.values())
        needed = left + len(running) + len(self.merging)
        if self.worktrees is not None and needed < self.limit:
            self.worktrees.shrink(needed)

    async def _one(
        self,
        task: MilestoneTask,
        send: MemoryObjectSendStream[_Message],
    ) -> None:
        async with send:
            try:
                head = self.integration.head()
                known = (self._reports[head],) if head in self._reports else ()
                outcome: TaskOutcome | Exception = await self.engine.run(task, head, known)
            except Exception as exc:  # one task's breakage fails that task, not the run
                outcome = exc
            await send.send(("finished", task.id, outcome))

    async def _merger(
        self,
        jobs: MemoryObjectReceiveStream[tuple[TaskRecord, TaskOutcome]],
        send: MemoryObjectSendStream[_Message],
        done: set[str],
    ) -> None:
        """Merge finished work in the order it finished, and say so. Work that finished while
        a merge was going on is merged as one batch, validated once (as a merge queue does)."""
        async with jobs, send:
            async for first in jobs:
                batch = [first]
                while True:
                    try:
                        batch.append(jobs.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                if len(batch) == 1:
                    merged = await self._merge(*first, done)
                    await send.send(("merged", first[0].task.id, merged))
                else:
                    await self._merge_batch(batch, done, send)

    async def _merge_batch(
        self,
        batch: list[tuple[TaskRecord, TaskOutcome]],
        done: set[str],
        send: MemoryObjectSendStream[_Message],
    ) -> None:
        """Several tasks' work put on the line together and validated once; when that fails,
        they are merged one at a time, so the one that breaks is found (and runs again). Each
        task's result is said as soon as it is known."""
        start = tip = self.integration.head()
        prepared: list[tuple[TaskRecord, Merge]] = []
        later: list[tuple[TaskRecord, TaskOutcome]] = []  # conflicts with the batch: one by one
        for record, outcome in batch:
            assert outcome.commit is not None
            merge = await anyio.to_thread.run_sync(
                self.integration.prepare, outcome.commit, outcome.base, tip
            )
            if merge.head is None:
                later.append((record, outcome))
                continue
            if merge.fast_forward and outcome.report is not None:
                self._reports[merge.head] = outcome.report  # that very tree, just validated
            prepared.append((record, merge))
            tip = merge.head
        problem: str | None = None
        recreated = [record for record, m in prepared if not (m.fast_forward or m.empty)]
        if recreated:
            for record in recreated:
                self.on_event(RunEvent(record.task.id, "running", "validating the merged result"))
            problem = await self._breaks(start, tip)
        if problem is None and prepared:
            await anyio.to_thread.run_sync(self.integration.advance, Merge(tip, previous=start))
            for record, merge in prepared:
                self._merged(record, merge, done)
                await send.send(("merged", record.task.id, True))
        else:
            if problem is not None:
                why = f"together with {len(batch) - 1} other task(s): {problem}; one at a time"
                for record, _ in batch:
                    self.on_event(RunEvent(record.task.id, "running", why))
            later = list(batch)
        for record, outcome in later:
            await send.send(("merged", record.task.id, await self._merge(record, outcome, done)))

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

    async def _merge(self, record: TaskRecord, outcome: TaskOutcome, done: set[str]) -> bool:
        """Merge the task's commit; False when it must run again on the new head.

        A commit made on the current head goes on as it is: it was validated on that very tree.
        One re-created on a newer head is validated again first; what the two changes break
        together (a renamed function another task still calls) counts like a conflict.
        """
        assert outcome.commit is not None
        # git work off the event loop: the tasks in flight keep streaming meanwhile.
        merge = await anyio.to_thread.run_sync(
            self.integration.prepare, outcome.commit, outcome.base
        )
        problem: str | None = None
        if merge.fast_forward and outcome.report is not None:
            self._reports[merge.head or ""] = outcome.report  # that very tree, just validated
        if merge.head is None:
            problem = f"merge conflict in {', '.join(merge.conflicts) or 'unknown files'}"
        elif not (merge.fast_forward or merge.empty):
            self.on_event(RunEvent(record.task.id, "running", "validating the merged result"))
            problem = await self._breaks(merge.previous, merge.head)
        if problem is None:
            assert merge.head is not None
            await anyio.to_thread.run_sync(self.integration.advance, merge)
            self._merged(record, merge, done)
            return True
        record.conflicts += 1
        self._log_conflict(record, outcome, problem)
        if record.conflicts > MAX_CONFLICT_RERUNS:
            self._fail(record, f"its change still does not merge: {problem}")
            return True
        self._set(record, "waiting", f"{problem}: to run again on the new head")
        return False

    def _merged(self, record: TaskRecord, merge: Merge, done: set[str]) -> None:
        assert merge.head is not None
        record.commit = merge.head
        record.finished = time.monotonic()
        done.add(record.task.id)
        if merge.empty:
            self._set(record, "done", "its change was already on the integration line")
        else:
            self._set(record, "done", f"merged as {merge.head[:10]}")

    async def _breaks(self, before: str, after: str) -> str | None:
        """What merging adds to validation, as a short reason; None when it adds nothing."""
        from forge.execution.feedback import Baseline, judge

        old = await self._report_of(before)
        new = await self._report_of(after)
        if old is None or new is None:
            return None
        verdict = judge(Baseline.of(old, (), fix_all=False), new, require_green=False)
        if verdict.passed:
            return None
        shown = "; ".join(f.summary for f in verdict.new[:3])
        return f"merged with the work before it, it fails validation ({shown})"

    async def _report_of(self, commit: str) -> ValidationReport | None:
        if commit not in self._reports:
            report = await anyio.to_thread.run_sync(self._validate_at, commit)
            self._reports = {**dict(list(self._reports.items())[-2:]), commit: report}
        return self._reports[commit]

    def _validate_at(self, commit: str) -> ValidationReport | None:
        """Validate `commit` in the run's one checking worktree: moving it costs a checkout,
        not a new worktree, and unchanged files keep their validation cache."""
        from forge.execution.workspace import checking_worktree
        from forge.providers.secrets import key_names
        from forge.validation.runner import NothingToValidate, Options, validate

        self._checking = checking_worktree(self.engine.repo, self.run_id, commit, self._checking)
        from pathlib import Path

        checkout = Path(self.engine.repo.working_dir)
        options = Options(
            secrets=key_names(self.config), environment_root=checkout, scrub_secrets=True
        )
        try:
            return validate(self._checking, self.config.validation, options)
        except NothingToValidate:
            return None

    def close(self) -> None:
        """Remove the checking worktree, if merges needed one."""
        from forge.execution.workspace import remove_worktree

        if self._checking is not None:
            remove_worktree(self.engine.repo, self._checking)
            self._checking = None

    def _fail(self, record: TaskRecord, reason: str) -> None:
        record.finished = time.monotonic()
        self._set(record, "failed", reason)
        self.blocked.add(record.task.id)
        for task_id in sorted(dependents(self.graph, record.task.id)):
            other = self.records[task_id]
            if other.state in ("waiting", "not_started"):
                self.blocked.add(task_id)
                self._set(other, "skipped", f"it comes after {record.task.id}, which failed")

    def _outcome(self, base: str, stop: str | None) -> PlanOutcome:
        for record in self.records.values():
            if record.task.id in self.again:  # a conflict's re-run the budget kept from starting
                self._set(record, "not_started", "the budget stopped the run before it ran again")
            elif record.state == "waiting":
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
            last = [r.outcomes[-1] if r.outcomes else None for r in failed]
            if all(o is not None and o.exit_code is ExitCode.UNREACHABLE for o in last):
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

    def _log_conflict(self, record: TaskRecord, outcome: TaskOutcome, problem: str) -> None:
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
                detail=problem,
                started_at=time.time(),
                duration_s=0.0,
            )
        )


def concurrency(config: ForgeConfig) -> int:
    """How many tasks run at once."""
    routing = config.routing
    return routing.max_concurrent_tasks if routing.enable_parallel_execution else 1


def first_wave(plan: Milestone, merged: frozenset[str], config: ForgeConfig) -> int:
    """How many tasks start together when the run starts: those ready, up to the limit."""
    done = {t.id for t in plan.tasks if t.done or t.id in merged}
    ready = [t for t in plan.tasks if t.id not in done and all(a in done for a in t.after)]
    return min(concurrency(config), len(ready))


def _describe(error: Exception) -> str:
    if isinstance(error, ForgeError):
        return str(error)
    return f"forge could not run it: {type(error).__name__}: {error}"
