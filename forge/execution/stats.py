"""What the ledger says about past runs, for `forge stats` and `forge runs`.

Read-only queries over the ledger's file: `attempts` (one row per model call), `runs`,
`run_tasks` and `task_attempts` (forge.execution.store) and `routes` (forge.routing.history,
which gives each task its type). A scope picks runs (one run, or those started since a day);
everything else is counted over the calls and attempts of those runs.

Two rules keep the numbers honest. A task attempt's row already holds the tokens and cost of its
format repairs, so only rows of kind `attempt` are counted as work (the `repair` rows would count
them twice). A call without a price is counted as unpriced, never as $0.

`Stats.as_json()` is what `forge stats --json` prints. Money is a decimal string, rates are
fractions from 0 to 1, times are seconds; a value that cannot be known is null:

    {
      "scope": {"run": str | null, "since": "YYYY-MM-DD" | null, "runs": int},
      "tasks": {"total": int, "done": int, "failed": int, "skipped": int, "other": int,
                "ran": int, "first_attempt": int, "first_attempt_rate": float | null,
                "escalated": int, "escalation_rate": float | null},
      "tiers": [{"tier": str, "tasks_finished": int, "task_share": float | null,
                 "attempts": int, "attempt_share": float | null}],
      "models": [{"model": str, "tier": str | null, "calls": int, "ok": int,
                  "success_rate": float | null, "latency_p50_s": float | null,
                  "latency_p95_s": float | null, "ttft_p50_s": float | null,
                  "input_tokens": int, "output_tokens": int, "cost_usd": str,
                  "unpriced_calls": int, "attempts": int, "passed": int,
                  "pass_rate": float | null}],
      "recommendations": [{"task_type": str, "model": str, "passed": int, "attempts": int,
                           "pass_rate": float, "cost_per_attempt_usd": str | null,
                           "ladder": [str]}],
      "cost": {"total_usd": str, "unpriced_calls": int, "work_usd": str,
               "unpriced_attempts": int, "finished_usd": str, "top_tier": str | null,
               "top_model": str | null, "top_tier_usd": str | null, "saved": float | null}
    }

`models` runs from the busiest model down; `tiers` follows the ladder. `ladder` in a
recommendation is the model followed by the rungs above its tier in `[tiers] ladder` (just the
model when its tier is not on the ladder). A saving is claimed over finished work only:
`finished_usd` is what the attempts of the tasks that are done cost (their failed attempts
included), `top_tier_usd` the same attempts' tokens at the top tier's prices (null when no task
is done or the top tier has no price), and `saved` is 1 - finished_usd / top_tier_usd.

`RunSummary.as_json()` is one entry of `forge runs --json`, whose shape is `{"runs": [entry]}`:

    {"run": str, "state": str, "source": str | null, "repo": str, "started_at": float,
     "finished_at": float | null, "duration_s": float,
     "tasks": {"done": int, "failed": int, "skipped": int, "total": int},
     "cost_usd": str, "unpriced_calls": int}
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from forge.errors import UsageError
from forge.execution.store import RunStore
from forge.fanout.stats import percentile
from forge.ledger.pricing import MILLION, Prices
from forge.ledger.store import Database, Ledger, column, host_name
from forge.routing.history import RouteHistory

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig

# Below this many attempts a pass rate says too little to recommend a model for a task type.
MIN_ATTEMPTS_TO_RECOMMEND = 2
SENT = ("ok", "error", "abandoned")  # `refused` calls never left the machine


# -- scope --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which runs count: all of them, one, or those started since a local day."""

    run_id: str | None = None
    since_day: str | None = None

    @property
    def since(self) -> float | None:
        return None if self.since_day is None else day_start(self.since_day)

    def runs_where(self) -> tuple[str, tuple[Any, ...]]:
        where: list[str] = ["1=1"]
        args: list[Any] = []
        if self.run_id is not None:
            where.append("run_id = ?")
            args.append(self.run_id)
        if self.since is not None:
            where.append("started_at >= ?")
            args.append(self.since)
        return " AND ".join(where), tuple(args)


def day_start(day: str) -> float:
    """The start of a YYYY-MM-DD day in local time, as a Unix time."""
    try:
        parsed = time.strptime(day, "%Y-%m-%d")
    except ValueError:
        raise UsageError(f"--since wants a date as YYYY-MM-DD, not {day!r}") from None
    return time.mktime((*parsed[:3], 0, 0, 0, 0, 0, -1))


