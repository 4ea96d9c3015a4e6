"""Terminal output shared by the commands: one console, money and time as people read them."""

from __future__ import annotations

import errno
import json
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment


def console(stderr: bool = False, capture: TextIO | None = None) -> Console:
    """Colour only on a terminal, and never when NO_COLOR is set (rich reads it).

    Piped output (CI logs, files) gets wide lines instead of tables folded to 80 columns.
    With `capture`, the output goes there, rendered as it would be for the real stream.
    Whatever it prints is `printable`: a model's text in a table cell or a panel cannot send
    the terminal escape sequences.
    """
    import os
    import shutil

    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    width = None if terminal else int(os.environ.get("COLUMNS") or 160)
    if capture is not None:
        width = width or shutil.get_terminal_size().columns
        return _safe_console()(
            file=capture, force_terminal=terminal, highlight=False, soft_wrap=False, width=width
        )
    return _safe_console()(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def _safe_console() -> type[Console]:
    """A Rich console whose every rendered piece of text is `printable`.

    Rich writes its own styles and cursor moves as control segments, which are left alone; the
    text segments (cells, panels, titles, live tables) are where a model's escapes would ride.
    Rich is imported here, not at the top, so commands that print nothing stay fast to start.
    """
    from rich.console import Console
    from rich.segment import Segment

    from forge.printable import printable

    class SafeConsole(Console):
        def on_broken_pipe(self) -> None:
            # Rich would exit 1 on its own; the CLI ends every command's closed pipe the same way.
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "the reader of the output closed the pipe")

        def render(
            self, renderable: RenderableType, options: ConsoleOptions | None = None
        ) -> Iterable[Segment]:
            for segment in super().render(renderable, options):
                if segment.control or segment.text.isprintable():
                    yield segment
                else:
                    yield Segment(printable(segment.text), segment.style)

    return SafeConsole


def usd(value: Decimal | None, source: str | None = None) -> str:
    if value is None:
        return "unpriced"
    if value == 0:
        return "$0"
    text = f"${value:.4f}" if value >= Decimal("0.01") or value == 0 else f"${value:.6f}"
    return f"{text} ({source})" if source in ("reported", "reservation") else text


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
