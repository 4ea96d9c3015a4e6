"""Reading a task's words: code blanked out, sentences found, vocabulary cues tallied.

`Words` is the task as English (identifiers, paths and flags removed, sentence starts kept);
`read_cues` makes one pass over it, longest phrase first, and adds up what each cue says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from forge.routing.signals import FILE_PATH, could_be_path
from forge.routing.vocabulary import (
    BREADTH_STRONG_WEIGHT,
    CUES,
    LEAD_VERBS,
    LONGEST_FROM,
    PHRASAL_VERBS,
    PREAMBLE,
    QUESTION_OPENERS,
    REQUEST_OPENERS,
    Cue,
    TaskType,
)

WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")
# Code in prose (paths, identifiers, calls, flags) is not English: its pieces must not read
# as cues. A token is code when it holds one of these characters once punctuation is trimmed.
BACKTICKS = re.compile(r"`[^`]*`")
CODE_CHARACTERS = frozenset("_/\\(){}[]<>=*|~^$@#")
DOTTED = re.compile(r"[A-Za-z]\.[A-Za-z]")
TRIM = ".,;:!?\"'"
# Sentence breaks in the prose once code is blanked out, where the only white space left is
# " " and "\n": [.!?;:]+ followed by white space or the end, line breaks, a dash between spaces,
# a comma before "then". (Each alternative starts with a character, so the regex engine skips
# to those; a dash after "\n" is already a line break.)
_PUNCTUATION_END = r"[.!?;:]*(?:[ \n]+|$)"
SENTENCE_BREAK = re.compile(
    "|".join(rf"{re.escape(mark)}{_PUNCTUATION_END}" for mark in ".!?;:")
    + r"|\n\n*| [-\u2013\u2014][ \n]|,[ \n]+(?=then\b)"
)
SENTENCE_PIECE = re.compile(r"[^.!?\n]*[.!?\n]+")
CHOICE = re.compile(r"\bor\b|\bvs\.?\b|\bversus\b", re.IGNORECASE)
MAX_WORDS = 2000  # a pasted log is not read word by word
# The words a cue (a word, or a phrase of several) can start with.
CUE_STARTS = frozenset(LONGEST_FROM) | frozenset(key.split()[0] for key in CUES)


# A request's verb is looked for at the start of this many sentences.
LEAD_SENTENCES = 6


def _without_code(prose: str) -> str:
    """The prose with code tokens blanked, line breaks kept (they end sentences)."""
    if "`" in prose:
        prose = BACKTICKS.sub(" ", prose)
    return "\n".join(
        " ".join([t if t.isalpha() else _word_or_stop(t) for t in line.split()])
        for line in prose.splitlines()
    )


def _word_or_stop(token: str) -> str:
    """The token, or for code only the full stop after it: "(src/a.rs). Fix it" keeps its break."""
    if token.strip(TRIM).isalpha():
        return token  # a word with punctuation around it ("it.", "'cache',"): never code
    if not _is_code(token):
        return token
    return "." if token.endswith((".", "!", "?", ";", ":")) else ""


def _is_code(token: str) -> bool:
    if token.isalpha():
        return False  # most tokens: decided without looking closer
    trimmed = token.strip(TRIM)
    # Brackets around a word are punctuation: "(alembic" and "migration)" are English.
    if trimmed[:1] in "([" and not any(c in trimmed[1:] for c in ")]"):
        trimmed = trimmed[1:].strip(TRIM)
    if trimmed[-1:] in ")]" and not any(c in trimmed[:-1] for c in "(["):
        trimmed = trimmed[:-1].strip(TRIM)
    if len(trimmed) < 2:
        return False  # a lone dash separates clauses
    if trimmed[0] == "-" or "::" in trimmed or not CODE_CHARACTERS.isdisjoint(trimmed):
        return True
    return "." in trimmed and (
        DOTTED.search(trimmed) is not None
        or (could_be_path(trimmed) and FILE_PATH.fullmatch(trimmed) is not None)
    )


def _questions(prose: str) -> list[str]:
    """Sentences that end with a question mark (not "?tag=foo" inside a URL)."""
    if "?" not in prose:
        return []
    found = []
    for match in SENTENCE_PIECE.finditer(prose):
        end = match.end()
        if match.group(0).rstrip().endswith("?") and (
            end >= len(prose) or prose[end - 1].isspace() or prose[end].isspace()
        ):
            found.append(match.group(0))
    return found


@dataclass(frozen=True)
class Words:
    original: list[str]
    lowered: list[str]
    starts: tuple[int, ...]  # where each sentence starts in the word lists
    question: bool
    question_mark: bool
    choice: bool  # a question between options: "SQLite or JSON files?"

    @classmethod
    def read(cls, prose: str) -> Words:
        plain = _without_code(prose.replace("\u2019", "'"))
        original: list[str] = []
        starts: list[int] = []
        for sentence in SENTENCE_BREAK.split(plain):
            found = WORD.findall(sentence)
            if found:
                starts.append(len(original))
                original += found
        original = original[:MAX_WORDS]
        # Words are ASCII letters, digits and an apostrophe: lowering them joined is lowering
        # each one.
        lowered = " ".join(original).lower().split(" ") if original else []
        opener = lowered[0] if lowered else ""
        request = opener in REQUEST_OPENERS and len(lowered) > 1 and lowered[1] in ("you", "u")
        asked = _questions(prose)
        return cls(
            original=original,
            lowered=lowered,
            starts=tuple(starts),
            question=opener in QUESTION_OPENERS and not request,
            question_mark=bool(asked),
            choice=any(CHOICE.search(q) for q in asked),
        )

    def lead(self, *, skip_first: bool) -> tuple[int, bool] | None:
        """The first sentence-opening verb past polite framing, and whether it opens the task.

        "users want dark mode. toggle on the settings page ..." has no verb in its first
        sentence; "propose a caching strategy" in the second one says what is asked.
        """
        for number, start in enumerate(self.starts[:LEAD_SENTENCES]):
            if number == 0 and skip_first:
                continue
            index = start
            # "go" is framing in "go ahead and fix", the verb in "go through the PR".
            while (
                index < len(self.lowered) - 1
                and (self.lowered[index] in PREAMBLE or self.lowered[index].isdigit())
                and (self.lowered[index], self.lowered[index + 1]) not in PHRASAL_VERBS
            ):
                index += 1
            if self.verb_at(index) is not None:
                return index, number == 0
        return None

    def verb_at(self, index: int) -> str | None:
        """The verb at `index` ("set up" reads as "setup"), if it is one routing knows."""
        if index >= len(self.lowered):
            return None
        word = self.lowered[index]
        following = self.lowered[index + 1] if index + 1 < len(self.lowered) else ""
        phrasal = PHRASAL_VERBS.get((word, following))
        if phrasal is not None:
            return phrasal
        return word if word in LEAD_VERBS else None


@dataclass
class CueReading:
    """What the cues in one task's words add up to."""

    types: dict[TaskType, float] = field(default_factory=dict)
    type_words: dict[TaskType, list[tuple[float, str]]] = field(default_factory=dict)
    harder: list[tuple[float, str]] = field(default_factory=list)
    easier: list[tuple[float, str]] = field(default_factory=list)
    breadth: list[str] = field(default_factory=list)
    breadth_score: float = 0.0
    strong_breadth: bool = False
    critical: dict[str, list[str]] = field(default_factory=dict)


