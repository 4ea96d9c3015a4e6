"""Saved runs: every fan-out kept beside the ledger's attempts, so `--show RUN` prints it again.

The tables live in the ledger's database file (its attempts carry the same run id, so
`forge logs --run RUN` lists a run's calls) but belong to this module alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from forge.errors import UsageError
from forge.fanout.answers import Answer, FanoutRun, Settings, Status
from forge.ledger.store import MAX_ERROR_CHARS, LedgerError, add_missing_columns, cut

SCHEMA = """
CREATE TABLE IF NOT EXISTS fanout_runs (
    run_id TEXT PRIMARY KEY,
    started_at REAL NOT NULL, duration REAL NOT NULL,
    prompt TEXT NOT NULL, settings TEXT NOT NULL, roles TEXT NOT NULL,
    interrupted INTEGER NOT NULL, deadline_passed INTEGER NOT NULL,
    extras TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fanout_runs_started ON fanout_runs(started_at);
CREATE TABLE IF NOT EXISTS fanout_answers (
    run_id TEXT NOT NULL, position INTEGER NOT NULL,
    key TEXT NOT NULL, alias TEXT NOT NULL, provider TEXT NOT NULL, model_id TEXT NOT NULL,
    tier TEXT, role TEXT, prompt_index INTEGER NOT NULL,
    status TEXT NOT NULL, text TEXT NOT NULL,
    ttft_s REAL, latency_s REAL, input_tokens INTEGER, output_tokens INTEGER,
    cost_usd TEXT, cost_source TEXT, error_kind TEXT, cause TEXT, attempts INTEGER,
    truncated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, position)
);
"""
ADDED_COLUMNS = {"truncated": "INTEGER NOT NULL DEFAULT 0"}
# What a saved run keeps of one answer: generous for any real answer, and a server that sends
# twenty megabytes does not grow the ledger's file by twenty. The output had it all.
MAX_STORED_ANSWER = 1_000_000

ANSWER_COLUMNS = (
    "key",
    "alias",
    "provider",
    "model_id",
    "tier",
    "role",
    "prompt_index",
    "status",
    "text",
    "ttft_s",
    "latency_s",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_source",
    "error_kind",
    "cause",
    "attempts",
    "truncated",
)


@dataclass(frozen=True)
class SavedRun:
    run: FanoutRun
    extras: dict[str, Any]  # judge, synthesis, candidates, batch: each module reads its own


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    started_at: float
    prompt: str
    models: int


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, run: FanoutRun, extras: dict[str, Any] | None = None) -> None:
        row = (
            run.run_id,
            run.started_at,
            run.duration,
            run.prompt,
            json.dumps(asdict(run.settings)),
            json.dumps(run.roles),
            int(run.interrupted),
            int(run.deadline_passed),
            json.dumps(extras or {}, default=str),
        )
        answers = [(run.run_id, i, *_answer_row(a)) for i, a in enumerate(run.answers)]
        marks = ", ".join("?" * (len(ANSWER_COLUMNS) + 2))
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM fanout_answers WHERE run_id = ?", (run.run_id,))
            db.execute("INSERT OR REPLACE INTO fanout_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            db.executemany(
                f"INSERT INTO fanout_answers (run_id, position, {', '.join(ANSWER_COLUMNS)}) "
                f"VALUES ({marks})",
                answers,
            )
            db.execute("COMMIT")

    def load(self, ref: str) -> SavedRun:
        """A run by its id, a unique start of it, or `last`."""
        with self._db() as db:
            run_id = self._find(db, ref)
            head = db.execute("SELECT * FROM fanout_runs WHERE run_id = ?", (run_id,)).fetchone()
            rows = db.execute(
                "SELECT * FROM fanout_answers WHERE run_id = ? ORDER BY position", (run_id,)
            ).fetchall()
        run = FanoutRun(
            run_id=run_id,
            prompt=head["prompt"],
            settings=Settings(**json.loads(head["settings"])),
            answers=[_answer(r) for r in rows],
            started_at=head["started_at"],
            duration=head["duration"],
            interrupted=bool(head["interrupted"]),
            deadline_passed=bool(head["deadline_passed"]),
            roles=json.loads(head["roles"]),
        )
        return SavedRun(run, json.loads(head["extras"]))

    def recent(self, limit: int = 10) -> list[RunSummary]:
        with self._db() as db:
            rows = db.execute(
                "SELECT r.run_id, r.started_at, r.prompt, COUNT(a.position) AS models "
                "FROM fanout_runs r LEFT JOIN fanout_answers a ON a.run_id = r.run_id "
                "GROUP BY r.run_id ORDER BY r.started_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [RunSummary(r["run_id"], r["started_at"], r["prompt"], r["models"]) for r in rows]

    def _find(self, db: sqlite3.Connection, ref: str) -> str:
        if ref == "last":
            row = db.execute(
                "SELECT run_id FROM fanout_runs ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise UsageError("no fan-out run has been saved yet")
            return str(row["run_id"])
        found = db.execute(
            "SELECT run_id FROM fanout_runs WHERE run_id = ? OR run_id LIKE ? ESCAPE '\\' "
            "ORDER BY run_id = ? DESC, started_at DESC LIMIT 2",
            (ref, _like_prefix(ref), ref),
        ).fetchall()
        if not found:
            raise UsageError(f"no saved fan-out run {ref!r} (`forge fanout --list` shows them)")
        if len(found) > 1 and found[0]["run_id"] != ref:
            raise UsageError(f"{ref!r} matches more than one run; give more of its id")
        return str(found[0]["run_id"])

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=60, isolation_level=None)) as db:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA busy_timeout = 60000")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                add_missing_columns(db, "fanout_answers", ADDED_COLUMNS)
                yield db
        except sqlite3.Error as exc:
            raise LedgerError(f"fan-out runs at {self.path}: {exc}") from None


def _like_prefix(ref: str) -> str:
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _answer_row(a: Answer) -> tuple[Any, ...]:
    return (
        a.key,
        a.alias,
        a.provider,
        a.model_id,
        a.tier,
        a.role,
        a.prompt_index,
        a.status.value,
        cut(a.text, MAX_STORED_ANSWER),
        a.ttft,
        a.latency,
        a.input_tokens,
        a.output_tokens,
        None if a.cost_usd is None else str(a.cost_usd),
        a.cost_source,
        a.error_kind,
        cut(a.cause, MAX_ERROR_CHARS),
        a.attempts,
        int(a.truncated),
    )


def _answer(r: sqlite3.Row) -> Answer:
    return Answer(
        key=r["key"],
        alias=r["alias"],
        provider=r["provider"],
        model_id=r["model_id"],
        tier=r["tier"],
        role=r["role"],
        prompt_index=r["prompt_index"],
        status=Status(r["status"]),
        pieces=[r["text"]] if r["text"] else [],
        ttft=r["ttft_s"],
        latency=r["latency_s"],
        input_tokens=r["input_tokens"] or 0,
        output_tokens=r["output_tokens"] or 0,
        cost_usd=None if r["cost_usd"] is None else Decimal(r["cost_usd"]),
        cost_source=r["cost_source"],
        error_kind=r["error_kind"],
        cause=r["cause"],
        attempts=r["attempts"] or 0,
        truncated=bool(r["truncated"]),
    )
