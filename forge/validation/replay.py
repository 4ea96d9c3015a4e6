"""Replaying a whole `forge validate` when nothing it depends on has changed.

The per-validator cache already skips the tools; this skips forge's own start-up work too
(pydantic for the configuration, Rich for the summary) by storing what the command printed.
The key covers everything the output depends on: the command's options, the configuration
files, the environment that reaches the tools, every file git tracks or would track (by git's
id when it is as git's index has it), and the installed tools (re-checked by path, size and
mtime on every lookup). Only the standard library is imported here, because this runs before
anything else.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from forge import __version__
from forge.validation.atomic import write_cache_entry
from forge.validation.environment import tool_environment
from forge.validation.tools import ToolVersions
from forge.validation.tree import content_key, listing, repository_root

# What changes the rendering; what reaches the tools is TOOL_ENVIRONMENT. FORGE_HOME only says
# where this store is.
ENV_KEYS = ("NO_COLOR", "COLUMNS", "TERM")


@dataclass(frozen=True)
class Replay:
    exit_code: int
    stdout: str
    output_file: str | None = None  # what --output FILE received
    tool_stamps: dict[str, str | None] | None = None


class ReplayStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key(
        self,
        scope: Path,
        options: Sequence[str],
        config_files: Sequence[Path],
        env: Mapping[str, str],
        terminal: bool,
    ) -> str:
        digest = hashlib.sha256()

        def part(value: str | bytes) -> None:
            digest.update(value if isinstance(value, bytes) else value.encode())
            digest.update(b"\0")

        root = repository_root(scope)
        for value in (__version__, sys.executable, str(scope.resolve()), str(root), str(terminal)):
            part(value)
        for option in options:
            part(option)
        for name in ENV_KEYS:
            part(f"{name}={env.get(name, '')}")
        for name, value in tool_environment(env):
            part(f"{name}={value}")
        for name in sorted(k for k in env if k.startswith("FORGE_") and k != "FORGE_HOME"):
            part(f"{name}={env[name]}")
        for path in config_files:
            part(str(path))
            part(path.read_bytes())
        listed = listing(root)
        for name in listed.files:
            part(name)
            part(content_key(root, name, listed.known))
        return digest.hexdigest()

    def lookup(self, key: str) -> Replay | None:
        try:
            data = json.loads((self.folder / f"{key}.json").read_text())
            replay = Replay(**data)
        except (OSError, ValueError, TypeError):
            return None
        try:
            for probe, stamp in (replay.tool_stamps or {}).items():
                if ToolVersions.stamp(tuple(json.loads(probe))) != stamp:
                    return None  # a tool was installed, removed or upgraded since
        except (OSError, ValueError, TypeError, IndexError):
            return None  # an entry of an older forge, or a damaged one: run again
        return replay

    def save(self, key: str, replay: Replay) -> None:
        write_cache_entry(self.folder / f"{key}.json", json.dumps(asdict(replay)))
