"""Validator results keyed by everything that can change them.

The key covers the validator (name, command, settings, environment), the tool's version, the
environment variables the tools read (TOOL_ENVIRONMENT), what is installed in the project's
Python (part of the Python validators' settings), the files it may read (every file git tracks
or would track in the project, by content, and the ones it reads though git ignores them, such
as a Cargo.lock) and, under `--changed`, the file list. An unchanged tree answers at once; any
relevant edit reruns. Files the work tree holds as git's index does are keyed by git's ids for
them, without being read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from forge.validation.atomic import write_cache_entry
from forge.validation.environment import tool_environment
from forge.validation.tree import content_key
from forge.validation.types import Diagnostic, Stage, Status, TestResult, ValidatorResult
from forge.validation.validator import Context, Validator

CACHEABLE = {Status.PASSED, Status.FAILED, Status.NO_TESTS}


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
            json.dumps(tool_environment(os.environ)),
        ):
            digest.update(part.encode() + b"\0")
        files = ctx.repository if validator.reads_repository and ctx.repository else ctx.files
        for name in validator.relevant(files):
            digest.update(name.encode() + b"\0")
            digest.update(content_key(ctx.repo_root, name, ctx.known))
        # Configuration above the project, and files git ignores that the tool reads all
        # the same (a library's Cargo.lock), there or not.
        for path in validator.files_read(ctx.project):
            digest.update(b"read\0" + str(path).encode() + b"\0")
            digest.update(config_key(path, ctx))
        return digest.hexdigest()

    def get(self, key: str) -> ValidatorResult | None:
        try:
            data = json.loads((self.folder / f"{key}.json").read_text())
            result = result_from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if result.unexplained:  # stored by an older forge: never answered from the cache
            return None
        result.cached = True
        return result

    def put(self, key: str, result: ValidatorResult) -> None:
        if result.status not in CACHEABLE or result.unexplained:
            return
        write_cache_entry(self.folder / f"{key}.json", json.dumps(asdict(result)))


def config_key(path: Path, ctx: Context) -> bytes:
    """A configuration file's content key (git's id when git vouches for it), or "absent"."""
    if not os.path.isfile(path):
        return b"absent"
    try:
        name = path.relative_to(ctx.repo_root).as_posix()
    except ValueError:
        name = None
    if name is not None:
        return content_key(ctx.repo_root, name, ctx.known)
    return content_key(path.parent, path.name, {})


def result_from_dict(data: dict[str, Any]) -> ValidatorResult:
    data = dict(data)
    data["stage"] = Stage(data["stage"])
    data["status"] = Status(data["status"])
    data["diagnostics"] = [Diagnostic(**d) for d in data["diagnostics"]]
    data["tests"] = [TestResult(**t) for t in data["tests"]]
    return ValidatorResult(**data)
