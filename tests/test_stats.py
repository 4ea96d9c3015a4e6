"""`forge stats` and `forge runs` over a ledger filled by real runs against the fake providers.

Three runs of `forge run-milestone` on small git repositories fill one ledger (built once for the
module): one solved on the first attempt on the free tier, one escalated from free to cheap, and
one that fails on every rung. The tests then read it through the real CLI.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import isolate, run_forge
from tests.test_run_milestone import FIX_ADD, MULTIPLY_INSTEAD, config, python_repo

GOAL = "Fix add in calc.py"


@dataclass(frozen=True)
class Runs:
    """The shared ledger's folder, the config the runs used, and the runs in order."""

    home: Path
    cfg: Path
    first: str  # done by alpha on its first attempt
    escalated: str  # alpha failed twice, beta (cheap) fixed it
    failed: str  # every rung failed


def _run(workdir: Path, cfg: Path, expect: int, *args: str) -> str:
    repo = python_repo(workdir)
    done = run_forge(
        "run-milestone", "--goal", GOAL, *args, "--json", "-c", str(cfg), cwd=repo, timeout=300
    )
    assert done.returncode == expect, done.stderr
    run_id: str = json.loads(done.stdout)["run"]
    return run_id


# One worker runs this module: its three shared runs are made once.
pytestmark = pytest.mark.xdist_group("stats")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    base = tmp_path_factory.mktemp("stats")
    with pytest.MonkeyPatch.context() as mp, FakeProvider() as fake:
        isolate(mp, base / "home")
        cfg = config(base, fake.url)
        fake.script("alpha-1", Reply(text=FIX_ADD, latency=0.05))
        first = _run(base / "one", cfg, 0, "--tier", "free")
        fake.script("alpha-1", *[Reply(text=MULTIPLY_INSTEAD, latency=0.05)] * 2)
        fake.script("beta-1", Reply(text=FIX_ADD))
        escalated = _run(base / "two", cfg, 0, "--tier", "free")
        fake.script("alpha-1", *[Reply(text=MULTIPLY_INSTEAD, latency=0.05)] * 2)
        for model in ("beta-1", "gamma-1"):
            fake.script(model, *[Reply(text=MULTIPLY_INSTEAD)] * 2)
        failed = _run(base / "three", cfg, 1, "--tier", "free")
    yield Runs(base / "home" / "forge-home", cfg, first, escalated, failed)


@pytest.fixture
def ledger(shared: Runs, monkeypatch: pytest.MonkeyPatch) -> Runs:
    monkeypatch.setenv("FORGE_HOME", str(shared.home))
    return shared


