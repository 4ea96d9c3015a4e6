"""What kind of work a task is: votes from its vocabulary, its opening verb and its shape.

Every vote carries its reason, so the explanation can say why ("pasted rustc error E0308",
"asks to 'fix'"). The type with the most weight wins; ties go to the more specific intent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from difflib import SequenceMatcher
from functools import cache

from forge.routing.reading import CueReading, Words
from forge.routing.signals import WORD_START, TextSignals
from forge.routing.vocabulary import (
    ERROR_OUTPUT_WEIGHT,
    FIX_VERBS,
    LEAD_VERBS,
    LEAD_WEIGHT,
    OBJECT_LED_VERBS,
    OBJECT_TYPES,
    OBJECT_WINDOW,
    QUESTION_MARK_WEIGHT,
    QUESTION_WEIGHT,
    TIE_ORDER,
    TaskType,
)

# -- type votes beyond the vocabulary ----------------------------------------------------------
LATER_LEAD_WEIGHT = 3.0
CHOICE_WEIGHT = 5.0
PASTED_CODE_WEIGHT = 3.0
VALUE_CHANGE_WEIGHT = 3.0
HTTP_ROUTE_WEIGHT = 1.5
UNSAFE_SQL_WEIGHT = 2.0
DOC_FILE_WEIGHT = 1.5
TEST_FILE_WEIGHT = 1.0
CONFIG_FILE_WEIGHT = 1.0
RENAME_SIMILARITY = 0.6

# A value set in place: "is 30, make it 60", "should be 50 not 20", "from 10 to 12".
VALUE_CHANGE = re.compile(
    r"\bmake it\s+['\"]?[\w.]+|\bshould be\s+['\"]?[\w.]+['\"]?,?\s+(?:not|instead)\b|"
    r"\bgive it\s+\d|\bfrom\s+v?\d[\w.]*\s+to\s+v?\d|\bsay\s+['\"][^'\"]+['\"]|"
    r"\b[A-Z][A-Z0-9_]+\s*=\s*\d|\bto\s+['\"]?v?\d[\w.:-]*['\"]?\s+instead of\s+['\"]?v?\d|"
    r"\b(?:update|set|change|bump|pin)\s+(?:it|this|that|them)\s+to\s+['\"]?v?\d"
)
VALUE_HINTS = (
    "make it", "should be", "give it", "from ", "say ", "=", "instead of", "it to ", "this to ",
    "that to ", "them to ",
)  # fmt: skip
ARROW = re.compile(r"\b([A-Za-z_]\w*)\s*(?:->|=>|\u2192)\s*([A-Za-z_]\w*)\b")
HTTP_ROUTE = re.compile(
    rf"(?:G{WORD_START}ET|P{WORD_START}OST|P{WORD_START}UT|P{WORD_START}ATCH|D{WORD_START}ELETE)"
    r"\s+/[\w/{}:.?=-]*"
)
DOC_FILE = re.compile(r"\.(?:md|rst|adoc|txt)$|(?:^|/)docs?/", re.IGNORECASE)
TEST_FILE = re.compile(r"(?:^|/)tests?/|(?:^|/)test_|_test\.|\.(?:test|spec)\.", re.IGNORECASE)
CONFIG_FILE = re.compile(
    r"(?:^|/)(?:\.gitignore|\.nvmrc|\.editorconfig|LICENSE|\.python-version|\.tool-versions|"
    r"pyproject\.toml|package\.json|Cargo\.toml|go\.mod|\.env(?:\.\w+)?)$"
)


def classify_type(
    words: Words, reading: CueReading, signals: TextSignals, files: tuple[str, ...]
) -> tuple[TaskType, tuple[str, ...]]:
    scores = dict(reading.types)
    reasons: dict[TaskType, list[str]] = {}

    def vote(task_type: TaskType, weight: float, reason: str) -> None:
        scores[task_type] = scores.get(task_type, 0.0) + weight
        reasons.setdefault(task_type, []).append(reason)

    _form_votes(words, signals, vote)
    lead = words.lead(skip_first=words.question)
    if lead is not None:
        index, opens = lead
        led = _lead_type(words, index, files)
        if led is not None:
            weight = LEAD_WEIGHT if opens else LATER_LEAD_WEIGHT
            vote(led, weight, f"asks to '{words.original[index]}'")
    _pattern_votes(signals, files, vote)
    if not scores:
        fallback: TaskType = "question" if words.question_mark else "feature"
        return fallback, ("no clear cue; the default",)
    best = max(TIE_ORDER, key=lambda t: (scores.get(t, 0.0), -TIE_ORDER.index(t)))
    if best == "simple_edit" and reading.strong_breadth:
        best = "refactor"
        reasons.setdefault(best, []).append(f"an edit {reading.breadth[0]!r} is a refactor")
    found = reasons.get(best, [])
    said = " ".join(found).lower()
    strongest = sorted(reading.type_words.get(best, []), key=lambda w: -w[0])
    found += [f"'{word}'" for _, word in strongest if f"'{word.lower()}'" not in said][:3]
    return best, tuple(found)


Vote = Callable[[TaskType, float, str], None]


def _form_votes(words: Words, signals: TextSignals, vote: Vote) -> None:
    """What the shape of the text says: pasted errors, questions, options weighed."""
    if signals.errors:
        vote("bug_fix", ERROR_OUTPUT_WEIGHT, "pasted " + ", ".join(signals.errors[:2]))
    if words.question:
        vote("question", QUESTION_WEIGHT, f"asks a question ('{words.original[0]}')")
    if words.question_mark:
        vote("question", QUESTION_MARK_WEIGHT, "ends a sentence with '?'")
    if words.choice:
        vote("architecture", CHOICE_WEIGHT, "weighs options ('... or ...?')")
    if words.question_mark and signals.has_code and not signals.errors:
        vote("review", PASTED_CODE_WEIGHT, "asks about pasted code")


def _pattern_votes(signals: TextSignals, files: tuple[str, ...], vote: Vote) -> None:
    """What the text's code-like patterns say: values set, names changed, routes, files."""
    setting = value_change(signals.prose)
    if setting:
        vote("simple_edit", VALUE_CHANGE_WEIGHT, f"sets a value ('{setting}')")
    renamed = _rename(signals.prose)
    if renamed:
        vote("simple_edit", VALUE_CHANGE_WEIGHT, f"renames {renamed}")
    route = HTTP_ROUTE.search(signals.prose) if "/" in signals.prose else None
    if route:
        vote("feature", HTTP_ROUTE_WEIGHT, f"names a route ({route.group(0)})")
    if signals.unsafe_sql:
        vote("bug_fix", UNSAFE_SQL_WEIGHT, "SQL built from strings")
    for path in files:
        if DOC_FILE.search(path):
            vote("docs", DOC_FILE_WEIGHT, f"names {path}")
        elif TEST_FILE.search(path):
            vote("test", TEST_FILE_WEIGHT, f"names {path}")
        elif CONFIG_FILE.search(path):
            vote("simple_edit", CONFIG_FILE_WEIGHT, f"names {path}")


