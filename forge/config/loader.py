"""Find, merge and validate forge.toml files, remembering where every value came from."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from forge.config.discovery import CONFIG_NAME, config_files
from forge.config.schema import BUILTIN_TIERS, ForgeConfig
from forge.errors import ConfigError

ENV_PREFIX = "FORGE_"
DEFAULT_SOURCE = "default"
# Keys whose values are never echoed in an error: they may hold a secret by mistake.
SECRET_KEYS = {"api_key_env", "headers", "api_key", "key", "token", "secret", "url"}
# Environment variables named as users expect rather than by the FORGE_SECTION__KEY rule.
ENV_ALIASES = {"FORGE_LEDGER_URL": "ledger.url"}
# How alike a model's tier must be to a known one to be taken for a misspelling of it ("cheep"
# and "cheap" are 0.8; "premium-plus" and "premium" 0.74 is a tier of its own).
TYPO_CUTOFF = 0.8


@dataclass(frozen=True)
class LoadedConfig:
    config: ForgeConfig
    files: list[Path]
    sources: dict[str, str] = field(default_factory=dict)
    # Dotted keys that a file opened as a table: they hold other keys, not a value of their own.
    tables: frozenset[str] = frozenset()

    def source_of(self, dotted: str) -> str:
        """The file or variable that set `dotted` (or the list it sits in), else "default".

        A table a file merely opened does not count: `cost.run_budget_usd` is still a default
        when the file has a `[cost]` table that does not set it.
        """
        if dotted in self.sources:
            return self.sources[dotted]
        parts = dotted.split(".")
        for end in range(len(parts) - 1, 0, -1):
            enclosing = ".".join(parts[:end])
            if enclosing in self.sources and enclosing not in self.tables:
                return self.sources[enclosing]
        return DEFAULT_SOURCE


def load_config(
    explicit: Path | None = None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    env = os.environ if env is None else env
    files = config_files(explicit, cwd or Path.cwd(), env)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    tables: set[str] = set()
    texts: dict[str, str] = {}
    for path in files:
        text, data = _read_toml(path)
        texts[str(path)] = text
        _merge(merged, data, sources, str(path), (), tables)
    for name, value in sorted(env.items()):
        dotted = _env_key(name)
        if dotted:
            _set_dotted(merged, dotted, _parse_env_value(value))
            sources[dotted] = f"env {name}"
    config = _validate(merged, sources, texts)
    return LoadedConfig(config=config, files=files, sources=sources, tables=frozenset(tables))


def parse_config_text(text: str, path: str = CONFIG_NAME) -> ForgeConfig:
    """Validate one file's text on its own (used by `forge init` to check what it writes)."""
    data = _parse_toml(text, path)
    sources: dict[str, str] = {}
    _merge({}, data, sources, path, ())
    return _validate(data, sources, {path: text})


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the file ({exc.__class__.__name__})", path=str(path)
        ) from None
    return text, _parse_toml(text, str(path))


def _parse_toml(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else None
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"invalid TOML: {reason}", path=path, line=line) from None


def _merge(
    into: dict[str, Any],
    data: Mapping[str, Any],
    sources: dict[str, str],
    origin: str,
    prefix: tuple[str, ...],
    tables: set[str] | None = None,
) -> None:
    for key, value in data.items():
        dotted = (*prefix, key)
        if isinstance(value, dict) and isinstance(into.get(key, {}), dict):
            _merge(into.setdefault(key, {}), value, sources, origin, dotted, tables)
            sources.setdefault(".".join(dotted), origin)
            if tables is not None:
                tables.add(".".join(dotted))
        else:
            into[key] = value
            sources[".".join(dotted)] = origin
            if tables is not None:
                tables.discard(".".join(dotted))


def _env_key(name: str) -> str | None:
    """FORGE_COST__DAILY_BUDGET_USD -> cost.daily_budget_usd, FORGE_LEDGER_URL -> ledger.url;
    other FORGE_* names are not config."""
    if name in ENV_ALIASES:
        return ENV_ALIASES[name]
    if not name.startswith(ENV_PREFIX) or "__" not in name:
        return None
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    return ".".join(parts) if all(parts) else None


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}", parse_float=Decimal)["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *tables, leaf = dotted.split(".")
    for table in tables:
        nxt = data.get(table)
        if not isinstance(nxt, dict):
            nxt = data[table] = {}
        data = nxt
    data[leaf] = value


def _validate(
    data: dict[str, Any], sources: dict[str, str], texts: Mapping[str, str]
) -> ForgeConfig:
    try:
        config = ForgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = [(_loc_key(err["loc"]), _describe(err)) for err in exc.errors()]
        raise _config_error(problems, sources, texts) from None
    problems = reference_problems(config, data)
    if problems:
        raise _config_error(problems, sources, texts)
    return config


