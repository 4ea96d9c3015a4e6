"""A throw-away PostgreSQL server for the tests of the team ledger (Debian's `postgresql` package).

One cluster per test session and xdist worker: `initdb` in a temporary folder, `pg_ctl start` on a
free port of 127.0.0.1 with password (scram-sha-256) authentication, stopped and deleted at the end.
PostgreSQL refuses to run as root and CI runs as root, so the server runs as an unprivileged user
(`postgres` when the package made it, else `forge-pg`, created here) that owns the folder.

Fixtures (registered for every test file by tests/conftest.py):
- `postgres_server` (session): the running `PostgresServer`; `.restart()` stops and starts it on
  the same port and data, as a database restarted mid-run; `.stop()` / `.start()` separately.
- `postgres_url` (session): `postgresql://forge:PASSWORD@127.0.0.1:PORT/forge`, the server's
  own database, shared by the worker's tests.
- `postgres_database` (function): the URL of a new, empty database of its own for one test.

A server that cannot be set up raises: the fixture fails, it never skips.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "pg-" + secrets.token_hex(8)  # a fresh secret, so tests can look for it in output
USER = "forge"
DATABASE = "forge"
SERVICE_USERS = ("postgres", "forge-pg")
_databases = itertools.count(1)


class PostgresSetupError(RuntimeError):
    """The test server could not be made or started; the message carries its log's tail."""


def bin_dir() -> Path:
    """Where Debian keeps the server's programs: /usr/lib/postgresql/<newest version>/bin."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PostgresSetupError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "apt-get install postgresql (.ci/run does)"
        )
    return versions[-1]


def service_user() -> str | None:
    """The unprivileged user the server runs as when the tests run as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in SERVICE_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    name = SERVICE_USERS[-1]
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster in a temporary folder, owned and run by an unprivileged user."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.user = service_user()
        self.root = Path(tempfile.mkdtemp(prefix="forge-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        done = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise PostgresSetupError(
                f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}"
            )

    def create(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n", encoding="utf-8")
        if self.user:
            shutil.chown(self.root, self.user)
            shutil.chown(pwfile, self.user)
        self.root.chmod(0o700)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "--pwfile",
            str(pwfile),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        pwfile.unlink()
        self.start()
        self.create_database(DATABASE)

    def start(self) -> None:
        """Start (or start again) on the same port and data; returns once it takes connections.

        fsync is off (an operating system crash may lose data; a killed server does not), but
        commits stay synchronous: a commit acknowledged must survive `restart()`, as on a real
        server, or a test of a restarted database would see rows vanish."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """As a database that goes away mid-run: every open connection is cut, then it returns."""
        self.stop("immediate")
        self.start()

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        admin = self.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(PostgresSetupError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.create()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    """A database of this test's own, so tests sharing the server never see each other's rows."""
    return postgres_server.create_database(f"t{os.getpid()}_{next(_databases)}")
