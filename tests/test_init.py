"""`forge init`: a starter forge.toml from the Ollama models running and the keys set."""

from __future__ import annotations

import os
import socket
import threading
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from typer.testing import CliRunner, Result

from forge.cli import app
from forge.config import load_config, parse_config_text
from forge.config.presets import ollama_root
from forge.config.starter import find_ollama_models, model_alias, starter_config
from forge.testing.fake_provider import FakeProvider, ModelInfo

KEY_VARIABLES = (
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "DEEPSEEK_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
)


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> Path:
    """No real Ollama: OLLAMA_HOST points at a closed port unless a test says otherwise.

    conftest.py's `isolated_home` already keeps the user's files and keys out.
    """
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


def forge_init(*args: str) -> Result:
    return CliRunner().invoke(app, ["init", *args])


def written(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    return data


# -- the command -------------------------------------------------------------------------------


def test_without_ollama_the_file_has_no_ollama_entries(isolated: Path) -> None:
    host = os.environ["OLLAMA_HOST"]

    result = forge_init()

    assert result.exit_code == 0, result.output
    assert f"Ollama not running at http://{host}" in result.stdout
    assert "Groq: GROQ_API_KEY not set" in result.stdout
    text = (isolated / "forge.toml").read_text(encoding="utf-8")
    assert text.startswith("# forge.toml: written by `forge init`")
    assert "ollama" not in written(isolated / "forge.toml").get("providers", {})
    assert "forge init --force" in result.stdout  # tells the user what to do next
    load_config(isolated / "forge.toml", env={})


def test_each_ollama_model_becomes_a_local_model(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulled = [ModelInfo(id="llama3.2:3b"), ModelInfo(id="qwen2.5-coder:7b")]
    with FakeProvider(pulled) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        result = forge_init()

    assert result.exit_code == 0, result.output
    assert "Ollama: 2 models (llama3.2:3b, qwen2.5-coder:7b)" in result.stdout
    data = written(isolated / "forge.toml")
    assert data["providers"]["ollama"]["base_url"] == f"{ollama.url}/v1"
    assert "api_key_env" not in data["providers"]["ollama"]
    assert data["models"]["llama3-2-3b"] == {
        "provider": "ollama",
        "id": "llama3.2:3b",
        "tier": "local",
        "input_price": 0.0,
        "output_price": 0.0,
    }
    assert data["models"]["qwen2-5-coder-7b"]["id"] == "qwen2.5-coder:7b"
    assert data["tiers"]["ladder"] == ["local"]
    loaded = load_config(isolated / "forge.toml", env={}).config
    assert loaded.models_in("local") == ["llama3-2-3b", "qwen2-5-coder-7b"]


def test_a_set_key_is_named_never_copied(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = "gsk_init_sentinel_0123456789"
    monkeypatch.setenv("GROQ_API_KEY", sentinel)

    result = forge_init()

    assert result.exit_code == 0, result.output
    assert "Groq: GROQ_API_KEY is set" in result.stdout
    text = (isolated / "forge.toml").read_text(encoding="utf-8")
    assert 'api_key_env = "GROQ_API_KEY"' in text
    assert sentinel not in text + result.output
    data = written(isolated / "forge.toml")
    assert set(data["providers"]) == {"groq"}
    assert data["tiers"]["ladder"] == ["free"]
    assert load_config(isolated / "forge.toml", env={}).config.cost.daily_budget_usd == 5


def test_an_existing_file_is_kept_without_force(isolated: Path) -> None:
    target = isolated / "forge.toml"
    target.write_text("# mine\n", encoding="utf-8")

    result = forge_init()

    assert result.exit_code == 2
    assert f"{Path('forge.toml')} already exists" in result.stderr
    assert "--force" in result.stderr
    assert target.read_text(encoding="utf-8") == "# mine\n"


def test_force_overwrites(isolated: Path) -> None:
    target = isolated / "forge.toml"
    target.write_text("# mine\n", encoding="utf-8")

    result = forge_init("--force")

    assert result.exit_code == 0, result.output
    assert "[cost]" in target.read_text(encoding="utf-8")


def test_path_chooses_where_to_write(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    target = isolated / "conf" / "team.toml"
    target.parent.mkdir()

    result = forge_init("--path", str(target))

    assert result.exit_code == 0, result.output
    assert not (isolated / "forge.toml").exists()
    config = load_config(target, env={}).config
    assert config.models["sonnet"].input_price == 3
    assert config.tiers.critical == ["premium"]


# -- the library under it ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "alias"),
    [
        ("llama3.2:3b", "llama3-2-3b"),
        ("qwen2.5-coder:latest", "qwen2-5-coder"),
        ("hf.co/Org/Model-GGUF:Q4_K_M", "hf-co-org-model-gguf-q4_k_m"),
        (":::", "model"),
    ],
)
def test_model_aliases_are_bare_toml_keys(model_id: str, alias: str) -> None:
    assert model_alias(model_id) == alias


def test_the_starter_with_everything_set_is_valid() -> None:
    env = {name: f"sentinel-{name.lower()}" for name in KEY_VARIABLES}

    starter = starter_config(["qwen3-coder", "llama3.2:3b"], env)

    text = tomli_w.dumps(starter)
    config = parse_config_text(text)
    assert not any(value in text for value in env.values())
    assert {p.api_key_env for p in config.providers.values()} == {None, *KEY_VARIABLES}
    assert config.tiers.ladder == ["local", "free", "cheap", "premium"]
    assert config.models["qwen3-coder"].provider == "ollama"
    assert config.models["qwen3-coder-openrouter"].id == "qwen/qwen3-coder"
    assert config.cost.warn_threshold_usd == Decimal(4)
    assert config.cost.stop_threshold_usd == Decimal(5)


def test_the_starter_with_nothing_found_has_no_tiers() -> None:
    starter = starter_config([], {"GROQ_API_KEY": "  "})

    assert "tiers" not in starter and "providers" not in starter
    parse_config_text(tomli_w.dumps(starter))


@pytest.mark.parametrize(
    ("host", "root"),
    [
        ("", "http://localhost:11434"),
        ("0.0.0.0", "http://localhost:11434"),
        ("example.org:5000", "http://example.org:5000"),
        ("https://ollama.example.org", "https://ollama.example.org"),
        ("http://10.0.0.2:8080/", "http://10.0.0.2:8080"),
    ],
)
def test_ollama_host_is_read_like_ollama_reads_it(host: str, root: str) -> None:
    assert ollama_root({"OLLAMA_HOST": host}) == root


async def test_no_ollama_means_no_models() -> None:
    assert await find_ollama_models(f"http://127.0.0.1:{closed_port()}") == []


async def test_a_silent_server_times_out_to_no_models() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"

        assert await find_ollama_models(base, timeout=0.2) == []


class NotOllama(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>a different server</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def not_ollama() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_something_else_on_the_port_means_no_models(not_ollama: str) -> None:
    assert await find_ollama_models(not_ollama) == []
