"""`forge run-milestone` on a PostgreSQL ledger whose database goes away for longer than the
ledger waits for it (`[ledger] outage_wait_s`): the run ends with one clear line, every call the
model received keeps its one row, and `--resume` once the database is back finishes the run with
each call counted once.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge, start_forge
from tests.postgres_server import PASSWORD, PostgresServer
from tests.test_run_milestone import PYPROJECT, git, make_repo
from tests.test_run_ray import merged_once, module, raise_value, wait_for

pytestmark = pytest.mark.xdist_group("postgres")

# Short, so the outage below outlasts it without making the test slow.
OUTAGE_WAIT_S = 2


def two_task_repo(tmp_path: Path) -> Path:
    tests = "".join(
        f"from mod_{n} import value_{n}\n\n\ndef test_{n}():\n    assert value_{n}() >= 1\n\n\n"
        for n in "ab"
    )
    files = {
        "pyproject.toml": PYPROJECT,
        ".gitignore": "__pycache__/\n.pytest_cache/\n",
        "tests/test_values.py": tests.rstrip() + "\n",
        **{f"mod_{n}.py": module(n, 1) for n in "ab"},
    }
    return make_repo(tmp_path / "repo", files)


def outage_config(tmp_path: Path, fake_url: str, url: str) -> Path:
    path = tmp_path / "forge.toml"
    path.write_text(
        f"""
[providers.fake]
base_url = "{fake_url}/v1"

[models.m1]
provider = "fake"
id = "m1-1"
tier = "t1"
input_price = 1
output_price = 1

[models.m2]
provider = "fake"
id = "m2-1"
tier = "t2"
input_price = 1
output_price = 1

[tiers]
ladder = ["t1", "t2"]

[routing]
max_attempts_per_tier = 1
max_total_attempts = 1
learn_from_history = false
max_call_attempts = 1

[validation]
enable_lint_check = false

[ledger]
url = "{url}"
outage_wait_s = {OUTAGE_WAIT_S}
""",
        encoding="utf-8",
    )
    return path


def calls(url: str) -> list[tuple[str, str, str, Decimal, Decimal]]:
    with psycopg.connect(url) as db:
        found = db.execute(
            "SELECT model, status, outcome, cost_usd, reserved_usd FROM attempts ORDER BY id"
        ).fetchall()
    return [tuple(row) for row in found]  # type: ignore[misc]


def test_a_run_outlasted_by_a_database_outage_stops_and_resumes_counting_each_call_once(
    fake: FakeProvider, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database("outage")
    repo = two_task_repo(tmp_path)
    down = threading.Event()
    fake.script("m1-1", Reply(text=raise_value("a")))
    # b's model answers only once the database is down: its settlement, and then the run's own
    # records, wait OUTAGE_WAIT_S for a database that stays away longer.
    fake.script(
        "m2-1", Reply(text=raise_value("b"), after=down.is_set), Reply(text=raise_value("b"))
    )
    cfg = outage_config(tmp_path, fake.url, url)
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[task]]\nid = "a"\ntitle = "Raise value_a to 2"\ntier = "t1"\nfiles = ["mod_a.py"]\n\n'
        '[[task]]\nid = "b"\ntitle = "Raise value_b to 2"\ntier = "t2"\nfiles = ["mod_b.py"]\n'
        'after = ["a"]\n',
        encoding="utf-8",
    )
    driver = start_forge("run-milestone", str(plan), "--json", "-c", str(cfg), cwd=repo)
    try:
        wait_for(lambda: fake.requests_for("m2-1"), "task b to ask its model")
        postgres_server.stop("immediate")
        down.set()
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
        postgres_server.start()

    # One line that says what happened and how to carry on; no traceback, no password.
    assert driver.returncode == 2, stderr
    assert "Traceback" not in stderr and PASSWORD not in stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("forge: error:")]
    assert len(errors) == 1, stderr
    assert "the ledger at postgresql://forge:***@127.0.0.1:" in errors[0]
    assert "cannot be reached" in errors[0]
    assert errors[0].endswith(f"(waited {OUTAGE_WAIT_S} s for it: [ledger] outage_wait_s)")
    run_id = stderr.split()[2]
    assert f"forge run-milestone --resume {run_id}" in stderr

    # Every call the models received is in the ledger once; b's, whose settlement never came,
    # is still reserved: it counts, at its reservation.
    during = calls(url)
    assert [(m, s) for m, s, *_ in during] == [("m1", "settled"), ("m2", "reserved")]

    done = run_forge("run-milestone", "--resume", run_id, "--json", "-c", str(cfg), cwd=repo)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {t["id"]: t["state"] for t in report["tasks"]} == {"a": "done", "b": "done"}
    assert len(fake.requests_for("m1-1")) == 1  # a, merged before the outage, was not redone
    assert merged_once(repo, report["branch"]) == ["a", "b"]
    assert git(repo, "show", f"{report['branch']}:mod_b.py") == module("b", 2)
    # One row per call the models received, none left reserved: b's first call, whose process
    # ended before it could settle, is charged at its reservation, once.
    after = calls(url)
    assert len(after) == len(fake.requests) == 3
    assert after[0] == during[0]
    model, status, outcome, cost, reserved = after[1]
    assert (model, status, outcome, cost) == ("m2", "settled", "abandoned", reserved)
    assert [(m, s, o) for m, s, o, *_ in after[2:]] == [("m2", "settled", "ok")]
    # What the day's budget counts is those three rows, each once.
    spend = run_forge("cost", "--json", "-c", str(cfg), cwd=repo)
    assert spend.returncode == 0, spend.stderr
    budget = json.loads(spend.stdout)["budget"]
    assert Decimal(budget["spent_today_usd"]) == sum(row[3] for row in after)
    assert Decimal(budget["held_by_calls_in_flight_usd"]) == 0
