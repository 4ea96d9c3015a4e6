"""Runs, their tasks and every task attempt, kept in the ledger's database file.

The `attempts` table holds one row per HTTP call; these tables say what the calls were for: a run
of a milestone, each task's state and branch, and each attempt of a task with its rung, model,
tokens, cost, whether the answer was well formed and what validation said.

An attempt row's tokens and cost include its format repairs; the `repair` rows beside it say
what each repair took (sum the `attempt` rows for totals, never both). `merge` rows record a
merge conflict that sent the task to run again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from forge.ledger.store import SideTables, column

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, repo TEXT NOT NULL, base TEXT NOT NULL, source TEXT,
        state TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, pid INTEGER,
        options TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS run_tasks (
        run_id TEXT NOT NULL, task_id TEXT NOT NULL, title TEXT NOT NULL,
        state TEXT NOT NULL, branch TEXT, commit_id TEXT, rungs TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0, cost_usd TEXT NOT NULL DEFAULT '0', reason TEXT,
        started_at REAL, finished_at REAL,
        PRIMARY KEY (run_id, task_id)
    )""",
    """CREATE TABLE IF NOT EXISTS task_attempts (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, task_id TEXT NOT NULL,
        number INTEGER NOT NULL, kind TEXT NOT NULL, rung TEXT NOT NULL, model TEXT NOT NULL,
        input_tokens INTEGER, output_tokens INTEGER, cost_usd TEXT,
        well_formed INTEGER, format_error TEXT, validation TEXT,
        new_findings INTEGER, targets_left INTEGER, detail TEXT,
        started_at REAL NOT NULL, duration_s REAL
    )""",
    "CREATE INDEX IF NOT EXISTS task_attempts_run ON task_attempts(run_id, task_id)",
)


@dataclass(frozen=True)
class TaskAttemptRow:
    """One attempt (or format repair) of a task, as the ledger keeps it."""

    run_id: str
    task_id: str
    number: int
    kind: str  # "attempt", "repair" or "review" (the reviewer's calls on the attempt)
    rung: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    well_formed: bool | None
    format_error: str | None
    validation: str  # "passed", "failed", "not_run", "rejected" (by the reviewer)
    new_findings: int
    targets_left: int
    detail: str | None
    started_at: float
    duration_s: float


@dataclass(frozen=True)
class RunRow:
    run_id: str
    repo: str
    base: str
    source: str
    state: str  # running, done, failed, stopped, interrupted
    started_at: float
    finished_at: float | None
    options: dict[str, Any]  # the plan's tasks and the options it ran with, for --resume
    pid: int | None = None  # the process running it (or that last ran it)
    host: str | None = None  # where that process runs (shared ledgers only)


@dataclass(frozen=True)
class RunTaskRow:
    run_id: str
    task_id: str
    title: str
    state: str  # pending, running, done, failed, skipped, stopped
    branch: str | None
    commit_id: str | None
    rungs: tuple[str, ...]
    attempts: int
    cost_usd: Decimal
    reason: str | None


class RunStore(SideTables):
    SCHEMA = SCHEMA

    # -- runs --------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, *, repo: str, base: str, source: str, options: dict[str, Any]
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, repo, base, source, state, started_at, pid, options) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (run_id, repo, base, source, time.time(), os.getpid(), json.dumps(options)),
            )

    def set_run_state(self, run_id: str, state: str, *, finished: bool = False) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET state = ?, finished_at = ?, pid = ? WHERE run_id = ?",
                (state, time.time() if finished else None, os.getpid(), run_id),
            )

    def run(self, run_id: str) -> RunRow | None:
        with self._reading() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return RunRow(
            run_id=row["run_id"],
            repo=row["repo"],
            base=row["base"],
            source=row["source"],
            state=row["state"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            options=json.loads(row["options"]),
            pid=row["pid"],
            host=column(row, "host"),
        )

    # -- tasks -------------------------------------------------------------------------------

    def set_task(self, run_id: str, task_id: str, title: str, state: str, **fields: Any) -> None:
        """Insert or update one task's row; `fields` are columns of run_tasks."""
        values = {"title": title, "state": state, **fields}
        if "rungs" in values:
            values["rungs"] = json.dumps(list(values["rungs"]))
        if "cost_usd" in values:
            values["cost_usd"] = str(values["cost_usd"])
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in values)
        with self._connect() as db:
            db.execute(
                f"INSERT INTO run_tasks (run_id, task_id, {columns}) VALUES (?, ?, {marks}) "
                f"ON CONFLICT (run_id, task_id) DO UPDATE SET {updates}",
                (run_id, task_id, *values.values()),
            )

    def add_waiting(self, run_id: str, tasks: list[tuple[str, str]]) -> None:
        """Rows for (task id, title) pairs not started yet, in one transaction."""
        with self._connect() as db:
            db.executemany(
                "INSERT INTO run_tasks (run_id, task_id, title, state) VALUES (?, ?, ?, 'waiting') "
                "ON CONFLICT (run_id, task_id) DO UPDATE SET state = 'waiting'",
                [(run_id, task_id, title) for task_id, title in tasks],
            )

    def tasks(self, run_id: str) -> list[RunTaskRow]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM run_tasks WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        return [
            RunTaskRow(
                run_id=r["run_id"],
                task_id=r["task_id"],
                title=r["title"],
                state=r["state"],
                branch=r["branch"],
                commit_id=r["commit_id"],
                rungs=tuple(json.loads(r["rungs"])),
                attempts=r["attempts"],
                cost_usd=Decimal(r["cost_usd"]),
                reason=r["reason"],
            )
            for r in rows
        ]

    # -- attempts ----------------------------------------------------------------------------

    def record_attempt(self, row: TaskAttemptRow) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO task_attempts (run_id, task_id, number, kind, rung, model, "
                "input_tokens, output_tokens, cost_usd, well_formed, format_error, validation, "
                "new_findings, targets_left, detail, started_at, duration_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.run_id,
                    row.task_id,
                    row.number,
                    row.kind,
                    row.rung,
                    row.model,
                    row.input_tokens,
                    row.output_tokens,
                    None if row.cost_usd is None else str(row.cost_usd),
                    None if row.well_formed is None else int(row.well_formed),
                    row.format_error,
                    row.validation,
                    row.new_findings,
                    row.targets_left,
                    row.detail,
                    row.started_at,
                    row.duration_s,
                ),
            )

    def attempts(self, run_id: str, task_id: str | None = None) -> list[TaskAttemptRow]:
        sql = "SELECT * FROM task_attempts WHERE run_id = ?"
        args: tuple[str, ...] = (run_id,)
        if task_id is not None:
            sql += " AND task_id = ?"
            args += (task_id,)
        with self._reading() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            TaskAttemptRow(
                run_id=r["run_id"],
                task_id=r["task_id"],
                number=r["number"],
                kind=r["kind"],
                rung=r["rung"],
                model=r["model"],
                input_tokens=r["input_tokens"] or 0,
                output_tokens=r["output_tokens"] or 0,
                cost_usd=None if r["cost_usd"] is None else Decimal(r["cost_usd"]),
                well_formed=None if r["well_formed"] is None else bool(r["well_formed"]),
                format_error=r["format_error"],
                validation=r["validation"],
                new_findings=r["new_findings"] or 0,
                targets_left=r["targets_left"] or 0,
                detail=r["detail"],
                started_at=r["started_at"],
                duration_s=r["duration_s"] or 0.0,
            )
            for r in rows
        ]
