"""Which version of each tool is installed, asked once per installed binary."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from forge.validation.atomic import write_cache_entry
from forge.validation.interpreter import candidate, choice_stamp, environment_stamp
from forge.validation.tree import blob_id


class ToolVersions:
    """`tool --version`, asked once per installed binary (keyed by its path, size and mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.used: dict[str, str | None] = {}  # probe -> stamp (None: not installed), this run
        self._lock = threading.Lock()
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        # A damaged file (or an older forge's) is a cache miss, not a crash.
        valid = isinstance(known, dict) and all(isinstance(v, str) for v in known.values())
        self._known: dict[str, str] = known if valid else {}

    def version(self, probe: tuple[str, ...], env: dict[str, str]) -> str | None:
        """The probe's answer, or None when the tool is not installed."""
        stamp = self.stamp(probe)
        with self._lock:
            self.used[json.dumps(probe)] = stamp
        if stamp is None:
            return None
        if stamp in self._known:
            return self._known[stamp]
        try:
            done = subprocess.run(
                list(probe),
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        with self._lock:
            self._known[stamp] = (done.stdout or done.stderr).strip()
            self._save()
        return self._known[stamp]

    @staticmethod
    def stamp(probe: tuple[str, ...]) -> str | None:
        """What identifies the installed tool: its path, size and mtime (None if missing).
        Two pseudo-probes stand for a project's Python: which interpreter it gets, and what is
        installed in that interpreter's environment (see `python_choice_probe`)."""
        if probe[0] == PYTHON_CHOICE:
            return python_choice_stamp(Path(probe[1]), Path(probe[2]))
        if probe[0] == PYTHON_ENVIRONMENT:
            return environment_stamp(probe[1:])
        if probe[0] == FILE_READ:
            return file_stamp(Path(probe[1]))
        if probe[0] == LOOKUP:
            return shutil.which(probe[1], path=probe[2])
        binary = shutil.which(probe[0])
        if binary is None:
            return None
        info = os.stat(binary)
        extra = _rustup_stamp() if probe[0] == "cargo" else ""
        if probe[0] == sys.executable and len(probe) > 2 and probe[1] == "-m":
            # A module run by this interpreter: its installed file identifies its version
            # (cheaper than importlib.metadata, which matters on the replay path).
            spec = importlib.util.find_spec(probe[2])
            if spec is None or spec.origin is None:
                return None
            module = os.stat(spec.origin)
            extra = f"{spec.origin}|{module.st_size}|{module.st_mtime_ns}"
        return f"{' '.join(probe)}|{info.st_size}|{info.st_mtime_ns}|{extra}"

    def _save(self) -> None:
        write_cache_entry(self.path, json.dumps(self._known, indent=1))


FILE_READ = "@file"
LOOKUP = "@which"
PYTHON_CHOICE = "@python-choice"
PYTHON_ENVIRONMENT = "@python-environment"


def python_choice_probe(project: Path, repo_root: Path) -> str:
    return json.dumps([PYTHON_CHOICE, str(project), str(repo_root)])


def python_choice_stamp(project: Path, repo_root: Path) -> str:
    chosen = candidate(project, repo_root, os.environ)
    return f"{chosen.source}|{chosen.path}|{choice_stamp(chosen, project)}"


def python_environment_probe(sites: tuple[str, ...]) -> str:
    return json.dumps([PYTHON_ENVIRONMENT, *sites])


def lookup_probe(name: str, search: str) -> str:
    return json.dumps([LOOKUP, name, search])


def file_probe(path: Path) -> str:
    return json.dumps([FILE_READ, str(path)])


def file_stamp(path: Path) -> str | None:
    """A file a tool reads though git does not list it (an ignored Cargo.lock), by content."""
    try:
        return blob_id(path.read_bytes())
    except OSError:
        return None


def _rustup_stamp() -> str:
    """Under rustup, `cargo` is a proxy that stays the same file when a toolchain is installed,
    updated or made the default: the toolchains folder and rustup's settings change then."""
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    parts = []
    for path in (home / "toolchains", home / "settings.toml"):
        try:
            parts.append(str(os.stat(path).st_mtime_ns))
        except OSError:
            parts.append("-")
    return "rustup:" + ",".join(parts)
