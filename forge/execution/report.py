"""The report of a run as plain data: what `--json` prints and the terminal view renders."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from forge.execution.engine import TaskOutcome
from forge.execution.run import RunResult


def result_json(result: RunResult) -> dict[str, Any]:
    outcome = result.outcome
    return {
        "run": result.run_id,
        "repository": str(result.repo),
        "base": result.base,
        "source": result.source,
        "uncommitted_changes_left_out": result.dirty,
        "exit_code": int(outcome.exit_code),
        "task": task_json(outcome),
    }


def task_json(outcome: TaskOutcome) -> dict[str, Any]:
    route = outcome.route
    return {
        "id": outcome.task.id,
        "title": outcome.task.title,
        "state": outcome.state,
        "reason": outcome.reason,
        "type": route.analysis.type if route else None,
        "band": route.analysis.band if route else None,
        "ladder": list(route.ladder) if route else [],
        "rungs_tried": outcome.rungs,
        "escalations": max(0, len(outcome.rungs) - 1),
        "branch": outcome.branch,
        "commit": outcome.commit,
        "worktree": str(outcome.worktree) if outcome.worktree else None,
        "base": outcome.base_note,
        "cost_usd": _usd(outcome.cost),
        "attempts": [asdict(a) | {"cost": _usd(a.cost)} for a in outcome.attempts],
        "last_findings": outcome.last_findings if outcome.state != "done" else None,
    }


def _usd(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"
