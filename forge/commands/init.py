"""`forge init`: write a starter forge.toml."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

HEADER = """\
# forge.toml: written by `forge init` from what it found on this machine; edit freely.
# Every key, its meaning and its default: forge.toml.example in forge's repository.
# API keys stay in environment variables: api_key_env holds a variable's NAME, never a key.
# `forge config show` prints the merged configuration and where each value came from.

"""

ForceOption = Annotated[
    bool, typer.Option("--force", help="Overwrite the file if it already exists.")
]
PathOption = Annotated[
    Path,
    typer.Option("--path", help="Where to write the file.", dir_okay=False, resolve_path=False),
]
# Every command takes --config (and FORGE_CONFIG must not break init), but init reads nothing.
IgnoredConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="FORGE_CONFIG",
        help="Accepted like on every command; init reads no configuration.",
        show_default=False,
    ),
]


def init(
    force: ForceOption = False,
    path: PathOption = Path("forge.toml"),
    config: IgnoredConfigOption = None,
) -> None:
    """Write a starter forge.toml from the Ollama models found and the API keys set.

    An existing file is only replaced with --force.
    """
    import asyncio
    import os

    import tomli_w

    from forge.config.loader import parse_config_text
    from forge.config.presets import ollama_root
    from forge.config.starter import find_ollama_models, starter_config
    from forge.errors import UsageError

    if path.exists() and not force:
        raise UsageError(f"{path} already exists; use --force to overwrite it")
    env = os.environ
    root = ollama_root(env)
    ollama_models = asyncio.run(find_ollama_models(root))
    starter = starter_config(ollama_models, env)
    text = HEADER + tomli_w.dumps(starter)
    parse_config_text(text, str(path))  # never write a file forge itself would refuse
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    _report(root, ollama_models, env, starter, path)


def _report(
    root: str,
    ollama_models: list[str],
    env: Mapping[str, str],
    starter: Mapping[str, Any],
    path: Path,
) -> None:
    from forge.config.presets import KEYED_PRESETS
    from forge.config.starter import key_is_set

    if ollama_models:
        count = f"{len(ollama_models)} model{'s' if len(ollama_models) > 1 else ''}"
        typer.echo(f"Ollama: {count} ({', '.join(ollama_models)})")
    else:
        typer.echo(f"Ollama not running at {root} (or no models pulled) — skipped")
    for preset in KEYED_PRESETS:
        state = "is set" if key_is_set(preset, env) else "not set — skipped"
        typer.echo(f"{preset.label}: {preset.api_key_env} {state}")
    models = starter.get("models", {})
    ladder = starter.get("tiers", {}).get("ladder", [])
    summary = f"{len(models)} models, ladder {' -> '.join(ladder)}" if models else "no models"
    typer.echo(f"\nWrote {path} ({summary}).")
    if models:
        typer.echo('Next: `forge config show` to check it, then `forge route "your task"`.')
    else:
        typer.echo(
            "Next: start Ollama (`ollama pull qwen2.5-coder:7b`) or set a key such as "
            "GROQ_API_KEY, then run `forge init --force`."
        )
