"""The ledger on PostgreSQL: one database a team shares, with the same rows and budgets.

Same tables as the SQLite ledger (`attempts`, `breakers`, `discovered`, `flags`, and the tables
other modules keep beside them: runs, tasks, routes), plus who and where: every row records the
user and the host it came from.

A reservation is atomic across every process on every machine. It locks the row of its budget
in `budgets` (`day:<day>` for the team, `day:<day>:user:<name>` for one person, and
`run:<id>` when the run has a budget) with `INSERT ... ON CONFLICT DO UPDATE`, which holds the
row's lock until the transaction ends; then it sums the day's rows, decides, and inserts its own,
and commits. Another reservation against the same budget waits on that lock and, under READ
COMMITTED, its sum sees the row the first one committed. Reservations against other budgets (two
people on `scope = "user"`) do not wait for each other. Locks are always taken in key order, so
two reservations never deadlock.

A reservation whose hold ran out is let go by the database's clock (`clock_timestamp()`), the
one clock every machine shares: a pid means something only on its own host, so only this host's
dead processes are also let go early.

A database that goes away: a reservation that cannot be made is refused with the reason (the call
is not sent); a settlement waits and tries again for `outage_patience` seconds, and the row it
could not settle stays reserved, so it still counts, and is charged at its reservation when its
hold runs out. Nothing is counted twice: a settlement only changes a row still reserved.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from forge.ledger.store import (
    MAX_ERROR_CHARS,
    Database,
    Ledger,
    LedgerError,
    Limits,
    Refusal,
    Reservation,
    Rows,
    Settlement,
    Spend,
    _tokens,
    cut,
    host_name,
    pid_alive,
    refusal,
    today,
    user_name,
)
from forge.ledger.url import mask_url

if TYPE_CHECKING:
    import psycopg

    from forge.providers.types import Cost, Target, Usage

log = logging.getLogger("forge.ledger")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS attempts (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT, task_id TEXT, call_id TEXT, attempt INTEGER,
        provider TEXT NOT NULL, model TEXT NOT NULL, model_id TEXT NOT NULL, tier TEXT,
        day TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        reserved_usd NUMERIC NOT NULL DEFAULT 0,
        expires_at DOUBLE PRECISION, pid INTEGER, host TEXT, username TEXT,
        outcome TEXT, error_kind TEXT, error TEXT,
        latency_s DOUBLE PRECISION, ttft_s DOUBLE PRECISION,
        input_tokens BIGINT, output_tokens BIGINT, cached_tokens BIGINT, reasoning_tokens BIGINT,
        cost_usd NUMERIC, cost_source TEXT,
        finish_reason TEXT, note TEXT,
        origin TEXT UNIQUE
    )""",
    "CREATE INDEX IF NOT EXISTS attempts_day ON attempts(day, username)",
    "CREATE INDEX IF NOT EXISTS attempts_run ON attempts(run_id)",
    "CREATE INDEX IF NOT EXISTS attempts_held ON attempts(status) WHERE status = 'reserved'",
    """CREATE TABLE IF NOT EXISTS budgets (
        key TEXT PRIMARY KEY, touched_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS breakers (
        provider TEXT NOT NULL, model TEXT NOT NULL,
        failures INTEGER NOT NULL, open_until DOUBLE PRECISION NOT NULL,
        last_error TEXT, last_kind TEXT,
        PRIMARY KEY (provider, model)
    )""",
    """CREATE TABLE IF NOT EXISTS discovered (
        provider TEXT NOT NULL, model_id TEXT NOT NULL, info TEXT NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (provider, model_id)
    )""",
    "CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, set_at DOUBLE PRECISION NOT NULL)",
)
# One lock for creating tables: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe when two
# sessions run it at the same moment (both may try to add the table's type).
SCHEMA_LOCK = 0x666F726765  # "forge"
# The database's clock, in the seconds since the epoch the rows hold.
NOW = "extract(epoch FROM clock_timestamp())::double precision"
MISSING_DRIVER = (
    "the PostgreSQL ledger ([ledger] url / FORGE_LEDGER_URL) needs the psycopg driver: "
    "pip install 'forge-cli[postgres]'"
)


def driver() -> Any:
    """psycopg, or a one-line error naming the extra that installs it."""
    try:
        import psycopg
    except ImportError:
        raise LedgerError(MISSING_DRIVER) from None
    return psycopg


