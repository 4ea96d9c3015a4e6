"""The live table of `forge run-milestone` on a terminal: one row per task, a footer of totals."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from forge.execution.engine import TaskEvent
    from forge.execution.scheduler import RunEvent
    from forge.planning.milestone import Milestone
    from forge.providers.types import Pause


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
    validators: str = "-"
    tokens: int = 0
    cost: Decimal = Decimal(0)
    pause: Pause | None = None  # the wait the task is in: its note counts down


class LiveTasks:
    """The table is built afresh at every refresh (four a second), from the rows and the
    clock: the elapsed column ticks while a task runs, not only when it reports an event."""

    def __init__(
        self,
        plan: Milestone,
        budget: Decimal | None = None,
        *,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        from rich.live import Live

        from forge.commands.output import console as stderr_console

        self.rows = {t.id: _Row(", ".join(t.after) or "-") for t in plan.tasks}
        self.budget = budget
        self.clock = clock
        self.wall_clock = wall_clock  # a wait's end is wall-clock time (`Pause.until`)
        # On stderr, like the log lines it replaces: stdout is for the report (and --json).
        self.live = Live(self, console=console or stderr_console(stderr=True), refresh_per_second=4)

    def __rich__(self) -> Any:
        return self._table()

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.refresh()
        self.live.stop()

    def update(self, event: TaskEvent | RunEvent) -> None:
        from forge.execution.engine import TaskEvent

        row = self.rows.get(event.task_id)
        if row is None:
            return
        if isinstance(event, TaskEvent):
            row.stage = event.stage
            row.note = event.message
            row.pause = event.pause
            if event.model:
                row.model = f"{event.rung}/{event.model}"
            if event.attempt:
                row.attempt = event.attempt
            if event.stage == "validated":
                row.validators = event.message.partition(": ")[2] or event.message
            row.tokens = max(row.tokens, event.tokens)
            row.cost = max(row.cost, event.cost)
        else:
            row.state = event.state
            row.note = event.message
            row.pause = None
            if event.state == "running" and row.started is None:
                row.started = self.clock()
            elif event.state not in ("running", "waiting"):
                row.ended = self.clock()

    def _table(self) -> Any:
        from forge.commands.output import usd
        from forge.commands.tables import Column, FittedTable

        table = FittedTable(
            Column("task"),
            Column("after", drop=3),
            Column("state"),
            Column("tier/model", drop=6),
            Column("attempt", drop=0),
            Column("stage", drop=4),
            Column("validators", drop=2),
            Column("tokens", drop=1),
            Column("cost", drop=7),  # the caption has the total
            Column("elapsed", drop=5),
            Column("note", prose=True),
            live=True,
        )
        counts: dict[str, int] = {}
        now = self.clock()
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
                row.validators,
                f"{row.tokens:,}" if row.tokens else "-",
                usd(row.cost) if row.cost else "-",
                elapsed,
                self._note(row),
            )
        spent = sum((row.cost for row in self.rows.values()), Decimal(0))
        against = f" of {usd(self.budget)}" if self.budget is not None else ""
        counts_text = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
        table.caption = f"cost {usd(spent)}{against}; {counts_text}"
        return table

    def _note(self, row: _Row) -> str:
        """The row's latest news, its first line in full (the column wraps); a wait counts
        down: `retrying (429, 2/3) in 4 s`."""
        if row.pause is not None:
            return row.pause.describe(row.pause.until - self.wall_clock())
        return row.note.strip().partition("\n")[0]
