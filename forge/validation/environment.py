"""The environment variables the tools read (their flags, paths, plug-ins and interpreter).

They are part of every cache key and of the replay key, so `RUSTFLAGS="-D warnings"` or a new
PYTHONPATH is never answered from a run made without it. Only the standard library is used:
the replay path imports this before anything else.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

# A pattern ending in "*" is a prefix.
TOOL_ENVIRONMENT = (
    "PATH",
    "VIRTUAL_ENV",
    "PYENV_VERSION",
    "PYTHON*",
    "PYTEST_*",
    "MYPY*",
    "RUFF_*",
    "CARGO*",
    "RUST*",
    "CC",
    "CXX",
    "CFLAGS",
    "CXXFLAGS",
    "LDFLAGS",
)


def tool_environment(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables of TOOL_ENVIRONMENT that are set, sorted, with their values."""
    return sorted(
        (name, value)
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in TOOL_ENVIRONMENT)
    )
