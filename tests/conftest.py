"""Shared fixtures: an isolated home for every test, and forge's fake provider on 127.0.0.1."""

from __future__ import annotations

import atexit
import compileall
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from forge.testing.fake_provider import FakeProvider
from tests.warm_forge import WarmForge

COLD = os.environ.get("FORGE_TESTS_COLD") == "1"

# Tests press Ctrl-C (SIGINT) on the processes they start, as a terminal does. A shell that runs
# the suite in the background (`.ci/run &`) starts it with SIGINT ignored, and every process
# started from here would inherit that and ignore the key. A terminal's foreground never does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    """forge's bytecode, written once, as pip writes it when it installs forge.

    With PYTHONDONTWRITEBYTECODE set (as on the development machines), an editable install would
    otherwise compile every forge module again in every process the tests start.
    """
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(Path(__file__).resolve().parents[1] / "forge", quiet=1)


# rustup finds its toolchains through HOME unless told otherwise; tests move HOME.
REAL_HOME = Path.home()
TOOLCHAIN_HOMES = {
    "CARGO_HOME": os.environ.get("CARGO_HOME", str(REAL_HOME / ".cargo")),
    "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(REAL_HOME / ".rustup")),
}


def isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point HOME, the XDG folders and FORGE_HOME at `home`; drop forge's and API-key variables."""
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("FORGE_") or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    for name, value in TOOLCHAIN_HOMES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".state"))
    monkeypatch.setenv("FORGE_HOME", str(home / "forge-home"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    # The projects the tests create run pytest hundreds of times. Without this, each run would
    # load every plugin installed beside forge's own test tools (hypothesis alone takes a second
    # to import); none of those projects uses one, and forge passes the variable on unchanged.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real user's config, ledger or keys."""
    home = tmp_path / "home"
    isolate(monkeypatch, home)
    return home


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as server:
        yield server


def fake_config(url: str, extra: str = "") -> str:
    """A forge.toml with an OpenAI-style and an Anthropic-style provider on the fake server."""
    return f"""
[providers.fake]
base_url = "{url}/v1"

[providers.ant]
api = "anthropic"
base_url = "{url}/v1"

[models.alpha]
provider = "fake"
id = "alpha-1"
tier = "free"
input_price = 1
output_price = 2

[models.beta]
provider = "fake"
id = "beta-1"
tier = "cheap"
input_price = 3
output_price = 6

[models.claude]
provider = "ant"
id = "claude-x"
tier = "premium"
input_price = 3
output_price = 15
{extra}
"""


def write_config(path: Path, url: str, extra: str = "") -> Path:
    path.write_text(fake_config(url, extra), encoding="utf-8")
    return path


_warm: WarmForge | None = None


def run_forge(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a process of its own, as a user or a CI job runs it.

    The process is forked from one that has imported forge already (tests/warm_forge.py says
    what that leaves out, and what tests it instead); `FORGE_TESTS_COLD=1` starts each cold.
    """
    global _warm
    environ = {**os.environ, **(env or {})}
    if not COLD:
        if _warm is None:
            _warm = WarmForge(Path(tempfile.mkdtemp(prefix="forge-warm-")))
            atexit.register(_warm.close)
        if _warm.fits(environ):
            return _warm.run(list(args), environ, cwd, timeout, stdin)
    return subprocess.run(
        [sys.executable, "-m", "forge", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=timeout,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def start_forge(
    *args: str,
    cwd: Path,
    stdout: IO[str] | int = subprocess.PIPE,
    stderr: IO[str] | int = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`python -m forge ARGS` in the background, started cold with no standard input, for a
    test that waits on it, signals it or kills it."""
    return subprocess.Popen(
        [sys.executable, "-m", "forge", *args],
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


# A throw-away PostgreSQL server for the team ledger's tests, started only by the tests that ask.
from tests.postgres_server import (  # noqa: E402
    postgres_database,
    postgres_server,
    postgres_url,
)

__all__ = ["postgres_database", "postgres_server", "postgres_url"]

# A Ray cluster on this machine for --executor ray, started only by the tests that ask.
from tests.ray_cluster import ray_cluster  # noqa: E402

__all__ += ["ray_cluster"]