def read_cues(lowered: list[str], original: list[str] | None = None) -> CueReading:
    """One pass over the words, longest phrase first; each phrase counts once.

    Reasons quote the words as the task wrote them ("'JWT'"), from `original` when given.
    """
    reading = CueReading()
    seen: set[str] = set()
    index, count = 0, len(lowered)
    # Most words start no cue: only the positions of those that can are visited, in order.
    for position in [i for i, word in enumerate(lowered) if word in CUE_STARTS]:
        if position < index:
            continue  # inside a phrase already read
        index = position
        width = 1
        key = lowered[index]
        longest = LONGEST_FROM.get(key)
        if longest is not None:
            for size in range(min(longest, count - index), 1, -1):
                phrase = " ".join(lowered[index : index + size])
                if phrase in CUES:
                    key, width = phrase, size
                    break
        cue = CUES.get(key)
        if cue is not None and key not in seen:
            seen.add(key)
            quoted = " ".join(original[index : index + width]) if original else key
            _take(reading, quoted, cue)
        index += width
    return reading


def _take(reading: CueReading, key: str, cue: Cue) -> None:
    for task_type, weight in cue.types.items():
        reading.types[task_type] = reading.types.get(task_type, 0.0) + weight
        reading.type_words.setdefault(task_type, []).append((weight, key))
    if cue.complexity > 0:
        reading.harder.append((cue.complexity, key))
    elif cue.complexity < 0:
        reading.easier.append((cue.complexity, key))
    if cue.breadth:
        reading.breadth.append(key)
        reading.breadth_score += cue.breadth
        reading.strong_breadth |= cue.breadth >= BREADTH_STRONG_WEIGHT
    if cue.critical:
        reading.critical.setdefault(cue.critical, []).append(key)
