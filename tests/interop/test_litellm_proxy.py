"""forge's real CLI against a real LiteLLM proxy serving mock models: health checks, a streamed
fan-out, an unknown model id and the proxy's own errors, in LiteLLM's words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_forge
from tests.interop.conftest import ANSWER_A, ANSWER_B

# One worker runs every interop test: each worker would start its own servers.
pytestmark = [pytest.mark.interop, pytest.mark.xdist_group("interop")]

# alias -> id on the proxy; "no-such-model" is not in its config.
MODELS = {
    "a": "mock-a",
    "b": "mock-b",
    "ghost": "no-such-model",
    "flaky": "mock-500",
    "throttled": "mock-429",
}


def write_config(tmp_path: Path, url: str) -> Path:
    """A forge.toml with the proxy as an OpenAI-compatible provider, one alias per model."""
    lines = [f'[providers.litellm]\nbase_url = "{url}/v1"\napi_key_env = "LITELLM_KEY"\n']
    for alias, model_id in MODELS.items():
        lines.append(f'[models.{alias}]\nprovider = "litellm"\nid = "{model_id}"\ntier = "local"\n')
    path = tmp_path / "forge.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def forge(*args: str) -> Any:
    return run_forge(*args, env={"LITELLM_KEY": "sk-interop"})


def fanout(config: Path, models: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = forge("fanout", "Is it simple?", "-m", models, "--json", "--config", str(config))
    assert "Traceback" not in done.stderr, done.stderr
    answers = {a["key"]: a for a in json.loads(done.stdout)["answers"]}
    return done.returncode, answers


def test_health_checks_every_mock_model_through_the_proxy(litellm_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, litellm_url)
    done = forge("models", "--health", "--json", "--config", str(config))
    assert done.returncode == 1, "two of the models fail their check"
    rows = {m["alias"]: m["health"] for m in json.loads(done.stdout)["models"]}
    assert rows["a"]["ok"] and rows["b"]["ok"]
    assert not rows["ghost"]["ok"] and "not_found" in rows["ghost"]["error"]
    assert not rows["flaky"]["ok"] and "server_error" in rows["flaky"]["error"]


def test_a_streamed_fanout_gets_both_mock_answers_whole(litellm_url: str, tmp_path: Path) -> None:
    code, answers = fanout(write_config(tmp_path, litellm_url), "a,b")
    assert code == 0
    assert answers["a"]["text"] == ANSWER_A and answers["b"]["text"] == ANSWER_B
    for answer in answers.values():
        assert answer["status"] == "ok" and answer["attempts"] == 1
        assert answer["ttft_s"] is not None, "the answer arrived as a stream"
        assert answer["input_tokens"] > 0 and answer["output_tokens"] > 0, "usage was read"


def test_an_unknown_model_id_is_not_found_in_litellms_words(
    litellm_url: str, tmp_path: Path
) -> None:
    """LiteLLM answers 400 "Invalid model name"; forge calls it not_found, tries once, and says
    which `id` to fix."""
    code, answers = fanout(write_config(tmp_path, litellm_url), "ghost")
    assert code == 4, "no model could be reached"
    ghost = answers["ghost"]
    assert ghost["error_kind"] == "not_found" and ghost["attempts"] == 1
    assert "check `id` in [models.ghost]" in ghost["cause"]
    assert "Invalid model name passed in model=no-such-model" in ghost["cause"]
    assert "{'" not in ghost["cause"], "LiteLLM's words, not its printed dict"


def test_the_proxys_mock_errors_are_rows_with_their_cause(litellm_url: str, tmp_path: Path) -> None:
    code, answers = fanout(write_config(tmp_path, litellm_url), "a,flaky,throttled")
    assert code == 0, "one model answered"
    assert answers["a"]["text"] == ANSWER_A
    flaky, throttled = answers["flaky"], answers["throttled"]
    assert flaky["status"] == "failed" and flaky["error_kind"] == "server_error"
    assert "HTTP 500" in flaky["cause"] and "mock internal server error" in flaky["cause"]
    assert flaky["attempts"] > 1, "a server error is retried"
    assert throttled["status"] == "failed" and throttled["error_kind"] == "rate_limit"
    assert "mock rate limit error" in throttled["cause"]


def test_the_proxys_anthropic_api_whole_and_its_in_band_stream_error(
    litellm_url: str, tmp_path: Path
) -> None:
    """LiteLLM 1.80's `/v1/messages` answers a mock model whole, but a stream of one is a
    single `data: {"error": ...}` event (the proxy fails inside its own stream). forge streams:
    the health check and the fan-out are failures in the proxy's words, never an answer."""
    config = tmp_path / "forge.toml"
    config.write_text(
        f'[providers.messages]\napi = "anthropic"\nbase_url = "{litellm_url}/v1"\n'
        'api_key_env = "LITELLM_KEY"\n\n'
        '[models.a]\nprovider = "messages"\nid = "mock-a"\ntier = "local"\n',
        encoding="utf-8",
    )

    health = forge("models", "--health", "--json", "--config", str(config))
    code, answers = fanout(config, "a")

    check = json.loads(health.stdout)["models"][0]["health"]
    assert health.returncode == 4 and check["ok"] is False  # no model answered
    assert "__aiter__" in check["error"]
    assert code == 4, "the only model gave no answer"
    answer = answers["a"]
    assert answer["status"] == "failed" and answer["text"] in ("", None), answer
    assert "__aiter__" in answer["cause"], "the proxy's own error, shown"
