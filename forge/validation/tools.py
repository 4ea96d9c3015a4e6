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


class ToolVersions:
    """`tool --version`, asked once per installed binary (keyed by its path, size and mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.used: dict[str, str | None] = {}  # probe -> stamp (None: not installed), this run
        self._lock = threading.Lock()
        try:
            self._known: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._known = {}

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
        """What identifies the installed tool: its path, size and mtime (None if missing)."""
        binary = shutil.which(probe[0])
        if binary is None:
            return None
        info = os.stat(binary)
        extra = ""
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
