"""Budgets hold under concurrency: reservations across processes, refusals that say why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from forge.ledger import Ledger
from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge, write_config

STOP = Decimal("3")
# Each call really costs about $0.10 (100 output tokens at $1000/Mtok); 100 calls would be $10.
BUDGET = f"""
[cost]
daily_budget_usd = 10
warn_threshold_usd = 2
stop_threshold_usd = {STOP}
"""


def pricey_config(tmp_path: Path, url: str) -> Path:
    path = write_config(tmp_path / "forge.toml", url, BUDGET)
    text = path.read_text().replace(
        'id = "alpha-1"\ntier = "free"\ninput_price = 1\noutput_price = 2',
        'id = "alpha-1"\ntier = "free"\ninput_price = 1000\noutput_price = 1000\n'
        "max_output_tokens = 100",
    )
    path.write_text(text)
    return path


def test_two_processes_never_spend_past_the_stop_threshold(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="ok", output_tokens=100, ttft=0.3))
    config = pricey_config(tmp_path, fake.url)
    worker = str(Path(__file__).with_name("budget_worker.py"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    processes = [
        subprocess.Popen(
            [sys.executable, worker, str(config), "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outcomes += json.loads(out)

    assert len(outcomes) == 100
    ok = [o for o in outcomes if o["outcome"] == "ok"]
    refused = [o for o in outcomes if o["outcome"] == "refused"]
    assert len(ok) + len(refused) == 100, [o for o in outcomes if o["outcome"] == "failed"]
    # $3 of ~$0.10 calls, each holding ~$0.17 (its reservation: the prompt with the chat
    # template's allowance, and max_output_tokens) until it settles: all 100 start at once, so
    # about 18 fit; concurrency must not let more through than the stop allows.
    assert 15 <= len(ok) <= 30, len(ok)
    assert refused, "the threshold must refuse the calls that do not fit"
    for refusal in refused:
        assert "budget" in refusal["why"] and "stop threshold" in refusal["why"]

    ledger = Ledger(Path(env.get("FORGE_HOME", "")) / "ledger.db")
    rows = ledger.attempts(limit=None)
    spent = sum((r.cost_usd or Decimal(0)) for r in rows if r.outcome == "ok")
    assert spent <= STOP
    assert spent == sum(Decimal(o["cost"]) for o in ok)
    assert len(rows) == 100, "every call, sent or refused, is a ledger row"
    assert fake.max_concurrent_streams > 1, "the calls really ran concurrently"

    shown = run_forge("cost", "--json", "--config", str(config))
    report = json.loads(shown.stdout)
    assert Decimal(report["budget"]["spent_today_usd"]) == spent


def test_one_byte_prompts_billed_with_their_chat_template_never_pass_the_stop(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """A chat template bills tokens the prompt's bytes do not show: Llama 3.1 wraps a one-byte
    prompt in its default system block and headers, about 40 prompt tokens. The reservation
    must still be an upper bound, whichever process settles last."""
    fake.script("alpha-1", Reply(text="ok", input_tokens=40, output_tokens=1, ttft=0.3))
    config = pricey_config(tmp_path, fake.url)
    # $0.041 a call as billed; reserving the prompt's byte and 8 tokens took $0.019, so 150
    # calls fitted under $3 and settled $6.15.
    config.write_text(
        config.read_text().replace("max_output_tokens = 100", "max_output_tokens = 10")
    )
    worker = str(Path(__file__).with_name("budget_worker.py"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    processes = [
        subprocess.Popen(
            [sys.executable, worker, str(config), "50", "?"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outcomes += json.loads(out)
    assert len(outcomes) == 150
    assert [o for o in outcomes if o["outcome"] == "failed"] == []
    assert all(r.body["messages"][-1]["content"] == "?" for r in fake.requests)
    rows = Ledger(Path(os.environ["FORGE_HOME"]) / "ledger.db").attempts(limit=None)
    spent = sum((r.cost_usd or Decimal(0)) for r in rows if r.outcome == "ok")
    assert all(r.input_tokens == 40 for r in rows if r.outcome == "ok")
    assert spent <= STOP, f"settled ${spent} against a ${STOP} stop"
    assert any(o["outcome"] == "refused" for o in outcomes), "the stop threshold binds"


def test_a_reservation_left_by_a_killed_process_expires(fake: FakeProvider, tmp_path: Path) -> None:
    from forge.ledger.store import Limits
    from forge.providers.types import Target

    ledger = Ledger(tmp_path / "l.db")
    target = Target("alpha", "fake", "alpha-1")
    held = ledger.reserve(target, Decimal("2.5"), Limits(day_stop=STOP))
    assert not hasattr(held, "reason")
    # A second reservation does not fit while the first is held...
    refused = ledger.reserve(target, Decimal("1"), Limits(day_stop=STOP))
    assert "budget" in getattr(refused, "reason", "")
    # ...and fits once the holder is known to be dead.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with ledger._write() as db:  # the row now belongs to a process that has exited
        db.execute("UPDATE attempts SET pid = ? WHERE status = 'reserved'", (int(dead.stdout),))
    spend = ledger.spend_today()
    # No longer held by a live call; charged at its worst case, since what it spent is unknown.
    assert spend.held == 0 and spend.settled == Decimal("2.5")
    fits = ledger.reserve(target, Decimal("0.4"), Limits(day_stop=STOP))
    assert not hasattr(fits, "reason")
    outcomes = {r.outcome for r in ledger.attempts(limit=None)}
    assert "abandoned" in outcomes, "the expired reservation stays in the ledger, marked"


def test_the_warning_threshold_fires_once_a_day(tmp_path: Path) -> None:
    from forge.ledger.store import Limits, Reservation
    from forge.providers.types import Cost, Target

    ledger = Ledger(tmp_path / "l.db")
    target = Target("alpha", "fake", "alpha-1")
    crossed = []
    for _ in range(4):
        held = ledger.reserve(target, Decimal("1"), Limits(day_stop=Decimal(10)))
        assert isinstance(held, Reservation)
        settled = ledger.settle(
            held, outcome="ok", cost=Cost(Decimal("1"), "computed"), warn_at=Decimal("2")
        )
        crossed.append(settled.warn_crossed)
    assert crossed == [False, True, False, False]


def test_an_unusable_ledger_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    done = run_forge("logs", env={"FORGE_HOME": str(blocker / "forge")})
    assert done.returncode == 2
    assert "cannot open the ledger" in done.stderr and "FORGE_HOME" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_spend_a_ledger_keeps_matches_a_fresh_count_while_another_process_writes(
    tmp_path: Path,
) -> None:
    """Budget checks use totals each connection keeps up to date; they must always equal what
    counting the rows again gives, whoever wrote last (another process, a refusal, an expiry)."""
    import random

    from forge.ledger.store import Limits, Reservation
    from forge.providers.types import Cost, Target

    path = tmp_path / "l.db"
    mine, other = Ledger(path), Ledger(path)  # two connections, as two processes have
    targets = [Target("alpha", "fake", "alpha-1"), Target("beta", "groq", "beta-1")]
    limits = Limits(day_stop=Decimal("20"), run_stop=Decimal("6"), provider_requests_per_day=30)
    held: list[tuple[Ledger, Reservation]] = []
    rng = random.Random(5)
    refusals = 0
    for step in range(120):
        ledger = mine if rng.random() < 0.6 else other
        if held and rng.random() < 0.45:
            owner, reservation = held.pop(rng.randrange(len(held)))
            price = rng.choice([None, Decimal("0"), Decimal("0.125"), Decimal("0.3333")])
            cost = None if price is None else Cost(price, "computed")
            owner.settle(reservation, outcome="ok", cost=cost)
        else:
            amount = Decimal(rng.choice(["0.05", "0.5", "1.25"]))
            run = rng.choice(["run-a", "run-b", None])
            got = ledger.reserve(rng.choice(targets), amount, limits, run_id=run)
            if isinstance(got, Reservation):
                held.append((ledger, got))
            else:
                refusals += 1
        if step == 60:  # one holder's hold runs out: expired by whoever looks next
            with other._write() as db:
                db.execute("UPDATE attempts SET expires_at = 0 WHERE status = 'reserved'")
        fresh = Ledger(path)  # a new connection counts every row again
        for ledger in (mine, other):
            assert ledger.spend_today() == fresh.spend_today(), f"step {step}"
            for run in ("run-a", "run-b"):
                assert ledger.spend_of_run(run) == fresh.spend_of_run(run), f"step {step}"
        fresh.close()
    assert refusals > 0, "the limits were reached, so refusals were counted too"


def test_a_ledger_written_before_the_new_columns_opens_and_keeps_its_rows(
    fake: FakeProvider, tmp_path: Path
) -> None:
    import sqlite3

    path = tmp_path / "ledger.db"
    Ledger(path).close()
    with sqlite3.connect(path) as db:  # the attempts table as forge first wrote it
        db.execute("ALTER TABLE attempts DROP COLUMN finish_reason")
        db.execute("ALTER TABLE attempts DROP COLUMN note")
        db.execute(
            "INSERT INTO attempts (provider, model, model_id, day, started_at, status) "
            "VALUES ('fake', 'alpha', 'alpha-1', '2020-01-01', 0, 'settled')"
        )
    fake.script("alpha-1", Reply(text="cut", finish_reason="length"))
    config = write_config(tmp_path / "forge.toml", fake.url)
    env = {"FORGE_HOME": str(tmp_path)}
    assert run_forge("models", "--health", "--config", str(config), env=env).returncode == 0
    attempts = json.loads(run_forge("logs", "--json", env=env).stdout)["attempts"]
    assert len(attempts) == 4
    assert {a["finish_reason"] for a in attempts if a["model"] == "alpha"} == {"length", None}


# -- free is what the prices say, not the address -------------------------------------------------

FREE_MODELS = f"""
[cost]
daily_budget_usd = 10
stop_threshold_usd = {STOP}

