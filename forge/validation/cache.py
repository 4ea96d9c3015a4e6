"""Validator results keyed by everything that can change them.

The key covers the validator (name, command, settings, environment), the tool's version, the
files it may read (every file git tracks or would track in the project, by content) and, under
`--changed`, the file list. An unchanged tree answers at once; any relevant edit reruns.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from forge.validation.types import Diagnostic, Stage, Status, TestResult, ValidatorResult
from forge.validation.validator import Context, Validator

CACHEABLE = {Status.PASSED, Status.FAILED, Status.NO_TESTS}


class ToolVersions:
    """`tool --version`, asked once per installed binary (keyed by its path, size and mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._known: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._known = {}

    def version(self, probe: tuple[str, ...], env: dict[str, str]) -> str | None:
        """The probe's answer, or None when the tool is not installed."""
        stamp = self._stamp(probe)
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
        self._known[stamp] = (done.stdout or done.stderr).strip()
        self._save()
        return self._known[stamp]

    @staticmethod
    def _stamp(probe: tuple[str, ...]) -> str | None:
        binary = shutil.which(probe[0])
        if binary is None:
            return None
        info = os.stat(binary)
        extra = ""
        if probe[0] == sys.executable and len(probe) > 2 and probe[1] == "-m":
            try:  # a module run by this interpreter: its installed version is the version
                extra = importlib.metadata.version(probe[2])
            except importlib.metadata.PackageNotFoundError:
                return None
        return f"{' '.join(probe)}|{info.st_size}|{info.st_mtime_ns}|{extra}"

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self._known, indent=1))
        temporary.replace(self.path)


class ResultCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key(self, validator: Validator, ctx: Context, tool_version: str | None) -> str:
        digest = hashlib.sha256()
        for part in (
            validator.name,
            json.dumps(validator.argv),
            validator.settings,
            json.dumps(dict(validator.env), sort_keys=True),
            tool_version or "",
            ctx.project.relative_to(ctx.repo_root).as_posix(),
            json.dumps(ctx.only),
        ):
            digest.update(part.encode() + b"\0")
        for name in validator.relevant(ctx.files):
            digest.update(name.encode() + b"\0")
            try:
                digest.update(hashlib.sha256((ctx.repo_root / name).read_bytes()).digest())
            except OSError:
                digest.update(b"unreadable")
        return digest.hexdigest()

    def get(self, key: str) -> ValidatorResult | None:
        try:
            data = json.loads((self.folder / f"{key}.json").read_text())
            result = result_from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        result.cached = True
        return result

    def put(self, key: str, result: ValidatorResult) -> None:
        if result.status not in CACHEABLE:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f"{key}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(asdict(result)))
        temporary.replace(self.folder / f"{key}.json")


def result_from_dict(data: dict[str, Any]) -> ValidatorResult:
    data = dict(data)
    data["stage"] = Stage(data["stage"])
    data["status"] = Status(data["status"])
    data["diagnostics"] = [Diagnostic(**d) for d in data["diagnostics"]]
    data["tests"] = [TestResult(**t) for t in data["tests"]]
    return ValidatorResult(**data)
