"""The report of a run as plain data: what `--json` prints and the terminal view renders.

Shape: `run`, `repository`, `base`, `source`, `resumed`, `state` (done / failed / stopped),
`exit_code`, `stop_reason`, `branch` (the branch to review; null when nothing was merged), `head`,
`uncommitted_changes_left_out`; `tasks`: one object per task with `id`, `title`, `after`,
`state` (done, failed, skipped, stopped, not_started), `reason`, `type`, `band`, `tier` (the rung
that finished it), `rungs_tried`, `escalations`, `attempt_count`, `attempts` (each engine attempt:
number, rung, model, well_formed, outcome, headline, tokens, cost, repairs, files, and the
reviewer's `review` (accepted, rejected, not reviewed, or null), `review_model`,
`review_reasons`, `review_cost`), `reviewed_by`,
`conflicts`, `cost_usd`, `seconds`, `commit`, `base` (the base's validation note),
`last_findings`, `worktree`; `totals`: task counts by state, `attempts`, `cost_usd`,
`top_tier_usd` (the same tokens at the top tier's prices, null when unpriced) and
`finished_per_tier`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from forge.execution.run import RunResult
from forge.execution.scheduler import TaskRecord


def result_json(result: RunResult) -> dict[str, Any]:
    outcome = result.outcome
    records = list(outcome.records.values())
    return {
        "run": result.run_id,
        "repository": str(result.repo),
        "base": outcome.base,
        "source": result.source,
        "resumed": result.resumed,
        "state": outcome.state,
        "exit_code": int(outcome.exit_code),
        "stop_reason": outcome.stop_reason,
        "branch": outcome.branch,
        "head": outcome.head,
        "uncommitted_changes_left_out": result.dirty,
        "tasks": [task_json(r) for r in records],
        "totals": totals_json(result),
    }


def task_json(record: TaskRecord) -> dict[str, Any]:
    last = record.outcomes[-1] if record.outcomes else None
    route = last.route if last else None
    attempts = [a for o in record.outcomes for a in o.attempts]
    return {
        "id": record.task.id,
        "title": record.task.title,
        "after": list(record.task.after),
        "state": record.state,
        "reason": record.reason,
        "type": route.analysis.type if route else None,
        "band": route.analysis.band if route else None,
        "tier": record.tier,
        "rungs_tried": record.rungs,
        "escalations": sum(max(0, len(o.rungs) - 1) for o in record.outcomes),
        "attempt_count": record.attempts,
        "attempts": [
            asdict(a) | {"cost": plain(a.cost), "review_cost": plain(a.review_cost)}
            for a in attempts
        ],
        "conflicts": record.conflicts,
        "cost_usd": plain(record.cost),
        "seconds": None if record.seconds is None else round(record.seconds, 3),
        "commit": record.commit,
        "base": last.base_note if last else None,
        "last_findings": last.last_findings if last and record.state != "done" else None,
        "worktree": str(last.worktree) if last and last.worktree else None,
        "review_before_merging": list(last.review) if last and record.state == "done" else [],
        "reviewed_by": last.reviewed_by if last and record.state == "done" else None,
    }


@dataclass(frozen=True)
class RunTotals:
    """The run summed up, for the JSON report and the terminal's."""

    tasks: int
    states: Counter[str]
    attempts: int
    cost: Decimal
    top_tier: Decimal | None  # the run's tokens at the top tier's prices, None when unpriced
    finished_per_tier: dict[str, int]


def totals(result: RunResult) -> RunTotals:
    records = list(result.outcome.records.values())
    return RunTotals(
        tasks=len(records),
        states=Counter(r.state for r in records),
        attempts=sum(r.attempts for r in records),
        cost=sum((r.cost for r in records), Decimal(0)),
        top_tier=None if result.top_tier is None else result.top_tier[1],
        finished_per_tier=dict(Counter(r.tier for r in records if r.tier)),
    )


def totals_json(result: RunResult) -> dict[str, Any]:
    summed = totals(result)
    return {
        "tasks": summed.tasks,
        **{s: summed.states.get(s, 0) for s in ("done", "failed", "skipped", "stopped")},
        "not_started": summed.states.get("not_started", 0),
        "attempts": summed.attempts,
        "cost_usd": plain(summed.cost),
        "top_tier_usd": None if summed.top_tier is None else plain(summed.top_tier),
        "finished_per_tier": summed.finished_per_tier,
    }


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"
