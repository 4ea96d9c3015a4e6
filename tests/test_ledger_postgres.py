"""The ledger on PostgreSQL: a team's machines share one budget that concurrency cannot overrun.

Each "machine" is a FORGE_HOME of its own with its own FORGE_USER and FORGE_HOST, pointed at one
database of a real PostgreSQL server (tests/postgres_server.py) by FORGE_LEDGER_URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge
from tests.postgres_server import PASSWORD, PostgresServer
from tests.test_budget import STOP, pricey_config

# One PostgreSQL cluster for the file: its tests run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("postgres")

ROOT = Path(__file__).parents[1]
MACHINES = {"alice": "host-a", "bob": "host-b"}


def machine(tmp_path: Path, user: str, url: str) -> dict[str, str]:
    """The environment of one person's machine using the team database."""
    home = tmp_path / f"machine-{user}"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FORGE_HOME": str(home),
        "FORGE_USER": user,
        "FORGE_HOST": MACHINES[user],
        "FORGE_LEDGER_URL": url,
    }


def team_config(tmp_path: Path, fake_url: str, scope: str = "team", stop: Decimal = STOP) -> Path:
    """test_budget's pricey model ($0.10 a call) under a `stop` threshold of `scope`."""
    config = pricey_config(tmp_path, fake_url)
    text = config.read_text().replace("[cost]\n", f'[cost]\nscope = "{scope}"\n')
    text = text.replace(f"stop_threshold_usd = {STOP}", f"stop_threshold_usd = {stop}")
    config.write_text(text.replace("warn_threshold_usd = 2", f"warn_threshold_usd = {stop}"))
    return config


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql, args).fetchall()  # type: ignore[arg-type]


def settled_by_user(url: str) -> dict[str, Decimal]:
    return {
        user: Decimal(total)
        for user, total in rows(
            url,
            "SELECT username, COALESCE(SUM(cost_usd), 0) FROM attempts "
            "WHERE status = 'settled' AND outcome <> 'refused' GROUP BY username",
        )
    }


