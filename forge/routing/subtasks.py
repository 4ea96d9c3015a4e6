"""Split a task into the actions it asks for.

A task splits on list items, on sentences and ";", and on "also", "then" and "and" between two
actions. "and" splits only when both sides start with a verb ("fix the parser and add a test"),
never inside a list of things ("add X and Y to Z"). "then", "after that" and "afterwards" make
the part that follows depend on the one before. A sentence that is not an action ("It crashes on
empty input.") is context, kept with the action it belongs to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forge.routing.vocabulary import ACTION_VERBS, DETERMINERS, NOUN_VERBS, PREAMBLE

LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•+])\s+(?:\[[ xX]\]\s+)?(\S.*)$")
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])|\s*;\s*|\n\s*\n")
CONNECTOR = re.compile(
    r"\s*,?\s+\b(and then|and also|and after that|after that|afterwards|then|also|and)\b,?(?=\s)",
    re.IGNORECASE,
)
LEADING_CONNECTOR = re.compile(
    r"^\s*(and then|and also|after that|afterwards|then|also|and|finally|next)\b,?\s*",
    re.IGNORECASE,
)
DEPENDENT = frozenset(
    {"then", "and then", "after that", "and after that", "afterwards", "finally", "next"}
)
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
MIN_PART_WORDS = 3
# "move X into Y and update every import": updating the references is part of the move.
FOLLOW_THROUGH = re.compile(
    r"^(?:update|fix|adjust|change)\s+(?:the\s+|all\s+|every\s+|any\s+)?(?:\w+\s+){0,3}?"
    r"(?:imports?|callers?|call sites?|references?|usages?|places?|uses)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Part:
    """One action of a task; `after_previous` when it must wait for the part before it."""

    text: str
    after_previous: bool = False


def split_task(prose: str) -> tuple[Part, ...]:
    """The actions in `prose`; a single action gives one part."""
    items = _list_items(prose)
    if len(items) >= 2:
        return tuple(_item_part(item) for item in items)
    parts: list[Part] = []
    context = ""
    for sentence in SENTENCE.split(prose):
        sentence = sentence.strip()
        if not sentence:
            continue
        after, sentence = _leading_connector(sentence)
        if not starts_with_action(sentence):
            if parts and not after:
                parts[-1] = Part(f"{parts[-1].text} {sentence}", parts[-1].after_previous)
            else:
                context = f"{context} {sentence}".strip()
            continue
        for index, piece in enumerate(_clauses(sentence)):
            text = f"{context} {piece.text}".strip() if context else piece.text
            context = ""
            parts.append(Part(text, piece.after_previous or (after and index == 0)))
    if context:
        parts.append(Part(context))
    return tuple(_merge_short(parts)) if len(parts) > 1 else (Part(prose.strip()),)


def starts_with_action(text: str, *, strict: bool = False) -> bool:
    """Whether `text` opens with a verb, after polite words ("please could you add ...").

    `strict` for the words after "and": there "test cases" is a noun phrase, while at the start
    of a sentence "Test the parser" and "Update docs" are actions.
    """
    # Words are read only as far as needed: past the polite ones, the verb and the word after it.
    found = (match.group(0) for match in WORD.finditer(text[:120].lower()))
    word, following = next(found, None), next(found, None)
    while following is not None and word in PREAMBLE:
        word, following = following, next(found, None)
    if word is None or word not in ACTION_VERBS:
        return False
    if strict and word in NOUN_VERBS:
        return following is not None and following in DETERMINERS
    return True


def _list_items(prose: str) -> list[str]:
    items: list[str] = []
    for line in prose.splitlines():
        match = LIST_ITEM.match(line)
        if match:
            items.append(match.group(1).strip())
        elif items and line.startswith((" ", "\t")) and line.strip():
            items[-1] = f"{items[-1]} {line.strip()}"
    return items


def _item_part(item: str) -> Part:
    after, text = _leading_connector(item)
    return Part(text, after)


def _leading_connector(text: str) -> tuple[bool, str]:
    match = LEADING_CONNECTOR.match(text)
    if match is None:
        return False, text
    return match.group(1).lower() in DEPENDENT, text[match.end() :]


def _clauses(sentence: str) -> list[Part]:
    """Split one sentence on connectors that join two actions."""
    parts: list[Part] = []
    start = 0
    after = False
    for match in CONNECTOR.finditer(sentence):
        connector = match.group(1).lower()
        left, right = sentence[start : match.start()], sentence[match.end() :].lstrip()
        if not starts_with_action(right, strict=connector == "and") or FOLLOW_THROUGH.match(right):
            continue
        if not starts_with_action(left):
            continue
        parts.append(Part(left.strip(" ,"), after))
        after = connector in DEPENDENT
        start = match.end()
    parts.append(Part(sentence[start:].strip(" ,."), after))
    return parts


def _merge_short(parts: list[Part]) -> list[Part]:
    """A fragment of one word is not an action of its own: it joins the part before it."""
    merged: list[Part] = []
    for part in parts:
        if merged and len(WORD.findall(part.text.lower())) < MIN_PART_WORDS:
            merged[-1] = Part(f"{merged[-1].text} {part.text}", merged[-1].after_previous)
        else:
            merged.append(part)
    return merged
