"""The task engine: one task from prompt to validated commit, or to a clear failure.

A task runs in its own worktree. The base is validated once; then the attempt loop: ask the model
of the current rung for edits, apply them all or none, validate, and either commit or try again
with the findings in hand. After `max_attempts_per_tier` failures on a rung the task escalates to
the next rung of its ladder, from the clean base, carrying a summary of what failed;
`max_total_attempts` bounds it all. A malformed answer is repaired by asking again for the failed
blocks only, within a small budget of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.from_thread
import anyio.to_thread

from forge.errors import ExitCode, UsageError
from forge.execution.base_tests import (
    Change,
    changed_tests,
    restore_base_tests,
    with_base_versions,
)
from forge.execution.edits import (
    Application,
    EditBlock,
    EditFormat,
    EditPolicy,
    apply_answer,
    edit_format,
    risky_kind,
    write_changes,
)
from forge.execution.feedback import Baseline, Verdict, fixes_everything, judge, render_feedback
from forge.execution.prompt import (
    TaskBrief,
    refused_feedback,
    repair_prompt,
    system_prompt,
    task_prompt,
    validation_feedback,
)
from forge.execution.review import (
    REVIEW_MAX_TOKENS,
    REVIEW_SHAPE,
    REVIEW_SYSTEM,
    ReviewVerdict,
    attempt_diff,
    read_review,
    review_feedback,
    review_prompt,
    same_model,
)
from forge.execution.store import RunStore, TaskAttemptRow
from forge.execution.workspace import Worktree, WorktreePool
from forge.planning.milestone import MilestoneTask
from forge.providers.client import BudgetRefused, CallFailed, ModelClient
from forge.providers.failures import FailureKind
from forge.providers.types import Completion, Finished, Message, Pause
from forge.routing.decision import Pins, RouteDecision, Router, RungChoice

if TYPE_CHECKING:
    from git import Repo

    from forge.config.schema import ForgeConfig
    from forge.ledger.store import Ledger
    from forge.routing.codebase import Codebase
    from forge.validation.tree import Listing
    from forge.validation.types import ValidationReport

TaskState = Literal["done", "failed", "stopped", "interrupted"]
# Format repairs per attempt: a model that cannot write the format after this is not going to.
MAX_FORMAT_REPAIRS = 2
# Refused outright, never repaired: a model does not get a second try at escaping the repository.
NOT_REPAIRED = frozenset({"unsafe", "too_large"})
SUMMARISED = frozenset({"planning", "architecture"})
EARLIER_LIMIT_CHARS = 3_000


@dataclass(frozen=True)
class EngineSettings:
    run_id: str
    require_green: bool = False
    strict_files: bool = False
    keep_worktrees: bool = False
    # Every task may change the tests that exist at its base (--allow-test-edits).
    allow_test_edits: bool = False
    # The model that reads each validated attempt's diff before it is committed (--review).
    reviewer: str | None = None
    pins: Pins = field(default_factory=Pins)
    max_format_repairs: int = MAX_FORMAT_REPAIRS
    # The repository as the ledger's route history names it, when the engine works in a copy
    # of it (a Ray node's clone); else its own folder.
    repo_key: str | None = None


@dataclass(frozen=True)
class TaskEvent:
    """Progress, for the live view or log lines: which task, which stage, what happened."""

    task_id: str
    stage: str  # worktree, base, asking, repairing, applying, validating, committed, failed...
    message: str
    attempt: int = 0
    rung: str | None = None
    model: str | None = None
    cost: Decimal = Decimal(0)  # what the task has spent so far
    tokens: int = 0  # tokens in and out so far
    pause: Pause | None = None  # stage "waiting": the wait, for a view that counts it down


@dataclass
class AttemptSummary:
    number: int
    rung: str
    model: str
    well_formed: bool
    # "passed", "failed", "refused", "malformed", "call failed", "rejected" (by the reviewer),
    # "not reviewed" (the reviewer gave no usable verdict)
    outcome: str
    headline: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    repairs: int = 0
    files: list[str] = field(default_factory=list)  # what its edits wrote
    # The reviewer's say on an attempt that passed validation: "accepted", "rejected" or
    # "not reviewed"; None when no reviewer read it. Its cost is apart from the author's.
    review: str | None = None
    review_model: str | None = None
    review_reasons: list[str] = field(default_factory=list)
    review_cost: Decimal = Decimal(0)
    # Of an attempt whose call failed: the failure kind, and whether a model answered before
    # (a repair request can fail after the first answer arrived).
    failure: str | None = None
    answered: bool = False

    @property
    def total_cost(self) -> Decimal:
        return self.cost + self.review_cost


@dataclass
class TaskOutcome:
    task: MilestoneTask
    state: TaskState
    exit_code: ExitCode
    reason: str
    route: RouteDecision | None = None
    branch: str | None = None
    commit: str | None = None
    base: str | None = None  # the commit the task started from: its commit's parent
    worktree: Path | None = None  # kept with --keep-worktrees
    rungs: list[str] = field(default_factory=list)
    attempts: list[AttemptSummary] = field(default_factory=list)
    cost: Decimal = Decimal(0)
    base_note: str | None = None
    last_findings: str | None = None
    report: ValidationReport | None = None  # the passing attempt's validation, for the merge
    # Risky files (CI workflows, build scripts, git metadata) the committed work changed, as
    # "path (kind)": the task named them, and a person should read them before merging.
    review: list[str] = field(default_factory=list)
    tests: dict[str, str] = field(default_factory=dict)  # test file -> "added" or "edited"
    reviewed_by: str | None = None  # the reviewer that accepted the committed work


class _Stop(Exception):
    """The budget refused the next call: the task stops (exit 3)."""

    summary: AttemptSummary | None = None  # the attempt it stopped, with what it had spent


class _Unreviewed(Exception):
    """The reviewer gave no usable verdict: nothing is committed and the task fails, since
    every later attempt would meet the same reviewer."""

    summary: AttemptSummary | None = None


@dataclass
class _Job:
    """One task's run: what every attempt of it shares."""

    task: MilestoneTask
    tree: Worktree
    outcome: TaskOutcome
    baseline: Baseline | None = None
    summarize: bool = False  # summaries instead of bodies in the context
    earlier: list[str] = field(default_factory=list)  # what failed on earlier rungs
    # The files git tracks or would track, as the attempt's context found them: git ignores
    # none of them, so only the other paths an answer writes need asking about.
    listed: frozenset[str] = frozenset()
    listing: Listing | None = None  # the latest attempt's, taken before its edits
    named: tuple[str, ...] = ()  # the files the task lists or mentions
    may_edit_tests: bool = False  # it may change the tests that exist at its base
    tests: dict[str, str] = field(default_factory=dict)  # test file -> "added" or "edited"
    touched: set[str] = field(default_factory=set)  # what the rung's edits wrote so far


