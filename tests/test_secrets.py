"""A key in the environment never shows up in output, the ledger or exception text."""

from __future__ import annotations

import json
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


# -- a key inside what a model or a server sends back ----------------------------------------------

MIDDLE = SENTINEL[10:32]  # 22 of its 46 characters, from the middle
ECHOED = f"Your key is {SENTINEL} and again, in part: {MIDDLE}. The capital is Paris."


def assert_no_fragment(text: str) -> None:
    """No run of 8 consecutive characters of the key (the redaction's promise)."""
    assert_clean(text)
    for start in range(len(SENTINEL) - 7):
        assert SENTINEL[start : start + 8] not in text, SENTINEL[start : start + 8]


def test_a_key_a_model_repeats_is_masked_in_every_output_and_the_store(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text=ECHOED))
    fake.script("beta-1", Reply(text=f"Paris. {SENTINEL[-22:]}"))
    config = str(keyed_config(tmp_path, fake.url))
    env = {"FAKE_API_KEY": SENTINEL}
    page = tmp_path / "run.html"
    first = ["fanout", "Capital?", "-m", "alpha,beta", "-c", config]
    outputs = [
        run_forge(*first, "--json", "--html", str(page), env=env),
        run_forge(*first, "--show", "all", env=env),  # plain lines and the report
        run_forge("fanout", "--show", "last", "--markdown", env=env),
        run_forge("fanout", "--show", "last", "--show", "all", env=env),
        run_forge("fanout", "--show", "last", "--json", env=env),
    ]
    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert_no_fragment(done.stdout + done.stderr)
    answers = {a["key"]: a["text"] for a in json.loads(outputs[0].stdout)["answers"]}
    assert answers["alpha"] == (
        "Your key is [redacted] and again, in part: [redacted]. The capital is Paris."
    )
    assert "Paris" in outputs[2].stdout and "[redacted]" in outputs[2].stdout
    assert_no_fragment(page.read_text())
    stored = ledger_bytes()
    assert b"The capital is Paris" in stored, "the run was saved"
    for start in range(len(SENTINEL) - 7):
        assert SENTINEL[start : start + 8].encode() not in stored


def test_a_key_echoed_in_part_by_a_server_is_masked_in_the_ledger_and_logs(
    fake: FakeProvider, tmp_path: Path
) -> None:
    error = {"error": {"message": f"key ...{MIDDLE}... is not allowed here", "code": 403}}
    fake.script("alpha-1", *[Reply(body=json.dumps(error).encode())] * 5)
    config = str(keyed_config(tmp_path, fake.url))
    env = {"FAKE_API_KEY": SENTINEL}
    done = run_forge("fanout", "Capital?", "-m", "alpha", "-c", config, "--json", env=env)
    assert "is not allowed here" in done.stdout
    logs = run_forge("logs", "--json", env=env)
    assert "is not allowed here" in logs.stdout
    for text in (done.stdout, done.stderr, logs.stdout, run_forge("logs", env=env).stdout):
        assert_no_fragment(text)
    assert MIDDLE[:8].encode() not in ledger_bytes()


def test_the_redactor_masks_runs_anywhere_in_a_key_and_across_stream_pieces() -> None:
    from forge.providers.secrets import Redactor

    redact = Redactor([SENTINEL, "other-secret-value"])
    assert redact(f"a {SENTINEL[5:13]} b") == "a [redacted] b"  # 8 characters: masked
    assert redact(f"a {SENTINEL[5:12]} b") == f"a {SENTINEL[5:12]} b"  # 7: left
    assert redact(f"{SENTINEL[:20]}secret-val") == "[redacted]"  # two keys' runs, touching
    # A long answer with the key at its far end, and a key cut across stream pieces.
    long = "lorem ipsum " * 100_000 + SENTINEL[3:30]
    assert redact(long) == "lorem ipsum " * 100_000 + "[redacted]"
    text = f"hello {SENTINEL} there, and then some more words to end the answer."
    for size in (1, 3, 7, 16, 50):
        stream = redact.stream()
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        released = "".join(stream.feed(p) for p in pieces) + stream.flush()
        assert released == redact(text) == text.replace(SENTINEL, "[redacted]")