# -- typed results ------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class TaskCounts:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    ran: int = 0  # tasks with at least one attempt
    first_attempt: int = 0  # done by their one and only attempt
    escalated: int = 0  # attempted on more than one rung

    @property
    def other(self) -> int:
        """Stopped, pending or still running."""
        return self.total - self.done - self.failed - self.skipped

    @property
    def first_attempt_rate(self) -> float | None:
        return _rate(self.first_attempt, self.ran)

    @property
    def escalation_rate(self) -> float | None:
        return _rate(self.escalated, self.ran)

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "other": self.other,
            "ran": self.ran,
            "first_attempt": self.first_attempt,
            "first_attempt_rate": self.first_attempt_rate,
            "escalated": self.escalated,
            "escalation_rate": self.escalation_rate,
        }


@dataclass(frozen=True)
class TierShare:
    """How much of the work one rung of the ladder did."""

    tier: str
    tasks_finished: int
    task_share: float | None
    attempts: int
    attempt_share: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "tasks_finished": self.tasks_finished,
            "task_share": self.task_share,
            "attempts": self.attempts,
            "attempt_share": self.attempt_share,
        }


@dataclass(frozen=True)
class ModelRecord:
    """One model's calls (from `attempts`) and task attempts (from `task_attempts`)."""

    model: str
    tier: str | None
    calls: int
    ok: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    unpriced_calls: int
    attempts: int
    passed: int

    @property
    def success_rate(self) -> float | None:
        return _rate(self.ok, self.calls)

    @property
    def pass_rate(self) -> float | None:
        return _rate(self.passed, self.attempts)

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tier": self.tier,
            "calls": self.calls,
            "ok": self.ok,
            "success_rate": self.success_rate,
            "latency_p50_s": self.latency_p50_s,
            "latency_p95_s": self.latency_p95_s,
            "ttft_p50_s": self.ttft_p50_s,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": str(self.cost_usd),
            "unpriced_calls": self.unpriced_calls,
            "attempts": self.attempts,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
        }


@dataclass(frozen=True)
class Recommendation:
    """The model that passed validation most often on one type of task."""

    task_type: str
    model: str
    passed: int
    attempts: int
    cost_per_attempt_usd: Decimal | None
    ladder: tuple[str, ...]

    @property
    def pass_rate(self) -> float:
        return self.passed / self.attempts

    def as_json(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "model": self.model,
            "passed": self.passed,
            "attempts": self.attempts,
            "pass_rate": self.pass_rate,
            "cost_per_attempt_usd": _money(self.cost_per_attempt_usd),
            "ladder": list(self.ladder),
        }


@dataclass(frozen=True)
class Savings:
    """What the runs cost, and the same task attempts priced at the top tier."""

    total_usd: Decimal = Decimal(0)  # every call in scope
    unpriced_calls: int = 0
    work_usd: Decimal = Decimal(0)  # the task attempts
    unpriced_attempts: int = 0
    finished_usd: Decimal = Decimal(0)  # the attempts of the tasks that are done
    finished_tasks: int = 0
    top_tier: str | None = None
    top_model: str | None = None
    # The finished tasks' attempts at the top tier's prices; None: nothing finished, or the
    # top tier has no price.
    top_tier_usd: Decimal | None = None

    @property
    def saved(self) -> float | None:
        """Over finished work only: money spent on tasks that failed bought nothing to compare."""
        if not self.finished_tasks or not self.top_tier_usd:
            return None
        return float(1 - self.finished_usd / self.top_tier_usd)

    def as_json(self) -> dict[str, Any]:
        return {
            "total_usd": str(self.total_usd),
            "unpriced_calls": self.unpriced_calls,
            "work_usd": str(self.work_usd),
            "unpriced_attempts": self.unpriced_attempts,
            "finished_usd": str(self.finished_usd),
            "top_tier": self.top_tier,
            "top_model": self.top_model,
            "top_tier_usd": _money(self.top_tier_usd),
            "saved": self.saved,
        }


@dataclass(frozen=True)
class Stats:
    scope: Scope
    runs: int
    tasks: TaskCounts = TaskCounts()
    tiers: tuple[TierShare, ...] = ()
    models: tuple[ModelRecord, ...] = ()
    recommendations: tuple[Recommendation, ...] = ()
    cost: Savings = field(default_factory=Savings)

    def as_json(self) -> dict[str, Any]:
        return {
            "scope": {
                "run": self.scope.run_id,
                "since": self.scope.since_day,
                "runs": self.runs,
            },
            "tasks": self.tasks.as_json(),
            "tiers": [t.as_json() for t in self.tiers],
            "models": [m.as_json() for m in self.models],
            "recommendations": [r.as_json() for r in self.recommendations],
            "cost": self.cost.as_json(),
        }


