"""Elision markers: the lines a model writes instead of code it did not bother to repeat.

A replacement that says "# ... rest of the function unchanged ..." would replace the rest of the
function with that comment, so such a line is refused unless the original already had it.
"""

from __future__ import annotations

import re

COMMENT_OPENERS = re.compile(r"^(?:#+|//+|/\*+|<!--|--|;+|%+|\*+)\s*")
COMMENT_CLOSERS = re.compile(r"\s*(?:\*+/|-->)$")
WRAPPERS = {"(": ")", "[": "]", "{": "}"}
ELLIPSIS = re.compile(r"\.{3,}|…+")
# Words that, next to an ellipsis, say code was left out.
LEFT_OUT = re.compile(
    r"\b(?:existing|rest|unchanged|remaining|remainder|omitted|elided|same|previous|original"
    r"|other|snip|snipped|truncated|as before|keep|etc)\b",
    re.I,
)
# The same said without an ellipsis: "rest of file unchanged", "remaining code here", ...
WHAT = r"(?:file|code|function|method|class|module|body|implementation|content|imports|tests|lines)"
LEFT_OUT_PHRASE = re.compile(
    rf"^(?:the\s+)?(?:rest\s+of\s+(?:the\s+)?{WHAT}s?"
    rf"|remaining\s+{WHAT}s?|remainder\s+of\s+(?:the\s+)?{WHAT}"
    rf"|(?:existing|unchanged|other|previous|original)\s+{WHAT}s?\s*(?:here|unchanged|as before|$)"
    rf"|{WHAT}s?\s+(?:unchanged|omitted|elided|truncated|snipped|as before|stays the same))\b",
    re.I,
)


def elision_markers(replacement: str, original: str) -> list[str]:
    """The elision lines of `replacement` that `original` does not contain, in order."""
    present = {line.strip() for line in original.splitlines()}
    found: list[str] = []
    previous = ""
    for line in replacement.splitlines():
        stripped = line.strip()
        if stripped and stripped not in present and _is_marker(stripped, previous):
            found.append(stripped)
        if stripped:
            previous = stripped
    return found


def _is_marker(line: str, previous: str) -> bool:
    note, body = _body(line)
    if not note and not ELLIPSIS.match(body):
        return False  # ordinary code
    if ELLIPSIS.fullmatch(body):
        # `...` alone under a line ending in ":" is a Python stub body, not a gap.
        return note or not previous.endswith(":")
    if leading := ELLIPSIS.match(body):
        # "... existing code", but not a JavaScript spread such as "...state,".
        return note or body[leading.end()].isspace()
    if ELLIPSIS.search(body) and LEFT_OUT.search(body):
        return True
    return note and LEFT_OUT_PHRASE.match(body.rstrip(".:;,! ")) is not None


def _body(line: str) -> tuple[bool, str]:
    """Whether the line is a comment or a bracketed note, and what it says."""
    body = line
    note = False
    for _ in range(3):  # "{/* ... */}" takes two rounds
        inner = _unwrap(body)
        inner = COMMENT_CLOSERS.sub("", COMMENT_OPENERS.sub("", inner, count=1)).strip()
        if inner == body:
            break
        note, body = True, inner
    return note, body


def _unwrap(text: str) -> str:
    if len(text) >= 2 and WRAPPERS.get(text[0]) == text[-1]:
        return text[1:-1].strip()
    return text
