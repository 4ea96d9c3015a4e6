"""forge started warm: one process per test worker imports forge once and forks a child per command.

A cold `python -m forge` spends 0.4 to 0.7 s of CPU before it does anything, almost all of it
importing (Typer, Rich, httpx, anyio, pydantic, networkx, forge's own modules); the suite starts
forge hundreds of times. Here a server process imports all of that once, single-threaded, and
forks for each command. The child is a process of its own, as `python -m forge` would make: its
own pid, working folder, environment (replaced whole), `sys.argv`, and standard streams (the
caller's pipes, passed over a Unix socket); it runs `forge.cli.main()` as `forge/__main__.py`
does, runs the interpreter's exit handlers and ends with forge's exit code, or dies of a signal.

What a warm start does not exercise (the interpreter's own start-up, what `--help` imports, the
first import of a command's modules) is what `tests/test_startup.py` and the tests that run
`python -m forge` themselves (signals, pipes, terminals) check. `FORGE_TESTS_COLD=1` in the
environment of pytest makes every `run_forge` a cold `python -m forge` again.

Run as a script, this file is the server: `python tests/warm_forge.py SOCKET`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

# Variables the interpreter reads when it starts: a child forked from a server started with other
# values would not honour them, so a command whose environment changes one starts cold.
_INTERPRETER = ("PYTHON", "LANG", "LC_")
_MAX_FDS = 3
# What the libraries load on first use (a connection, an event loop, a command's parse, a price),
# seen in the commands' children; a library version that lacks one is fine.
_FIRST_USE = (
    "anyio._backends._asyncio",
    "anyio._core._signals",
    "genai_prices.data",
    "genai_prices.data_units",
    "h11",
    "httpcore",
    "pwd",
    "rich._emoji_codes",
    "trio",
    "typer._click.decorators",
)


def _serve(path: str) -> list[str] | None:
    """Accept commands until the test worker goes; in a forked child, return that child's argv."""
    _import_what_forge_imports()
    assert threading.active_count() == 1, "a forking server must not have threads"

    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    reaped_r, reaped_w = os.pipe()
    os.set_blocking(reaped_w, False)
    signal.set_wakeup_fd(reaped_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(reaped_r, selectors.EVENT_READ, "reap")
    print("ready", flush=True)
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "accept":
                connection, _ = listener.accept()
                argv = _fork(connection, waiting)
                if argv is not None:  # the child
                    selector.close()
                    listener.close()
                    for fd in (reaped_r, reaped_w):
                        os.close(fd)
                    for other in waiting.values():
                        other.close()
                    return argv
            else:
                os.read(reaped_r, 4096)
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            connection = waiting.pop(pid)
            connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            connection.close()
        if os.getppid() != parent:
            return None


def _import_what_forge_imports() -> None:
    """forge's modules, and the libraries its commands import inside functions, loaded once."""
    import ast
    import importlib
    import pkgutil

    import forge

    # The optional engines import Ray and psycopg: forge never loads them for a local run, and Ray
    # starts threads a fork must not inherit.
    skipped = ("ray", "postgres", "psycopg", ".testing", "__main__")
    libraries: set[str] = set()
    for module in pkgutil.walk_packages(forge.__path__, "forge."):
        if any(part in module.name for part in skipped):
            continue
        __import__(module.name)
        source = sys.modules[module.name].__file__
        assert source is not None
        for node in ast.walk(ast.parse(Path(source).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                libraries.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                libraries.add(node.module)
    # A library forge imports only when it is installed (or only for type checks) may be absent.
    for name in [*sorted(libraries), *_FIRST_USE]:
        if not name.startswith(skipped[:3]) and name.split(".")[0] != "forge":
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def _fork(connection: socket.socket, waiting: dict[int, socket.socket]) -> list[str] | None:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, _MAX_FDS)
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        connection.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv: list[str] = request["argv"]
        return argv
    for fd in fds:
        os.close(fd)
    connection.sendall(f"{pid}\n".encode())
    waiting[pid] = connection
    return None


def _child(argv: list[str]) -> None:
    """What `python -m forge` runs, with `sys.argv` as it would have it."""
    import forge.cli

    sys.argv = [str(Path(forge.cli.__file__).with_name("__main__.py")), *argv]
    forge.cli.main()


class WarmForge:
    """The server for one test worker, started at its first command."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "forge.sock")
        self.process: subprocess.Popen[str] | None = None
        self.started_with: dict[str, str] = {}
        self.lock = threading.Lock()

    def _start(self) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        self.started_with = _interpreter_settings(environ)
        # The forge these tests import, not whichever one an install elsewhere points at.
        import forge

        here = str(Path(forge.__file__).resolve().parents[1])
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, __file__, self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=environ,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the warm forge server did not start: {line!r}")

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def fits(self, env: dict[str, str]) -> bool:
        """Whether a child of the server is what a cold start with `env` would be."""
        # A server not started yet will start with this process's settings.
        if self.process is None:
            return _interpreter_settings(env) == _interpreter_settings(dict(os.environ))
        return _interpreter_settings(env) == self.started_with

    def run(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path | None,
        timeout: float,
        stdin: str | None,
    ) -> subprocess.CompletedProcess[str]:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
        # Standard input is /dev/null unless the test gives text: forge reads a prompt from a
        # pipe, not from a terminal or /dev/null.
        feed = os.pipe() if stdin is not None else (os.open(os.devnull, os.O_RDONLY), -1)
        out, err = os.pipe(), os.pipe()
        ours = [feed[1], out[0], err[0]]
        theirs = [feed[0], out[1], err[1]]
        request = {"argv": args, "env": env, "cwd": str(cwd or Path.cwd())}
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self.path)
            socket.send_fds(connection, [json.dumps(request).encode()], theirs)
        finally:
            for fd in theirs:
                os.close(fd)
        reply = connection.makefile("r")
        pid = int(reply.readline())
        if stdin is not None:
            threading.Thread(target=_feed, args=(ours[0], stdin), daemon=True).start()
        try:
            stdout, stderr = _drain(ours[1], ours[2], timeout)
            code_line = _read_line(connection, reply, timeout)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired(["forge", *args], timeout) from None
        finally:
            connection.close()
            for fd in ours[1:]:
                os.close(fd)
        return subprocess.CompletedProcess(["forge", *args], int(code_line), stdout, stderr)


def _interpreter_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(_INTERPRETER)}


def _feed(fd: int, text: str) -> None:
    try:
        with open(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
    except BrokenPipeError:
        pass


def _drain(out_fd: int, err_fd: int, timeout: float) -> tuple[str, str]:
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    selector = selectors.DefaultSelector()
    for fd in chunks:
        selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    open_fds = len(chunks)
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired("forge", timeout)
        for key, _ in selector.select(timeout=left):
            data = os.read(key.fd, 65536)
            if data:
                chunks[key.fd].append(data)
            else:
                selector.unregister(key.fd)
                open_fds -= 1
    selector.close()
    # As subprocess.run(text=True) reads them: strict UTF-8, universal newlines.
    out, err = (
        b"".join(chunks[fd]).decode().replace("\r\n", "\n").replace("\r", "\n")
        for fd in (out_fd, err_fd)
    )
    return out, err


def _read_line(connection: socket.socket, reply: TextIO, timeout: float) -> str:
    connection.settimeout(timeout)
    try:
        line = reply.readline()
    except TimeoutError:
        raise subprocess.TimeoutExpired("forge", timeout) from None
    if not line:
        raise RuntimeError("the warm forge server went away")
    return line


if __name__ == "__main__":
    child_argv = _serve(sys.argv[1])
    if child_argv is not None:
        _child(child_argv)
