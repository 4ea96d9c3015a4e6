"""Route decisions: ladders, the first rung, the model inside it, escalation and estimates.

Each test builds a forge.toml, opens the ledger in the isolated home and seeds it with the
rows a real run would have left (sent requests, open breakers, premium calls, routes).
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from forge.config import ForgeConfig, parse_config_text
from forge.errors import UsageError
from forge.ledger import Ledger, Limits
from forge.providers.types import Target
from forge.routing.analysis import TaskAnalysis, analyse
from forge.routing.decision import Pins, RouteDecision, Router
from forge.routing.fleet import load_fleet
from forge.routing.history import RouteHistory
from forge.routing.report import explain

REPO = "/repo/under/test"
PROVIDERS = """
[providers.local]
base_url = "http://127.0.0.1:11434/v1"

[providers.groq]
base_url = "https://api.groq.example/v1"
requests_per_day = 2

[providers.cerebras]
base_url = "https://api.cerebras.example/v1"

[providers.router]
base_url = "https://openrouter.example/api/v1"

[providers.anthropic]
api = "anthropic"
base_url = "https://api.anthropic.example/v1"
"""
MODELS = """
[models.qwen]
provider = "local"
id = "qwen2.5-coder"
tier = "local"
input_price = 0
output_price = 0
context_window = 32768

[models.groq-llama]
provider = "groq"
id = "llama-3.3-70b"
tier = "free"
input_price = 0
output_price = 0

[models.cerebras-llama]
provider = "cerebras"
id = "llama-3.3-70b"
tier = "free"
input_price = 0
output_price = 0

[models.deepseek]
provider = "router"
id = "deepseek-chat"
tier = "cheap"
input_price = 0.27
output_price = 1.1
context_window = 64000

[models.qwen3-coder]
provider = "router"
id = "qwen3-coder"
tier = "cheap"
input_price = 0.4
output_price = 1.6
context_window = 256000
capabilities = ["long_context"]

[models.sonnet]
provider = "anthropic"
id = "claude-sonnet-4-5"
tier = "premium"
input_price = 3
output_price = 15
"""

MEDIUM_BUG = (
    "fix the race condition in the connection pool that sometimes returns a closed connection "
    "to a caller"
)
SIMPLE_EDIT = "bump version to 0.4.2 in pyproject.toml"
COMPLEX_FEATURE = (
    "implement a distributed job scheduler with leader election, exactly-once delivery and "
    "zero downtime upgrades across every service"
)
CRITICAL = "add JWT authentication to the admin endpoints"


def config(extra: str = "", models: str = MODELS) -> ForgeConfig:
    return parse_config_text(PROVIDERS + models + extra)


def route(
    cfg: ForgeConfig, text: str, pins: Pins | None = None, ledger: Ledger | None = None
) -> RouteDecision:
    fleet = load_fleet(cfg, ledger if ledger is not None else Ledger.open(), REPO)
    return Router(fleet).decide(analyse(text), pins or Pins())


def send(ledger: Ledger, cfg: ForgeConfig, alias: str, outcome: str = "ok", **ids: str) -> None:
    """One attempt in today's ledger, as the provider client records a sent request."""
    model = cfg.models[alias]
    target = Target(alias, model.provider, model.id, model.tier)
    reservation = ledger.reserve(target, Decimal(0), Limits(), **ids)
    assert not hasattr(reservation, "kind"), reservation
    ledger.settle(reservation, outcome=outcome, latency=0.5)  # type: ignore[arg-type]


def test_bands_start_on_their_rung_of_the_default_ladder() -> None:
    cfg = config()
    assert route(cfg, SIMPLE_EDIT).first.rung == "local"
    assert analyse(MEDIUM_BUG).band == "medium"
    assert route(cfg, MEDIUM_BUG).first.rung == "free"
    assert analyse(COMPLEX_FEATURE).band == "complex"
    assert route(cfg, COMPLEX_FEATURE).first.rung == "cheap"


def test_escalation_lists_every_later_rung_with_its_model() -> None:
    decision = route(config(), MEDIUM_BUG)
    assert [(c.rung, c.model) for c in decision.escalation] == [
        ("cheap", "deepseek"),
        ("premium", "sonnet"),
    ]
    assert "escalation: free (groq-llama) → cheap (deepseek) → premium (sonnet)" in explain(
        decision
    )