def reference_problems(config: ForgeConfig, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Names that must point somewhere: providers, ladder rungs, local model roles."""
    problems: list[tuple[str, str]] = []
    for alias, model in config.models.items():
        if model.provider not in config.providers:
            problems.append(
                (
                    f"models.{alias}.provider",
                    _unknown("provider", model.provider, list(config.providers)),
                )
            )
    problems += _misspelt_tiers(config)
    rungs = sorted(config.tier_names() | set(config.models))
    for name, ladder in config.tiers.ladders().items():
        if name not in data.get("tiers", {}):
            continue  # the built-in default ladder may name tiers this file does not use
        for index, rung in enumerate(ladder):
            if rung not in rungs:
                problems.append(
                    (f"tiers.{name}", _unknown("tier or model", rung, rungs) + f" (entry {index})")
                )
    reviewer = config.routing.reviewer
    if reviewer is not None and reviewer not in config.models:
        problems.append(("routing.reviewer", _unknown("model", reviewer, list(config.models))))
    for role in ("router", "coder", "validator"):
        alias = getattr(config.local_models, role)
        if alias is not None and alias not in config.models:
            problems.append((f"local_models.{role}", _unknown("model", alias, list(config.models))))
    return problems


def _misspelt_tiers(config: ForgeConfig) -> list[tuple[str, str]]:
    """A model's tier that no ladder names and the built-in tiers do not know, but that is one
    letter or two away from one of them: `tier = "cheep"` would leave the model out of every
    route. A tier of one's own that resembles none (`tier = "paid"`) stays, for `--tier`."""
    known = sorted(
        set(BUILTIN_TIERS) | {r for ladder in config.tiers.ladders().values() for r in ladder}
    )
    problems: list[tuple[str, str]] = []
    for alias, model in config.models.items():
        if model.tier is None or model.tier in known:
            continue
        guess = difflib.get_close_matches(model.tier, known, n=1, cutoff=TYPO_CUTOFF)
        if guess:
            problems.append(
                (f"models.{alias}.tier", f"unknown tier {model.tier!r}; did you mean {guess[0]!r}?")
            )
    return problems


def _unknown(kind: str, name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1)
    hint = (
        f"; did you mean {guess[0]!r}?"
        if guess
        else (f"; known: {', '.join(sorted(known))}" if known else f"; no {kind} is configured")
    )
    return f"unknown {kind} {name!r}{hint}"


def _loc_key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        return _unknown_key(loc)
    message = str(err["msg"])
    message = re.sub(r"^Value error, ", "", message)
    message = re.sub(r"^Input should be ", "expected ", message)
    if err["type"] == "missing":
        return "required key is missing"
    # A validator's own message already says what it found (or hides it on purpose).
    if err["type"] == "value_error" or any(str(part) in SECRET_KEYS for part in loc):
        return message
    found = err.get("input")
    if isinstance(found, dict | list):
        return f"{message}, found a {'table' if isinstance(found, dict) else 'list'}"
    return f"{message}, found {found!r}" if "found" not in message else message


def _unknown_key(loc: tuple[Any, ...]) -> str:
    key = str(loc[-1])
    owner = _model_at(loc[:-1])
    known = list(owner.model_fields) if owner else []
    if key in {"api_key", "key", "token", "secret"}:
        return (
            f"unknown key {key!r}: forge never reads API keys from a file; set the key in an "
            "environment variable and name that variable in api_key_env"
        )
    guess = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f"unknown key {key!r}" + (f"; did you mean {guess[0]!r}?" if guess else "")


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema class owning the keys at `loc` (dict levels such as a provider name skipped)."""
    current: type[BaseModel] = ForgeConfig
    skip_next = False
    for part in loc:
        if skip_next or isinstance(part, int):
            skip_next = False
            continue
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        inner = _model_class(info.annotation)
        if inner is None:
            return None
        current, skip_next = inner
    return current


def _model_class(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """(model class, whether a dict/list level sits between) for an annotation, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, True
    return None


def _config_error(
    problems: list[tuple[str, str]], sources: Mapping[str, str], texts: Mapping[str, str]
) -> ConfigError:
    lines = []
    for dotted, message in problems:
        origin = _origin(dotted, sources)
        line = _line_of(texts.get(origin, ""), dotted) if origin in texts else None
        where = f"{origin}:{line}" if line else origin
        lines.append(f"{where}: {dotted}: {message}")
    error = ConfigError("\n".join(lines))
    error.path = _origin(problems[0][0], sources)
    return error


def _origin(dotted: str, sources: Mapping[str, str]) -> str:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:end]))
        if found:
            return found
    return next(iter(sources.values()), "configuration")


_HEADER = re.compile(r"^(\[\[?)\s*([^\]]+?)\s*\]\]?")
_ASSIGN = re.compile(
    r"""^((?:"[^"]*"|'[^']*'|[\w-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[\w-]+))*)\s*="""
)
_KEY_PART = re.compile(r""""([^"]*)"|'([^']*)'|([\w-]+)""")


def _line_of(text: str, dotted: str) -> int | None:
    """Best-effort line of a dotted key in a TOML text.

    The first line that sets the key (or a table inside it), else the header of the nearest
    table that encloses it. `[[array]]` tables are counted so `validation.custom.1.parser`
    lands in the second `[[validation.custom]]`, not the first.
    """
    target = dotted.split(".")
    table: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    enclosing: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            table = _key_parts(header.group(2))
            if header.group(1) == "[[":
                index = seen[tuple(table)] = seen.get(tuple(table), -1) + 1
                table = [*table, str(index)]
            if table[: len(target)] == target:
                return number
            if target[: len(table)] == table:
                enclosing = number
            continue
        assign = _ASSIGN.match(line)
        if assign:
            full = table + _key_parts(assign.group(1))
            if full[: len(target)] == target or target[: len(full)] == full:
                return number
    return enclosing


def _key_parts(key: str) -> list[str]:
    """`a."b.c".d` -> ["a", "b.c", "d"]."""
    return [
        next(group for group in match.groups() if group is not None)
        for match in _KEY_PART.finditer(key)
    ]
