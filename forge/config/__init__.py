"""Configuration: the forge.toml schema and how files, the user file and FORGE_* merge.

The names below load on first use, so that code needing only `forge.config.discovery` does not
pay for pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forge.config.loader import LoadedConfig, load_config, parse_config_text
    from forge.config.schema import ForgeConfig, ModelConfig, ProviderConfig

__all__ = [
    "ForgeConfig",
    "LoadedConfig",
    "ModelConfig",
    "ProviderConfig",
    "load_config",
    "parse_config_text",
]

_FROM_LOADER = {"LoadedConfig", "load_config", "parse_config_text"}


def __getattr__(name: str) -> Any:
    if name in _FROM_LOADER:
        from forge.config import loader

        return getattr(loader, name)
    if name in __all__:
        from forge.config import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'forge.config' has no attribute {name!r}")
