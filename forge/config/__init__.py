"""Configuration: the forge.toml schema and how files, the user file and FORGE_* merge."""

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
