"""Where forge keeps its state: the ledger, the validation cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def forge_home(env: Mapping[str, str] | None = None) -> Path:
    """FORGE_HOME, else $XDG_STATE_HOME/forge, else ~/.local/state/forge."""
    env = os.environ if env is None else env
    if env.get("FORGE_HOME"):
        return Path(env["FORGE_HOME"])
    state = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME", "~")).expanduser() / ".local/state"
    )
    return Path(state) / "forge"
