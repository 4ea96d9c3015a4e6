"""Options shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="FORGE_CONFIG",
        help="Use this forge.toml instead of discovering one (also FORGE_CONFIG).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
FileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", metavar="PATH", help="Read it from this file (or give @PATH)."),
]


def given_text(text: str | None, file: Path | None, *, what: str, usage: str) -> str:
    """The text a command works on: TEXT, `@PATH`, `--file PATH`, or standard input (`-`, or
    a pipe or a redirected file when no TEXT is given). `usage` is the error when there is none.

    Every way it can be wrong is a usage error (exit 2) that says which: both TEXT and --file,
    a file that cannot be read, nothing but white space.
    """
    import sys

    from forge.errors import UsageError

    if text is not None and file is not None:
        raise UsageError(f"give the {what} once: as an argument or with --file, not both")
    if file is None and text is not None and text.startswith("@") and len(text) > 1:
        file = Path(text[1:])
    if file is not None:
        text = _read_file(file, what)
        source = f" ({file} holds no text)"
    elif text == "-" or (text is None and _stdin_has_input()):
        text = sys.stdin.read()
        source = " (nothing came on stdin)"
    elif text is None:
        raise UsageError(usage)
    else:
        source = ""
    if not text.strip():
        raise UsageError(f"the {what} is empty{source}")
    return text


def _read_file(file: Path, what: str) -> str:
    from forge.errors import UsageError

    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read the {what} file {file}: it is not UTF-8 text") from None


def _stdin_has_input() -> bool:
    """A pipe, a socket or a redirected file; not a terminal, and not /dev/null (a job that
    runs forge with no input at all, as CI does)."""
    import os
    import stat
    import sys

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # closed, or replaced by something without one
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)
