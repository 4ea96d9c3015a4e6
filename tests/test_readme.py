"""The README's quick start, run as written: its commands in order, in one shell, from the
folder a user would be in, with only the port changed so that runs in parallel do not meet."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_PORT = "8799"


def quick_start_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start, no API key needed", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "the quick start has a bash block"
    return match.group(1)


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_the_quick_start_runs_line_by_line_as_written(tmp_path: Path) -> None:
    block = quick_start_block()
    assert README_PORT in block and "kill %1" in block
    port = free_port()
    project = tmp_path / "forge-checkout"
    (project / "examples").mkdir(parents=True)
    shutil.copytree(ROOT / "examples" / "quickstart", project / "examples" / "quickstart")
    config = project / "examples" / "quickstart" / "forge.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(README_PORT, port))
    # A user sees "listening" before typing the next line; the script waits for the same thing.
    # (and stops at once if the server died instead).
    wait = (
        f"until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do kill -0 $!; sleep 0.1; done\n"
    )
    lines = block.replace(README_PORT, port).replace("\\\n", "").splitlines(keepends=True)
    script = "set -euo pipefail\n" + "".join(
        line + (wait if line.split("#")[0].rstrip().endswith("&") else "") for line in lines
    )
    bin_dir = str(Path(sys.executable).parent)  # where `pip install` put the `forge` command
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    env.pop("FORGE_CONFIG", None)

    done = subprocess.run(
        ["bash", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Traceback" not in done.stderr
    assert str(config) in out, "config show names the file FORGE_CONFIG points at"
    for model in ("small", "coder", "sonnet"):
        assert model in out
    assert "llama3.2:3b" in out and "qwen/qwen3-coder" in out  # discovered
    assert "cheap" in out or "local" in out  # route chose a tier
    assert "today" in out.lower()  # forge cost
