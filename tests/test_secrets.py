"""A key in the environment never shows up in output, the ledger or exception text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.config import parse_config_text
from forge.ledger import Ledger
from forge.providers.client import CallFailed, ModelClient
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import fake_config, run_forge

SENTINEL = "sk-SENTINEL-7f3a9c1e5b2d4f6a8c0e2b4d6f8a0c2e"


def keyed_config(tmp_path: Path, url: str) -> Path:
    text = fake_config(url).replace(
        f'base_url = "{url}/v1"\n', f'base_url = "{url}/v1"\napi_key_env = "FAKE_API_KEY"\n'
    )
    path = tmp_path / "forge.toml"
    path.write_text(text)
    return path


def ledger_bytes() -> bytes:
    home = Path(os.environ["FORGE_HOME"])
    return b"".join(p.read_bytes() for p in home.glob("ledger.db*"))


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert SENTINEL not in text
        assert SENTINEL[:12] not in text and SENTINEL[-12:] not in text


def test_no_trace_of_the_key_after_a_good_and_a_failing_run(
    fake: FakeProvider, tmp_path: Path
) -> None:
    config = keyed_config(tmp_path, fake.url)
    env = {"FAKE_API_KEY": SENTINEL}
    good = run_forge("models", "--health", "--config", str(config), env=env)
    assert good.returncode == 0, good.stderr
    auth_headers = [r.headers.get("authorization", "") for r in fake.requests]
    assert f"Bearer {SENTINEL}" in auth_headers, "the key was really sent to the provider"

    fake.script("alpha-1", Reply(fault=Fault.AUTH))  # the provider echoes the key it got
    fake.script("beta-1", Reply(fault=Fault.AUTH))
    bad = run_forge("models", "--health", "--config", str(config), env=env)
    assert bad.returncode != 0
    assert "auth" in bad.stdout + bad.stderr

    logs = run_forge("logs", "--json", "-n", "50", env=env)
    shown = run_forge("config", "show", "--config", str(config), env=env)
    assert_clean(good.stdout, good.stderr, bad.stdout, bad.stderr, logs.stdout, shown.stdout)
    assert SENTINEL.encode() not in ledger_bytes()
    assert b"auth" in ledger_bytes()


async def test_exception_text_carries_no_key(
    fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", SENTINEL)
    config = parse_config_text(keyed_config(tmp_path, fake.url).read_text())
    fake.script("alpha-1", Reply(fault=Fault.AUTH))
    async with ModelClient(config, ledger=Ledger(tmp_path / "l.db")) as client:
        with pytest.raises(CallFailed) as caught:
            await client.complete("alpha", "hi")
    error = caught.value
    assert "auth" in str(error)
    assert_clean(str(error), repr(error), *(e.detail for e in error.errors))
    assert "[redacted]" in str(error)


async def test_a_key_pasted_with_a_carriage_return_is_refused_not_leaked(
    fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", SENTINEL + "\r")
    config = parse_config_text(keyed_config(tmp_path, fake.url).read_text())
    async with ModelClient(config, ledger=Ledger(tmp_path / "l.db")) as client:
        with pytest.raises(CallFailed) as caught:
            await client.complete("alpha", "hi")
    assert "FAKE_API_KEY holds spaces, control or non-ASCII characters" in str(caught.value)
    assert_clean(str(caught.value))
    assert fake.requests == [], "nothing was sent with a broken key"