# -- what is read -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One row of `attempts`: an HTTP call to a model."""

    model: str
    tier: str | None
    outcome: str | None
    status: str
    latency_s: float | None
    ttft_s: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None


@dataclass(frozen=True)
class _Attempt:
    """One task attempt (kind `attempt`), with the type its task was routed as."""

    run_id: str
    task_id: str
    rung: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    passed: bool
    task_type: str | None


def _runs(db: Database, scope: Scope) -> list[str]:
    where, args = scope.runs_where()
    rows = db.execute(f"SELECT run_id FROM runs WHERE {where} ORDER BY started_at", args)
    return [r["run_id"] for r in rows]


def _calls(db: Database, scope: Scope) -> list[_Call]:
    where, args = scope.runs_where()
    rows = db.execute(
        "SELECT model, tier, outcome, status, latency_s, ttft_s, input_tokens, output_tokens, "
        f"cost_usd FROM attempts WHERE run_id IN (SELECT run_id FROM runs WHERE {where}) "
        "ORDER BY id",
        args,
    )
    return [
        _Call(
            model=r["model"],
            tier=r["tier"],
            outcome=r["outcome"],
            status=r["status"],
            latency_s=r["latency_s"],
            ttft_s=r["ttft_s"],
            input_tokens=r["input_tokens"] or 0,
            output_tokens=r["output_tokens"] or 0,
            cost_usd=None if r["cost_usd"] is None else Decimal(r["cost_usd"]),
        )
        for r in rows
    ]


def _attempts(db: Database, scope: Scope) -> list[_Attempt]:
    where, args = scope.runs_where()
    rows = db.execute(
        "SELECT a.run_id, a.task_id, a.rung, a.model, a.input_tokens, a.output_tokens, "
        "a.cost_usd, a.validation, "
        "(SELECT r.type FROM routes r WHERE r.run_id = a.run_id AND r.task_id = a.task_id "
        " ORDER BY r.id DESC LIMIT 1) AS task_type "
        "FROM task_attempts a WHERE a.kind = 'attempt' "
        f"AND a.run_id IN (SELECT run_id FROM runs WHERE {where}) ORDER BY a.id",
        args,
    )
    return [
        _Attempt(
            run_id=r["run_id"],
            task_id=r["task_id"],
            rung=r["rung"],
            model=r["model"],
            input_tokens=r["input_tokens"] or 0,
            output_tokens=r["output_tokens"] or 0,
            cost_usd=None if r["cost_usd"] is None else Decimal(r["cost_usd"]),
            passed=r["validation"] == "passed",
            task_type=r["task_type"],
        )
        for r in rows
    ]


def _prepare(ledger: Ledger) -> RunStore:
    """The run and route tables, created if this ledger predates them."""
    RouteHistory(ledger)
    return RunStore(ledger)


# -- the numbers --------------------------------------------------------------------------------


def gather(ledger: Ledger, scope: Scope, config: ForgeConfig | None = None) -> Stats:
    """Everything `forge stats` shows; `config` prices the top tier and completes ladders."""
    store = _prepare(ledger)
    with ledger.reading() as db:
        run_ids = _runs(db, scope)
        if scope.run_id is not None and not run_ids:
            raise UsageError(f"no run {scope.run_id!r} in the ledger (see `forge runs`)")
        calls = _calls(db, scope)
        attempts = _attempts(db, scope)
    tasks = [task for run_id in run_ids for task in store.tasks(run_id)]
    by_task: dict[tuple[str, str], list[_Attempt]] = {}
    for attempt in attempts:
        by_task.setdefault((attempt.run_id, attempt.task_id), []).append(attempt)
    finished: Counter[str] = Counter()  # tasks done, by the rung of their passing attempt
    done = {(task.run_id, task.task_id) for task in tasks if task.state == "done"}
    counts: Counter[str] = Counter()
    for task in tasks:
        tried = by_task.get((task.run_id, task.task_id), [])
        counts[task.state] += 1
        counts["ran"] += bool(tried)
        counts["escalated"] += len({a.rung for a in tried}) > 1
        if task.state == "done":
            counts["first_attempt"] += len(tried) == 1
            passing = [a.rung for a in tried if a.passed] or list(task.rungs[-1:])
            finished.update(passing[-1:])
    return Stats(
        scope=scope,
        runs=len(run_ids),
        tasks=TaskCounts(
            total=len(tasks),
            done=counts["done"],
            failed=counts["failed"],
            skipped=counts["skipped"],
            ran=counts["ran"],
            first_attempt=counts["first_attempt"],
            escalated=counts["escalated"],
        ),
        tiers=_tiers(finished, Counter(a.rung for a in attempts), config),
        models=_models(calls, attempts),
        recommendations=_recommendations(attempts, config),
        cost=_savings(calls, attempts, config, ledger, done),
    )