def value_change(prose: str) -> str | None:
    """The words that set one value in place, if the text does ("make it 60")."""
    if not any(hint in prose for hint in VALUE_HINTS):
        return None
    found = VALUE_CHANGE.match(prose)
    if found is not None:
        return found.group(0).strip()
    found = _value_change_after().search(prose)
    return found.group(0)[1:].strip() if found else None


@cache
def _value_change_after() -> re.Pattern[str]:
    """VALUE_CHANGE past the text's start, after the character that makes its leading `\b`
    (every form starts with a word character): the regex engine skips to those characters
    instead of trying every position. Compiled when first needed, not at every start."""
    assert VALUE_CHANGE.pattern.startswith(r"\b") and VALUE_CHANGE.pattern.count(r"|\b") == 7
    return re.compile(r"\W(?:" + VALUE_CHANGE.pattern[2:].replace(r"|\b", "|") + ")")


def _rename(prose: str) -> str | None:
    """ "getUsr -> getUser": an arrow between two similar names is a rename."""
    if not any(arrow in prose for arrow in ("->", "=>", "\u2192")):
        return None
    for match in ARROW.finditer(prose):
        old, new = match.groups()
        if SequenceMatcher(None, old, new).ratio() >= RENAME_SIMILARITY:
            return f"{old} to {new}"
    return None


def _lead_type(words: Words, lead: int, files: tuple[str, ...]) -> TaskType | None:
    """The type the opening verb stands for, or its object's ("add tests", "fix a typo",
    "update README.md", "set up cargo-fuzz")."""
    verb = words.verb_at(lead)
    if verb is None:
        return None
    if verb in OBJECT_LED_VERBS:
        after = lead + (1 if words.lowered[lead] == verb else 2)  # past a particle
        for word in words.lowered[after : after + OBJECT_WINDOW]:
            target = OBJECT_TYPES.get(word)
            if target is not None and not (verb in FIX_VERBS and target == "test"):
                return target
        if any(DOC_FILE.search(f) for f in files):
            return "docs"
        if verb not in FIX_VERBS and any(TEST_FILE.search(f) for f in files):
            return "test"
        if any(CONFIG_FILE.search(f) for f in files):
            return "simple_edit"
    return LEAD_VERBS.get(verb)