def test_spent_free_quota_moves_to_the_next_model_in_the_tier() -> None:
    cfg = config()
    ledger = Ledger.open()
    assert route(cfg, MEDIUM_BUG, ledger=ledger).first.model == "groq-llama"
    send(ledger, cfg, "groq-llama")
    send(ledger, cfg, "groq-llama")

    decision = route(cfg, MEDIUM_BUG, ledger=ledger)

    assert decision.first.model == "cerebras-llama"
    (skip,) = decision.first.skipped
    assert skip.model == "groq-llama"
    assert "free quota is spent (groq sent 2 of 2 requests today)" in skip.reason


def test_open_breaker_is_skipped_and_the_reason_shown() -> None:
    cfg = config()
    ledger = Ledger.open()
    ledger.save_breaker("groq", "llama-3.3-70b", 3, time.time() + 120, "429 rate limited")

    decision = route(cfg, MEDIUM_BUG, ledger=ledger)

    assert decision.first.model == "cerebras-llama"
    assert "breaker is open" in decision.first.skipped[0].reason
    assert "429 rate limited" in " ".join(explain(decision))


def test_a_rung_whose_every_model_is_unusable_is_skipped_upwards() -> None:
    cfg = config()
    ledger = Ledger.open()
    for provider in ("groq", "cerebras"):
        ledger.save_breaker(provider, "llama-3.3-70b", 3, time.time() + 120, "503")

    decision = route(cfg, MEDIUM_BUG, ledger=ledger)

    assert (decision.first.rung, decision.first.model) == ("cheap", "deepseek")
    assert {s.model for s in decision.first.skipped} == {"groq-llama", "cerebras-llama"}


def test_long_context_prefers_a_long_context_model() -> None:
    cfg = config("\n[routing]\nlong_context_threshold_tokens = 2000\n")
    text = "refactor the retry loop across src/client.rs, src/retry.rs and src/limits.rs"
    analysis = analyse(text)
    assert analysis.context_tokens > 2000

    decision = Router(load_fleet(cfg, Ledger.open(), REPO)).decide(analysis, Pins(tier="cheap"))

    assert decision.first.model == "qwen3-coder"  # deepseek is cheaper, but not long_context
    assert "prefers long_context models" in decision.first.why


def test_a_context_window_too_small_skips_the_model() -> None:
    cfg = config()
    many_files = " ".join(f"src/module_{i}.rs" for i in range(30))
    decision = Router(load_fleet(cfg, Ledger.open(), REPO)).decide(
        analyse(f"fix typo in {many_files}"), Pins(tier="local")
    )
    assert decision.first.model is None
    assert "context window (32,768 tokens) is too small" in decision.first.skipped[0].reason


def test_critical_goes_straight_to_the_top_of_its_ladder() -> None:
    analysis = analyse(CRITICAL)
    assert analysis.quality == "critical"
    assert any("authentication" in r for r in analysis.quality_reasons)

    decision = route(config(), CRITICAL)
    assert (decision.first.rung, decision.first.model) == ("premium", "sonnet")
    assert decision.start_reason == "critical: the top of the ladder"

    with_ladder = route(config('\n[tiers]\ncritical = ["deepseek", "sonnet"]\n'), CRITICAL)
    assert with_ladder.ladder_name == "critical"
    assert with_ladder.first.model == "sonnet"


def test_per_type_ladder_with_model_aliases_and_proportional_start() -> None:
    cfg = config('\n[tiers]\nbug_fix = ["qwen", "deepseek", "sonnet"]\n')
    decision = route(cfg, MEDIUM_BUG)
    assert decision.ladder_name == "bug_fix"
    # medium is rung 1 of the default four; on a three-rung ladder that is rung 1 too.
    assert (decision.first.rung, decision.first.model) == ("deepseek", "deepseek")
    assert [c.rung for c in decision.escalation] == ["sonnet"]


def test_architecture_starts_one_rung_higher() -> None:
    analysis = analyse("design the plugin architecture for validators and providers")
    assert analysis.type == "architecture"
    decision = Router(load_fleet(config(), Ledger.open(), REPO)).decide(analysis)
    assert "one rung higher for architecture" in decision.start_reason


def test_rungs_without_models_are_skipped_with_a_note() -> None:
    only_cheap = parse_config_text(
        PROVIDERS
        + '\n[models.deepseek]\nprovider = "router"\nid = "deepseek-chat"\ntier = "cheap"\n'
        "input_price = 0.27\noutput_price = 1.1\n"
    )
    decision = route(only_cheap, SIMPLE_EDIT)
    assert decision.first.rung == "cheap"
    assert {s.rung for s in decision.first.skipped} == {"local", "free"}
    assert "no model is configured on it" in explain(decision)[5]


