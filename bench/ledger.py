"""The ledger's reservations: SQLite against PostgreSQL, one run, as ratios.

Each worker process opens the ledger and makes CALLS reserve-then-settle pairs against a daily
stop that never binds, as fast as it can (no model behind them: this is the ledger's own cost).
It is run with 1 and with P processes at once, on the SQLite file and on a throw-away PostgreSQL
cluster (tests/postgres_server.py, on 127.0.0.1; run as root, it runs the server as an
unprivileged user). For PostgreSQL both budget scopes are measured: `team` (every process
waits for the one budget row) and `user` (one row per person; here every process is a person of
its own, so none waits for another).

    python bench/ledger.py [--calls 300] [--processes 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).parents[1]


def worker(calls: int, url: str, scope: str) -> None:
    from forge.ledger import Ledger, Limits
    from forge.ledger.store import Reservation
    from forge.providers.types import Cost, Target

    ledger = Ledger.open(url=url or None, scope="team" if scope == "team" else "user")
    target = Target(alias="alpha", provider="fake", model_id="alpha-1", tier="free")
    limits = Limits(day_stop=Decimal(10**9))
    for _ in range(calls):
        held = ledger.reserve(target, Decimal("0.01"), limits, run_id="bench")
        assert isinstance(held, Reservation), held
        ledger.settle(held, outcome="ok", cost=Cost(Decimal("0.005"), "computed"))
    ledger.close()


def measure(processes: int, calls: int, url: str, scope: str, home: Path) -> float:
    """Pairs a second, all processes together (start-up excluded: each waits for a go)."""
    home.mkdir(parents=True, exist_ok=True)
    go = home / "go"
    code = (
        "import sys, pathlib, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from bench.ledger import worker\n"
        f"go = pathlib.Path({str(go)!r})\n"
        "import forge.ledger.store, forge.providers.types\n"
        "print('ready', flush=True)\n"
        "while not go.exists(): time.sleep(0.001)\n"
        f"worker({calls}, {url!r}, {scope!r})\n"
    )
    procs = []
    for index in range(processes):
        env = {**os.environ, "FORGE_HOME": str(home), "FORGE_USER": f"user{index}"}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
            )
        )
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    go.touch()
    for p in procs:
        p.wait()
        assert p.returncode == 0
    return processes * calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.postgres_server import PostgresServer

    server = PostgresServer()
    server.create()
    try:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in (1, args.processes):
                sqlite = measure(n, args.calls, "", "team", Path(tmp) / f"sqlite-{n}")
                for scope in ("team", "user"):
                    url = server.create_database(f"bench_{n}_{scope}")
                    pg = measure(n, args.calls, url, scope, Path(tmp) / f"pg-{n}-{scope}")
                    rows.append((n, scope, sqlite, pg))
    finally:
        server.destroy()
    cores = os.cpu_count()
    print(f"reserve+settle pairs a second, {args.calls} per process ({cores} cores)")
    print(f"{'processes':>9}  {'pg scope':>8}  {'sqlite':>8}  {'postgres':>8}  {'pg/sqlite':>9}")
    for n, scope, sqlite, pg in rows:
        print(f"{n:>9}  {scope:>8}  {sqlite:>8.0f}  {pg:>8.0f}  {pg / sqlite:>9.2f}")


if __name__ == "__main__":
    main()
