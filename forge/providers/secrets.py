"""Keeping API keys out of everything forge prints, logs or stores."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig

MASK = "[redacted]"
MIN_SECRET = 8
# Providers and models echo keys in part ("sk-abc...wxyz", or 22 characters from the middle):
# any run of this many consecutive characters of a key is masked, wherever it is in the key.
FRAGMENT = 8
# Every such run holds one of the key's ANCHOR-character blocks that start at a multiple of
# ANCHOR (any FRAGMENT >= 2 * ANCHOR - 1 characters do). The text is searched for those few
# blocks only (len(key) / ANCHOR fast substring searches), and each hit is extended both ways
# along the key: linear in the text, however long the answer.
ANCHOR = 4
# Variables that hold a credential by the usual naming (GROQ_API_KEY, GITHUB_TOKEN, ...): one
# of these words between underscores, not inside another (PIP_KEYRING_PROVIDER).
SECRET_NAME = re.compile(
    r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(?:$|_)", re.IGNORECASE
)


class Redactor:
    """Masks every run of FRAGMENT or more consecutive characters of any of `secrets`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._keys = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET}))
        self._anchors: dict[str, list[tuple[str, int]]] = {}
        for key in self._keys:
            for offset in range(0, len(key) - ANCHOR + 1, ANCHOR):
                self._anchors.setdefault(key[offset : offset + ANCHOR], []).append((key, offset))
        # The longest run a text can end with and still grow: what a stream must hold back.
        self.reach = max((len(k) for k in self._keys), default=0)

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
        spans = self.spans(text)
        if not spans:
            return text
        pieces, at = [], 0
        for start, end in spans:
            pieces += [text[at:start], MASK]
            at = end
        pieces.append(text[at:])
        return "".join(pieces)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) of every masked run, merged where they overlap or touch."""
        found: list[tuple[int, int]] = []
        for anchor, places in self._anchors.items():
            hit = text.find(anchor)
            while hit != -1:
                for key, offset in places:
                    found.extend(_run(text, hit, key, offset))
                hit = text.find(anchor, hit + 1)
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def stream(self) -> StreamRedaction:
        """For text that arrives in pieces: a key split across two pieces is masked too."""
        return StreamRedaction(self)


class StreamRedaction:
    """Releases a stream's text masked, holding back its last `reach` characters (they could
    still be the start of a key) until more arrives or the stream ends."""

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact
        self._pending = ""

    def feed(self, piece: str) -> str:
        if not self._redact.reach:
            return piece
        text = self._pending + piece
        cut = len(text) - self._redact.reach
        if cut <= 0:
            self._pending = text
            return ""
        for start, end in self._redact.spans(text):
            if start < cut < end:
                cut = start  # a run across the cut leaves whole, later
                break
        released, self._pending = text[:cut], text[cut:]
        return self._redact(released)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self._redact(text)


def _run(text: str, hit: int, key: str, offset: int) -> list[tuple[int, int]]:
    """The run around text[hit:hit+ANCHOR] that matches `key` around `offset`, if long enough."""
    before = 0
    while before < min(hit, offset) and text[hit - before - 1] == key[offset - before - 1]:
        before += 1
    after = ANCHOR
    while offset + after < len(key) and hit + after < len(text):
        if text[hit + after] != key[offset + after]:
            break
        after += 1
    start, end = hit - before, hit + after
    return [(start, end)] if end - start >= FRAGMENT else []


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