def test_pins_choose_the_tier_or_the_model() -> None:
    cfg = config()
    by_tier = route(cfg, SIMPLE_EDIT, Pins(tier="premium"))
    assert (by_tier.first.rung, by_tier.first.model, by_tier.pinned) == (
        "premium",
        "sonnet",
        "tier",
    )
    by_model = route(cfg, COMPLEX_FEATURE, Pins(model="groq-llama"))
    assert by_model.first.model == "groq-llama"
    assert [c.rung for c in by_model.escalation] == ["cheap", "premium"]
    with pytest.raises(UsageError, match="unknown tier 'premum'; did you mean 'premium'"):
        route(cfg, SIMPLE_EDIT, Pins(tier="premum"))
    with pytest.raises(UsageError, match="unknown model 'sonet'"):
        route(cfg, SIMPLE_EDIT, Pins(model="sonet"))


def test_max_premium_calls_per_day_skips_premium_and_says_so() -> None:
    cfg = config("\n[cost]\nmax_premium_calls_per_day = 2\n")
    ledger = Ledger.open()
    send(ledger, cfg, "sonnet")
    send(ledger, cfg, "sonnet")

    decision = route(cfg, CRITICAL, ledger=ledger)

    assert decision.first.model != "sonnet"
    assert decision.first.rung == "cheap"
    assert any("max_premium_calls_per_day reached (2 of 2" in n for n in decision.notes)
    assert "max_premium_calls_per_day is reached" in decision.first.skipped[0].reason


def test_history_of_first_attempt_failures_starts_one_rung_higher() -> None:
    cfg = config()
    ledger = Ledger.open()
    history = RouteHistory(ledger)
    for n in range(6):
        history.record(
            task_id=f"t{n}",
            run_id="r1",
            repo=REPO,
            task_type="bug_fix",
            band="medium",
            tier="free",
            model="groq-llama",
        )
        send(
            ledger, cfg, "cerebras-llama", "ok" if n == 0 else "error", run_id="r1", task_id=f"t{n}"
        )

    decision = route(cfg, MEDIUM_BUG, ledger=ledger)

    assert decision.first.rung == "cheap"
    (line,) = decision.history
    assert "free got bug_fix/medium tasks in this repository right on the first attempt" in line
    assert "only 1/6 (17%) times; starting one rung higher at cheap" in line
    assert line in explain(decision)


def test_history_hints_at_a_cheaper_tier_that_does_well() -> None:
    cfg = config()
    ledger = Ledger.open()
    history = RouteHistory(ledger)
    for n in range(5):
        history.record(
            task_id=f"c{n}",
            run_id=None,
            repo=REPO,
            task_type="feature",
            band="complex",
            tier="free",
            model=None,
        )
        history.record_first_attempt(task_id=f"c{n}", run_id=None, ok=True)

    decision = route(cfg, COMPLEX_FEATURE, ledger=ledger)

    assert decision.first.rung == "cheap"  # a hint only: the start does not move down
    assert any("hint: free got feature/complex tasks here right" in h for h in decision.history)


def test_a_cheaper_tier_with_a_long_good_record_becomes_the_first_rung() -> None:
    cfg = config()
    ledger = Ledger.open()
    history = RouteHistory(ledger)
    for n in range(20):
        history.record(
            task_id=f"g{n}",
            run_id=None,
            repo=REPO,
            task_type="feature",
            band="complex",
            tier="free",
            model=None,
        )
        history.record_first_attempt(task_id=f"g{n}", run_id=None, ok=True)

    decision = route(cfg, COMPLEX_FEATURE, ledger=ledger)

    assert decision.first.rung == "free"
    (line,) = decision.history
    assert "free got feature/complex tasks in this repository right on the first attempt " in line
    assert "20/20 times" in line and "starting there instead of cheap" in line
    free = next(c for c in decision.chances if c.rung == "free")
    assert free.samples == 20 and free.probability >= 0.8 > free.prior
    assert "here 20/20" in str(free)  # the record moved the model's prior, and says so
    assert line in explain(decision)


def test_history_is_ignored_when_learning_is_off() -> None:
    cfg = config("\n[routing]\nlearn_from_history = false\n")
    ledger = Ledger.open()
    for n in range(5):
        RouteHistory(ledger).record(
            task_id=f"t{n}",
            run_id="r",
            repo=REPO,
            task_type="bug_fix",
            band="medium",
            tier="free",
            model=None,
        )
        send(
            ledger,
            cfg,
            "groq-llama" if n < 2 else "cerebras-llama",
            "error",
            run_id="r",
            task_id=f"t{n}",
        )
    assert route(cfg, MEDIUM_BUG, ledger=ledger).history == ()