[models.proxy]
provider = "fake"
id = "proxy-1"
tier = "cheap"

[models.ollama]
provider = "fake"
id = "ollama-1"
tier = "local"

[models.zero]
provider = "fake"
id = "zero-1"
tier = "free"
input_price = 0
output_price = 0
"""


def test_an_unpriced_model_on_this_machine_is_refused_under_a_budget_unless_local(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """A LiteLLM proxy on 127.0.0.1 bills upstream: the address does not make it free."""
    fake.script("proxy-1", Reply(text="ok", cost="0.5"))
    fake.script("ollama-1", Reply(text="ok"))
    config = write_config(tmp_path / "forge.toml", fake.url, FREE_MODELS)
    done = run_forge("fanout", "Hi", "-m", "proxy,ollama", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    rows = {a["key"]: a for a in json.loads(done.stdout)["answers"]}
    assert rows["proxy"]["status"] == "refused"
    assert "price of proxy is unknown" in rows["proxy"]["cause"]
    assert fake.requests_for("proxy-1") == [], "a call the budget cannot hold is not sent"
    assert rows["ollama"]["status"] == "ok" and rows["ollama"]["cost_usd"] in ("0", None)


def test_a_model_priced_at_zero_that_reports_a_cost_is_charged_it_and_warned_once(
    fake: FakeProvider, tmp_path: Path
) -> None:
    # LiteLLM adds float prices: the cost arrives as a JSON number with float noise.
    noisy = 7.439999999999999e-05
    fake.script("zero-1", *[Reply(text="42", usage={"cost": noisy})] * 3)
    config = write_config(tmp_path / "forge.toml", fake.url, FREE_MODELS)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Sum {i}?"}) + "\n" for i in range(3)))
    done = run_forge("fanout", "--input", str(prompts), "-m", "zero", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "reported a cost" in line]
    assert len(warnings) == 1, done.stderr  # once per run, not once per call
    assert "priced at $0" in warnings[0] and "$0.0000744:" in warnings[0]
    assert "0.0000743999" not in done.stderr
    spent = json.loads(run_forge("cost", "--json", "-c", str(config)).stdout)
    assert Decimal(spent["budget"]["spent_today_usd"]) == 3 * Decimal(str(noisy))
