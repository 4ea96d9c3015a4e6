"""Running one validator's command: captured output, a time limit, and a clean kill.

Each command starts in a session of its own, so a timeout kills its whole process group: cargo's
rustc children and pytest's workers go with it instead of lingering.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAIL = 4000
POLL = 0.1  # how often a running command checks whether it was cancelled


@dataclass(frozen=True)
class ProcessOutput:
    argv: list[str]
    exit_code: int | None  # None when it was killed for running too long
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    def tail(self, redact: Callable[[str], str] = str) -> str:
        """The end of what it printed, `redact`ed whole first (a secret is never cut in two)."""
        text = redact((self.stdout + "\n" + self.stderr).strip())
        return text[-TAIL:]


def run(
    argv: Sequence[str],
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    base_env: Mapping[str, str] | None = None,
) -> ProcessOutput:
    """Run `argv` in `cwd`; past `timeout` seconds, or once `cancel` is set, kill its group.
    Its environment is `base_env` (forge's own when None) with `env` over it."""
    started = time.monotonic()
    full_env = {**(os.environ if base_env is None else base_env), **(env or {})}
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        while True:
            left = timeout - (time.monotonic() - started)
            try:
                stdout, stderr = process.communicate(timeout=max(0.0, min(left, POLL)))
                break
            except subprocess.TimeoutExpired:
                if left <= POLL or (cancel is not None and cancel.is_set()):
                    _kill_group(process)
                    stdout, stderr = process.communicate()
                    return ProcessOutput(
                        list(argv),
                        None,
                        stdout,
                        stderr,
                        time.monotonic() - started,
                        timed_out=left <= POLL,
                    )
    except BaseException:
        _kill_group(process)  # Ctrl-C or a crash here must not leave the tool running
        raise
    return ProcessOutput(list(argv), process.returncode, stdout, stderr, time.monotonic() - started)


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