def timed(ledger: Ledger, cfg: ForgeConfig, alias: str, latency: float) -> None:
    model = cfg.models[alias]
    target = Target(alias, model.provider, model.id, model.tier)
    reservation = ledger.reserve(target, Decimal(0), Limits())
    ledger.settle(reservation, outcome="ok", latency=latency)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [("cost", "deepseek"), ("latency", "qwen3-coder"), ("least_loaded", "qwen3-coder")],
)
def test_strategies_inside_a_tier(strategy: str, expected: str) -> None:
    cfg = config(f'\n[routing]\nstrategy = "{strategy}"\n')
    ledger = Ledger.open()
    for _ in range(3):
        timed(ledger, cfg, "deepseek", 9.0)  # busy this minute, and slow
    if strategy == "latency":
        timed(ledger, cfg, "qwen3-coder", 0.4)

    decision = route(cfg, COMPLEX_FEATURE, ledger=ledger)

    assert decision.first.model == expected
    assert decision.strategy == strategy


def test_round_robin_rotates_through_the_tier() -> None:
    cfg = config('\n[routing]\nstrategy = "round_robin"\n')
    router = Router(load_fleet(cfg, Ledger.open(), REPO))
    picks = [router.decide(analyse(MEDIUM_BUG)).first.model for _ in range(4)]
    assert picks == ["groq-llama", "cerebras-llama", "groq-llama", "cerebras-llama"]


def test_estimates_price_each_attempt_and_the_worst_case() -> None:
    cfg = config("\n[cost]\ndaily_budget_usd = 4.20\n[routing]\nmax_attempts_per_tier = 2\n")
    decision = route(cfg, COMPLEX_FEATURE)
    e = decision.estimate
    analysis: TaskAnalysis = decision.analysis
    assert e.input_tokens == analysis.context_tokens + analysis.tokens
    assert e.output_tokens == 1500
    deepseek = (Decimal(e.input_tokens) * Decimal("0.27") + 1500 * Decimal("1.1")) / 1_000_000
    sonnet = (Decimal(e.input_tokens) * 3 + 1500 * 15) / Decimal(1_000_000)
    assert e.first_attempt_usd == deepseek
    assert e.worst_case_attempts == 4
    assert e.worst_case_usd == 2 * deepseek + 2 * sonnet
    assert e.budget_left_usd == Decimal("4.20")
    assert "budget left today $4.20" in explain(decision)[-1]


def test_worst_case_is_bounded_by_max_total_attempts() -> None:
    cfg = config("\n[routing]\nmax_attempts_per_tier = 3\nmax_total_attempts = 4\n")
    assert route(cfg, SIMPLE_EDIT).estimate.worst_case_attempts == 4


def test_unpriced_models_are_unpriced_never_free_and_local_zero_is_zero() -> None:
    models = MODELS.replace("input_price = 0.27\noutput_price = 1.1\n", "")
    cfg = config(models=models)
    decision = route(cfg, COMPLEX_FEATURE)
    assert decision.first.model == "qwen3-coder"  # priced models rank before unpriced ones
    unpriced = route(cfg, COMPLEX_FEATURE, Pins(model="deepseek"))
    assert unpriced.estimate.first_attempt_usd is None
    assert "first attempt unpriced" in explain(unpriced)[-1]
    assert "plus unpriced attempts on deepseek" in explain(unpriced)[-1]
    local = route(cfg, SIMPLE_EDIT)
    assert local.estimate.first_attempt_usd == 0
    assert "first attempt $0," in explain(local)[-1]


def test_budget_left_counts_todays_spend(tmp_path: Path) -> None:
    cfg = config("\n[cost]\ndaily_budget_usd = 1\n")
    ledger = Ledger.open()
    model = cfg.models["sonnet"]
    reservation = ledger.reserve(
        Target("sonnet", model.provider, model.id, model.tier), Decimal("0.25"), Limits()
    )
    from forge.providers.types import Cost

    ledger.settle(reservation, outcome="ok", cost=Cost(Decimal("0.25"), "computed"))  # type: ignore[arg-type]
    assert route(cfg, SIMPLE_EDIT, ledger=ledger).estimate.budget_left_usd == Decimal("0.75")


def test_no_models_at_all_still_explains_where_the_task_would_go() -> None:
    decision = route(ForgeConfig(), MEDIUM_BUG, ledger=Ledger.open())
    lines = explain(decision)
    assert decision.first.model is None
    assert decision.first.rung == "free"
    assert "no usable model on any rung of the ladder" in lines
    assert "estimate: none (no model to price)" in lines
