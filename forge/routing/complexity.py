"""How hard a task is: a score in [0, 1] made of named parts, and the band it falls in.

The score is a sum of terms, each with its reason, so the explanation can list them: a base per
task type, the length of the author's own words, words that make work harder or easier, breadth
words, the files it names (and, in a repository, their size and how widely they are used),
stated counts ("~25 components"), clauses, pasted errors and parts. Whether a task is critical
does not make it harder: the critical ladder already starts it higher, and counting it here too
put small critical edits in "medium".
Bands: trivial < TRIVIAL_BELOW <= simple < SIMPLE_BELOW <= medium < MEDIUM_BELOW <= complex.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from forge.routing.codebase import NamedFile
from forge.routing.reading import CueReading, Words
from forge.routing.signals import Quantity, TextSignals, token_count
from forge.routing.task_type import value_change
from forge.routing.vocabulary import TaskType, words

Band = Literal["trivial", "simple", "medium", "complex"]
BANDS: tuple[Band, ...] = ("trivial", "simple", "medium", "complex")
TRIVIAL_BELOW = 0.25
SIMPLE_BELOW = 0.45
MEDIUM_BELOW = 0.7

# -- complexity weights ----------------------------------------------------------------------
# The weights below were set by reasoning first, then adjusted as whole rules (never per task)
# against the labelled cases in tests/data/route_cases.jsonl; test_route.py reports the fit.
# Where each type starts on the complexity scale before the task's own signals move it.
TYPE_BASE: dict[TaskType, float] = {
    "simple_edit": 0.2,
    "docs": 0.31,
    "question": 0.24,
    "test": 0.3,
    "bug_fix": 0.26,
    "review": 0.38,
    "feature": 0.38,
    "refactor": 0.4,
    "planning": 0.48,
    "architecture": 0.49,
}
# Length: +LENGTH_STEP per doubling of the author's own words past LENGTH_PIVOT tokens.
LENGTH_PIVOT = 16
LENGTH_STEP = 0.06
LENGTH_MIN, LENGTH_MAX = -0.06, 0.3
HARDER_CAP, EASIER_CAP = 0.35, -0.15
BREADTH_CAP = 0.15
FILE_STEP, FILE_CAP = 0.03, 0.12
# (lines or referencing files at least, added complexity), largest first.
FILE_LINES = ((3000, 0.1), (1000, 0.06), (300, 0.03))
FILE_REFERENCES = ((40, 0.1), (15, 0.06), (5, 0.03))
MANY_ERRORS, MANY_ERRORS_DELTA = 3, 0.05
# A lone compiler or type-checker error names the file and line: the fix is usually local.
POINTED_ERRORS = ("rustc error", "TypeScript error", "compiler error", "tool error", "shell error")
POINTED_ERROR_DELTA = -0.08
# A failure at run time shows where it surfaced, not where it started: finding the cause is work.
RUNTIME_TRACES = ("Python traceback", "Java stack trace", "Go panic", "Rust panic", "test failures")
RUNTIME_TRACE_DELTA = 0.06
PART_STEP, PART_CAP = 0.05, 0.15
# Parts add work to a task that does them; a plan or a review of many items is still one plan.
ACTION_TYPES = frozenset({"simple_edit", "bug_fix", "refactor", "feature", "test", "docs"})
# One value set in place is the smallest edit there is.
VALUE_CHANGE_DELTA = -0.1
# A choice between named options is narrower than designing something, when it is asked in a
# few words; a long brief that weighs options asks for the trade-offs worked through.
CHOICE_DELTA = -0.15
CHOICE_SHORT_BELOW = 50
# A glob or a folder ("scripts/*.py", "app/services/") names many files at once.
MANY_FILES = re.compile(
    r"(?<![\w/])[\w.-]+/(?:[\w.-]+/)+(?:\*[\w.*]*)?(?=[\s,;:)]|$)|(?<![\w/])[\w.-]+/\*[\w.*]*"
)
MANY_FILES_DELTA = 0.08
PASTED_CODE_DELTA = 0.05
# A refactor or a test of one named function, in at most one file, stays within it.
ONE_SYMBOL_DELTA = -0.05
# Each clause ("toggle on the settings page, persist it, respect the OS setting") is one more
# requirement; asides in parentheses, brackets or backticks, and quoted values, are not.
CLAUSE_STEP, CLAUSE_CAP = 0.025, 0.1
# (Every alternative starts with its opening character, so the regex engine skips to those.)
ASIDE = re.compile(
    r"\([^()]*\)|`[^`]*`|\[[^\[\]]*\]|\{[^{}]*\}"
    r"|'(?<!\w')[^'\n]{0,40}'(?!\w)(?:\s*,)?|\"[^\"\n]{0,40}\"(?:\s*,)?"
)
# Stated counts, by kind: (at least, added complexity), largest first.
QUANTITY_KINDS = {
    **dict.fromkeys(["lines"], "lines"),
    **dict.fromkeys(
        words("rows row entries records users merchants orders customers accounts jobs"), "data"
    ),
    **dict.fromkeys(["req", "requests", "rps", "qps"], "rate"),
}
QUANTITY_STEPS: dict[str, tuple[tuple[float, float], ...]] = {
    "code": ((40, 0.2), (20, 0.15), (10, 0.1), (5, 0.05)),
    "lines": ((1000, 0.1), (300, 0.05)),
    "data": ((1e6, 0.1), (1e5, 0.05)),
    "rate": ((1e4, 0.1), (1e3, 0.05)),
}
QUANTITY_CAP = 0.2
# Breadth words, files, stated counts, clauses, globs and parts all measure one thing, how much
# the task covers, and a big task shows several of them at once: together they add at most
# SIZE_CAP, so one big task is not counted three times over. (Summed without a cap they pushed
# mid-sized tasks into "complex" and small multi-clause ones into "medium".)
SIZE_CAP = 0.2


def band_of(score: float) -> Band:
    if score < TRIVIAL_BELOW:
        return "trivial"
    if score < SIMPLE_BELOW:
        return "simple"
    if score < MEDIUM_BELOW:
        return "medium"
    return "complex"


BAND_RANGES: dict[Band, tuple[float, float]] = {
    "trivial": (0.0, TRIVIAL_BELOW),
    "simple": (TRIVIAL_BELOW, SIMPLE_BELOW),
    "medium": (SIMPLE_BELOW, MEDIUM_BELOW),
    "complex": (MEDIUM_BELOW, 1.0),
}


def complexity(
    task_type: TaskType,
    signals: TextSignals,
    words: Words,
    reading: CueReading,
    files: tuple[NamedFile, ...],
    parts: int,
) -> tuple[float, tuple[str, ...]]:
    prose_tokens = max(1, token_count(signals.prose))
    length = LENGTH_STEP * math.log2(prose_tokens / LENGTH_PIVOT)
    terms: list[tuple[float, str]] = [
        (TYPE_BASE[task_type], f"{task_type} work starts at {TYPE_BASE[task_type]:.2f}"),
        (min(LENGTH_MAX, max(LENGTH_MIN, length)), f"{prose_tokens} tokens"),
    ]
    terms += _cue_terms(reading, parts)
    terms += _shape_terms(task_type, signals, words, reading)
    if len(signals.errors) >= MANY_ERRORS:
        terms.append((MANY_ERRORS_DELTA, f"{len(signals.errors)} kinds of pasted error"))
    elif len(signals.errors) == 1 and signals.errors[0].startswith(POINTED_ERRORS):
        terms.append((POINTED_ERROR_DELTA, f"one {signals.errors[0]} points at the line"))
    elif any(e.startswith(RUNTIME_TRACES) for e in signals.errors):
        trace = next(e for e in signals.errors if e.startswith(RUNTIME_TRACES))
        terms.append((RUNTIME_TRACE_DELTA, f"a {trace} to trace back to its cause"))
    terms += _size_terms(task_type, signals, reading, files, parts)
    score = round(min(1.0, max(0.0, sum(delta for delta, _ in terms))), 3)
    shown = [terms[1][1]] + [reason for delta, reason in terms[2:] if delta]
    return score, tuple(shown)


def _cue_terms(reading: CueReading, parts: int) -> list[tuple[float, str]]:
    terms: list[tuple[float, str]] = []
    harder = sum(d for d, _ in reading.harder)
    if harder:
        quoted = ", ".join(f"'{w}'" for _, w in sorted(reading.harder)[::-1][:3])
        terms.append((min(HARDER_CAP, harder), f"harder: {quoted}"))
    easier = sum(d for d, _ in reading.easier)
    if easier:
        # Each of several small edits is easy; together they are still several edits.
        quoted = ", ".join(f"'{w}'" for _, w in sorted(reading.easier)[:3])
        terms.append((max(EASIER_CAP, easier) / max(1, parts), f"easier: {quoted}"))
    return terms


def _size_terms(
    task_type: TaskType,
    signals: TextSignals,
    reading: CueReading,
    files: tuple[NamedFile, ...],
    parts: int,
) -> list[tuple[float, str]]:
    """How much the task covers, each sign with its reason, together at most SIZE_CAP."""
    terms: list[tuple[float, str]] = []
    if reading.breadth:
        plural = "s" if len(reading.breadth) > 1 else ""
        quoted = ", ".join(f"'{w}'" for w in reading.breadth[:3])
        terms.append((min(BREADTH_CAP, reading.breadth_score), f"breadth word{plural} {quoted}"))
    terms += _file_terms(files)
    terms += _quantity_terms(signals.quantities)
    plain = ASIDE.sub(" ", signals.prose)
    clauses = plain.count(",") + plain.count(";")
    if clauses and task_type in ACTION_TYPES:
        terms.append((min(CLAUSE_CAP, CLAUSE_STEP * clauses), f"{clauses + 1} clauses"))
    many = _many_files(signals.prose) if "/" in signals.prose else None
    if many is not None:
        terms.append((MANY_FILES_DELTA, f"names many files at once ({many.group(0)})"))
    if parts > 1 and task_type in ACTION_TYPES:
        terms.append((min(PART_CAP, PART_STEP * (parts - 1)), f"{parts} parts"))
    covered = sum(delta for delta, _ in terms)
    if covered > SIZE_CAP:
        terms.append((SIZE_CAP - covered, f"size counted up to {SIZE_CAP:.2f}"))
    return terms


def _many_files(prose: str) -> re.Match[str] | None:
    """A glob or folder, looked for only in words holding a slash (a whole-text scan backtracks)."""
    for token in prose.split():
        if "/" in token:
            found = MANY_FILES.search(token)
            if found is not None:
                return found
    return None


def _shape_terms(
    task_type: TaskType, signals: TextSignals, words: Words, reading: CueReading
) -> list[tuple[float, str]]:
    terms: list[tuple[float, str]] = []
    if task_type == "simple_edit" and value_change(signals.prose):
        terms.append((VALUE_CHANGE_DELTA, "sets one value"))
    short = token_count(signals.prose) < CHOICE_SHORT_BELOW
    if words.choice and task_type == "architecture" and short:
        terms.append((CHOICE_DELTA, "a choice between named options"))
    if signals.has_code and task_type in ("review", "question") and not signals.errors:
        terms.append((PASTED_CODE_DELTA, "pasted code to read"))
    if (
        task_type in ("refactor", "test")
        and len(signals.symbols) == 1
        and len(signals.files) <= 1
        and not reading.breadth
    ):
        terms.append((ONE_SYMBOL_DELTA, f"about one piece of code ({signals.symbols[0]})"))
    return terms


def _quantity_terms(quantities: tuple[Quantity, ...]) -> list[tuple[float, str]]:
    """Stated counts: "~25 class components" is a bigger job than "two callers"."""
    best: dict[str, tuple[float, str]] = {}
    for q in quantities:
        kind = QUANTITY_KINDS.get(q.unit, "code")
        steps = QUANTITY_STEPS[kind]
        delta = next((d for at_least, d in steps if q.count >= at_least), 0.0)
        if delta and abs(delta) > abs(best.get(kind, (0.0, ""))[0]):
            best[kind] = (delta, q.text.strip())
    if not best:
        return []
    total = min(QUANTITY_CAP, sum(d for d, _ in best.values()))
    return [(total, "states " + ", ".join(f"'{t}'" for _, t in best.values()))]


def _file_terms(files: tuple[NamedFile, ...]) -> list[tuple[float, str]]:
    if not files:
        return []
    delta = min(FILE_CAP, FILE_STEP * (len(files) - 1))
    lines = max((f.lines or 0 for f in files), default=0)
    refs = max((f.referenced_by or 0 for f in files), default=0)
    delta += next((d for at_least, d in FILE_LINES if lines >= at_least), 0.0)
    delta += next((d for at_least, d in FILE_REFERENCES if refs >= at_least), 0.0)
    described = ", ".join(_describe_file(f) for f in files[:3])
    more = f", and {len(files) - 3} more" if len(files) > 3 else ""
    noun = "file" if len(files) == 1 else "files"
    return [(delta, f"names {len(files)} {noun} ({described}{more})")]


def _describe_file(named: NamedFile) -> str:
    if not named.found:
        return f"{named.path} not in the repository"
    refs = f", referenced by {named.referenced_by} files" if named.referenced_by else ""
    return f"{named.path} {named.lines} lines{refs}"
