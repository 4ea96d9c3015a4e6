"""forge's real CLI against llama.cpp's real llama-server running a real model (Gemma 3 270M, one
thread): discovery, health checks, a streamed fan-out over both APIs it offers, a request that
overflows its context, and a run-milestone task that a 270M model cannot do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_forge
from tests.interop.real_servers import LLAMA_ALIAS
from tests.test_run_milestone import git, python_repo

# One worker runs every interop test: each worker would start its own servers.
pytestmark = [pytest.mark.interop, pytest.mark.xdist_group("interop")]

# About 1,500 of Gemma's tokens: over the small window, inside the wide one.
LONG_PROMPT = "Summarise this list. " + " ".join(f"item-{n} is number {n};" for n in range(125))


def write_config(
    tmp_path: Path, small: str, wide: str, extra: str = "", wide_tokens: int = 200
) -> Path:
    """The small server as an OpenAI-compatible provider (discovered) and as an Anthropic one,
    the wide server as a second OpenAI-compatible provider (`wide_tokens`: its answer's cap)."""
    path = tmp_path / "forge.toml"
    path.write_text(
        f"""
[providers.llama]
base_url = "{small}/v1"
discover = "openai"

[providers.llama-messages]
api = "anthropic"
base_url = "{small}/v1"

[providers.llama-wide]
base_url = "{wide}/v1"

[models.small]
provider = "llama"
id = "{LLAMA_ALIAS}"
tier = "local"
max_output_tokens = 48
temperature = 0

[models.messages]
provider = "llama-messages"
id = "{LLAMA_ALIAS}"
tier = "local"
max_output_tokens = 48
temperature = 0

[models.wide]
provider = "llama-wide"
id = "{LLAMA_ALIAS}"
tier = "local"
context_window = 4096
max_output_tokens = {wide_tokens}
temperature = 0
{extra}
""",
        encoding="utf-8",
    )
    return path


def forge(*args: str, cwd: Path | None = None, timeout: float = 300) -> Any:
    done = run_forge(*args, cwd=cwd, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def fanout(config: Path, prompt: str, models: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = forge("fanout", prompt, "-m", models, "--json", "--config", str(config))
    answers = {a["key"]: a for a in json.loads(done.stdout)["answers"]}
    return done.returncode, answers


def test_discovery_reads_the_served_model_and_its_context(
    llama_urls: tuple[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, *llama_urls)

    done = forge("models", "--discover", "--json", "--config", str(config))

    assert done.returncode == 0, done.stderr
    served = [m for m in json.loads(done.stdout)["models"] if m["provider"] == "llama"]
    assert [m["model_id"] for m in served] == [LLAMA_ALIAS]
    assert served[0]["alias"] == "small", "the served model is the one configured as `small`"
    assert served[0]["context_window"] == 1024, "the window the server runs with (/props n_ctx)"


def test_health_checks_the_model_over_both_apis(
    llama_urls: tuple[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, *llama_urls)

    done = forge("models", "--health", "--json", "--config", str(config))

    assert done.returncode == 0, done.stdout
    health = {m["alias"]: m["health"] for m in json.loads(done.stdout)["models"]}
    assert all(check["ok"] for check in health.values()), health


def test_a_streamed_fanout_over_both_apis_reads_text_usage_and_the_cut(
    llama_urls: tuple[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, *llama_urls)

    code, answers = fanout(
        config, "Write a long story about a lighthouse keeper.", "small,messages"
    )

    assert code == 0
    for answer in answers.values():
        assert answer["status"] == "ok", answer
        assert answer["text"].strip(), "the real model said something"
        assert answer["ttft_s"] is not None, "it arrived as a stream"
        assert answer["input_tokens"] > 0 and answer["output_tokens"] > 0, "usage was read"
        assert answer["output_tokens"] <= 48
        assert answer["truncated"] is True, "a story does not fit 48 tokens: flagged, not whole"


def test_a_prompt_over_the_window_is_context_too_long_in_the_servers_words(
    llama_urls: tuple[str, str], tmp_path: Path
) -> None:
    # The wide model's answer only has to start: a few tokens of a 270M model's time.
    config = write_config(tmp_path, *llama_urls, wide_tokens=8)

    code, answers = fanout(config, LONG_PROMPT, "small,wide")

    assert code == 0, "the wide model answered"
    small = answers["small"]
    assert small["status"] == "failed" and small["error_kind"] == "context_too_long"
    assert small["attempts"] == 1, "a request that cannot fit is not retried"
    assert "exceeds the available context size" in small["cause"]
    assert answers["wide"]["status"] == "ok"


def test_a_model_id_the_server_does_not_check_still_reaches_its_one_model(
    llama_urls: tuple[str, str], tmp_path: Path
) -> None:
    """llama-server serves one model whatever name a request gives: a typo in `id` is not an
    error there, and forge does not invent one."""
    extra = '[models.typo]\nprovider = "llama"\nid = "gemma-3-270n"\ntier = "local"\n'
    extra += "max_output_tokens = 8\n"
    config = write_config(tmp_path, *llama_urls, extra=extra)

    code, answers = fanout(config, "Say hi.", "typo")

    assert code == 0 and answers["typo"]["status"] == "ok"


def test_run_milestone_with_the_real_model_retries_escalates_and_reports(
    llama_urls: tuple[str, str], tmp_path: Path
) -> None:
    """A 270M model does not fix the bug (or answers in no edit format at all). forge repairs,
    escalates with the failure in hand, and ends with a clear report: exit 1, nothing merged,
    the user's checkout untouched. One attempt a rung: each costs the real model's time."""
    repo = python_repo(tmp_path)  # add() subtracts; its test says so
    head = git(repo, "rev-parse", "HEAD")
    extra = f"""
[models.next]
provider = "llama-wide"
id = "{LLAMA_ALIAS}"
tier = "free"
context_window = 4096
max_output_tokens = 200
temperature = 0
input_price = 0
output_price = 0

[tiers]
ladder = ["local", "free"]

[routing]
max_attempts_per_tier = 1
max_total_attempts = 2
learn_from_history = false
"""
    config = write_config(tmp_path, *llama_urls, extra=extra)

    done = forge(
        "run-milestone",
        "--goal",
        "Fix add in calc.py so that the test passes",
        "--tier",
        "local",
        "--json",
        "-c",
        str(config),
        cwd=repo,
        timeout=900,
    )

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    task = report["tasks"][0]
    assert task["state"] == "failed"
    assert "could be reached" not in task["reason"]
    assert task["rungs_tried"] == ["local", "free"], "escalated after the local rung failed"
    attempts = task["attempts"]
    assert len(attempts) == 2 and all(a["headline"] for a in attempts), attempts
    assert attempts[-1]["model"] == "next"
    assert report["branch"] is None and git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""
