"""`forge config show`: the merged configuration and where each value came from."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import typer

from forge.commands.options import ConfigOption, JsonOption

if TYPE_CHECKING:
    from pathlib import Path

    from rich.text import Text

    from forge.config.loader import LoadedConfig

app = typer.Typer(help="Inspect forge's configuration.", no_args_is_help=True)

# Source comments line up at this column unless a line is longer.
COMMENT_COLUMN = 64
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
PROXY_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


@dataclass(frozen=True)
class Setting:
    """One leaf of the merged configuration, as `config show` reports it."""

    key: str
    value: Any
    source: str
    # For api_key_env: whether the variable it names is set (its value is never shown).
    variable_set: bool | None = None

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]


@app.command("show")
def show(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Print the merged configuration with the source of each value."""
    import os

    from forge.config import load_config

    loaded = load_config(config)
    settings = list(_settings(loaded, os.environ))
    if json_output:
        _print_json(loaded.files, settings)
    else:
        _print_text(loaded.files, settings)


def _settings(loaded: LoadedConfig, env: Mapping[str, str]) -> Iterator[Setting]:
    for key, value in _leaves(loaded.config.model_dump(), ""):
        if key.endswith(".proxy") and isinstance(value, str):
            value = PROXY_PASSWORD.sub(r"\1***@", value)
        if key == "ledger.url" and isinstance(value, str):
            from forge.ledger.url import mask_url

            value = mask_url(value)
        variable_set = bool(env.get(value)) if key.endswith(".api_key_env") else None
        yield Setting(key, value, loaded.source_of(key), variable_set)


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Dotted keys and values; tables and arrays of tables are opened, unset values left out."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, inner in enumerate(value):
            yield from _leaves(inner, f"{prefix}.{index}")
    elif value is not None:
        yield prefix, value


def _print_json(files: list[Path], settings: list[Setting]) -> None:
    import json

    values: dict[str, dict[str, Any]] = {}
    for setting in settings:
        entry = {"value": _jsonable(setting.value), "source": setting.source}
        if setting.variable_set is not None:
            entry["variable_set"] = setting.variable_set
        values[setting.key] = entry
    typer.echo(json.dumps({"files": [str(f) for f in files], "values": values}, indent=2))


def _jsonable(value: Any) -> Any:
    # Decimals travel as strings so a price keeps every digit it was given.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _print_text(files: list[Path], settings: list[Setting]) -> None:
    from rich.console import Console
    from rich.text import Text

    # soft_wrap: a long path must not be folded at 80 columns when output is piped.
    console = Console(highlight=False, soft_wrap=True)
    for line in _file_lines(files):
        console.print(Text(line, style="dim"))
    section = ""
    for setting in settings:
        if setting.section != section:
            section = setting.section
            console.print(Text(f"\n[{section}]", style="bold"))
        console.print(_setting_line(setting))


def _file_lines(files: list[Path]) -> list[str]:
    if not files:
        return ["# Files read: none (built-in defaults; `forge init` writes a forge.toml)"]
    return ["# Files read, lowest precedence first:", *(f"#   {f}" for f in files)]


def _setting_line(setting: Setting) -> Text:
    from rich.text import Text

    line = Text()
    line.append(setting.key, style="cyan")
    line.append(f" = {_toml(setting.value)}")
    comment = f"# {setting.source}"
    if setting.variable_set is not None:
        comment += f" ({setting.value} {'set' if setting.variable_set else 'not set'})"
    line.append(" " * max(2, COMMENT_COLUMN - len(line.plain)))
    line.append(comment, style=_source_style(setting))
    return line


def _source_style(setting: Setting) -> str:
    if setting.variable_set is False:
        return "yellow"
    if setting.source.startswith("env "):
        return "magenta"
    return "dim" if setting.source == "default" else "green"


def _toml(value: Any) -> str:
    """A value as TOML on one line (tomli-w would spread arrays over several)."""
    import tomli_w

    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }" if value else "{}"
    if isinstance(value, Decimal):
        return str(value)
    return tomli_w.dumps({"v": value})[len("v = ") :].rstrip("\n")


def _toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else _toml(key)