@dataclass
class _Rung:
    choice: RungChoice
    model: str
    fmt: EditFormat


def route_task(
    task: MilestoneTask, codebase: Codebase | None, router: Router, pins: Pins
) -> RouteDecision:
    """A milestone task's route: its text and listed files analysed, its type and tier as the
    task file sets them, `pins` (the command line's) first."""
    from forge.routing.analysis import analyse

    analysis = analyse(task.text, codebase=codebase, files=task.files)
    if task.type is not None:
        analysis = replace(analysis, type=task.type, type_reasons=("set in the task file",))
    if pins.tier is None and pins.model is None and task.tier is not None:
        pins = Pins(tier=task.tier)
    try:
        return router.decide(analysis, pins)
    except UsageError as exc:
        raise UsageError(f"task {task.id!r}: {exc}") from None


class BaseReports:
    """Each base commit's validation, made on this machine and shared by the tasks that start
    from that commit after it was made (tasks that start together each validate it).

    A Ray node's runner keeps one for the run, so the node validates a head once, with its own
    tools, for the tasks it runs from there, rather than once per task; on one machine the
    scheduler hands out the reports of the heads it validates instead. A report in which a
    check errored, timed out or failed without saying why is not shared: the next task runs
    the checks again, as the validation cache would. The newest KEPT heads are kept."""

    KEPT = 64

    def __init__(self) -> None:
        self._reports: dict[str, ValidationReport | None] = {}

    def known(self, base: str) -> tuple[ValidationReport | None] | tuple[()]:
        return (self._reports[base],) if base in self._reports else ()

    def keep(self, base: str, report: ValidationReport | None) -> None:
        from forge.validation.types import Status

        transient = (Status.ERROR, Status.TIMEOUT)  # a next run may not repeat them
        if report is not None and any(
            r.status in transient or r.unexplained for r in report.results
        ):
            return
        self._reports[base] = report
        while len(self._reports) > self.KEPT:
            del self._reports[next(iter(self._reports))]  # the oldest kept


