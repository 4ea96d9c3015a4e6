"""The ledger: one SQLite row per model attempt, and budgets held by reservation.

Several forge processes share one database (WAL, busy timeout). A reservation is an attempt row
in state `reserved` holding the call's worst-case cost; it is taken inside `BEGIN IMMEDIATE`, so
two processes can never both see room that only one of them fits in. Settling replaces the
reservation with the real cost. A reservation whose process died, or whose time ran out, stops
counting and is marked `abandoned`, never deleted.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import statistics
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from forge.errors import ExitCode, ForgeError
from forge.home import forge_home
from forge.providers.accounting import TRUNCATED, Cost, Target, Usage

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    run_id TEXT, task_id TEXT, call_id TEXT, attempt INTEGER,
    provider TEXT NOT NULL, model TEXT NOT NULL, model_id TEXT NOT NULL, tier TEXT,
    day TEXT NOT NULL, started_at REAL NOT NULL,
    status TEXT NOT NULL,
    reserved_usd TEXT NOT NULL DEFAULT '0',
    expires_at REAL, pid INTEGER, host TEXT,
    outcome TEXT, error_kind TEXT, error TEXT,
    latency_s REAL, ttft_s REAL,
    input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER, reasoning_tokens INTEGER,
    cost_usd TEXT, cost_source TEXT,
    finish_reason TEXT, note TEXT
);
CREATE INDEX IF NOT EXISTS attempts_day ON attempts(day);
CREATE INDEX IF NOT EXISTS attempts_run ON attempts(run_id);
CREATE INDEX IF NOT EXISTS attempts_held ON attempts(status) WHERE status = 'reserved';
CREATE TABLE IF NOT EXISTS breakers (
    provider TEXT NOT NULL, model TEXT NOT NULL,
    failures INTEGER NOT NULL, open_until REAL NOT NULL, last_error TEXT, last_kind TEXT,
    PRIMARY KEY (provider, model)
);
CREATE TABLE IF NOT EXISTS discovered (
    provider TEXT NOT NULL, model_id TEXT NOT NULL, info TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (provider, model_id)
);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, set_at REAL NOT NULL);
"""

# Columns added since the first ledgers were written; an older file gets them on open.
ADDED_COLUMNS = {
    "attempts": {"finish_reason": "TEXT", "note": "TEXT", "username": "TEXT"},
    "breakers": {"last_kind": "TEXT"},
}
# What the ledger keeps of a provider's error message: enough to read, never megabytes.
MAX_ERROR_CHARS = 4000


def host_name() -> str:
    """The machine a row comes from: FORGE_HOST (a CI runner's name, say), else the host name."""
    return os.environ.get("FORGE_HOST") or socket.gethostname()


