"""forge.toml: discovery, merging, FORGE_* overrides, `forge config show`, and clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from forge.cli import app
from forge.config import load_config

ROOT = Path(__file__).resolve().parent.parent
BAD_CONFIGS = sorted((Path(__file__).parent / "bad_configs").glob("*.toml"))
# Corpus files that hold a would-be secret carry this marker inside it.
SECRET_MARKER = "SENTINEL"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery starts from an empty folder (conftest.py already isolates home and keys)."""
    monkeypatch.chdir(tmp_path)


def forge(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def show_json(*args: str) -> dict[str, Any]:
    result = forge("config", "show", "--json", *args)
    assert result.exit_code == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def expected_substring(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# expect: (.+)", first)
    assert match, f"{path.name}: the first line must be '# expect: <substring>'"
    return match.group(1)


# -- bad configuration: one message, the file, the key, exit 2, never a traceback --------------


def test_the_corpus_covers_enough_mistakes() -> None:
    assert len(BAD_CONFIGS) >= 18


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=lambda p: p.stem)
def test_bad_config_is_refused_with_a_clear_message(path: Path) -> None:
    result = forge("config", "show", "--config", str(path))

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    assert result.stderr.startswith("forge: error: ")
    assert str(path) in result.stderr
    assert expected_substring(path) in result.stderr
    assert "Traceback" not in result.output
    assert SECRET_MARKER not in result.output


def test_bad_config_through_the_installed_entry_point() -> None:
    path = next(p for p in BAD_CONFIGS if p.stem == "literal_key_in_api_key_env")
    completed = subprocess.run(
        [sys.executable, "-m", "forge", "config", "show", "--config", str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )

    assert completed.returncode == 2
    assert f"{path}:4: providers.groq.api_key_env" in completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    assert SECRET_MARKER not in completed.stdout + completed.stderr


def test_a_model_tier_is_checked_against_the_ladder_and_the_built_in_tiers(tmp_path: Path) -> None:
    models = (
        '[providers.fake]\nbase_url = "http://127.0.0.1:1/v1"\n'
        '[models.box]\nprovider = "fake"\nid = "box"\ntier = "gpu-bx"\n'
        '[models.own]\nprovider = "fake"\nid = "own"\ntier = "paid"\n'
        '[models.gpu]\nprovider = "fake"\nid = "gpu"\ntier = "gpu-box"\n'
    )
    path = write(tmp_path / "forge.toml", models + '[tiers]\nladder = ["gpu-box"]\n')

    result = forge("config", "show", "--config", str(path))

    assert result.exit_code == 2
    assert "models.box.tier: unknown tier 'gpu-bx'; did you mean 'gpu-box'?" in result.stderr
    assert "paid" not in result.stderr  # a tier of one's own, for --tier, like nothing known
    write(path, models.replace("gpu-bx", "gpu-box") + '[tiers]\nladder = ["gpu-box"]\n')
    assert forge("config", "show", "--config", str(path)).exit_code == 0


def test_a_bad_override_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGE_COST__DAILY_BUDGET_USD", "-1")

    result = forge("config", "show")

    assert result.exit_code == 2
    assert "env FORGE_COST__DAILY_BUDGET_USD: cost.daily_budget_usd" in result.stderr


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "forge.toml"

    result = forge("config", "show", "--config", str(missing))

    assert result.exit_code == 2
    assert f"{missing}: no such configuration file" in result.stderr


# -- where configuration comes from ----------------------------------------------------------


def test_discovery_walks_up_to_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    project = write(repo / "forge.toml", "[cost]\ndaily_budget_usd = 3\n")
    deep = repo / "src" / "deep"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)

    shown = show_json()

    assert shown["files"] == [str(project)]
    assert shown["values"]["cost.daily_budget_usd"] == {"value": "3", "source": str(project)}


def test_discovery_stops_at_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "forge.toml", "[cost]\ndaily_budget_usd = 3\n")  # outside the repository
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")

    shown = show_json()

    assert shown["files"] == []
    assert shown["values"]["cost.daily_budget_usd"] == {"value": "5", "source": "default"}


def test_the_project_file_is_merged_over_the_user_file(isolated_home: Path, tmp_path: Path) -> None:
    user = write(
        isolated_home / ".config" / "forge" / "forge.toml",
        "[cost]\ndaily_budget_usd = 9\nrun_budget_usd = 1\n",
    )
    project = write(tmp_path / "forge.toml", "[cost]\ndaily_budget_usd = 3\n")

    shown = show_json()

    assert shown["files"] == [str(user), str(project)]
    values = shown["values"]
    assert values["cost.daily_budget_usd"] == {"value": "3", "source": str(project)}
    assert values["cost.run_budget_usd"] == {"value": "1", "source": str(user)}
    assert values["routing.strategy"]["source"] == "default"
    text = forge("config", "show").stdout
    assert f"#   {user}\n#   {project}\n" in text
    assert re.search(rf"cost\.run_budget_usd = 1 +# {re.escape(str(user))}\n", text)