class Row(tuple[Any, ...]):
    """A row by position and by column name, as sqlite3.Row is."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    names = [column.name for column in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._index = index
        return row

    return make


def translate(sql: str) -> str:
    """SQLite's dialect as the ledger's modules write it, in PostgreSQL's: `?` placeholders,
    `IS ?` comparisons (true for two NULLs), `INSERT OR IGNORE`."""
    sql = sql.replace("%", "%%").replace("IS ?", "IS NOT DISTINCT FROM ?").replace("?", "%s")
    if sql.lstrip().upper().startswith("INSERT OR IGNORE"):
        sql = sql.replace("OR IGNORE ", "", 1) + " ON CONFLICT DO NOTHING"
    return sql


def table_ddl(statement: str) -> str:
    """A side table's SQLite CREATE statement for PostgreSQL: wide numbers and floats, serial
    ids, and the columns every shared row has: `rowid` (SQLite's implicit order), who and where
    it came from, and `origin`, its identity in the ledger it was copied from."""
    import re

    sql = re.sub(r"\bINTEGER PRIMARY KEY\b", "BIGSERIAL PRIMARY KEY", statement)
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    sql = re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)
    if not re.match(r"\s*CREATE TABLE", sql, re.IGNORECASE):
        return sql
    extra = [
        "username TEXT DEFAULT current_setting('forge.user', true)",
        "host TEXT DEFAULT current_setting('forge.host', true)",
        "origin TEXT UNIQUE",
    ]
    if "BIGSERIAL PRIMARY KEY" not in sql:
        extra.insert(0, "rowid BIGSERIAL")
    head, _, _ = sql.rstrip().rpartition(")")
    return f"{head.rstrip()},\n        {', '.join(extra)}\n    )"


class Connection:
    """psycopg's connection behind the `Database` face the ledger's modules use."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Any = (), /) -> Rows:
        return self.raw.execute(translate(sql), parameters or None)

    def executemany(self, sql: str, parameters: Any, /) -> Rows:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), parameters)
        return cursor


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database (`[ledger] url`), shared by a team."""

    def __init__(
        self,
        url: str,
        *,
        home: Path,
        scope: Literal["user", "team"] = "user",
        outage_patience: float = 30.0,
    ) -> None:
        self.url = url
        self.scope = scope
        # Seconds a settlement, and a write or read of the runs' tables, waits for a database
        # that went away once the ledger was open (`[ledger] outage_wait_s`). A reservation
        # never waits: its call is refused.
        self.outage_patience = outage_patience
        # Tables that stay on this machine (saved fan-out runs) keep using the SQLite file.
        self.path = home / "ledger.db"
        self.user = user_name()
        self.host = host_name()
        self._psycopg = driver()
        self._lock = threading.Lock()
        self._held = _Held()
        self._side_tables: set[str] = set()
        with self._transaction() as db:
            db.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            for statement in SCHEMA:
                db.execute(statement)
        self._finalizer = weakref.finalize(self, _close, self._held, self._lock)

    # -- connection ------------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return True

    @property
    def where(self) -> str:
        return mask_url(self.url)

    def _fail(self, exc: BaseException, doing: str = "failed") -> LedgerError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return LedgerError(f"the ledger at {self.where} {doing}: {mask_url(detail)}")

    def _connection(self) -> psycopg.Connection[Any]:
        raw = self._held.raw
        if raw is not None and not raw.closed and not raw.broken:
            return raw
        self._drop()
        pg = self._psycopg
        try:
            raw = pg.connect(
                self.url,
                autocommit=True,
                connect_timeout=5,
                application_name="forge",
                row_factory=_row_factory,
            )
            raw.execute(
                "SELECT set_config('forge.user', %s, false), set_config('forge.host', %s, false)",
                (self.user, self.host),
            )
        except pg.Error as exc:
            raise self._fail(exc, "cannot be reached") from None
        self._held.raw = raw
        return cast("psycopg.Connection[Any]", raw)

    def _drop(self) -> None:
        self._held.drop()

    def _begin(self, wait: float) -> psycopg.Connection[Any]:
        """A connection in a new transaction. One the server dropped since its last use (a
        restart) is found at BEGIN and replaced at once; a database that cannot be reached is
        tried again for `wait` seconds."""
        deadline = time.monotonic() + wait
        pause = 0.0
        while True:
            try:
                raw = self._connection()
                raw.execute("BEGIN")
                return raw
            except (self._psycopg.Error, LedgerError) as exc:
                self._drop()
                if time.monotonic() + pause > deadline and pause:
                    error = exc if isinstance(exc, LedgerError) else self._fail(exc)
                    if wait:
                        error = LedgerError(
                            f"{error} (waited {wait:g} s for it: [ledger] outage_wait_s)"
                        )
                    raise error from None
            time.sleep(pause)
            pause = min(1.0, pause * 2 or 0.05)

    @contextmanager
    def _transaction(self, wait: float = 0.0) -> Iterator[Connection]:
        """One transaction; a failure in it rolls it back and says why (LedgerError)."""
        psycopg = self._psycopg
        with self._lock:
            raw = self._begin(wait)
            try:
                yield Connection(raw)
                raw.execute("COMMIT")
            except psycopg.Error as exc:
                self._rollback(raw)
                raise self._fail(exc) from None
            except BaseException:
                self._rollback(raw)
                raise

    def _rollback(self, raw: psycopg.Connection[Any]) -> None:
        try:
            raw.execute("ROLLBACK")
        except Exception:  # the connection is gone: so is its transaction
            self._drop()

    def transaction(self) -> AbstractContextManager[Database]:
        # The runs' and routes' writes wait out a short outage rather than end a run.
        return self._transaction(self.outage_patience)

    def reading(self) -> AbstractContextManager[Database]:
        # A transaction of its own: one snapshot, and the same wait for the database.
        return self._transaction(self.outage_patience)

    def close(self) -> None:
        self._finalizer.detach()
        with self._lock:
            self._drop()

    def create_tables(self, name: str, statements: Sequence[str]) -> None:
        if name in self._side_tables:
            return
        with self._transaction() as db:
            db.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            for statement in statements:
                db.execute(table_ddl(statement))
        self._side_tables.add(name)

    # -- budgets ---------------------------------------------------------------------------------

    def _day_filter(self) -> tuple[str, tuple[str, ...]]:
        if self.scope == "team":
            return "day = ?", ()
        return "day = ? AND username = ?", (self.user,)

    def _day_key(self, day: str) -> str:
        return f"day:{day}" if self.scope == "team" else f"day:{day}:user:{self.user}"

    def reserve(
        self,
        target: Target,
        amount: Decimal,
        limits: Limits,
        *,
        run_id: str | None = None,
        task_id: str | None = None,
        call_id: str | None = None,
        attempt: int = 1,
        hold_seconds: float = 900.0,
    ) -> Reservation | Refusal:
        """Hold `amount` for one attempt under its budget rows' locks, or refuse it. A ledger
        that cannot be reached refuses too: a call that cannot be reserved is not sent."""
        try:
            return self._reserve(
                target, amount, limits, run_id, task_id, call_id, attempt, hold_seconds
            )
        except LedgerError as exc:
            return Refusal("budget", f"budget: cannot reserve, so the call was not sent: {exc}")

    def _reserve(
        self,
        target: Target,
        amount: Decimal,
        limits: Limits,
        run_id: str | None,
        task_id: str | None,
        call_id: str | None,
        attempt: int,
        hold_seconds: float,
    ) -> Reservation | Refusal:
        day = today()
        keys = [self._day_key(day)]
        if limits.run_stop is not None and run_id is not None:
            keys.append(f"run:{run_id}")
        with self._transaction() as db:
            for key in sorted(keys):  # one order everywhere: no deadlock
                db.execute(
                    "INSERT INTO budgets (key) VALUES (?) "
                    "ON CONFLICT (key) DO UPDATE SET touched_at = now()",
                    (key,),
                )
            now = float(db.execute(f"SELECT {NOW}").fetchone()[0])
            self._expire(db, now)
            refusal = self._check(db, target, amount, limits, run_id, day)
            values = (
                run_id, task_id, call_id, attempt, target.provider, target.alias,
                target.model_id, target.tier, day, now, os.getpid(), self.host, self.user,
            )  # fmt: skip
            columns = (
                "run_id, task_id, call_id, attempt, provider, model, model_id, tier, day, "
                "started_at, pid, host, username"
            )
            if refusal is not None:
                db.execute(
                    f"INSERT INTO attempts ({columns}, status, outcome, error_kind, error, "
                    "cost_usd, cost_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "'settled', 'refused', ?, ?, 0, 'computed')",
                    (*values, refusal.kind, refusal.reason),
                )
                return refusal
            row = db.execute(
                f"INSERT INTO attempts ({columns}, status, reserved_usd, expires_at) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?) RETURNING id",
                (*values, amount, now + hold_seconds),
            ).fetchone()
            return Reservation(int(row[0]), amount)

    def _spend_where(
        self, db: Database, where: str, args: tuple[Any, ...], provider: str = ""
    ) -> Spend:
        row = db.execute(
            "SELECT "
            "COALESCE(SUM(cost_usd) FILTER (WHERE status = 'settled' AND cost_usd IS NOT NULL "
            "  AND outcome IS DISTINCT FROM 'refused'), 0), "
            "COALESCE(SUM(reserved_usd) FILTER (WHERE status = 'reserved'), 0), "
            "COUNT(*) FILTER (WHERE status = 'settled' AND cost_usd IS NULL "
            "  AND outcome IS DISTINCT FROM 'refused'), "
            "COUNT(*) FILTER (WHERE provider = ? AND outcome IS DISTINCT FROM 'refused') "
            f"FROM attempts WHERE {where}",
            (provider, *args),
        ).fetchone()
        sent = {provider: int(row[3])} if provider and row[3] else {}
        return Spend(Decimal(row[0]), Decimal(row[1]), int(row[2]), sent)

    def _day_spend(self, db: Database, day: str, provider: str = "") -> Spend:
        where, args = self._day_filter()
        return self._spend_where(db, where, (day, *args), provider)

    def _check(  # type: ignore[override]
        self,
        db: Database,
        target: Target,
        amount: Decimal,
        limits: Limits,
        run_id: str | None,
        day: str,
    ) -> Refusal | None:
        spend = self._day_spend(db, day, target.provider)
        whose = "the team's" if self.scope == "team" else f"{self.user}'s"
        run = None
        if limits.run_stop is not None and run_id is not None:
            run = self._spend_where(db, "run_id = ?", (run_id,))
        return refusal(amount, spend, run, limits, target.provider, f"{whose} spend today")

    def _expire(self, db: Database, now: float) -> None:
        """Let go of reservations whose hold ran out by the database's clock, and of this
        host's whose process is gone; each is charged its reservation, never $0."""
        dead = [
            int(row[0])
            for row in db.execute(
                "SELECT id FROM attempts WHERE status = 'reserved' AND expires_at < ?", (now,)
            )
        ]
        mine = db.execute(
            "SELECT id, pid FROM attempts WHERE status = 'reserved' AND host = ? AND pid <> ?",
            (self.host, os.getpid()),
        ).fetchall()
        alive: dict[int, bool] = {}
        for row_id, pid in mine:
            if pid and alive.setdefault(pid, pid_alive(int(pid))) is False:
                dead.append(int(row_id))
        if dead:
            db.execute(
                "UPDATE attempts SET status = 'settled', outcome = 'abandoned', "
                "cost_usd = reserved_usd, cost_source = 'computed', "
                "error = 'not settled by the process that reserved it (it ended, or its hold "
                "ran out by the database clock); charged at its reservation' "
                "WHERE id = ANY(?) AND status = 'reserved'",
                (sorted(set(dead)),),
            )

    def settle(
        self,
        reservation: Reservation,
        *,
        outcome: str,
        usage: Usage | None = None,
        cost: Cost | None = None,
        latency: float | None = None,
        ttft: float | None = None,
        error_kind: str | None = None,
        error: str | None = None,
        warn_at: Decimal | None = None,
        finish_reason: str | None = None,
        note: str | None = None,
    ) -> Settlement:
        """As the SQLite ledger settles; while the database is away it tries again for
        `outage_patience` seconds, then leaves the row reserved (still counted) and says so."""
        from forge.providers.types import Cost, Usage

        usage = usage or Usage()
        cost = cost or Cost(Decimal(0), "computed")
        values = (
            outcome, error_kind, cut(error, MAX_ERROR_CHARS), latency, ttft,
            _tokens(usage.input_tokens), _tokens(usage.output_tokens),
            _tokens(usage.cached_tokens), _tokens(usage.reasoning_tokens),
            cost.usd, cost.source, cut(finish_reason, 100), cut(note, MAX_ERROR_CHARS),
            reservation.id,
        )  # fmt: skip
        deadline = time.monotonic() + self.outage_patience
        wait = 0.1
        while True:
            try:
                return self._settle(values, warn_at)
            except LedgerError as exc:
                if time.monotonic() + wait > deadline:
                    log.warning(
                        "%s; attempt %s stays reserved and is charged at its reservation "
                        "($%s) when its hold runs out",
                        exc,
                        reservation.id,
                        reservation.amount,
                    )
                    return Settlement(False, Decimal(0))
                time.sleep(wait)
                wait = min(1.0, wait * 2)

    def _settle(self, values: tuple[Any, ...], warn_at: Decimal | None) -> Settlement:
        day = today()
        with self._transaction() as db:
            # Only a row still reserved (or let go as abandoned) takes the real figures: a
            # settlement that reached the database before its connection broke is not redone.
            db.execute(
                "UPDATE attempts SET status = 'settled', outcome = ?, error_kind = ?, error = ?, "
                "latency_s = ?, ttft_s = ?, input_tokens = ?, output_tokens = ?, "
                "cached_tokens = ?, reasoning_tokens = ?, cost_usd = ?, cost_source = ?, "
                "finish_reason = ?, note = ? "
                "WHERE id = ? AND (status = 'reserved' OR outcome = 'abandoned')",
                values,
            )
            spent = self._day_spend(db, day).settled
            warned = False
            if warn_at is not None and spent >= warn_at:
                flag = f"warned:{self._day_key(day)}"
                inserted = db.execute(
                    f"INSERT INTO flags (name, set_at) VALUES (?, {NOW}) "
                    "ON CONFLICT DO NOTHING RETURNING name",
                    (flag,),
                ).fetchone()
                warned = inserted is not None
        return Settlement(warn_crossed=warned, spent_today=spent)

    def spend_today(self) -> Spend:
        with self._transaction() as db:
            self._expire(db, float(db.execute(f"SELECT {NOW}").fetchone()[0]))
            return self._day_spend(db, today())

    def spend_of_run(self, run_id: str) -> Spend:
        with self._transaction() as db:
            self._expire(db, float(db.execute(f"SELECT {NOW}").fetchone()[0]))
            return self._spend_where(db, "run_id = ?", (run_id,))

    # -- breakers and discovery ------------------------------------------------------------------

    def save_breaker(
        self,
        provider: str,
        model: str,
        failures: int,
        open_until: float,
        last_error: str | None,
        last_kind: str | None = None,
    ) -> None:
        try:
            self._save_breaker(provider, model, failures, open_until, last_error, last_kind)
        except LedgerError as exc:
            # The breaker in this process still holds; other processes learn of it later.
            log.warning("%s; the breaker of %s/%s is not shared", exc, provider, model)

    def _save_breaker(
        self,
        provider: str,
        model: str,
        failures: int,
        open_until: float,
        last_error: str | None,
        last_kind: str | None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO breakers (provider, model, failures, open_until, last_error, "
                "last_kind) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (provider, model) DO "
                "UPDATE SET failures = excluded.failures, last_error = excluded.last_error, "
                "last_kind = excluded.last_kind, "
                "open_until = GREATEST(breakers.open_until, excluded.open_until)",
                (provider, model, failures, open_until, last_error, last_kind),
            )

    def save_discovered(self, provider: str, models: list[dict[str, Any]]) -> None:
        import json

        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM discovered WHERE provider = ?", (provider,))
            db.executemany(
                "INSERT INTO discovered VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(provider, info["id"], json.dumps(info), now) for info in models],
            )


class _Held:
    """The ledger's one connection, apart from the ledger so that closing it at exit or
    collection does not keep the ledger alive."""

    def __init__(self) -> None:
        self.raw: psycopg.Connection[Any] | None = None

    def drop(self) -> None:
        raw, self.raw = self.raw, None
        if raw is not None:
            with contextlib.suppress(Exception):  # a connection already gone: nothing to close
                raw.close()


def _close(held: _Held, lock: threading.Lock) -> None:
    """Close the connection when the ledger is collected or the process exits."""
    if lock.acquire(timeout=1.0):
        try:
            held.drop()
        finally:
            lock.release()
