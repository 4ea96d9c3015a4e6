"""Copy one person's SQLite ledger into a team's PostgreSQL ledger, once.

Every copied row carries `origin`: the SQLite ledger's own identity (a UUID it keeps in its
`flags` table, made on the first copy), the table and the row's id there. `origin` is unique in
the team database, so copying the same ledger again inserts nothing it inserted before, and new
rows made since are copied. Reservations still in flight are left out (they are copied once
settled); runs and tasks already in the team database under the same id are kept as they are.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from forge.ledger.postgres import PostgresLedger
from forge.ledger.store import Database, Ledger, LedgerError

# The tables copied, in this order (a run before its tasks), and the rows of each left out.
TABLES = {
    "attempts": "status = 'settled'",
    "runs": "1 = 1",
    "run_tasks": "1 = 1",
    "task_attempts": "1 = 1",
    "routes": "1 = 1",
}
DECIMAL_COLUMNS = {("attempts", "reserved_usd"), ("attempts", "cost_usd")}
IDENTITY_FLAG = "identity:"


@dataclass
class CopyReport:
    source: str
    target: str
    copied: dict[str, int] = field(default_factory=dict)
    already: dict[str, int] = field(default_factory=dict)  # there before: not copied again
    in_flight: int = 0  # reservations not settled yet, left for a later copy

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "copied": self.copied,
            "already_there": self.already,
            "in_flight_left_out": self.in_flight,
        }


def ledger_identity(ledger: Ledger) -> str:
    """The SQLite ledger's own UUID, made the first time it is asked for."""
    with ledger.transaction() as db:
        found = db.execute(
            "SELECT name FROM flags WHERE name LIKE ? ORDER BY set_at LIMIT 1",
            (IDENTITY_FLAG + "%",),
        ).fetchone()
        if found is not None:
            return str(found[0])[len(IDENTITY_FLAG) :]
        made = str(uuid.uuid4())
        db.execute(
            "INSERT INTO flags (name, set_at) VALUES (?, ?)", (IDENTITY_FLAG + made, time.time())
        )
        return made


def copy_ledger(source: Path, target: PostgresLedger) -> CopyReport:
    """Copy the SQLite ledger at `source` into `target`, in one transaction."""
    if not source.exists():
        raise LedgerError(f"no ledger at {source} to copy (set FORGE_HOME, or --from)")
    local = Ledger(source)
    try:
        return _copy(local, target)
    finally:
        local.close()


def _copy(local: Ledger, target: PostgresLedger) -> CopyReport:
    from forge.execution.store import RunStore
    from forge.routing.history import RouteHistory

    identity = ledger_identity(local)
    for ledger in (local, target):  # the run and route tables, made where they are missing
        RunStore(ledger)
        RouteHistory(ledger)
    report = CopyReport(str(local.path), target.where)
    with local.reading() as db:
        report.in_flight = int(
            db.execute("SELECT COUNT(*) FROM attempts WHERE status = 'reserved'").fetchone()[0]
        )
        rows = {
            table: db.execute(
                f"SELECT rowid AS origin_rowid, * FROM {table} WHERE {where} ORDER BY rowid"
            ).fetchall()
            for table, where in TABLES.items()
        }
    with target.transaction() as pg:
        for table, found in rows.items():
            copied = _insert(pg, table, found, identity, target)
            report.copied[table] = copied
            report.already[table] = len(found) - copied
    return report


def _insert(
    pg: Database, table: str, rows: list[Any], identity: str, target: PostgresLedger
) -> int:
    if not rows:
        return 0
    have = {
        r[0]
        for r in pg.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
    }
    skip = ("id", "rowid", "origin", "origin_rowid")
    columns = [c for c in rows[0].keys() if c in have and c not in skip]  # noqa: SIM118
    # Rows from before the ledger recorded who made them are the copier's.
    fill = [c for c in ("username", "host") if c in have and c not in columns]
    marks = ", ".join("?" for _ in (*columns, *fill, "origin"))
    sql = (
        f"INSERT INTO {table} ({', '.join((*columns, *fill, 'origin'))}) VALUES ({marks}) "
        "ON CONFLICT DO NOTHING RETURNING 1"
    )
    defaults = {"username": target.user, "host": target.host}
    copied = 0
    for row in rows:
        values = [_value(table, c, row[c]) for c in columns]
        values = [
            defaults[c] if c in defaults and v is None else v
            for c, v in zip(columns, values, strict=True)
        ]
        values += [defaults[c] for c in fill]
        origin = f"{identity}/{table}/{row['origin_rowid']}"
        copied += pg.execute(sql, (*values, origin)).fetchone() is not None
    return copied


def _value(table: str, column: str, value: Any) -> Any:
    if value is not None and (table, column) in DECIMAL_COLUMNS:
        return Decimal(str(value))
    return value
