"""`forge models`, `forge logs` and `forge cost` through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forge.testing.fake_provider import FakeProvider, Fault, ModelInfo, Reply
from tests.conftest import run_forge, write_config

DISCOVERY = """
[providers.router]
base_url = "{url}/api/v1"
discover = "openrouter"

[providers.local]
base_url = "{url}/v1"
discover = "ollama"
"""


def test_models_lists_configured_models_with_prices(fake: FakeProvider, tmp_path: Path) -> None:
    config = write_config(tmp_path / "forge.toml", fake.url)
    done = run_forge("models", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    rows = {m["alias"]: m for m in json.loads(done.stdout)["models"]}
    assert set(rows) == {"alpha", "beta", "claude"}
    assert rows["claude"]["tier"] == "premium"
    assert rows["claude"]["output_price_per_mtok"] == "15"
    assert rows["alpha"]["breaker"] == "closed"
    table = run_forge("models", "--config", str(config))
    assert "alpha" in table.stdout and "premium" in table.stdout


def test_discover_reads_openrouter_prices_and_ollama_tags(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.add_model(
        ModelInfo(
            id="vendor/coder",
            context_window=131072,
            input_price_per_token="0.0000002",
            output_price_per_token="0.0000008",
        )
    )
    config = write_config(tmp_path / "forge.toml", fake.url, DISCOVERY.format(url=fake.url))
    done = run_forge("models", "--discover", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    rows = {m["alias"]: m for m in json.loads(done.stdout)["models"]}
    coder = rows["router/vendor/coder"]
    assert coder["input_price_per_mtok"] == "0.2"
    assert coder["output_price_per_mtok"] == "0.8"
    assert coder["price_source"] == "discovered"
    assert coder["context_window"] == 131072
    assert "local/vendor/coder" in rows, "Ollama's /api/tags lists the same server's models"
    # Discovered models stay listed without asking again.
    again = run_forge("models", "--json", "--config", str(config))
    assert "router/vendor/coder" in again.stdout


def test_discover_reports_an_unreachable_provider_without_failing(tmp_path: Path) -> None:
    config = tmp_path / "forge.toml"
    config.write_text(
        '[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\ndiscover = "ollama"\n'
    )
    done = run_forge("models", "--discover", "--config", str(config))
    assert done.returncode == 0
    assert "local: discovery failed: connection" in done.stdout
    assert "Traceback" not in done.stderr


def test_health_checks_every_model_in_parallel_and_logs_the_calls(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("beta-1", Reply(fault=Fault.NOT_FOUND))
    fake.script("alpha-1", Reply(text="ok", ttft=0.5))
    fake.script("claude-x", Reply(text="ok", ttft=0.5))
    config = write_config(tmp_path / "forge.toml", fake.url)
    done = run_forge("models", "--health", "--json", "--config", str(config))
    assert done.returncode == 1, "one model failed its health check"
    rows = {m["alias"]: m for m in json.loads(done.stdout)["models"]}
    assert rows["alpha"]["health"]["ok"] is True
    assert rows["beta"]["health"]["ok"] is False
    assert "not_found" in rows["beta"]["health"]["error"]
    assert fake.max_concurrent_streams >= 2, "the checks ran at the same time"

    logs = run_forge("logs", "--json")
    attempts = json.loads(logs.stdout)["attempts"]
    assert {a["model"] for a in attempts} == {"alpha", "beta", "claude"}
    assert {a["outcome"] for a in attempts} == {"ok", "error"}
    only = run_forge("logs", "--json", "--model", "beta")
    assert [a["error_kind"] for a in json.loads(only.stdout)["attempts"]] == ["not_found"]
    text = run_forge("logs")
    assert "not_found" in text.stdout


def test_health_exit_code_when_nothing_is_reachable(tmp_path: Path) -> None:
    config = tmp_path / "forge.toml"
    config.write_text(
        '[providers.p]\nbase_url = "http://127.0.0.1:9/v1"\n'
        # Local: unpriced, so not refused by the default budget before it is tried.
        '[models.m]\nprovider = "p"\nid = "x"\ntier = "local"\n'
    )
    done = run_forge("models", "--health", "--config", str(config))
    assert done.returncode == 4
    assert "connection" in done.stdout


def test_cost_flags_unpriced_calls_instead_of_counting_them_free(
    fake: FakeProvider, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "forge.toml",
        fake.url,
        # A local model may go unpriced under the budget; any other is refused.
        '[models.mystery]\nprovider = "fake"\nid = "mystery-1"\ntier = "local"\n',
    )
    assert run_forge("models", "--health", "--config", str(config)).returncode == 0
    report = json.loads(run_forge("cost", "--json", "--config", str(config)).stdout)
    assert report["today"]["model"]["mystery"]["unpriced_calls"] == 1
    assert report["today"]["model"]["alpha"]["unpriced_calls"] == 0
    assert report["budget"]["stop_threshold_usd"] == "5"
    text = run_forge("cost", "--config", str(config)).stdout
    assert "Today" in text and "mystery" in text
    logs = run_forge("logs").stdout
    assert "unpriced" in logs


def test_logs_show_provider_text_verbatim(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(fault=Fault.BAD_REQUEST))
    config = write_config(tmp_path / "forge.toml", fake.url)
    run_forge("models", "--health", "--config", str(config))
    from forge.ledger import Ledger

    ledger = Ledger(Path(os.environ["FORGE_HOME"]) / "ledger.db")
    with ledger._write() as db:  # a provider message that looks like Rich markup
        db.execute(
            "UPDATE attempts SET error = 'bad [/INST] token [bold]x' WHERE error IS NOT NULL"
        )
    done = run_forge("logs")
    assert done.returncode == 0, done.stderr
    assert "bad [/INST] token [bold]x" in done.stdout


def test_health_calls_a_model_with_an_error_inside_its_200_unhealthy(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="ok then broken", fault=Fault.MID_STREAM_ERROR))
    fake.script("beta-1", Reply(text="ok", fault=Fault.FINISH_ERROR))
    fake.script("claude-x", Reply(text="ok"))
    config = write_config(tmp_path / "forge.toml", fake.url)
    done = run_forge("models", "--health", "--json", "--config", str(config))
    assert done.returncode == 1, done.stderr
    rows = {m["alias"]: m["health"] for m in json.loads(done.stdout)["models"]}
    assert rows["alpha"]["ok"] is False and "server_error" in rows["alpha"]["error"]
    assert "Provider disconnected" in rows["alpha"]["error"]
    assert rows["beta"]["ok"] is False and "error_in_body" in rows["beta"]["error"]
    assert rows["claude"]["ok"] is True
    assert "Traceback" not in done.stderr


def test_health_names_a_model_id_the_server_does_not_know_and_shows_server_words(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(fault=Fault.NOT_FOUND, server="litellm"))
    fake.script("beta-1", Reply(fault=Fault.CONTEXT_TOO_LONG, server="transformers"))
    fake.script("claude-x", Reply(text="ok"))
    config = write_config(tmp_path / "forge.toml", fake.url)
    done = run_forge("models", "--health", "--json", "--config", str(config))
    assert done.returncode == 1, done.stderr
    rows = {m["alias"]: m["health"] for m in json.loads(done.stdout)["models"]}
    alpha = rows["alpha"]["error"]
    assert "not_found (HTTP 400)" in alpha
    assert "'alpha-1' is unknown to the server" in alpha and "[models.alpha]" in alpha
    assert "Invalid model name passed in model=alpha-1" in alpha
    beta = rows["beta"]["error"]
    assert "context_too_long (HTTP 400): This model's maximum context length" in beta
    assert '"detail"' not in beta
    text = run_forge("models", "--health", "--config", str(config))
    assert "check `id` in [models.alpha] of forge.toml" in " ".join(text.stdout.split())


OPENAI_DISCOVERY = """
[providers.served]
base_url = "{url}/v1"
discover = "openai"
"""


def discovered_windows(fake: FakeProvider, tmp_path: Path) -> dict[str, object]:
    config = tmp_path / "forge.toml"
    config.write_text(OPENAI_DISCOVERY.format(url=fake.url), encoding="utf-8")
    done = run_forge("models", "--discover", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = json.loads(done.stdout)["models"]
    return {m["alias"]: m["context_window"] for m in rows}


def test_discover_reads_the_context_llama_server_runs_with_not_what_it_was_trained_for(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.server = "llama-server"
    fake.add_model(
        ModelInfo(id="qwen2.5-coder-1.5b-q4.gguf", context_window=1024, trained_context=32768)
    )
    windows = discovered_windows(fake, tmp_path)
    assert windows == {"served/qwen2.5-coder-1.5b-q4.gguf": 1024}
    assert any(r.path.endswith("/props") for r in fake.requests)


def test_discover_reads_litellm_model_info_and_vllm_max_model_len(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.server = "litellm"
    fake.add_model(ModelInfo(id="gpt-4o-mini", context_window=128000))
    fake.add_model(ModelInfo(id="local-coder", context_window=16384))
    assert discovered_windows(fake, tmp_path) == {
        "served/gpt-4o-mini": 128000,
        "served/local-coder": 16384,
    }
    fake.server = "vllm"
    fake.add_model(ModelInfo(id="Qwen/Qwen2.5-Coder-7B", context_window=32768))
    assert discovered_windows(fake, tmp_path)["served/Qwen/Qwen2.5-Coder-7B"] == 32768


@pytest.mark.parametrize("server", ["llama-server", "litellm", "vllm"])
def test_discover_ignores_context_sizes_that_are_not_sizes(
    fake: FakeProvider, tmp_path: Path, server: str
) -> None:
    fake.server = server
    for index, odd in enumerate([float("inf"), -5, True, "4096", 10**30, {"n": 1}, None]):
        fake.add_model(ModelInfo(id=f"odd-{index}", context_window=odd))  # type: ignore[arg-type]
    windows = discovered_windows(fake, tmp_path)
    assert len(windows) == 7
    assert set(windows.values()) == {None}


def test_reset_clears_saved_breaker_state_for_every_model_or_one(
    fake: FakeProvider, tmp_path: Path
) -> None:
    import time

    from forge.ledger import Ledger

    config = write_config(tmp_path / "forge.toml", fake.url)
    ledger = Ledger.open()
    ledger.save_breaker("fake", "alpha-1", 3, time.time() + 280, "alpha: connection: refused")
    ledger.save_breaker("fake", "beta-1", 4, time.time() + 280, "beta: server_error: boom")

    def breakers() -> dict[str, str]:
        listed = run_forge("models", "--json", "--config", str(config))
        return {m["alias"]: m["breaker"] for m in json.loads(listed.stdout)["models"]}

    assert breakers()["alpha"] == "open" and breakers()["beta"] == "open"
    one = run_forge("models", "--reset", "alpha", "--config", str(config))
    assert one.returncode == 0, one.stderr
    assert "alpha: breaker reset (it was cooling down until" in one.stdout
    assert "after 3 failures" in one.stdout
    assert breakers() == {"alpha": "closed", "beta": "open", "claude": "closed"}
    again = run_forge("models", "--reset", "alpha", "--config", str(config))
    assert "alpha has no saved breaker state" in again.stdout
    every = run_forge("models", "--reset", "--json", "--config", str(config))
    assert every.returncode == 0, every.stderr
    assert json.loads(every.stdout)["reset"]["cleared"] == 1
    assert set(breakers().values()) == {"closed"}
    assert not Ledger.open().breakers()


def test_reset_of_an_unknown_model_exits_2_with_a_did_you_mean(
    fake: FakeProvider, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "forge.toml", fake.url)
    typo = run_forge("models", "--reset", "alpah", "--config", str(config))
    assert typo.returncode == 2
    assert "unknown model 'alpah'; did you mean 'alpha'?" in typo.stderr
    stray = run_forge("models", "alpha", "--config", str(config))
    assert stray.returncode == 2 and "goes with --reset" in stray.stderr
