"""The live table of `forge run-milestone` on a terminal: one row per task, a footer of totals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forge.execution.engine import TaskEvent
    from forge.execution.scheduler import RunEvent
    from forge.planning.milestone import Milestone


@dataclass
class _Row:
    after: str
    state: str = "waiting"
    model: str = "-"
    attempt: int = 0
    stage: str = "-"
    started: float | None = None
    ended: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class LiveTasks:
    def __init__(self, plan: Milestone) -> None:
        from rich.live import Live

        self.rows = {t.id: _Row(", ".join(t.after) or "-") for t in plan.tasks}
        self.live = Live(
            self._table(), refresh_per_second=4, transient=False, redirect_stderr=False
        )

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.update(self._table())
        self.live.stop()

    def update(self, event: TaskEvent | RunEvent) -> None:
        from forge.execution.engine import TaskEvent

        row = self.rows.get(event.task_id)
        if row is None:
            return
        if isinstance(event, TaskEvent):
            row.stage = event.stage
            row.note = event.message
            if event.model:
                row.model = f"{event.rung}/{event.model}"
            if event.attempt:
                row.attempt = event.attempt
        else:
            row.state = event.state
            row.note = event.message
            if event.state == "running" and row.started is None:
                row.started = time.monotonic()
            elif event.state not in ("running", "waiting"):
                row.ended = time.monotonic()
        self.live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        table = Table("task", "after", "state", "tier/model", "attempt", "stage", "elapsed", "note")
        counts: dict[str, int] = {}
        now = time.monotonic()
        for task_id, row in self.rows.items():
            counts[row.state] = counts.get(row.state, 0) + 1
            elapsed = "-"
            if row.started is not None:
                elapsed = f"{(row.ended or now) - row.started:.0f}s"
            table.add_row(
                task_id,
                row.after,
                row.state,
                row.model,
                str(row.attempt or "-"),
                row.stage,
                elapsed,
                row.note[:60],
            )
        table.caption = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
        return table