def test_two_machines_three_processes_each_never_pass_the_team_stop(
    fake: FakeProvider, tmp_path: Path, postgres_database: str
) -> None:
    """2 machines x 3 processes x 50 concurrent calls, one $3 stop for the team.

    The fake reports more input tokens than the prompt could make, so forge charges each call
    its reservation: spend is then exactly what was reserved, and a reservation that was not
    atomic across the six processes would show as settled spend past the stop."""
    fake.script("alpha-1", Reply(text="ok", input_tokens=100_000, output_tokens=100, ttft=0.3))
    config = team_config(tmp_path, fake.url)
    worker = str(ROOT / "tests" / "budget_worker.py")
    processes = [
        subprocess.Popen(
            [sys.executable, worker, str(config), "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=machine(tmp_path, user, postgres_database),
        )
        for user in MACHINES
        for _ in range(3)
    ]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        assert PASSWORD not in out + err
        outcomes += json.loads(out)

    assert len(outcomes) == 300
    ok = [o for o in outcomes if o["outcome"] == "ok"]
    refused = [o for o in outcomes if o["outcome"] == "refused"]
    assert len(ok) + len(refused) == 300, [o for o in outcomes if o["outcome"] == "failed"]
    assert refused and all("stop threshold" in o["why"] for o in refused)
    assert all("the team's spend today" in o["why"] for o in refused)
    spent = sum((Decimal(o["cost"]) for o in ok), Decimal(0))
    assert spent <= STOP, f"settled ${spent} past the ${STOP} stop"
    most = max(Decimal(o["cost"]) for o in ok)
    assert spent > STOP - most, "the stop was reached: the calls it refused did not fit"
    assert len(fake.requests) == len(ok), "a refused call is never sent"

    # The database holds every call, sent or refused, with who made it and where.
    found = rows(postgres_database, "SELECT username, host, status FROM attempts")
    assert len(found) == 300
    assert {(u, h) for u, h, _ in found} == set(MACHINES.items())
    assert {s for _, _, s in found} == {"settled"}
    by_user = settled_by_user(postgres_database)
    assert sum(by_user.values()) == spent

    # `forge cost` on either machine shows the team's day and each person's share of it.
    alice = machine(tmp_path, "alice", postgres_database)
    shown = run_forge("cost", "--by", "user", "--json", "--config", str(config), env=alice)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["budget_of"] == "the team"
    assert Decimal(report["budget"]["spent_today_usd"]) == spent
    per_person = {u: Decimal(t["cost_usd"]) for u, t in report["today"]["user"].items()}
    assert per_person == by_user
    table = run_forge("cost", "--by", "user", "--config", str(config), env=alice)
    assert "Today (the team)" in table.stdout
    # Whoever spent is named (on a busy machine one machine's processes may take the whole day).
    assert by_user and all(user in table.stdout for user in by_user), table.stdout
    assert PASSWORD not in shown.stdout + shown.stderr + table.stdout + table.stderr
    assert "***" in report["ledger"]

    logs = run_forge("logs", "-n", "500", "--json", env=alice)
    calls = json.loads(logs.stdout)["attempts"]
    assert len(calls) == 300
    assert {(c["username"], c["host"]) for c in calls} == set(MACHINES.items())


def test_each_persons_day_is_their_own_with_scope_user(
    fake: FakeProvider, tmp_path: Path, postgres_database: str
) -> None:
    fake.script("alpha-1", Reply(text="ok", output_tokens=100, ttft=0.2))
    config = team_config(tmp_path, fake.url, scope="user", stop=Decimal(1))
    worker = str(ROOT / "tests" / "budget_worker.py")
    processes = [
        subprocess.Popen(
            [sys.executable, worker, str(config), "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=machine(tmp_path, user, postgres_database),
        )
        for user in MACHINES
    ]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        refused = [o for o in json.loads(out) if o["outcome"] == "refused"]
        assert refused and all("spend today" in o["why"] for o in refused)
    by_user = settled_by_user(postgres_database)
    # Each person had a dollar of their own: together they spent more than one person may.
    assert set(by_user) == set(MACHINES)
    assert all(Decimal("0.5") < spent <= 1 for spent in by_user.values()), by_user


class Machine:
    """A forge process on one machine, making calls in batches (tests/ledger_worker.py)."""

    def __init__(self, tmp_path: Path, user: str, url: str, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "ledger_worker.py"), str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=machine(tmp_path, user, url),
        )

    def ask(self, model: str, calls: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{model} {calls}\n")
        self.process.stdin.flush()

    def answer(self) -> list[dict[str, str]]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, self.finish()
        return list(json.loads(line))

    def finish(self) -> str:
        """Everything it printed after the answers read, once it has ended."""
        if self.process.returncode is None:
            out, err = self.process.communicate("quit\n", timeout=60)
            self.rest = out + err
        return self.rest


def test_a_database_restarted_mid_run_loses_nothing_and_counts_nothing_twice(
    fake: FakeProvider, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database("restarted")
    fake.script("alpha-1", Reply(text="ok", output_tokens=10))
    fake.script("beta-1", Reply(text="ok", output_tokens=10, ttft=1.5))
    config = team_config(tmp_path, fake.url, stop=Decimal(100))
    machines = [Machine(tmp_path, user, url, config) for user in MACHINES]
    try:
        # Calls before anything goes wrong.
        for m in machines:
            m.ask("alpha", 5)
        before = [o for m in machines for o in m.answer()]
        assert [o["outcome"] for o in before] == ["ok"] * 10

        # Down while 10 calls are in flight, back once their answers have all arrived: each
        # settlement waits for the database, and lands once.
        for m in machines:
            m.ask("beta", 5)
        while rows(url, "SELECT COUNT(*) FROM attempts WHERE status = 'reserved'")[0][0] < 10:
            time.sleep(0.01)
        postgres_server.stop("immediate")
        while fake._open_streams:  # the answers are on their way
            time.sleep(0.01)
        postgres_server.start()
        during = [o for m in machines for o in m.answer()]
        assert [o["outcome"] for o in during] == ["ok"] * 10, during

        # Down: no call can be reserved, so none is sent, and each says why.
        postgres_server.stop()
        sent = len(fake.requests)
        for m in machines:
            m.ask("alpha", 3)
        refused = [o for m in machines for o in m.answer()]
        assert len(refused) == 6 and all(o["outcome"] == "refused" for o in refused)
        for o in refused:
            assert "cannot reserve, so the call was not sent" in o["why"], o
            assert "cannot be reached" in o["why"] and "postgresql://forge:***@" in o["why"]
            assert PASSWORD not in o["why"]
        assert len(fake.requests) == sent

        # Back: the same processes carry on.
        postgres_server.start()
        for m in machines:
            m.ask("alpha", 5)
        after = [o for m in machines for o in m.answer()]
        assert [o["outcome"] for o in after] == ["ok"] * 10
    finally:
        outputs = [m.finish() for m in machines]
    assert all(PASSWORD not in text and "Traceback" not in text for text in outputs), outputs

    ok = before + during + after
    found = rows(url, "SELECT status, outcome, cost_usd FROM attempts")
    assert len(found) == len(ok) == len(fake.requests) == 30, "every sent call once, no other"
    assert {(status, outcome) for status, outcome, _ in found} == {("settled", "ok")}
    assert sum(cost for _, _, cost in found) == sum(Decimal(o["cost"]) for o in ok)


def test_ledger_copy_moves_local_history_once(
    fake: FakeProvider, tmp_path: Path, postgres_database: str
) -> None:
    """A person's calls and runs on the local SQLite ledger, copied into the team database
    twice: the second copy finds everything there and copies nothing."""
    fake.script("alpha-1", Reply(text="ok", output_tokens=10))
    config = team_config(tmp_path, fake.url)
    local = machine(tmp_path, "alice", postgres_database)
    del local["FORGE_LEDGER_URL"]
    made = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "budget_worker.py"), str(config), "4"],
        capture_output=True, text=True, env=local, timeout=60, check=True,
    )  # fmt: skip
    assert [o["outcome"] for o in json.loads(made.stdout)] == ["ok"] * 4
    _a_local_run(Path(local["FORGE_HOME"]) / "ledger.db")

    first = run_forge("ledger", "copy", "--to", postgres_database, "--json", env=local)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["copied"]["attempts"] == 4
    assert report["copied"]["runs"] == 1 and report["copied"]["run_tasks"] == 2
    assert PASSWORD not in first.stdout + first.stderr

    again = run_forge("ledger", "copy", "--to", postgres_database, env=local)
    assert again.returncode == 0, again.stderr
    assert "copied 0 row(s)" in again.stdout
    assert "attempts: 0 copied, 4 already there" in again.stdout
    assert PASSWORD not in again.stdout + again.stderr

    # The team database now shows them, through the same commands.
    team = machine(tmp_path, "bob", postgres_database)
    logs = json.loads(run_forge("logs", "--json", env=team).stdout)["attempts"]
    assert len(logs) == 4 and {c["username"] for c in logs} == {"alice"}
    runs = run_forge("runs", "--json", env=team)
    assert [(r["run"], r["state"]) for r in json.loads(runs.stdout)["runs"]] == [
        ("run-local", "done")
    ]
    stats = run_forge("stats", "--json", env=team)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["tasks"]["done"] == 1


