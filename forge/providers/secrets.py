"""Keeping API keys out of everything forge prints, logs or stores."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig

MASK = "[redacted]"
MIN_SECRET = 8
# Providers often echo part of a key ("sk-abc...wxyz"): any long run shared with a key goes too.
FRAGMENT = 12
# Variables that hold a credential by the usual naming (GROQ_API_KEY, GITHUB_TOKEN, ...): one
# of these words between underscores, not inside another (PIP_KEYRING_PROVIDER).
SECRET_NAME = re.compile(
    r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(?:$|_)", re.IGNORECASE
)


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        pieces: set[str] = set()
        for value in values:
            pieces.add(value)
            if len(value) > FRAGMENT * 2:
                pieces.update({value[:FRAGMENT], value[-FRAGMENT:]})
        ordered = sorted(pieces, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(p) for p in ordered)) if ordered else None

    @classmethod
    def for_config(cls, config: ForgeConfig, env: Mapping[str, str]) -> Redactor:
        """Every value of every key variable the configuration names, plus header secrets."""
        return cls(env[name] for name in key_names(config) if env.get(name))

    @classmethod
    def for_tools(cls, env: Mapping[str, str], names: Iterable[str] = ()) -> Redactor:
        """For what other programs print (a validator's output): the variables `names` and
        every one named like a credential, since those programs see the whole environment."""
        wanted = set(names)
        return cls(
            value
            for name, value in env.items()
            if name in wanted or (SECRET_NAME.search(name) and not _path_like(value))
        )

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text


def _path_like(value: str) -> bool:
    """A file's path (GOOGLE_APPLICATION_CREDENTIALS): the secret is in the file, and masking
    the path's pieces would mask the home folder in everything."""
    return value.startswith(("/", "~", "./")) or bool(re.match(r"[A-Za-z]:[\\/]", value))


def credential_name(name: str) -> bool:
    """A variable named like a credential: `*_API_KEY`, `*_TOKEN`, `*_SECRET`, anything with
    PASSWORD in it, cloud credentials (`AWS_*`, `AZURE_*` secrets, `GOOGLE_*` keys)..."""
    upper = name.upper()
    return (
        bool(SECRET_NAME.search(name))
        or "PASSWORD" in upper
        or "PASSWD" in upper
        or upper.startswith("AWS_")
    )


def without_credentials(
    environ: Mapping[str, str], names: Iterable[str], keep: Iterable[str] = ()
) -> dict[str, str]:
    """`environ` without the variables `names` (the configuration's keys) and every one named
    like a credential, but for those in `keep`: the environment of code a model wrote."""
    dropped = set(names) - set(keep)
    kept = set(keep)
    return {
        name: value
        for name, value in environ.items()
        if name in kept or not (name in dropped or credential_name(name))
    }


def key_names(config: ForgeConfig) -> tuple[str, ...]:
    """The variables the configuration takes keys from: `api_key_env` and `${VAR}` in headers."""
    names = {p.api_key_env for p in config.providers.values() if p.api_key_env}
    for provider in config.providers.values():
        for header in provider.headers.values():
            names.update(re.findall(r"\$\{(\w+)\}", header))
    return tuple(sorted(names))


def expand_headers(headers: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """Fill `${VAR}` in configured header values from the environment."""
    return {
        name: re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), value)
        for name, value in headers.items()
    }
