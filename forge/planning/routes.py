"""A milestone's routes: each pending task's decision, and what the whole plan may cost.

`forge route --milestone` shows this before anything runs; `forge run-milestone --dry-run` can
show the same. A task's own `type` replaces the analysis' type, its `tier` pins the first rung
unless the command line pins one; done tasks are listed but not routed or counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from forge.errors import UsageError
from forge.planning.milestone import Milestone, MilestoneError, MilestoneTask
from forge.routing.analysis import TaskAnalysis
from forge.routing.decision import Pins, RouteDecision, Router
from forge.routing.report import decision_json


@dataclass(frozen=True)
class PlanTotals:
    first_attempts_usd: Decimal
    worst_case_usd: Decimal  # priced attempts only; see unpriced_models
    unpriced_models: tuple[str, ...]
    tasks_without_model: tuple[str, ...]
    budget_left_usd: Decimal | None


@dataclass(frozen=True)
class PlanRoutes:
    plan: Milestone
    decisions: dict[str, RouteDecision]  # by task id, pending tasks only

    def totals(self) -> PlanTotals:
        decisions = list(self.decisions.values())
        first = sum((d.estimate.first_attempt_usd or Decimal(0) for d in decisions), Decimal(0))
        unpriced = {m for d in decisions for m in d.estimate.unpriced} | {
            d.first.model
            for d in decisions
            if d.first.model and d.estimate.first_attempt_usd is None
        }
        return PlanTotals(
            first_attempts_usd=first,
            worst_case_usd=sum((d.estimate.worst_case_usd for d in decisions), Decimal(0)),
            unpriced_models=tuple(sorted(unpriced)),
            tasks_without_model=tuple(
                sorted(task_id for task_id, d in self.decisions.items() if d.first.model is None)
            ),
            budget_left_usd=decisions[0].estimate.budget_left_usd if decisions else None,
        )

    def to_json(self) -> dict[str, Any]:
        totals = self.totals()
        return {
            "milestone": self.plan.source,
            "tasks": [
                {
                    "id": t.id,
                    "title": t.title,
                    "after": list(t.after),
                    "files": list(t.files),
                    "done": t.done,
                    "route": decision_json(self.decisions[t.id])
                    if t.id in self.decisions
                    else None,
                }
                for t in self.plan.tasks
            ],
            "total": {
                "first_attempts_usd": _plain(totals.first_attempts_usd),
                "worst_case_usd": _plain(totals.worst_case_usd),
                "unpriced_models": list(totals.unpriced_models),
                "tasks_without_model": list(totals.tasks_without_model),
                "budget_left_usd": _plain(totals.budget_left_usd),
            },
        }


def route_plan(
    plan: Milestone, analyses: Sequence[TaskAnalysis], router: Router, pins: Pins
) -> PlanRoutes:
    """Route the plan's pending tasks; `analyses` are theirs, in the order of `plan.pending()`."""
    pending = plan.pending()
    decisions = {
        task.id: _decide(task, _with_task_type(task, analysis), router, pins)
        for task, analysis in zip(pending, analyses, strict=True)
    }
    return PlanRoutes(plan, decisions)


def _with_task_type(task: MilestoneTask, analysis: TaskAnalysis) -> TaskAnalysis:
    if task.type is None:
        return analysis
    return replace(analysis, type=task.type, type_reasons=("set in the milestone",))


def _decide(
    task: MilestoneTask, analysis: TaskAnalysis, router: Router, pins: Pins
) -> RouteDecision:
    if pins.tier is None and pins.model is None and task.tier is not None:
        pins = Pins(tier=task.tier)  # the command line wins over the file
    try:
        return router.decide(analysis, pins)
    except UsageError as exc:
        raise MilestoneError(f"task {task.id!r} ({task.where}): {exc}") from None


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")
