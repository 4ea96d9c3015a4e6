"""Tables that fit the terminal they are printed on, at 80 columns and below as well as above.

Left to itself, Rich squeezes every column of a table that is too wide until the cells read
`$0.00…` and `st…`, and the column of prose can end up with no width at all. A `FittedTable`
decides instead, each time it is drawn and for the width it is drawn at (so a live table
follows a resized terminal):

- the columns a command always shows, then as many of the others as fit, most important first
  (`Column.drop`: the lowest leaves first); the table says which it left out;
- a value (a cost, an id, a model name, a number) is never cut: its column is as wide as its
  widest value, or the value wraps at its spaces, and only on a terminal too narrow for the
  columns that always show does a word fold onto the next line, whole;
- the column of prose (an answer, a reason, an error) is at least `PROSE_MIN_WIDTH` characters
  wide, wraps, and takes the width that is left.

A plain `str` cell is text, never Rich markup: the cells hold model, provider and user text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.table import Table
    from rich.text import Text

PROSE_MIN_WIDTH = 30
FOLDED_VALUE_WIDTH = 8  # how narrow a value is folded before the prose gives up its width

Justify = Literal["left", "center", "right"]


@dataclass(frozen=True)
class Column:
    """One column. `drop`: its place in the order in which columns give way to a narrow
    terminal, lowest first (a narrow column may stay where a wider, more important one could
    not); a column without one is always shown. `prose`: the column of running text (one)."""

    header: str
    justify: Justify = "left"
    drop: int | None = None
    prose: bool = False


@dataclass(frozen=True)
class _Measured:
    """A column's widths, in characters of text: `least` it reads well at (its longest word, or
    `PROSE_MIN_WIDTH` for prose), `natural` (its values on one line each; the header may wrap at
    its spaces), `full` (the header too)."""

    index: int
    column: Column
    least: int
    natural: int
    full: int


class FittedTable:
    """A Rich renderable table laid out for the width it is rendered at (see the module)."""

    def __init__(
        self,
        *columns: Column,
        title: str | None = None,
        caption: str | None = None,
        live: bool = False,
        **table_options: Any,
    ) -> None:
        """`live`: the table is redrawn as its cells fill; the prose column is given its
        `PROSE_MIN_WIDTH` while it is still empty, so that columns do not leave as text arrives.
        `table_options` go to `rich.table.Table` (box, padding, show_header, ...)."""
        if sum(c.prose for c in columns) > 1:
            raise ValueError("a fitted table has at most one prose column")
        self.columns = columns
        self.live = live
        self.title = title
        self.caption = caption
        self.options = {"title_justify": "left", "caption_justify": "left"} | table_options
        self.rows: list[tuple[Text, ...]] = []

    def add_row(self, *cells: str | Text) -> None:
        from rich.text import Text

        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(tuple(Text(c) if isinstance(c, str) else c for c in cells))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(console, options.max_width)

    def table(self, console: Console, width: int) -> Table:
        """The Rich table for `width` columns of terminal."""
        from rich.table import Table
        from rich.text import Text

        measured = self._measure(console, width)
        shown = _fit(measured, width, self._overhead)
        caption = self.caption
        hidden = [m.column.header for m in measured if m.index not in shown]
        if hidden:
            note = f"not shown at {width} columns: {', '.join(hidden)}"
            caption = note if caption is None else f"{caption}\n{note}"
        table = Table(title=self.title, caption=caption, **self.options)
        for m in measured:
            if m.index in shown:
                table.add_column(
                    Text(m.column.header, overflow="fold"),
                    justify=m.column.justify,
                    width=shown[m.index],
                    overflow="fold",
                )
        for row in self.rows:
            table.add_row(*(row[i] for i in sorted(shown)))
        return table

    def _measure(self, console: Console, width: int) -> list[_Measured]:
        from rich.measure import Measurement
        from rich.text import Text

        options = console.options.update_width(max(width, 1))
        measured = []
        for index, column in enumerate(self.columns):
            header = Measurement.get(console, options, Text(column.header))
            cells = [Measurement.get(console, options, row[index]) for row in self.rows]
            longest = max((c.maximum for c in cells), default=1)
            natural = max(longest, header.minimum, 1)
            if column.prose:
                least = PROSE_MIN_WIDTH if self.live else min(natural, PROSE_MIN_WIDTH)
            else:
                least = max(max((c.minimum for c in cells), default=1), header.minimum)
            full = max(natural, header.maximum)
            measured.append(_Measured(index, column, max(least, 1), natural, full))
        return measured

    def _overhead(self, count: int) -> int:
        """Borders and padding of a table of `count` columns, around their text."""
        from rich import box as boxes
        from rich.padding import Padding

        box = self.options.get("box", boxes.HEAVY_HEAD)
        _, right, _, left = Padding.unpack(self.options.get("padding", (0, 1)))
        edges = 2 if box is not None and self.options.get("show_edge", True) else 0
        lines = count - 1 if box is not None else 0
        padding = count * (left + right)
        if not self.options.get("pad_edge", True):
            padding -= left + right
        return edges + lines + padding


def _fit(measured: list[_Measured], width: int, overhead: Callable[[int], int]) -> dict[int, int]:
    """Which columns are shown, and each one's text width, for a table `width` wide.

    The columns that are always shown, then each other one, most important first, that fits with
    its values on one line; the prose counts at its least. Then the width left over goes to the
    values (most important first), and the rest to the prose.
    """
    shown = [m for m in measured if m.column.drop is None]
    for m in sorted(measured, key=_drop_rank, reverse=True):
        if m.column.drop is None:
            continue
        wanted = [*shown, m]
        if sum(_comfortable(c) for c in wanted) + overhead(len(wanted)) <= width:
            shown.append(m)
    widths = {m.index: m.least for m in shown}
    spare = width - overhead(len(shown)) - sum(widths.values())
    if spare < 0:
        _fold_values(shown, widths, -spare)
        return widths
    values = sorted((m for m in shown if not m.column.prose), key=_drop_rank, reverse=True)
    for m in values:
        spare -= _grow(widths, m.index, m.natural, spare)
    for m in values:  # a header on one line, when there is room for all of it
        if m.full - widths[m.index] <= spare:
            spare -= _grow(widths, m.index, m.full, spare)
    for m in shown:
        if m.column.prose:
            spare -= _grow(widths, m.index, m.natural, spare)
    return widths


def _grow(widths: dict[int, int], index: int, target: int, spare: int) -> int:
    grow = max(0, min(spare, target - widths[index]))
    widths[index] += grow
    return grow


def _comfortable(m: _Measured) -> int:
    return m.least if m.column.prose else m.natural


def _drop_rank(m: _Measured) -> float:
    return float("inf") if m.column.drop is None else m.column.drop


def _fold_values(shown: list[_Measured], widths: dict[int, int], excess: int) -> None:
    """Not even the columns that stay fit whole, on a very narrow terminal: fold the widest
    values down to a few characters, then narrow the prose, then fold the values further."""
    values = [m.index for m in shown if not m.column.prose]
    prose = next((m.index for m in shown if m.column.prose), None)

    def fold(floor: int, excess: int) -> int:
        while excess > 0 and values:
            widest = max(values, key=lambda i: widths[i])
            if widths[widest] <= floor:
                break
            widths[widest] -= 1
            excess -= 1
        return excess

    excess = fold(FOLDED_VALUE_WIDTH, excess)
    if prose is not None and excess > 0:
        narrower = min(excess, widths[prose] - 1)
        widths[prose] -= narrower
        excess -= narrower
    fold(1, excess)