class TaskEngine:
    """Runs tasks of one run; safe to share between concurrent tasks (one per task call)."""

    def __init__(
        self,
        *,
        config: ForgeConfig,
        ledger: Ledger,
        client: ModelClient,
        router: Router,
        repo: Repo,
        codebase: Codebase | None,
        settings: EngineSettings,
        on_event: Callable[[TaskEvent], None] = lambda event: None,
        worktrees: WorktreePool | None = None,
        base_reports: BaseReports | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.client = client
        self.router = router
        self.repo = repo
        self.codebase = codebase
        self.settings = settings
        self.on_event = on_event
        self.store = RunStore(ledger)
        self.repo_dir = Path(repo.working_dir)
        self._spent: dict[str, tuple[int, Decimal]] = {}  # per task: tokens, cost, for events
        from forge.providers.secrets import key_names

        self._secrets = key_names(config)  # kept out of validators' output
        self.worktrees = worktrees or WorktreePool(repo, settings.run_id)
        self._routing = threading.Lock()  # tasks route in threads; the router counts turns
        self.base_reports = base_reports  # bases validated already, when the caller keeps them

    # -- the route ---------------------------------------------------------------------------

    def route(self, task: MilestoneTask) -> RouteDecision:
        return route_task(task, self.codebase, self.router, self.settings.pins)

    # -- one task ----------------------------------------------------------------------------

    async def run(
        self,
        task: MilestoneTask,
        base: str,
        base_report: tuple[ValidationReport | None] | tuple[()] = (),
        routed: RouteDecision | None = None,
    ) -> TaskOutcome:
        """One task from `base`; `base_report`, when given (a 1-tuple: None means nothing to
        validate), is the base's validation already known, so it is not run again; so is the
        task's route when `routed` is given (the Ray driver routed it to place it)."""
        self._emit(task, "worktree", f"creating a worktree from {base[:10]}")
        # Shielded: a Ctrl-C now still lets the worktree be made, so the cleanup below finds it.
        with anyio.CancelScope(shield=True):
            decision, tree = await self._prepare(task, base, routed)
        outcome = TaskOutcome(task, "failed", ExitCode.FAILED, "", route=decision)
        self._record_route(task, decision)
        self.store.set_task(
            self.settings.run_id, task.id, task.title, "running", started_at=time.time()
        )
        outcome.branch = tree.branch
        summarize = self.config.context.enable_summarized_context
        job = _Job(
            task, tree, outcome, summarize=summarize and decision.analysis.type in SUMMARISED
        )
        if not base_report and self.base_reports is not None:
            base_report = self.base_reports.known(base)
        try:
            await self._attempts(job, decision, base_report)
        except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
            outcome.state, outcome.exit_code = "interrupted", ExitCode.INTERRUPTED
            outcome.reason = "interrupted"
            raise
        finally:
            # Shielded: an interrupted task still puts its branch back and removes its worktree.
            with anyio.CancelScope(shield=True):
                await self._finish(job)
        return outcome

    def _route_alone(self, task: MilestoneTask) -> RouteDecision:
        with self._routing:
            return self.route(task)

    async def _prepare(
        self, task: MilestoneTask, base: str, known: RouteDecision | None
    ) -> tuple[RouteDecision, Worktree]:
        """The route and the worktree, side by side: the analysis (and its git grep) takes
        place while git checks the worktree out. A route `known` already is not made again."""
        if known is not None:
            return known, await anyio.to_thread.run_sync(self.worktrees.acquire, task.id, base)
        taken: list[Worktree | Exception] = []

        async def take() -> None:
            try:
                taken.append(await anyio.to_thread.run_sync(self.worktrees.acquire, task.id, base))
            except Exception as exc:  # said once both are done, like the route's own error
                taken.append(exc)

        routed: RouteDecision | Exception
        async with anyio.create_task_group() as group:
            group.start_soon(take)
            try:
                routed = await anyio.to_thread.run_sync(self._route_alone, task)
            except Exception as exc:
                routed = exc
        tree = taken[0]
        if isinstance(routed, Exception):
            if isinstance(tree, Worktree):
                self.worktrees.release(tree)
            raise routed
        if isinstance(tree, Exception):
            raise tree
        return routed, tree

    async def _finish(self, job: _Job) -> None:
        task, tree, outcome = job.task, job.tree, job.outcome
        if self.settings.keep_worktrees:
            outcome.worktree = tree.path
            self.worktrees.keep(tree)
        else:
            if outcome.state != "done":
                await anyio.to_thread.run_sync(tree.reset)  # the branch stays at the base
            await anyio.to_thread.run_sync(self.worktrees.release, tree)
        self.store.set_task(
            self.settings.run_id,
            task.id,
            task.title,
            outcome.state,
            branch=tree.branch,
            commit_id=outcome.commit,
            rungs=outcome.rungs,
            attempts=len(outcome.attempts),
            cost_usd=outcome.cost,
            reason=outcome.reason,
            finished_at=time.time(),
        )

    async def _attempts(
        self,
        job: _Job,
        decision: RouteDecision,
        base_report: tuple[ValidationReport | None] | tuple[()],
    ) -> None:
        task, outcome = job.task, job.outcome
        if base_report:
            self._emit(task, "base", "the base's validation is known already: not run again")
        else:
            self._emit(task, "base", "validating the base")
        named = (*task.files, *(f.path for f in decision.analysis.files))
        job.named = tuple(dict.fromkeys(named))
        # Only what the user wrote: the route's guess of a task's type comes from its words,
        # and "the test fails" must not turn the judge off.
        job.may_edit_tests = (
            self.settings.allow_test_edits or task.edit_tests or task.type == "test"
        )
        job.baseline = await self._baseline(
            task, job.tree, tuple(dict.fromkeys(named)), base_report
        )
        if job.baseline is None:
            outcome.base_note = (
                "nothing to validate here (no Rust or Python project, no custom validator): "
                "an attempt is accepted when its edits apply"
            )
        elif not job.baseline.green:
            outcome.base_note = job.baseline.describe()
        if outcome.base_note:
            self._emit(task, "base", outcome.base_note)
        routing = self.config.routing
        unreachable = 0
        rungs = self._rungs(decision)
        reviewer = self.settings.reviewer
        if reviewer is not None:
            own = [r for r in rungs if same_model(self.config, r.model, reviewer)]
            if own:
                rungs = [r for r in rungs if r not in own]
                self._emit(
                    task,
                    "route",
                    f"left out {', '.join(r.choice.rung for r in own)}: its model is the "
                    f"reviewer ({reviewer}), which does not review its own work",
                )
        index = -1
        while (index := index + 1) < len(rungs):
            rung = rungs[index]
            if len(outcome.attempts) >= routing.max_total_attempts:
                break
            if index > 0:
                await anyio.to_thread.run_sync(job.tree.reset)
                self._emit(task, "escalating", f"escalating to {rung.choice.rung} ({rung.model})")
            outcome.rungs.append(rung.choice.rung)
            try:
                state = await self._rung(job, rung)
            except _Stop as stop:
                outcome.state, outcome.exit_code = "stopped", ExitCode.BUDGET
                outcome.reason = str(stop)
                self._emit(task, "stopped", outcome.reason)
                return
            except _Unreviewed as unreviewed:
                outcome.reason = str(unreviewed)
                self._emit(task, "failed", outcome.reason)
                return
            if state == "done":
                return
            if state == "overflow" and (wider := self._wider(rung, rungs, reviewer)) is not None:
                rungs.insert(index + 1, wider)
                self._emit(task, "route", wider.choice.why)
            unreachable += state == "unreachable"
        tried = ", ".join(outcome.rungs) or "none"
        if rungs and unreachable == len(outcome.rungs):
            outcome.exit_code = ExitCode.UNREACHABLE
            outcome.reason = f"no model of the ladder could be reached (tried: {tried})"
        elif not rungs:
            outcome.reason = "no rung of the ladder has a model that can take the task"
            if reviewer is not None:
                outcome.reason += f" (the reviewer {reviewer} does not review its own work)"
        else:
            outcome.reason = (
                f"every rung tried failed ({tried}; {len(outcome.attempts)} attempt(s), "
                f"max_total_attempts {routing.max_total_attempts})"
            )
        self._emit(task, "failed", outcome.reason)

    def _rungs(self, decision: RouteDecision) -> list[_Rung]:
        rungs = []
        for choice in (decision.first, *decision.escalation):
            if choice.model is None:
                continue
            rungs.append(_Rung(choice, choice.model, edit_format(self._format_for(choice))))
        return rungs

    def _wider(self, rung: _Rung, rungs: list[_Rung], reviewer: str | None) -> _Rung | None:
        """After a context overflow: the model of the same tier with the largest context
        window, if it is larger than the one that overflowed and not on the task's route yet.
        None sends the task up the ladder."""
        models = self.router.fleet.models
        facts = models.get(rung.model)
        tier = facts.tier if facts is not None else rung.choice.rung
        window = (facts.context_window if facts is not None else None) or 0
        taken = {r.model for r in rungs}
        wider = [
            m
            for m in models.values()
            if m.tier == tier
            and (m.context_window or 0) > window
            and m.alias not in taken
            and not (reviewer is not None and same_model(self.config, m.alias, reviewer))
        ]
        if not wider:
            return None
        best = max(wider, key=lambda m: m.context_window or 0)
        why = (
            f"{rung.model} overflowed its context window"
            f"{f' ({window:,} tokens)' if window else ''}: {best.alias} has "
            f"{best.context_window:,} in the same tier"
        )
        choice = RungChoice(rung.choice.rung, best.alias, why)
        return _Rung(choice, best.alias, edit_format(self._format_for(choice)))

    def _format_for(self, choice: RungChoice) -> Literal["search_replace", "whole"]:
        """The model's `edit_format`, else whole files for local models, else SEARCH/REPLACE."""
        assert choice.model is not None
        model = self.config.models.get(choice.model)
        if model is not None and model.edit_format is not None:
            return model.edit_format
        tier = model.tier if model is not None else choice.rung
        return "whole" if tier == "local" else "search_replace"

    async def _baseline(
        self,
        task: MilestoneTask,
        tree: Worktree,
        named: tuple[str, ...],
        known: tuple[ValidationReport | None] | tuple[()],
    ) -> Baseline | None:
        """The base's findings split; `named` are the files the task lists or mentions."""
        if known:
            report = known[0]
        else:
            report = await self._validate(tree)
            if self.base_reports is not None:
                self.base_reports.keep(tree.base, report)
        if report is None:
            return None
        fix_all = fixes_everything(task.text, named)
        return Baseline.of(report, named, fix_all=fix_all)

    async def _validate(
        self, tree: Worktree, listed: Listing | None = None
    ) -> ValidationReport | None:
        """`listed`: the worktree's files when the engine knows them (see `_context`)."""
        from forge.validation.runner import NothingToValidate, Options, validate

        stop = threading.Event()
        options = Options(
            stop=stop,
            listing=listed,
            secrets=self._secrets,
            environment_root=Path(self.repo.working_dir),
            scrub_secrets=True,  # the base is validated as its attempts are, to compare
        )
        try:
            # Abandoned on cancel: Ctrl-C must not wait for a test suite; `stop` kills it.
            return await anyio.to_thread.run_sync(
                partial(validate, tree.path, self.config.validation, options),
                abandon_on_cancel=True,
            )
        except NothingToValidate:
            return None
        finally:
            stop.set()

    # -- one rung ----------------------------------------------------------------------------

    async def _rung(
        self, job: _Job, rung: _Rung
    ) -> Literal["done", "failed", "unreachable", "overflow"]:
        """Attempts on one rung; each retry builds on the previous attempt's edits."""
        routing = self.config.routing
        task, outcome = job.task, job.outcome
        feedback: str | None = None
        job.touched = set()
        earlier = _earlier(job.earlier)  # what failed on the rungs below, not on this one
        answered = False
        for _ in range(routing.max_attempts_per_tier):
            if len(outcome.attempts) >= routing.max_total_attempts:
                break
            number = len(outcome.attempts) + 1
            brief = TaskBrief(
                title=task.title,
                description=task.description,
                allowed_files=self._allowed(task),
                targets=job.baseline.targets if job.baseline else (),
                earlier_rungs=earlier,
                feedback=feedback,
            )
            try:
                summary, verdict = await self._attempt(job, rung, brief, number)
            except (_Stop, _Unreviewed) as stop:
                spent = getattr(stop, "summary", None)
                if spent is not None:  # what the attempt spent before it stopped
                    outcome.attempts.append(spent)
                    outcome.cost += spent.total_cost
                raise
            outcome.attempts.append(summary)
            outcome.cost += summary.total_cost
            if number == 1:
                self._record_first_attempt(task, summary.outcome == "passed")
            if summary.outcome == "call failed":
                job.earlier.append(f"- {rung.choice.rung} ({rung.model}): {summary.headline}")
                # A server that says the request is too long for the model has answered: the
                # same request on the same model would overflow again.
                if summary.failure == FailureKind.CONTEXT_TOO_LONG:
                    return "overflow"
                return "failed" if answered or summary.answered else "unreachable"
            answered = True
            if summary.outcome == "passed":
                if await self._commit(job, rung, sorted(job.touched)):
                    outcome.report = verdict.report if verdict is not None else None
                    return "done"
                summary.outcome = "no change"
                summary.headline = "the edits leave every file as it was at the start"
            if summary.outcome == "rejected":
                assert summary.review_model is not None
                outcome.last_findings = summary.headline
                feedback = review_feedback(summary.review_model, summary.review_reasons)
            elif verdict is not None:
                rendered = render_feedback(verdict, job.tree.path)
                outcome.last_findings = rendered
                feedback = validation_feedback(rendered)
            else:
                outcome.last_findings = summary.headline
                feedback = refused_feedback([summary.headline])
            job.earlier.append(
                f"- {rung.choice.rung} ({rung.model}), attempt {number}: {summary.headline}"
            )
        return "failed"

    def _allowed(self, task: MilestoneTask) -> tuple[str, ...] | None:
        return task.files if self.settings.strict_files and task.files else None

    async def _attempt(
        self, job: _Job, rung: _Rung, brief: TaskBrief, number: int
    ) -> tuple[AttemptSummary, Verdict | None]:
        task, tree = job.task, job.tree
        started = time.time()
        context = await anyio.to_thread.run_sync(partial(self._context, job))
        messages = [
            Message("system", system_prompt(rung.fmt)),
            Message("user", task_prompt(brief, context, tree.path)),
        ]
        self._emit(task, "asking", f"attempt {number}: asking {rung.model}", number, rung)
        summary = AttemptSummary(number, rung.choice.rung, rung.model, False, "malformed", "")
        try:
            completion = await self._call(task, rung, messages, summary)
            application = None
            if completion is not None:
                application = await self._apply(job, rung, messages, completion, summary)
        except _Stop as stop:
            summary.outcome, summary.headline = "stopped", str(stop)
            self._log(task, summary, "attempt", started, None)
            stop.summary = summary
            raise
        if application is not None:
            application = await self._writable(job, application, summary)
        if application is None:
            self._log(task, summary, "attempt", started, None)
            return summary, None
        summary.well_formed = True
        policy = self._policy(job)
        summary.files = await anyio.to_thread.run_sync(partial(write_changes, application, policy))
        job.touched.update(summary.files)
        self._emit(task, "validating", f"attempt {number}: validating", number, rung)
        verdict: Verdict | None = None
        if job.baseline is None:
            summary.outcome, summary.headline = "passed", "edits applied (nothing to validate)"
        else:
            # The files as the context's listing found them, plus what the edits wrote.
            written = job.listing.with_written(tree.path, summary.files) if job.listing else None
            report = await self._validate(tree, written)
            assert report is not None
            verdict = judge(
                job.baseline,
                report,
                require_green=self.settings.require_green,
                keep_tests=not job.may_edit_tests,
            )
            summary.outcome, summary.headline = verdict.outcome, verdict.headline()
            if verdict.passed:
                verdict = await self._judged_by_base_tests(job, summary, verdict)
        self._emit(task, "validated", f"attempt {number}: {summary.headline}", number, rung)
        if summary.outcome == "passed" and self.settings.reviewer is not None:
            try:
                await self._review(job, rung, summary, verdict)
            except (_Stop, _Unreviewed) as stop:
                if isinstance(stop, _Stop):
                    summary.outcome = "stopped"
                    summary.headline = f"validated, but the review could not be paid for: {stop}"
                self._log(task, summary, "attempt", started, verdict)
                stop.summary = summary
                raise
        self._log(task, summary, "attempt", started, verdict)
        return summary, verdict

    async def _review(
        self, job: _Job, rung: _Rung, summary: AttemptSummary, verdict: Verdict | None
    ) -> None:
        """The reviewer reads the attempt's whole change against the base (what the commit
        would hold): a rejection turns the attempt into a failure with the reasons; no usable
        verdict after one more ask raises _Unreviewed. Its calls are rows of their own."""
        reviewer = self.settings.reviewer
        assert reviewer is not None
        task, tree = job.task, job.tree
        # What the commit would hold: the files the rung's edits wrote, as they are now.
        paths = sorted(job.touched)
        diff = await anyio.to_thread.run_sync(partial(attempt_diff, tree, paths))
        if not diff.strip():
            return  # nothing to commit; the commit says so
        number = summary.number
        self._emit(task, "reviewing", f"attempt {number}: {reviewer} reads the diff", number)
        validation = verdict.headline() if verdict is not None else summary.headline
        prompt = review_prompt(
            title=task.title,
            description=task.description,
            diff=diff,
            validation=validation,
            tests=job.tests,
        )
        messages = [Message("system", REVIEW_SYSTEM), Message("user", prompt)]
        started = time.time()
        row = AttemptSummary(number, rung.choice.rung, reviewer, False, "not reviewed", "")
        summary.review, summary.review_model = "not reviewed", reviewer
        problem = "no reply"
        try:
            for _ in range(2):
                reply = await self._call(
                    task,
                    replace(rung, model=reviewer),
                    messages,
                    row,
                    max_tokens=REVIEW_MAX_TOKENS,
                    temperature=0,
                )
                summary.review_cost = row.cost
                if reply is None:
                    problem = f"the call failed: {row.headline}"
                    break
                read = read_review(reply.text)
                if isinstance(read, ReviewVerdict):
                    row.well_formed = True
                    self._reviewed(summary, row, read)
                    return
                problem = read
                messages += [
                    Message("assistant", reply.text),
                    Message("user", f"Not usable: {problem}. Reply with {REVIEW_SHAPE}"),
                ]
            summary.outcome = "not reviewed"
            summary.headline = (
                f"the reviewer {reviewer} gave no usable verdict ({problem}); nothing was committed"
            )
            row.headline = summary.headline
            raise _Unreviewed(summary.headline)
        except _Stop:
            summary.review_cost = row.cost
            raise
        finally:
            self._log(task, row, "review", started, None)

    def _reviewed(self, summary: AttemptSummary, row: AttemptSummary, read: ReviewVerdict) -> None:
        reasons = list(read.reasons)
        summary.review_reasons = reasons
        if read.accepted:
            summary.review = row.outcome = "accepted"
            row.headline = "; ".join(reasons) or "accepted"
            return
        summary.review = row.outcome = "rejected"
        summary.outcome = "rejected"
        summary.headline = f"rejected by the reviewer ({row.model}): " + "; ".join(reasons)
        row.headline = summary.headline

    async def _judged_by_base_tests(
        self, job: _Job, summary: AttemptSummary, verdict: Verdict
    ) -> Verdict:
        """A passing attempt that changed or added tests is validated again with the base's
        tests exactly (see base_tests): an edited expectation, or a new module that patches
        the code under test, cannot pass. Edits to existing tests a task may not make are
        undone before the commit."""
        tree = job.tree
        changed = await anyio.to_thread.run_sync(partial(_tests_changed, tree))
        job.tests = dict(changed)
        if not changed or job.may_edit_tests:
            return verdict
        assert job.baseline is not None
        baseline = job.baseline
        paths = sorted(changed)

        def validate_as_based() -> ValidationReport | None:
            return anyio.from_thread.run(self._validate, tree)

        report = await anyio.to_thread.run_sync(
            partial(with_base_versions, tree, paths, validate_as_based)
        )
        if report is None:  # nothing to validate without them: the first verdict stands
            return verdict
        again = judge(baseline, report, require_green=self.settings.require_green, keep_tests=True)
        edited = sorted(path for path, how in changed.items() if how == "edited")
        # What the task may not do is undone: after a failure every test change (the next
        # attempt starts from the base's tests), after a pass the edits to existing tests.
        undo = paths if not again.passed else edited
        await anyio.to_thread.run_sync(partial(restore_base_tests, tree, undo))
        job.tests = {p: how for p, how in changed.items() if p not in undo}
        if again.passed:
            return verdict
        summary.outcome = "failed"
        summary.headline = (
            f"the tests that exist at the base fail with your change once your test changes "
            f"({', '.join(paths)}) are set aside ({again.headline()}); this task may add "
            "tests but not change existing ones: fix the code instead"
        )
        return again

    async def _writable(
        self, job: _Job, application: Application, summary: AttemptSummary
    ) -> Application | None:
        """The application, unless it changes nothing or writes where git would not look."""
        unknown = sorted(path for path in application.changes if path not in job.listed)
        ignored = []
        if unknown:
            ignored = await anyio.to_thread.run_sync(partial(_ignored, job.tree.path, unknown))
        if ignored:
            summary.outcome = "refused"
            summary.headline = (
                f"{', '.join(ignored)}: ignored by git (.gitignore); forge does not write "
                "files git would not commit"
            )
            return None
        return application

    def _context(self, job: _Job) -> str:
        from forge.execution.context import select_context
        from forge.validation.tree import listing

        # With git's ids: nothing but this attempt's edits changes the tree before it is
        # validated, so the validation takes this listing instead of asking git again.
        job.listing = listing(job.tree.path)
        listed = job.listing.files
        job.listed = frozenset(listed)
        selected = select_context(
            job.tree.path,
            job.task.text,
            named_files=job.task.files,
            budget_tokens=self.config.context.max_context_tokens,
            summarize=job.summarize,
            files=listed,
        )
        return selected.render()

    async def _call(
        self,
        task: MilestoneTask,
        rung: _Rung,
        messages: list[Message],
        summary: AttemptSummary,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion | None:
        completion: Completion | None = None
        try:
            events = self.client.stream(
                rung.model,
                messages,
                task_id=task.id,
                max_tokens=max_tokens,
                temperature=temperature,
            )
            async with aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, Pause):
                        # A retry's backoff, a Retry-After or a breaker's cooldown: said as it
                        # starts, so a task that waits is not taken for one that hangs.
                        self._emit(task, "waiting", event.describe(), summary.number, rung, event)
                    elif isinstance(event, Finished):
                        completion = event.completion
        except BudgetRefused as exc:
            raise _Stop(
                f"the budget stopped task {task.id!r} before its next call: {exc}"
            ) from None
        except CallFailed as exc:
            summary.outcome, summary.headline = "call failed", str(exc)
            summary.failure = exc.kind.value if exc.kind is not None else None
            self._emit(task, "call failed", str(exc), summary.number)
            return None
        assert completion is not None, "stream() ends with Finished or raises"
        summary.answered = True
        summary.input_tokens += completion.usage.input_tokens
        summary.output_tokens += completion.usage.output_tokens
        if completion.cost.usd is not None:
            summary.cost += completion.cost.usd
        tokens, cost = self._spent.get(task.id, (0, Decimal(0)))
        used = completion.usage.input_tokens + completion.usage.output_tokens
        self._spent[task.id] = (tokens + used, cost + (completion.cost.usd or Decimal(0)))
        return completion

    async def _apply(
        self,
        job: _Job,
        rung: _Rung,
        messages: list[Message],
        completion: Completion,
        summary: AttemptSummary,
    ) -> Application | None:
        """The answer's edits applied in memory, failed blocks asked for again; None if unusable."""
        task = job.task
        policy = self._policy(job)
        kept: list[EditBlock] = []
        conversation = [*messages, Message("assistant", completion.text)]
        application = apply_answer(completion.text, rung.fmt, policy)
        while not application.ok:
            errors = application.errors
            refused = [e for e in errors if e.kind in NOT_REPAIRED]
            if refused or summary.repairs >= self.settings.max_format_repairs:
                summary.outcome = "refused" if refused else "malformed"
                summary.headline = "; ".join(e.message for e in errors)[:2_000]
                self._emit(task, "refused", summary.headline, summary.number, rung)
                return None
            summary.repairs += 1
            kept = [*application.applied, *application.already_present]
            self._emit(
                task,
                "repairing",
                f"{len(errors)} edit(s) failed; asking again for them",
                summary.number,
                rung,
            )
            started = time.time()
            repair = AttemptSummary(summary.number, rung.choice.rung, rung.model, False, "", "")
            conversation.append(Message("user", repair_prompt(errors, job.tree.path)))
            reply = await self._call(task, rung, conversation, repair)
            summary.input_tokens += repair.input_tokens
            summary.output_tokens += repair.output_tokens
            summary.cost += repair.cost
            if reply is None:
                summary.outcome, summary.headline = repair.outcome, repair.headline
                summary.failure = repair.failure
                return None
            conversation.append(Message("assistant", reply.text))
            application = apply_answer(reply.text, rung.fmt, policy, extra_blocks=kept)
            repair.well_formed = application.ok
            repair.outcome = "repaired" if application.ok else "malformed"
            repair.headline = "; ".join(e.message for e in application.errors)[:2_000]
            self._log(task, repair, "repair", started, None)
        return application

    def _policy(self, job: _Job) -> EditPolicy:
        allowed = self._allowed(job.task)
        return EditPolicy(
            root=job.tree.path,
            allowed_files=None if allowed is None else frozenset(allowed),
            named_files=frozenset(f.removeprefix("./") for f in job.named),
        )

    async def _commit(self, job: _Job, rung: _Rung, paths: list[str]) -> bool:
        """Commit what the rung's edits changed; False when they changed nothing."""
        task, outcome = job.task, job.outcome
        outcome.review = [f"{p} ({kind})" for p in paths if (kind := risky_kind(p)) is not None]
        outcome.tests = dict(job.tests)
        outcome.reviewed_by = self.settings.reviewer
        message = commit_message(task, self.settings.run_id, rung.model, rung.choice.rung, outcome)
        commit = await anyio.to_thread.run_sync(partial(job.tree.commit, paths, message))
        if commit is None:
            return False
        outcome.commit, outcome.base = commit, job.tree.base
        outcome.state, outcome.exit_code = "done", ExitCode.OK
        outcome.reason = f"validated on {rung.choice.rung} ({rung.model})"
        self._emit(task, "committed", f"committed {outcome.commit[:10]} on {job.tree.branch}")
        return True

    # -- records -----------------------------------------------------------------------------

    def _log(
        self,
        task: MilestoneTask,
        summary: AttemptSummary,
        kind: str,
        started: float,
        verdict: Verdict | None,
    ) -> None:
        if summary.outcome == "rejected":
            validation = "rejected"  # passed the validators, not the reviewer: not a pass
        elif verdict is not None:
            validation = verdict.outcome
        else:
            validation = "passed" if summary.outcome == "passed" else "not_run"
        self.store.record_attempt(
            TaskAttemptRow(
                run_id=self.settings.run_id,
                task_id=task.id,
                number=summary.number,
                kind=kind,
                rung=summary.rung,
                model=summary.model,
                input_tokens=summary.input_tokens,
                output_tokens=summary.output_tokens,
                cost_usd=summary.cost,
                well_formed=summary.well_formed,
                format_error=summary.headline
                if summary.outcome in ("malformed", "refused")
                else None,
                validation=validation,
                new_findings=len(verdict.new) if verdict else 0,
                targets_left=len(verdict.standing) if verdict else 0,
                detail=summary.headline or None,
                started_at=started,
                duration_s=time.time() - started,
            )
        )

    def _record_route(self, task: MilestoneTask, decision: RouteDecision) -> None:
        from forge.routing.history import record_route

        record_route(
            self.ledger,
            decision,
            task_id=task.id,
            run_id=self.settings.run_id,
            repo=self.settings.repo_key
            or str(self.codebase.root if self.codebase else self.repo_dir),
        )

    def _record_first_attempt(self, task: MilestoneTask, ok: bool) -> None:
        from forge.routing.history import RouteHistory

        RouteHistory(self.ledger).record_first_attempt(
            task_id=task.id, run_id=self.settings.run_id, ok=ok
        )

    def _emit(
        self,
        task: MilestoneTask,
        stage: str,
        message: str,
        attempt: int = 0,
        rung: _Rung | None = None,
        pause: Pause | None = None,
    ) -> None:
        self.on_event(
            TaskEvent(
                task_id=task.id,
                stage=stage,
                message=message,
                attempt=attempt,
                rung=rung.choice.rung if rung else None,
                model=rung.model if rung else None,
                cost=self._spent.get(task.id, (0, Decimal(0)))[1],
                tokens=self._spent.get(task.id, (0, Decimal(0)))[0],
                pause=pause,
            )
        )


def _ignored(root: Path, paths: list[str]) -> list[str]:
    import subprocess

    done = subprocess.run(
        ["git", "check-ignore", "--", *paths], cwd=root, capture_output=True, text=True
    )
    return done.stdout.split() if done.returncode == 0 else []


def _earlier(lines: list[str]) -> str | None:
    if not lines:
        return None
    text = "\n".join(lines)
    return text if len(text) <= EARLIER_LIMIT_CHARS else "..." + text[-EARLIER_LIMIT_CHARS:]


def _changed(tree: Worktree) -> list[str]:
    """The files the worktree changed against its base, tracked or new."""
    tracked = tree.git("diff", "--name-only", "-z", "--no-renames", tree.base).split("\0")
    new = tree.git("ls-files", "-z", "--others", "--exclude-standard").split("\0")
    return sorted({p for p in (*tracked, *new) if p})


def _tests_changed(tree: Worktree) -> dict[str, Change]:
    """The files whose tests the worktree changed against its base, tracked or new."""
    return changed_tests(tree, _changed(tree))


def commit_message(
    task: MilestoneTask, run_id: str, model: str, tier: str, outcome: TaskOutcome
) -> str:
    """The task's title, then trailers `git log --format=%(trailers)` and scripts can read."""
    attempts = len(outcome.attempts)
    return (
        f"{task.title}\n\n"
        f"Forge-Run: {run_id}\n"
        f"Forge-Task: {task.id}\n"
        f"Forge-Model: {model}\n"
        f"Forge-Tier: {tier}\n"
        f"Forge-Attempts: {attempts}\n"
        f"Forge-Cost: ${outcome.cost:.6f}\n"
        + "".join(f"Forge-Tests: {how}\n" for how in sorted(set(outcome.tests.values())))
        + "".join(f"Forge-Review: {item}\n" for item in outcome.review)
        + (f"Forge-Reviewed-By: {outcome.reviewed_by}\n" if outcome.reviewed_by else "")
    )
