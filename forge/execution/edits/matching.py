"""Finding a block's SEARCH text in a file: exactly, then forgiving what models get wrong.

Models copy code faithfully but not always its whitespace: trailing spaces go missing and a
snippet quoted from inside a class loses its indentation. Each pass is tried only when the
stricter ones found nothing, and a pass that finds several places is ambiguous, never a guess.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

LinesEqual = Callable[[str, str], bool]

# Above this many window lines, only the promising windows are compared for the closest region.
SCAN_BUDGET = 20_000
PROMISING = 20
CHARACTER_LINES = 12  # of a longer search, only the first lines are compared


@dataclass(frozen=True)
class Match:
    start: int  # 0-based index of the first matched line
    length: int  # matched lines
    replacement: list[str]  # the replacement lines, re-indented like the file


@dataclass(frozen=True)
class Found:
    """The outcome of a search: one match, or every place when several matched, or neither."""

    match: Match | None = None
    ambiguous: tuple[int, ...] = ()  # 0-based first lines of every match


def find(lines: list[str], search: list[str], replace: list[str]) -> Found:
    """Locate `search` in the file `lines` (no line endings) and shape `replace` to fit."""
    for same in (_exact, _trailing_whitespace):
        starts = _starts(lines, search, same)
        if len(starts) == 1:
            return Found(Match(starts[0], len(search), replace))
        if starts:
            return Found(ambiguous=tuple(starts))
    return _reindented(lines, search, replace)


def contains(lines: list[str], text: list[str]) -> bool:
    """Whether `text` is already in the file, allowing for the same whitespace slips."""
    if not any(line.strip() for line in text):
        return False
    found = find(lines, text, text)
    return found.match is not None or bool(found.ambiguous)


def closest(lines: list[str], search: list[str]) -> tuple[int, int] | None:
    """The 0-based start and length of the file region most like `search`, for a hint."""
    if not lines or not search:
        return None
    size = min(len(search), len(lines))
    # Promising windows first, so the pruning in _likeness skips most of the others.
    starts = _promising_starts(lines, search, size)
    if (len(lines) - size + 1) * size <= SCAN_BUDGET:
        tried = set(starts)
        starts += [start for start in range(len(lines) - size + 1) if start not in tried]
    best: tuple[float, int] | None = None
    for start in starts:
        score = _likeness(lines[start : start + size], search, -1.0 if best is None else best[0])
        if best is None or score > best[0]:
            best = (score, start)
    return None if best is None else (best[1], size)


def _likeness(window: list[str], search: list[str], to_beat: float) -> float:
    """difflib's ratio between a window and the search, on their first lines only when the
    search is long (characters beyond that would take too long and add little)."""
    matcher = difflib.SequenceMatcher(
        None,
        "\n".join(window[:CHARACTER_LINES]),
        "\n".join(search[:CHARACTER_LINES]),
        autojunk=False,
    )
    # The cheap upper bounds skip most windows before the quadratic ratio().
    if matcher.real_quick_ratio() <= to_beat or matcher.quick_ratio() <= to_beat:
        return to_beat
    return matcher.ratio()


def _promising_starts(lines: list[str], search: list[str], size: int) -> list[int]:
    """The windows that share the most lines with the search, and those that begin like the
    search does (a typo on every line shares none); at most 2 * PROMISING of them."""
    wanted = {key for key in _keys(search) if key}
    shared = [1 if key in wanted else 0 for key in _keys(lines)]
    count = sum(shared[:size])
    counts = [count]
    for start in range(1, len(lines) - size + 1):
        count += shared[start + size - 1] - shared[start - 1]
        counts.append(count)
    ranked = sorted(range(len(counts)), key=lambda start: (-counts[start], start))
    promising = {start for start in ranked[:PROMISING] if counts[start]}
    first = next((i for i, line in enumerate(search) if line.strip()), 0)
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(search[first].strip())
    best: list[tuple[float, int]] = []  # the PROMISING most alike, best first
    for at, line in enumerate(lines[first : len(counts) + first]):
        floor = best[-1][0] if len(best) == PROMISING else 0.5
        matcher.set_seq1(line.strip())
        if matcher.real_quick_ratio() > floor and matcher.quick_ratio() > floor:
            best.append((matcher.ratio(), at))
            best = sorted(best, key=lambda pair: -pair[0])[:PROMISING]
    promising.update(at for _, at in best)
    return sorted(promising)


def _keys(lines: list[str]) -> list[str]:
    return [" ".join(line.split()) for line in lines]


def _exact(a: str, b: str) -> bool:
    return a == b


def _trailing_whitespace(a: str, b: str) -> bool:
    return a.rstrip() == b.rstrip()


def _starts(lines: list[str], search: list[str], same: LinesEqual) -> list[int]:
    count = len(search)
    return [
        start
        for start in range(len(lines) - count + 1)
        if same(lines[start], search[0])
        and all(same(lines[start + i], search[i]) for i in range(1, count))
    ]


def _reindented(lines: list[str], search: list[str], replace: list[str]) -> Found:
    """The block found with every line shifted by the same indentation."""
    search_indent = _common_indent(search)
    wanted = _dedented(search, search_indent)
    count = len(search)
    first = next((i for i, line in enumerate(search) if line.strip()), None)
    if first is None:
        return Found()
    anchor = search[first].strip()
    matches: list[Match] = []
    for start in range(len(lines) - count + 1):
        if lines[start + first].strip() != anchor:
            continue
        window = lines[start : start + count]
        indent = _common_indent(window)
        if _dedented(window, indent) == wanted:
            matches.append(Match(start, count, _shift(replace, search_indent, indent)))
    if len(matches) == 1:
        return Found(matches[0])
    return Found(ambiguous=tuple(m.start for m in matches))


def _common_indent(lines: list[str]) -> str:
    indents = [line[: len(line) - len(line.lstrip())] for line in lines if line.strip()]
    if not indents:
        return ""
    first, last = min(indents), max(indents)
    size = 0
    while size < len(first) and first[size] == last[size]:
        size += 1
    return first[:size]


def _dedented(lines: list[str], indent: str) -> list[str]:
    return [line[len(indent) :].rstrip() if line.strip() else "" for line in lines]


def _shift(replace: list[str], old: str, new: str) -> list[str]:
    """Re-indent the replacement as the file's match is indented relative to the search."""
    if new.startswith(old):
        extra = new[len(old) :]
        return [extra + line if line.strip() else line for line in replace]
    if old.startswith(new):
        drop = len(old) - len(new)
        return [line[min(drop, len(line) - len(line.lstrip())) :] for line in replace]
    # Tabs against spaces: swap the indentation where the replacement uses the search's own.
    return [new + line[len(old) :] if line.startswith(old) else line for line in replace]