def user_name() -> str:
    """Who made a call: FORGE_USER, else the login name (a shared ledger sums spend by it)."""
    try:
        return os.environ.get("FORGE_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return f"uid{os.getuid()}"


HOST = host_name()


class Rows(Protocol):
    """What a statement returns on either backend (an sqlite3 or a psycopg cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """A connection as the modules that keep tables in the ledger use it: `?` placeholders,
    rows readable by column name and by position, on SQLite or on PostgreSQL."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Rows: ...

    def executemany(self, sql: str, parameters: Any, /) -> Rows: ...


def add_missing_columns(db: sqlite3.Connection, table: str, columns: Mapping[str, str]) -> None:
    """Bring a table a forge before these columns made up to date (SQLite adds them empty)."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def cut(text: str | None, limit: int) -> str | None:
    """`text`, or its first `limit` characters and a note of what was left out."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {len(text) - limit} more characters not stored]"


def ledger_home(env: Mapping[str, str] | None = None) -> Path:
    """The folder of the ledger: forge's home (FORGE_HOME or the XDG state folder)."""
    return forge_home(env)


def today(at: float | None = None) -> str:
    """Budgets are per person per local calendar day."""
    return time.strftime("%Y-%m-%d", time.localtime(at))


@dataclass(frozen=True)
class Limits:
    """The ceilings a reservation must fit under; None means no limit."""

    day_stop: Decimal | None = None
    run_stop: Decimal | None = None
    provider_requests_per_day: int | None = None


@dataclass(frozen=True)
class Reservation:
    id: int
    amount: Decimal


@dataclass(frozen=True)
class Refusal:
    kind: str  # "budget" or "quota"
    reason: str


@dataclass(frozen=True)
class SavedBreaker:
    """A model's circuit breaker as the ledger holds it, for every forge process to respect."""

    failures: int
    open_until: float  # time.time()
    last_error: str | None
    last_kind: str | None  # the FailureKind value of the last failure


@dataclass(frozen=True)
class Settlement:
    warn_crossed: bool
    spent_today: Decimal


@dataclass(frozen=True)
class AttemptRow:
    id: int
    run_id: str | None
    task_id: str | None
    provider: str
    model: str
    model_id: str
    tier: str | None
    started_at: float
    outcome: str | None
    error_kind: str | None
    error: str | None
    latency_s: float | None
    ttft_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    cost_usd: Decimal | None
    cost_source: str | None
    status: str
    finish_reason: str | None = None
    note: str | None = None  # e.g. why the provider's usage was not trusted
    username: str | None = None  # who made the call (None in rows older than the column)
    host: str | None = None

    @property
    def truncated(self) -> bool:
        """The answer stopped at its token limit."""
        return self.finish_reason in TRUNCATED


@dataclass
class ModelStats:
    calls: int = 0
    errors: int = 0
    median_latency: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


@dataclass
class Spend:
    """Today's money, as the budget sees it."""

    settled: Decimal = Decimal(0)
    held: Decimal = Decimal(0)
    unpriced_calls: int = 0
    sent_by_provider: dict[str, int] = field(default_factory=dict)


def _count(spend: Spend, row: Any, sign: Literal[1, -1]) -> None:
    """What one attempt row adds to a spend: sent unless refused, then held while reserved,
    else its cost (or one unpriced call)."""
    if row["outcome"] == "refused":
        return
    provider = row["provider"]
    spend.sent_by_provider[provider] = spend.sent_by_provider.get(provider, 0) + sign
    if row["status"] == "reserved":
        spend.held += sign * Decimal(row["reserved_usd"])
    elif row["cost_usd"] is not None:
        spend.settled += sign * Decimal(row["cost_usd"])
    else:
        spend.unpriced_calls += sign


def refusal(
    amount: Decimal,
    day: Spend,
    run: Spend | None,
    limits: Limits,
    provider: str,
    spent: str = "today's spend",
) -> Refusal | None:
    """Why a call that may cost `amount` is not sent, or None: the day's stop (`spent` names
    whose day it is), the run's budget (`run`, when it has one), the provider's daily request
    quota. The same rule for every ledger."""
    if limits.day_stop is not None:
        after = day.settled + day.held + amount
        if after > limits.day_stop:
            return Refusal(
                "budget",
                f"budget: this call may cost up to ${amount:.4f}; {spent} "
                f"${day.settled:.4f} plus ${day.held:.4f} held by calls in flight "
                f"would reach ${after:.4f}, over the daily stop threshold "
                f"${limits.day_stop}: ${after - limits.day_stop:.4f} more is needed",
            )
    if limits.run_stop is not None and run is not None:
        after = run.settled + run.held + amount
        if after > limits.run_stop:
            return Refusal(
                "budget",
                f"budget: this call may cost up to ${amount:.4f}; the run has spent "
                f"${run.settled:.4f} plus ${run.held:.4f} in flight, which would reach "
                f"${after:.4f}, over run_budget_usd ${limits.run_stop}: "
                f"${after - limits.run_stop:.4f} more is needed",
            )
    quota = limits.provider_requests_per_day
    sent = day.sent_by_provider.get(provider, 0)
    if quota is not None and sent >= quota:
        return Refusal(
            "quota",
            f"quota: {provider} allows {quota} requests a day and {sent} were sent today",
        )
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tokens(value: Any) -> int | None:
    """A token count SQLite can hold; the provider layer has already refused the rest, and a
    value that still slipped through must not leave the row reserved."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    return None


def column(row: Any, name: str) -> Any:
    """`row[name]`, or None when the row has no such column (a table from an older forge, or
    a column only a shared ledger has). `in row` would look among the values, not the names."""
    return row[name] if name in row.keys() else None  # noqa: SIM118


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class LedgerError(ForgeError):
    """The ledger cannot be opened or written; nothing is sent without it."""

    exit_code = ExitCode.USAGE


def _close_connection(db: sqlite3.Connection, lock: threading.Lock) -> None:
    """Close a ledger's connection when the ledger is gone or the process exits.

    An open connection refers to itself, so without this only the cyclic garbage collector would
    close it (and fold its write-ahead log back into `ledger.db`), and the command line freezes
    what is alive at exit rather than collect it. A daemon thread stopped mid-write would hold
    the lock for ever: then the file stays as a killed process leaves it, which SQLite recovers.
    """
    if lock.acquire(timeout=1.0):
        try:
            db.close()
        finally:
            lock.release()


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Spend by ("day", day) or ("run", run id), kept up to date by this connection's own
        # writes and dropped when another connection commits (PRAGMA data_version): a call
        # costs the same with a thousand rows today as with none.
        self._totals: dict[tuple[str, str], Spend] = {}
        self._version: int | None = None
        self._side_tables: set[str] = set()  # SideTables whose tables this ledger has made
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 60000")
            self._prepare()
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(
                f"cannot open the ledger at {path}: {exc} (set FORGE_HOME to a writable folder)"
            ) from None
        self._closer = weakref.finalize(self, _close_connection, self._db, self._lock)

    def _prepare(self, attempts: int = 200) -> None:
        """Switch to WAL and create the tables.

        SQLite answers "database is locked" at once, without waiting, when two processes switch
        a new database to WAL together; the loser simply tries again.
        """
        for attempt in range(attempts):
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
                with self._write():
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    for table, columns in ADDED_COLUMNS.items():
                        add_missing_columns(self._db, table, columns)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    @classmethod
    def open(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        url: str | None = None,
        scope: Literal["user", "team"] = "user",
        outage_wait: float | None = None,
    ) -> Ledger:
        """The ledger `url` names (`[ledger] url`), else FORGE_LEDGER_URL's, else the SQLite
        file in forge's home. `scope` is `[cost] scope`: whose day a shared ledger's daily
        budget is (one person's, or the team's); `outage_wait` is `[ledger] outage_wait_s`."""
        url = url or (os.environ if env is None else env).get("FORGE_LEDGER_URL") or None
        if url is None:
            return cls(ledger_home(env) / "ledger.db")
        from forge.ledger.url import is_postgres, mask_url

        if not is_postgres(url):
            raise LedgerError(
                f"FORGE_LEDGER_URL / [ledger] url: expected a postgresql:// URL, found "
                f"{mask_url(url)[:40]!r}"
            )
        from forge.ledger.postgres import PostgresLedger

        return PostgresLedger(
            url, home=ledger_home(env), scope=scope, outage_patience=outage_wait or 30.0
        )

    @classmethod
    def configured(cls, config: ForgeConfig) -> Ledger:
        """The ledger a configuration names (`[ledger] url`, `[cost] scope`)."""
        return cls.open(
            url=config.ledger.url,
            scope=config.cost.scope,
            outage_wait=config.ledger.outage_wait_s,
        )

    @property
    def shared(self) -> bool:
        """Whether other people's and machines' calls are in this ledger (PostgreSQL)."""
        return False

    @property
    def where(self) -> str:
        """Where the ledger is, fit to print (a URL's password never is)."""
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            self._closer.detach()
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds SQLite's write lock from its first statement."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._totals.clear()  # they may count a change that did not happen
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def transaction(self) -> AbstractContextManager[Database]:
        """A write transaction on the ledger's own connection, for the tables other modules
        keep in its file (SideTables). One connection for all of them: opening one per row cost
        the event loop a millisecond or more, and another connection's commit made this one
        drop its spend totals (PRAGMA data_version) and count them again on the next call."""
        return self._write()

    def reading(self) -> AbstractContextManager[Database]:
        """The ledger's connection for reads only: no transaction, so nothing waits on them
        (in WAL mode a read takes no lock other writers would wait for)."""
        return self._read()

    def create_tables(self, name: str, statements: Sequence[str]) -> None:
        """Run `statements` (CREATE ... IF NOT EXISTS) once per ledger for the tables `name`."""
        if name in self._side_tables:
            return
        with self.transaction() as db:
            for statement in statements:
                db.execute(statement)
        self._side_tables.add(name)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            yield self._db

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LedgerError(f"the ledger at {self.path} failed: {exc}") from None

    # -- budgets -----------------------------------------------------------------------------

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
        """Hold `amount` for one attempt, or refuse it with the reason, atomically."""
        now = time.time()
        with self._write() as db:
            self._expire(db, now)
            refusal = self._check(db, target, amount, limits, run_id, now)
            row = self._insert(db, target, run_id, task_id, call_id, attempt, now)
            if refusal is not None:
                db.execute(
                    "UPDATE attempts SET status='settled', outcome='refused', error_kind=?, "
                    "error=?, cost_usd='0', cost_source='computed' WHERE id=?",
                    (refusal.kind, refusal.reason, row),
                )
                return refusal
            db.execute(
                "UPDATE attempts SET status='reserved', reserved_usd=?, expires_at=?, pid=?, "
                "host=?, username=? WHERE id=?",
                (str(amount), now + hold_seconds, os.getpid(), HOST, user_name(), row),
            )
            self._account(db, row, +1)
            return Reservation(row, amount)

    def _check(
        self,
        db: sqlite3.Connection,
        target: Target,
        amount: Decimal,
        limits: Limits,
        run_id: str | None,
        now: float,
    ) -> Refusal | None:
        day = self._spend(db, "day", today(now))
        run = None
        if limits.run_stop is not None and run_id is not None:
            run = self._spend(db, "run", run_id)
        return refusal(amount, day, run, limits, target.provider)

    def _spend(self, db: sqlite3.Connection, scope: Literal["day", "run"], key: str) -> Spend:
        """The spend of a day or a run: from the totals this connection keeps, else counted."""
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:  # another connection committed: count again
            self._totals.clear()
            self._version = version
        spend = self._totals.get((scope, key))
        if spend is None:
            spend = Spend()
            column = "day" if scope == "day" else "run_id"
            rows = db.execute(
                "SELECT provider, status, outcome, reserved_usd, cost_usd FROM attempts "
                f"WHERE {column} = ?",
                (key,),
            )
            for row in rows:
                _count(spend, row, +1)
            self._totals[(scope, key)] = spend
        sent = {provider: n for provider, n in spend.sent_by_provider.items() if n}
        return Spend(spend.settled, spend.held, spend.unpriced_calls, sent)

    def _account(self, db: sqlite3.Connection, row_id: int, sign: Literal[1, -1]) -> None:
        """Add (+1) or take away (-1) what row `row_id` counts for in the totals kept: before
        and after a change of this connection, which `data_version` does not report."""
        row = db.execute(
            "SELECT day, run_id, provider, status, outcome, reserved_usd, cost_usd FROM attempts "
            "WHERE id = ?",
            (row_id,),
        ).fetchone()
        for key in (("day", row["day"]), ("run", row["run_id"])):
            spend = self._totals.get(key)
            if spend is not None:
                _count(spend, row, sign)

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        """Stop counting reservations whose process is gone or whose hold ran out.

        This process's own reservations within their hold are alive by definition; each other
        process is asked about once."""
        rows = db.execute(
            "SELECT id, pid, host, expires_at FROM attempts WHERE status = 'reserved' "
            "AND (expires_at IS NULL OR expires_at < ? OR host IS NOT ? OR pid IS NOT ?)",
            (now, HOST, os.getpid()),
        ).fetchall()
        alive: dict[int, bool] = {}
        dead = []
        for row in rows:
            pid = int(row["pid"] or 0)
            if (row["expires_at"] or 0) < now:
                dead.append(row["id"])
            elif row["host"] == HOST and pid:
                if pid not in alive:
                    alive[pid] = pid_alive(pid)
                if not alive[pid]:
                    dead.append(row["id"])
        for row_id in dead:
            self._account(db, row_id, -1)
            # What it spent is unknown: count the worst case it reserved, never $0.
            db.execute(
                "UPDATE attempts SET status='settled', outcome='abandoned', "
                "cost_usd=reserved_usd, cost_source='computed', "
                "error='not settled by the process that reserved it (it ended, or its hold ran "
                "out); charged at its reservation' WHERE id=?",
                (row_id,),
            )
            self._account(db, row_id, +1)

    def _insert(
        self,
        db: sqlite3.Connection,
        target: Target,
        run_id: str | None,
        task_id: str | None,
        call_id: str | None,
        attempt: int,
        now: float,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO attempts (run_id, task_id, call_id, attempt, provider, model, model_id, "
            "tier, day, started_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved')",
            (
                run_id,
                task_id,
                call_id,
                attempt,
                target.provider,
                target.alias,
                target.model_id,
                target.tier,
                today(now),
                now,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

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
        """Replace a reservation with what the attempt really did and cost.

        A row already settled stays as it is (a stream settled when its client closed, then
        closed late by the garbage collector), except one marked abandoned because its hold
        ran out: what the attempt really did replaces that guess.
        """
        usage = usage or Usage()
        cost = cost or Cost(Decimal(0), "computed")
        with self._write() as db:
            now = db.execute(
                "SELECT status, outcome FROM attempts WHERE id = ?", (reservation.id,)
            ).fetchone()
            if now is not None and now["status"] == "settled" and now["outcome"] != "abandoned":
                return Settlement(False, self._spend(db, "day", today()).settled)
            self._account(db, reservation.id, -1)
            db.execute(
                "UPDATE attempts SET status='settled', outcome=?, error_kind=?, error=?, "
                "latency_s=?, ttft_s=?, input_tokens=?, output_tokens=?, cached_tokens=?, "
                "reasoning_tokens=?, cost_usd=?, cost_source=?, finish_reason=?, note=? "
                "WHERE id=?",
                (
                    outcome,
                    error_kind,
                    cut(error, MAX_ERROR_CHARS),
                    latency,
                    ttft,
                    _tokens(usage.input_tokens),
                    _tokens(usage.output_tokens),
                    _tokens(usage.cached_tokens),
                    _tokens(usage.reasoning_tokens),
                    None if cost.usd is None else str(cost.usd),
                    cost.source,
                    cut(finish_reason, 100),
                    cut(note, MAX_ERROR_CHARS),
                    reservation.id,
                ),
            )
            self._account(db, reservation.id, +1)
            day = today()
            spent = self._spend(db, "day", day).settled
            warned = False
            if warn_at is not None and spent >= warn_at:
                flag = f"warned:{day}"
                inserted = db.execute(
                    "INSERT OR IGNORE INTO flags (name, set_at) VALUES (?, ?)", (flag, time.time())
                )
                warned = inserted.rowcount == 1
        return Settlement(warn_crossed=warned, spent_today=spent)

    # -- reading -----------------------------------------------------------------------------

    def attempts(
        self,
        *,
        limit: int | None = 20,
        model: str | None = None,
        run_id: str | None = None,
        since: float | None = None,
    ) -> list[AttemptRow]:
        """Newest first."""
        where: list[str] = ["1=1"]
        args: list[str | float] = []
        for column, value in (("model", model), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("started_at >= ?")
            args.append(since)
        sql = f"SELECT * FROM attempts WHERE {' AND '.join(where)} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.reading() as db:
            rows = db.execute(sql, args).fetchall()
        return [_row(r) for r in rows]

    def model_stats(self, since: float) -> dict[str, ModelStats]:
        """Sent attempts per model alias since `since`: count, errors, median latency."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT model, outcome, latency_s FROM attempts "
                "WHERE started_at >= ? AND outcome IN ('ok', 'error')",
                (since,),
            ).fetchall()
        latencies: dict[str, list[float]] = {}
        stats: dict[str, ModelStats] = {}
        for r in rows:
            entry = stats.setdefault(r["model"], ModelStats())
            entry.calls += 1
            if r["outcome"] == "error":
                entry.errors += 1
            elif r["latency_s"] is not None:
                latencies.setdefault(r["model"], []).append(r["latency_s"])
        for model, values in latencies.items():
            stats[model].median_latency = statistics.median(values)
        return stats

    def spend_today(self) -> Spend:
        """Today's spend, after letting go of reservations whose holders are gone."""
        with self._write() as db:
            self._expire(db, time.time())
            return self._spend(db, "day", today())

    def spend_of_run(self, run_id: str) -> Spend:
        with self._write() as db:
            self._expire(db, time.time())
            return self._spend(db, "run", run_id)

    # -- breakers and discovery ----------------------------------------------------------------

    def save_breaker(
        self,
        provider: str,
        model: str,
        failures: int,
        open_until: float,
        last_error: str | None,
        last_kind: str | None = None,
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO breakers (provider, model, failures, open_until, last_error, "
                "last_kind) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(provider, model) DO "
                "UPDATE SET failures=excluded.failures, last_error=excluded.last_error, "
                "last_kind=excluded.last_kind, open_until=MAX(open_until, excluded.open_until)",
                (provider, model, failures, open_until, last_error, last_kind),
            )

    def breakers(self) -> dict[tuple[str, str], SavedBreaker]:
        with self.reading() as db:
            rows = db.execute("SELECT * FROM breakers").fetchall()
        return {
            (r["provider"], r["model"]): SavedBreaker(
                r["failures"], r["open_until"], r["last_error"], r["last_kind"]
            )
            for r in rows
        }

    def clear_breakers(self, provider: str | None = None, model: str | None = None) -> int:
        """Forget saved breaker state: every model's, or one (provider, model id)'s. Returns
        how many models had some."""
        with self.transaction() as db:
            if provider is None:
                cursor = db.execute("DELETE FROM breakers")
            else:
                cursor = db.execute(
                    "DELETE FROM breakers WHERE provider = ? AND model = ?", (provider, model)
                )
            return cursor.rowcount

    def save_discovered(self, provider: str, models: list[dict[str, Any]]) -> None:
        now = time.time()
        with self._write() as db:
            db.execute("DELETE FROM discovered WHERE provider = ?", (provider,))
            for info in models:
                db.execute(
                    "INSERT OR REPLACE INTO discovered VALUES (?, ?, ?, ?)",
                    (provider, info["id"], json.dumps(info), now),
                )

    def discovered(self) -> dict[str, list[dict[str, Any]]]:
        with self.reading() as db:
            rows = db.execute("SELECT * FROM discovered ORDER BY provider, model_id").fetchall()
        found: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            found.setdefault(r["provider"], []).append(json.loads(r["info"]))
        return found


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived connection to the ledger's file, for the tables other modules keep in it
    (routes, runs): autocommit, a long busy timeout, rows by name, errors as LedgerError."""
    try:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open the ledger at {path}: {exc}") from None
    try:
        db.execute("PRAGMA busy_timeout = 60000")
        # A per-connection setting: the ledger is in WAL mode, where NORMAL survives a killed
        # process and spares a sync of the disk on every row.
        db.execute("PRAGMA synchronous = NORMAL")
        db.row_factory = sqlite3.Row
        yield db
    except sqlite3.Error as exc:
        raise LedgerError(f"the ledger at {path} failed: {exc}") from None
    finally:
        db.close()


class SideTables:
    """Tables another module keeps in the ledger's file (runs, routes): created on first use,
    each write one transaction on the ledger's connection (`_connect`), reads on it without
    one (`_reading`)."""

    SCHEMA: tuple[str, ...] = ()

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.path = ledger.path
        ledger.create_tables(type(self).__qualname__, self.SCHEMA)

    def _connect(self) -> AbstractContextManager[Database]:
        return self.ledger.transaction()

    def _reading(self) -> AbstractContextManager[Database]:
        return self.ledger.reading()


def _row(r: Any) -> AttemptRow:
    return AttemptRow(
        id=r["id"],
        run_id=r["run_id"],
        task_id=r["task_id"],
        provider=r["provider"],
        model=r["model"],
        model_id=r["model_id"],
        tier=r["tier"],
        started_at=r["started_at"],
        outcome=r["outcome"],
        error_kind=r["error_kind"],
        error=r["error"],
        latency_s=r["latency_s"],
        ttft_s=r["ttft_s"],
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cached_tokens=r["cached_tokens"],
        cost_usd=_dec(r["cost_usd"]),
        cost_source=r["cost_source"],
        status=r["status"],
        finish_reason=r["finish_reason"],
        note=r["note"],
        username=r["username"],
        host=r["host"],
    )
