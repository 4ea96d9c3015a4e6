"""Which forge.toml files apply, found without loading the schema (cheap, for start-up paths)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from forge.errors import ConfigError

CONFIG_NAME = "forge.toml"


def user_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "forge" / CONFIG_NAME


def discover_project_file(cwd: Path) -> Path | None:
    """The nearest forge.toml from `cwd` up to the repository root (only `cwd` outside a repo)."""
    for folder in [cwd, *cwd.parents]:
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
            return None
    return cwd / CONFIG_NAME if (cwd / CONFIG_NAME).is_file() else None


def config_files(explicit: Path | None, cwd: Path, env: Mapping[str, str]) -> list[Path]:
    """The files to merge, lowest precedence first. `--config`/FORGE_CONFIG replaces discovery."""
    chosen = explicit or (Path(env["FORGE_CONFIG"]) if env.get("FORGE_CONFIG") else None)
    if chosen is not None:
        if not chosen.is_file():
            raise ConfigError("no such configuration file", path=str(chosen))
        return [chosen]
    files = [p for p in [user_config_path(env), discover_project_file(cwd)] if p and p.is_file()]
    return list(dict.fromkeys(files))