def test_an_environment_variable_overrides_one_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "forge.toml", "[cost]\ndaily_budget_usd = 3\nrun_budget_usd = 1\n")
    monkeypatch.setenv("FORGE_COST__DAILY_BUDGET_USD", "7.5")

    shown = show_json()
    text = forge("config", "show").stdout

    assert shown["values"]["cost.daily_budget_usd"] == {
        "value": "7.5",
        "source": "env FORGE_COST__DAILY_BUDGET_USD",
    }
    assert shown["values"]["cost.run_budget_usd"]["value"] == "1"
    assert re.search(r"cost\.daily_budget_usd = 7\.5 +# env FORGE_COST__DAILY_BUDGET_USD\n", text)
    assert "\x1b[" not in text  # not a terminal: plain text


@pytest.mark.parametrize("how", ["--config", "FORGE_CONFIG"])
def test_an_explicit_file_replaces_discovery(
    how: str, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(isolated_home / ".config" / "forge" / "forge.toml", "[cost]\nrun_budget_usd = 1\n")
    write(tmp_path / "forge.toml", "[cost]\ndaily_budget_usd = 3\n")
    chosen = write(tmp_path / "elsewhere" / "ci.toml", "[cost]\ndaily_budget_usd = 2\n")
    args: tuple[str, ...] = ("--config", str(chosen)) if how == "--config" else ()
    if how == "FORGE_CONFIG":
        monkeypatch.setenv("FORGE_CONFIG", str(chosen))

    shown = show_json(*args)

    assert shown["files"] == [str(chosen)]
    assert shown["values"]["cost.daily_budget_usd"]["value"] == "2"
    assert "cost.run_budget_usd" not in shown["values"]


# -- what `config show` prints ----------------------------------------------------------------


def test_show_says_whether_a_key_variable_is_set_never_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentinel = "gsk_sentinel_value_that_must_not_print"
    monkeypatch.setenv("GROQ_API_KEY", sentinel)
    write(
        tmp_path / "forge.toml",
        """
[providers.groq]
base_url = "https://api.groq.com/openai/v1"
api_key_env = "GROQ_API_KEY"

[providers.anthropic]
api = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_key_env = "ANTHROPIC_API_KEY"
""",
    )

    text = forge("config", "show").stdout
    values = show_json()["values"]

    assert '"GROQ_API_KEY"' in text and "(GROQ_API_KEY set)" in text
    assert "(ANTHROPIC_API_KEY not set)" in text
    assert values["providers.groq.api_key_env"]["variable_set"] is True
    assert values["providers.anthropic.api_key_env"]["variable_set"] is False
    assert sentinel not in text + json.dumps(values)


def test_show_lists_every_leaf_with_its_source(tmp_path: Path) -> None:
    project = write(
        tmp_path / "forge.toml",
        """
[providers.groq]
base_url = "https://api.groq.com/openai/v1"
proxy = "http://me:hunter2@proxy.internal:3128"

[models.fast]
provider = "groq"
id = "llama-3.1-8b-instant"
tier = "free"
input_price = 0.59

[routing]
max_concurrent_tasks = 2

[[validation.custom]]
name = "shellcheck"
command = "shellcheck x.sh"
""",
    )

    values = show_json()["values"]
    text = forge("config", "show").stdout

    assert values["models.fast.input_price"] == {"value": "0.59", "source": str(project)}
    assert values["routing.max_concurrent_tasks"]["source"] == str(project)
    # A table the file opened does not make its other keys the file's.
    assert values["routing.strategy"] == {"value": "cost", "source": "default"}
    assert values["providers.groq.timeout.idle"]["source"] == "default"
    assert values["validation.custom.0.name"]["value"] == "shellcheck"
    assert values["tiers.ladder"]["value"] == ["local", "free", "cheap", "premium"]
    assert "hunter2" not in text + json.dumps(values)
    assert "\n[routing]\nrouting.max_concurrent_tasks = 2 " in text
    assert 'tiers.ladder = ["local", "free", "cheap", "premium"] ' in text


def test_show_without_any_file_prints_the_defaults() -> None:
    result = forge("config", "show")

    assert result.exit_code == 0
    assert result.stdout.startswith("# Files read: none")
    assert re.search(r"cost\.daily_budget_usd = 5 +# default\n", result.stdout)


def test_the_example_file_loads_and_shows() -> None:
    example = ROOT / "forge.toml.example"

    config = load_config(example, env={}).config

    assert {"ollama", "groq", "openrouter", "anthropic"} <= set(config.providers)
    assert {m.provider for m in config.models.values()} == set(config.providers)
    assert config.tiers.critical and config.tiers.simple_edit
    assert config.validation.custom[0].name == "shellcheck"
    assert forge("config", "show", "--config", str(example)).exit_code == 0