def stats(*args: str, cwd: Path | None = None) -> dict[str, Any]:
    done = run_forge("stats", *args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def by(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


# -- forge stats --------------------------------------------------------------------------------


def test_stats_count_first_attempts_escalations_and_the_work_each_tier_did(
    ledger: Runs,
) -> None:
    found = stats("-c", str(ledger.cfg))

    assert found["scope"] == {"run": None, "since": None, "runs": 3}
    tasks = found["tasks"]
    assert (tasks["total"], tasks["done"], tasks["failed"], tasks["skipped"]) == (3, 2, 1, 0)
    assert tasks["first_attempt"] == 1
    assert tasks["escalated"] == 2
    assert tasks["escalation_rate"] == pytest.approx(2 / 3)
    tiers = found["tiers"]
    assert [t["tier"] for t in tiers] == ["free", "cheap", "premium"]  # ladder order
    assert [(t["tasks_finished"], t["attempts"]) for t in tiers] == [(1, 5), (1, 3), (0, 2)]
    assert tiers[0]["task_share"] == pytest.approx(0.5)


def test_stats_give_each_model_its_success_rate_latency_and_pass_rate(ledger: Runs) -> None:
    models = by(stats("-c", str(ledger.cfg))["models"], "model")

    assert list(models) == ["alpha", "beta", "gamma"]  # the busiest first
    assert [(m["calls"], m["passed"], m["attempts"]) for m in models.values()] == [
        (5, 1, 5),
        (3, 1, 3),
        (2, 0, 2),
    ]
    for m in models.values():
        assert m["success_rate"] == 1.0
        assert m["latency_p95_s"] >= m["latency_p50_s"] > 0
        assert m["input_tokens"] > 0 and float(m["cost_usd"]) > 0
    assert models["alpha"]["latency_p50_s"] >= 0.05  # the scripted delay is measured
    assert models["alpha"]["tier"] == "free"


def test_stats_recommend_the_model_that_passed_most_often_and_price_the_top_tier(
    ledger: Runs,
) -> None:
    found = stats("-c", str(ledger.cfg))

    # alpha passed 1 of 5, beta 1 of 3, gamma none of 2: beta is the one to suggest.
    [best] = found["recommendations"]
    assert (best["model"], best["passed"], best["attempts"]) == ("beta", 1, 3)
    assert best["ladder"] == ["beta", "premium"]
    cost = found["cost"]
    assert float(cost["work_usd"]) > 0
    assert (cost["top_tier"], cost["top_model"]) == ("premium", "gamma")
    # Only the two finished tasks' attempts are compared: the failed run bought nothing.
    assert 0 < float(cost["finished_usd"]) < float(cost["work_usd"])
    assert float(cost["top_tier_usd"]) > float(cost["finished_usd"])
    assert cost["saved"] == pytest.approx(
        1 - float(cost["finished_usd"]) / float(cost["top_tier_usd"])
    )

    text = run_forge("stats", "-c", str(ledger.cfg)).stdout
    kind = best["task_type"]
    assert f"{kind}: beta passed 1/3 (33%) at $" in text
    assert f'-> consider {kind} = ["beta", "premium"]' in text
    assert "finished on the first attempt: 1 of 3 that ran (33%)" in text
    assert "escalated: 2 of 3 (67%)" in text
    assert "at the top tier (saved" in text
    for column in ("latency p50", "p95", "alpha", "beta", "gamma", "premium"):
        assert column in text


def test_a_run_that_finished_nothing_claims_no_saving(ledger: Runs) -> None:
    cost = stats("--run", ledger.failed, "-c", str(ledger.cfg))["cost"]

    assert float(cost["work_usd"]) > 0
    assert (cost["finished_usd"], cost["top_tier_usd"], cost["saved"]) == ("0", None, None)
    text = run_forge("stats", "--run", ledger.failed, "-c", str(ledger.cfg)).stdout
    assert "no finished work to compare" in text and "saved" not in text


def test_without_a_config_the_top_tier_is_unpriced(ledger: Runs, tmp_path: Path) -> None:
    found = stats(cwd=tmp_path)
    assert found["cost"]["top_tier_usd"] is None and found["cost"]["saved"] is None
    text = run_forge("stats", cwd=tmp_path).stdout
    assert "top tier unpriced" in text


def test_stats_of_one_run_or_since_a_day(ledger: Runs) -> None:
    one = stats("--run", ledger.first, "-c", str(ledger.cfg))
    assert one["scope"]["runs"] == 1
    assert one["tasks"]["first_attempt"] == 1 and one["tasks"]["escalated"] == 0
    assert [m["model"] for m in one["models"]] == ["alpha"]
    assert [(t["tier"], t["tasks_finished"]) for t in one["tiers"]] == [("free", 1)]

    escalated = stats("--run", ledger.escalated)
    assert escalated["tasks"]["escalation_rate"] == 1.0
    assert by(escalated["tiers"], "tier")["cheap"]["tasks_finished"] == 1

    today = time.strftime("%Y-%m-%d")
    assert stats("--since", today)["scope"]["runs"] == 3
    tomorrow = time.strftime("%Y-%m-%d", time.localtime(time.time() + 86_400))
    later = stats("--since", tomorrow)
    assert later["scope"]["runs"] == 0 and later["models"] == []
    text = run_forge("stats", "--since", tomorrow)
    assert text.returncode == 0 and f"no runs since {tomorrow}" in text.stdout


def test_bad_dates_and_unknown_runs_are_usage_errors(ledger: Runs) -> None:
    for args, message in (
        (("--since", "2024-13-01"), "YYYY-MM-DD"),
        (("--since", "last week"), "YYYY-MM-DD"),
        (("--run", "no-such-run"), "no run 'no-such-run'"),
    ):
        done = run_forge("stats", *args)
        assert done.returncode == 2, args
        assert message in done.stderr and "Traceback" not in done.stderr


def test_an_empty_ledger_has_no_runs_yet() -> None:
    for command in ("stats", "runs"):
        done = run_forge(command)
        assert done.returncode == 0 and done.stdout.strip() == "no runs yet"
    assert json.loads(run_forge("runs", "--json").stdout) == {"runs": []}
    assert stats()["scope"]["runs"] == 0


# -- forge runs ---------------------------------------------------------------------------------


def test_runs_lists_runs_newest_first_with_their_state_tasks_and_cost(ledger: Runs) -> None:
    done = run_forge("runs", "--json")
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]

    assert [r["run"] for r in runs] == [ledger.failed, ledger.escalated, ledger.first]
    assert [r["state"] for r in runs] == ["failed", "done", "done"]
    assert [r["tasks"] for r in runs] == [
        {"done": 0, "failed": 1, "skipped": 0, "total": 1},
        {"done": 1, "failed": 0, "skipped": 0, "total": 1},
        {"done": 1, "failed": 0, "skipped": 0, "total": 1},
    ]
    assert all(r["source"] == "--goal" for r in runs)
    assert all(float(r["cost_usd"]) > 0 and r["duration_s"] > 0 for r in runs)
    # The failed run tried every rung, so it cost the most.
    assert float(runs[0]["cost_usd"]) > float(runs[2]["cost_usd"])

    assert [
        r["run"] for r in json.loads(run_forge("runs", "-n", "1", "--json").stdout)["runs"]
    ] == [ledger.failed]
    text = run_forge("runs").stdout
    for run_id, state in ((ledger.first, "done"), (ledger.failed, "failed")):
        line = next(line for line in text.splitlines() if run_id in line)
        assert state in line and "--goal" in line
    assert text.index(ledger.failed) < text.index(ledger.first)


def test_two_aliases_of_one_model_id_are_two_rows(fake: FakeProvider, tmp_path: Path) -> None:
    """Statistics follow the project's names: a model id used as a cheap fast alias and as a
    careful one is judged as the two models the ladder has, not one."""
    cfg = tmp_path / "forge.toml"
    cfg.write_text(
        f'[providers.fake]\nbase_url = "{fake.url}/v1"\n'
        '[models.fast]\nprovider = "fake"\nid = "same-1"\ntier = "free"\n'
        "input_price = 0\noutput_price = 0\n"
        '[models.careful]\nprovider = "fake"\nid = "same-1"\ntier = "cheap"\ntemperature = 0\n'
        "input_price = 1\noutput_price = 1\n"
        '[tiers]\nladder = ["free", "cheap"]\n[routing]\nlearn_from_history = false\n'
    )
    fake.script("same-1", Reply(text=FIX_ADD))
    for alias in ("fast", "careful", "careful"):
        _run(tmp_path / alias, cfg, 0, "--model", alias)
        shutil.rmtree(tmp_path / alias)

    models = by(stats("-c", str(cfg))["models"], "model")
    listed = by(json.loads(run_forge("models", "--json", "-c", str(cfg)).stdout)["models"], "alias")

    assert [(m, r["tier"], r["calls"]) for m, r in models.items()] == [
        ("careful", "cheap", 2),
        ("fast", "free", 1),
    ]
    assert float(models["fast"]["cost_usd"]) == 0 < float(models["careful"]["cost_usd"])
    assert (listed["fast"]["calls_7d"], listed["careful"]["calls_7d"]) == (1, 2)
