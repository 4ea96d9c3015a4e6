"""What routing has learnt: how often each tier got each kind of task right the first time.

The ledger's `attempts` table knows models and outcomes but not what kind of task a call was
for. A `routes` table beside it (same SQLite file, created here) records each routed task's
type, band and first tier; joined with `attempts` on the task, it gives the first-attempt
success rate per (type, band, tier) in each repository.

A route's first attempt succeeded when `first_attempt_ok` says so (set by the run once the
attempt passed validation, `record_first_attempt`), else when the task's first attempt row in
the ledger has outcome `ok`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forge.ledger.store import Ledger, SideTables

if TYPE_CHECKING:
    from forge.routing.decision import RouteDecision

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS routes (
        id INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL, run_id TEXT, repo TEXT NOT NULL,
        type TEXT NOT NULL, band TEXT NOT NULL, tier TEXT NOT NULL, model TEXT,
        created_at REAL NOT NULL,
        first_attempt_ok INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS routes_kind ON routes(repo, type, band)",
    "CREATE INDEX IF NOT EXISTS routes_task ON routes(task_id, run_id)",
    # The join below looks attempts up by task; the ledger itself never needed that index.
    "CREATE INDEX IF NOT EXISTS attempts_task ON attempts(task_id)",
)
RATES = """
SELECT r.type, r.band, r.tier, r.first_attempt_ok,
    (SELECT a.outcome FROM attempts a
     WHERE a.task_id = r.task_id AND (r.run_id IS NULL OR a.run_id = r.run_id)
       AND a.outcome IS NOT NULL AND a.outcome != 'refused'
     ORDER BY a.started_at, a.id LIMIT 1) AS first_outcome
FROM routes r WHERE r.repo = ?
"""
MIN_SAMPLES = 5
STEP_UP_BELOW = 0.5
CHEAPER_HINT_FROM = 0.8


@dataclass(frozen=True)
class Record:
    """First-attempt outcomes of one tier on one kind of task."""

    successes: int
    samples: int

    @property
    def rate(self) -> float:
        return self.successes / self.samples if self.samples else 0.0

    def __str__(self) -> str:
        return f"{self.successes}/{self.samples} ({self.rate:.0%})"


@dataclass(frozen=True)
class HistoryRates:
    """First-attempt records keyed by (type, band, tier) for one repository."""

    records: dict[tuple[str, str, str], Record] = field(default_factory=dict)

    def get(self, task_type: str, band: str, tier: str) -> Record | None:
        return self.records.get((task_type, band, tier))

    def keeps_failing(self, task_type: str, band: str, tier: str) -> Record | None:
        """The record when `tier` fails this kind of task too often to start there."""
        found = self.get(task_type, band, tier)
        if found and found.samples >= MIN_SAMPLES and found.rate < STEP_UP_BELOW:
            return found
        return None

    def does_well(self, task_type: str, band: str, tier: str) -> Record | None:
        found = self.get(task_type, band, tier)
        if found and found.samples >= MIN_SAMPLES and found.rate >= CHEAPER_HINT_FROM:
            return found
        return None


class RouteHistory(SideTables):
    """The `routes` table in the ledger's database file."""

    SCHEMA = SCHEMA

    def record(
        self,
        *,
        task_id: str,
        run_id: str | None,
        repo: str,
        task_type: str,
        band: str,
        tier: str,
        model: str | None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO routes (task_id, run_id, repo, type, band, tier, model, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, run_id, repo, task_type, band, tier, model, time.time()),
            )

    def record_first_attempt(self, *, task_id: str, run_id: str | None, ok: bool) -> None:
        """What validation said of the task's first attempt (an `ok` call can still fail it)."""
        with self._connect() as db:
            db.execute(
                "UPDATE routes SET first_attempt_ok = ? WHERE task_id = ? AND run_id IS ?",
                (int(ok), task_id, run_id),
            )

    def rates(self, repo: str) -> HistoryRates:
        counts: dict[tuple[str, str, str], tuple[int, int]] = {}
        with self._reading() as db:
            rows = db.execute(RATES, (repo,)).fetchall()
        for task_type, band, tier, validated, first_outcome in rows:
            if validated is None and first_outcome is None:
                continue  # never ran, or still running
            ok = bool(validated) if validated is not None else first_outcome == "ok"
            successes, samples = counts.get((task_type, band, tier), (0, 0))
            counts[(task_type, band, tier)] = (successes + ok, samples + 1)
        return HistoryRates({key: Record(*value) for key, value in counts.items()})


def record_route(
    ledger: Ledger,
    decision: RouteDecision,
    *,
    task_id: str,
    run_id: str | None,
    repo: str,
) -> None:
    """Remember where a task was sent first, so later routes can learn from how it went."""
    RouteHistory(ledger).record(
        task_id=task_id,
        run_id=run_id,
        repo=repo,
        task_type=decision.analysis.type,
        band=decision.analysis.band,
        tier=decision.first.rung,
        model=decision.first.model,
    )