def _tiers(
    finished: Counter[str], tried: Counter[str], config: ForgeConfig | None
) -> tuple[TierShare, ...]:
    ladder = config.tiers.ladder if config is not None else []
    names = sorted(
        set(finished) | set(tried),
        key=lambda t: (ladder.index(t) if t in ladder else len(ladder), t),
    )
    done, attempted = finished.total(), tried.total()
    return tuple(
        TierShare(t, finished[t], _rate(finished[t], done), tried[t], _rate(tried[t], attempted))
        for t in names
    )


def _models(calls: list[_Call], attempts: list[_Attempt]) -> tuple[ModelRecord, ...]:
    names = Counter(c.model for c in calls) + Counter(a.model for a in attempts)
    records = []
    for model, _ in names.most_common():
        sent = [c for c in calls if c.model == model and c.outcome in SENT]
        ok = [c for c in sent if c.outcome == "ok"]
        latencies = [c.latency_s for c in ok if c.latency_s is not None]
        ttfts = [c.ttft_s for c in ok if c.ttft_s is not None]
        settled = [c for c in sent if c.status == "settled"]
        tried = [a for a in attempts if a.model == model]
        records.append(
            ModelRecord(
                model=model,
                tier=next((c.tier for c in reversed(sent) if c.tier), None),
                calls=len(sent),
                ok=len(ok),
                latency_p50_s=percentile(latencies, 0.5),
                latency_p95_s=percentile(latencies, 0.95),
                ttft_p50_s=percentile(ttfts, 0.5),
                input_tokens=sum(c.input_tokens for c in sent),
                output_tokens=sum(c.output_tokens for c in sent),
                cost_usd=sum((c.cost_usd for c in settled if c.cost_usd is not None), Decimal(0)),
                unpriced_calls=sum(c.cost_usd is None for c in settled),
                attempts=len(tried),
                passed=sum(a.passed for a in tried),
            )
        )
    return tuple(records)


def _recommendations(
    attempts: list[_Attempt], config: ForgeConfig | None
) -> tuple[Recommendation, ...]:
    groups: dict[tuple[str, str], list[_Attempt]] = {}
    for a in attempts:
        if a.task_type is not None:
            groups.setdefault((a.task_type, a.model), []).append(a)
    best: dict[str, Recommendation] = {}
    for (task_type, model), tried in sorted(groups.items()):
        priced = [a.cost_usd for a in tried if a.cost_usd is not None]
        candidate = Recommendation(
            task_type=task_type,
            model=model,
            passed=sum(a.passed for a in tried),
            attempts=len(tried),
            cost_per_attempt_usd=sum(priced, Decimal(0)) / len(priced) if priced else None,
            ladder=_ladder(model, config),
        )
        if candidate.attempts < MIN_ATTEMPTS_TO_RECOMMEND or not candidate.passed:
            continue
        current = best.get(task_type)
        if current is None or _rank(candidate) < _rank(current):
            best[task_type] = candidate
    return tuple(best[t] for t in sorted(best))


def _rank(r: Recommendation) -> tuple[float, bool, Decimal]:
    """Higher pass rate first; on a tie the cheaper attempt (an unpriced one last)."""
    cost = r.cost_per_attempt_usd
    return (-r.pass_rate, cost is None, cost if cost is not None else Decimal(0))


def _ladder(model: str, config: ForgeConfig | None) -> tuple[str, ...]:
    """The model, then the rungs of the default ladder above its tier."""
    if config is None or model not in config.models:
        return (model,)
    ladder, tier = config.tiers.ladder, config.models[model].tier
    above = ladder[ladder.index(tier) + 1 :] if tier in ladder else []
    return (model, *above)


