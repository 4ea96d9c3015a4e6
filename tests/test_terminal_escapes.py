"""A model's answer (or a server's error) cannot drive the user's terminal: escape sequences and
other control characters are shown, not obeyed, wherever forge prints them; JSON keeps them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.test_fanout import fanout_config, write

# Sets the window title, clears the screen, writes the clipboard, and the one-byte CSI (C1).
HOSTILE = (
    "Paris\x1b]2;pwned\x07 is\x1b[2J the\x1b]52;c;ZXZpbA==\x07 capital\x9b31m of\x00 France\x7f."
)
# What each must never reach the terminal as: the bytes a terminal would obey.
OBEYED = (b"\x1b]2;", b"\x1b[2J", b"\x1b]52", "\x9b".encode(), b"\x07", b"\x00", b"\x7f")


def forge_bytes(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The real CLI with its stdout and stderr as the bytes it wrote (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "forge", *args],
        capture_output=True,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def on_a_terminal(*args: str) -> bytes:
    """The real CLI writing to a pseudo-terminal, as a user watching it sees it."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "forge", *args],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", "LINES": "40"},
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0, output
    return output


def assert_neutralised(output: bytes) -> None:
    for sequence in OBEYED:
        assert sequence not in output, (sequence, output)
    text = output.decode("utf-8")
    assert "␛]2;pwned" in text and "␛[2J" in text, "the escapes are shown, visibly"


def test_an_answer_cannot_drive_the_terminal_in_any_view(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text=HOSTILE, latency=0.3))
    fake.script("beta-1", Reply(text="Lyon, surely.", latency=0.3))
    config = str(write(tmp_path, fanout_config(fake.url, ["alpha", "beta"])))

    # The live table and the final report on a terminal (Rich's own cursor moves are allowed).
    assert_neutralised(on_a_terminal("fanout", "Capital?", "-m", "alpha,beta", "-c", config))

    plain = forge_bytes("fanout", "Capital?", "-m", "alpha,beta", "-c", config, "--show", "all")
    assert plain.returncode == 0, plain.stderr
    assert b"\x1b" not in plain.stdout + plain.stderr
    assert_neutralised(plain.stdout)

    data = json.loads(forge_bytes("fanout", "--show", "last", "--json").stdout)
    answers = {a["key"]: a for a in data["answers"]}
    assert answers["alpha"]["text"] == HOSTILE, "JSON keeps the exact text, escaped by JSON"

    for view in (["--markdown"], ["--show", "all"], ["--show", "different"]):
        shown = forge_bytes("fanout", "--show", "last", *view)
        assert shown.returncode == 0, shown.stderr
        assert b"\x1b" not in shown.stdout + shown.stderr, view
        assert_neutralised(shown.stdout)


def test_the_consensus_alone_is_shown_not_obeyed(fake: FakeProvider, tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        fake.script(f"{name}-1", Reply(text=HOSTILE))
    config = str(write(tmp_path, fanout_config(fake.url, ["alpha", "beta"])))
    done = forge_bytes(
        "fanout", "Capital?", "-m", "alpha,beta", "-c", config, "--show", "consensus"
    )
    assert done.returncode == 0, done.stderr
    assert_neutralised(done.stdout)


def test_a_servers_error_text_is_shown_not_obeyed_in_logs_and_health(
    fake: FakeProvider, tmp_path: Path
) -> None:
    # The fake's 404 quotes the model id it was asked for, as real providers do.
    model_id = "alpha\x1b]2;pwned\x07\x1b[2J\x9b31m"
    fake.script(model_id, Reply(fault=Fault.NOT_FOUND))
    config = tmp_path / "forge.toml"
    config.write_text(
        f'[providers.fake]\nbase_url = "{fake.url}/v1"\n\n'
        f'[models.alpha]\nprovider = "fake"\nid = "{json.dumps(model_id)[1:-1]}"\n'
        'tier = "free"\ninput_price = 1\noutput_price = 1\n',
        encoding="utf-8",
    )
    health = forge_bytes("models", "--health", "--config", str(config))
    assert b"not_found" in health.stdout + health.stderr or b"not found" in health.stdout
    for stream in (health.stdout, health.stderr):
        assert b"\x1b" not in stream and "\x9b".encode() not in stream

    logs = forge_bytes("logs")
    assert logs.returncode == 0, logs.stderr
    assert b"unknown to the server" in logs.stdout
    assert b"\x1b" not in logs.stdout and "\x9b".encode() not in logs.stdout
    assert "␛]2;pwned".encode() in logs.stdout
    raw = json.loads(forge_bytes("logs", "--json").stdout)["attempts"][0]["error"]
    assert "\x1b]2;pwned" in raw, "JSON keeps the server's exact text"


def test_a_judges_words_are_shown_not_obeyed(fake: FakeProvider, tmp_path: Path) -> None:
    """What the console itself guards: text no command thought to clean (a judge's points)."""
    fake.script("alpha-1", Reply(text="Paris."))
    fake.script("beta-1", Reply(text="Lyon."))
    verdict = {
        "best": 1,
        "reason": "Right.",
        "disagreements": [{"point": "Which city\x1b]2;pwned\x07\x1b[2J\x9b31m", "answers": [2]}],
    }
    fake.script("judge-1", Reply(text=json.dumps(verdict)))
    config = str(write(tmp_path, fanout_config(fake.url, ["alpha", "beta", "judge"])))
    done = forge_bytes("fanout", "Capital?", "-m", "alpha,beta", "--judge", "judge", "-c", config)
    assert done.returncode == 0, done.stderr
    assert b"Which city" in done.stdout
    assert_neutralised(done.stdout)