def _a_local_run(path: Path) -> None:
    from forge.execution.store import RunStore
    from forge.ledger import Ledger

    ledger = Ledger(path)
    store = RunStore(ledger)
    store.start_run("run-local", repo="/repo", base="main", source="m.md", options={})
    store.set_task("run-local", "a", "A", "done", rungs=["free"], cost_usd=Decimal("0.01"))
    store.set_task("run-local", "b", "B", "failed", rungs=["free"])
    store.set_run_state("run-local", "done", finished=True)
    ledger.close()


def test_a_missing_driver_names_the_extra(tmp_path: Path) -> None:
    """Without psycopg, one line saying what to install, exit 2 as for bad configuration."""
    url = f"postgresql://forge:{PASSWORD}@127.0.0.1:1/forge"
    code = "import sys; sys.modules['psycopg'] = None; from forge.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "logs"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FORGE_LEDGER_URL": url},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "forge: error: the PostgreSQL ledger ([ledger] url / FORGE_LEDGER_URL) needs the psycopg "
        "driver: pip install 'forge-cli[postgres]'"
    ]


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://forge:{PASSWORD}@127.0.0.1:1/forge"
    for args in (["logs"], ["cost"], ["runs"], ["stats"], ["config", "show"]):
        done = run_forge(*args, env={"FORGE_LEDGER_URL": url})
        assert PASSWORD not in done.stdout + done.stderr, args
        if args[0] != "config":
            assert done.returncode == 2, (args, done.stderr)
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith(
                "forge: error: the ledger at postgresql://forge:***@127.0.0.1:1/"
            )
            assert "cannot be reached" in line