def _savings(
    calls: list[_Call],
    attempts: list[_Attempt],
    config: ForgeConfig | None,
    ledger: Ledger,
    done: set[tuple[str, str]],
) -> Savings:
    settled = [c for c in calls if c.status == "settled" and c.outcome != "refused"]
    finished = [a for a in attempts if (a.run_id, a.task_id) in done]
    tokens_in = sum(a.input_tokens for a in finished)
    tokens_out = sum(a.output_tokens for a in finished)
    top = None
    if config is not None and finished:
        top = top_tier(config, ledger, tokens_in, tokens_out)
    return Savings(
        total_usd=sum((c.cost_usd for c in settled if c.cost_usd is not None), Decimal(0)),
        unpriced_calls=sum(c.cost_usd is None for c in settled),
        work_usd=sum((a.cost_usd for a in attempts if a.cost_usd is not None), Decimal(0)),
        unpriced_attempts=sum(a.cost_usd is None for a in attempts),
        finished_usd=sum((a.cost_usd for a in finished if a.cost_usd is not None), Decimal(0)),
        finished_tasks=len(done),
        top_tier=config.tiers.ladder[-1] if config is not None and config.tiers.ladder else None,
        top_model=top[0] if top else None,
        top_tier_usd=top[1] if top else None,
    )


def top_tier(
    config: ForgeConfig, ledger: Ledger, tokens_in: int, tokens_out: int
) -> tuple[str, Decimal] | None:
    """The most expensive model of the ladder's top rung, and the work's tokens at its prices."""
    from forge.ledger.pricing import discovered_prices, resolve_prices
    from forge.providers.types import Target

    if not config.tiers.ladder:
        return None
    discovered = discovered_prices(ledger.discovered())
    priced: list[tuple[str, Decimal]] = []
    for alias in config.models_in(config.tiers.ladder[-1]):
        model = config.models[alias]
        target = Target(alias, model.provider, model.id, model.tier)
        prices = resolve_prices(config, target, discovered)
        if prices is not None:
            priced.append((alias, _price(prices, tokens_in, tokens_out)))
    return max(priced, key=lambda p: p[1], default=None)


def _price(prices: Prices, tokens_in: int, tokens_out: int) -> Decimal:
    return (tokens_in * prices.input + tokens_out * prices.output) / MILLION


# -- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One run as `forge runs` lists it."""

    run_id: str
    state: str
    source: str | None
    repo: str
    started_at: float
    finished_at: float | None
    tasks: dict[str, int]  # done, failed, skipped, total
    cost_usd: Decimal
    unpriced_calls: int

    @property
    def duration_s(self) -> float:
        """Until it finished, or until now for a run that has not."""
        return (self.finished_at or time.time()) - self.started_at

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "state": self.state,
            "source": self.source,
            "repo": self.repo,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3),
            "tasks": self.tasks,
            "cost_usd": str(self.cost_usd),
            "unpriced_calls": self.unpriced_calls,
        }


def list_runs(ledger: Ledger, limit: int | None = None) -> list[RunSummary]:
    """Runs, newest first, with their tasks counted by state and the cost of their calls."""
    _prepare(ledger)
    newest = "SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC"
    if limit is not None:
        newest += f" LIMIT {int(limit)}"
    with ledger.reading() as db:
        runs = db.execute(
            f"SELECT * FROM runs WHERE run_id IN ({newest}) ORDER BY started_at DESC, rowid DESC"
        ).fetchall()
        states = db.execute(
            "SELECT run_id, state, COUNT(*) AS n FROM run_tasks "
            f"WHERE run_id IN ({newest}) GROUP BY run_id, state"
        ).fetchall()
        costs = db.execute(
            "SELECT run_id, cost_usd FROM attempts WHERE status = 'settled' "
            f"AND outcome != 'refused' AND run_id IN ({newest})"
        ).fetchall()
    return [_summary(run, states, costs) for run in runs]


def _live_state(run: Any) -> str:
    """A run still marked running whose process is gone crashed or was killed: resumable.
    On a shared ledger only the runs of this host can be asked about (a pid is a host's)."""
    from forge.ledger.store import pid_alive

    here = column(run, "host") in (None, host_name())
    if run["state"] == "running" and run["pid"] and here and not pid_alive(int(run["pid"])):
        return "crashed"
    return str(run["state"])


def _summary(run: Any, states: Iterable[Any], costs: Iterable[Any]) -> RunSummary:
    run_id = run["run_id"]
    by_state = Counter({r["state"]: r["n"] for r in states if r["run_id"] == run_id})
    mine = [r["cost_usd"] for r in costs if r["run_id"] == run_id]
    return RunSummary(
        run_id=run_id,
        state=_live_state(run),
        source=run["source"],
        repo=run["repo"],
        started_at=run["started_at"],
        finished_at=run["finished_at"],
        tasks={
            "done": by_state["done"],
            "failed": by_state["failed"],
            "skipped": by_state["skipped"],
            "total": by_state.total(),
        },
        cost_usd=sum((Decimal(c) for c in mine if c is not None), Decimal(0)),
        unpriced_calls=sum(c is None for c in mine),
    )
