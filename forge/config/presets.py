"""Providers forge knows out of the box: where they live, which key they need, which tier.

`forge init` turns these into starter entries; they are plain data so a reader can check a URL
or a model id at a glance, and nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

Api = Literal["openai", "anthropic"]
Discovery = Literal["ollama", "openai", "openrouter", "none"]

OLLAMA_DEFAULT_PORT = 11434
# Addresses a server binds to but a client cannot always connect to (Windows refuses 0.0.0.0).
UNSPECIFIED_HOSTS = {"", "0.0.0.0", "::"}


@dataclass(frozen=True)
class PresetModel:
    """One model a provider is known to serve; prices are USD per million tokens."""

    alias: str
    id: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_price: Decimal | None = None
    output_price: Decimal | None = None
    cached_input_price: Decimal | None = None


@dataclass(frozen=True)
class ProviderPreset:
    name: str
    label: str
    base_url: str
    tier: str
    api: Api = "openai"
    api_key_env: str | None = None
    discover: Discovery = "none"
    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    models: tuple[PresetModel, ...] = ()
    # Prices of every model the provider serves, when they are all the same (Ollama: free).
    flat_price: Decimal | None = None


OLLAMA = ProviderPreset(
    name="ollama",
    label="Ollama",
    base_url=f"http://localhost:{OLLAMA_DEFAULT_PORT}/v1",
    tier="local",
    discover="ollama",
    flat_price=Decimal(0),
)

GROQ = ProviderPreset(
    name="groq",
    label="Groq",
    base_url="https://api.groq.com/openai/v1",
    tier="free",
    api_key_env="GROQ_API_KEY",
    discover="openai",
    # The free plan's limits for its larger models; forge paces requests to stay under them.
    requests_per_minute=30,
    requests_per_day=1000,
    models=(
        PresetModel(alias="llama-3-3-70b", id="llama-3.3-70b-versatile"),
        PresetModel(alias="llama-3-1-8b", id="llama-3.1-8b-instant"),
    ),
)

OPENROUTER = ProviderPreset(
    name="openrouter",
    label="OpenRouter",
    base_url="https://openrouter.ai/api/v1",
    tier="cheap",
    api_key_env="OPENROUTER_API_KEY",
    discover="openrouter",
    models=(
        PresetModel(alias="deepseek-v3-1", id="deepseek/deepseek-chat-v3.1"),
        PresetModel(alias="qwen3-coder", id="qwen/qwen3-coder"),
    ),
)

ANTHROPIC = ProviderPreset(
    name="anthropic",
    label="Anthropic",
    base_url="https://api.anthropic.com/v1",
    tier="premium",
    api="anthropic",
    api_key_env="ANTHROPIC_API_KEY",
    models=(
        PresetModel(
            alias="sonnet",
            id="claude-sonnet-4-5",
            context_window=200_000,
            input_price=Decimal(3),
            output_price=Decimal(15),
        ),
    ),
)

OPENAI = ProviderPreset(
    name="openai",
    label="OpenAI",
    base_url="https://api.openai.com/v1",
    tier="premium",
    api_key_env="OPENAI_API_KEY",
    discover="openai",
    models=(PresetModel(alias="gpt-5", id="gpt-5"),),
)

DEEPSEEK = ProviderPreset(
    name="deepseek",
    label="DeepSeek",
    base_url="https://api.deepseek.com/v1",
    tier="cheap",
    api_key_env="DEEPSEEK_API_KEY",
    discover="openai",
    models=(PresetModel(alias="deepseek", id="deepseek-chat"),),
)

# Cheapest first, which is also the order `forge init` reports them in.
PRESETS: tuple[ProviderPreset, ...] = (OLLAMA, GROQ, OPENROUTER, DEEPSEEK, ANTHROPIC, OPENAI)
KEYED_PRESETS: tuple[ProviderPreset, ...] = tuple(p for p in PRESETS if p.api_key_env)


def ollama_root(env: Mapping[str, str]) -> str:
    """Ollama's own address (no `/v1`) from OLLAMA_HOST, read the way the Ollama CLI reads it.

    Accepts `host`, `host:port`, `:port`, a bare IPv6 address and full URLs; a scheme without a
    port means that scheme's port, anything else without a port means 11434.
    """
    raw = env.get("OLLAMA_HOST", "").strip().rstrip("/")
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest = "http", raw
    standard_port = 443 if scheme == "https" else 80
    hostport, _, path = rest.partition("/")
    host, port = _host_and_port(hostport, standard_port if sep else OLLAMA_DEFAULT_PORT)
    host = "localhost" if host in UNSPECIFIED_HOSTS else host
    netloc = f"[{host}]" if ":" in host else host
    netloc += "" if port == standard_port else f":{port}"
    return f"{scheme}://{netloc}" + (f"/{path}" if path else "")


def _host_and_port(hostport: str, default_port: int) -> tuple[str, int]:
    if hostport.count(":") > 1 and not hostport.startswith("["):
        return hostport, default_port  # a bare IPv6 address has no port
    try:
        parsed = urlsplit(f"//{hostport}")
        return parsed.hostname or "", parsed.port or default_port
    except ValueError:  # a port that is not a number: Ollama falls back to the default too
        return urlsplit(f"//{hostport.rsplit(':', 1)[0]}").hostname or "", default_port


def ollama_base_url(env: Mapping[str, str]) -> str:
    """The OpenAI-compatible endpoint forge talks to."""
    return f"{ollama_root(env)}/v1"
