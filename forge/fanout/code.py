"""Code in answers: fenced blocks extracted and compared with formatting and comments set aside.

Two models that write the same function, one in Black's style with a comment and one on a single
line with single quotes, wrote the same code; the comparison should say so.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)

ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "jsx": "javascript",
    "ts": "typescript",
    "tsx": "typescript",
    "rs": "rust",
    "sh": "shell",
    "bash": "shell",
    "zsh": "shell",
    "console": "shell",
    "c++": "cpp",
    "cc": "cpp",
    "golang": "go",
    "cs": "csharp",
    "c#": "csharp",
    "kt": "kotlin",
    "rb": "ruby",
    "yml": "yaml",
}
HASH_COMMENTS = {"python", "shell", "ruby", "perl", "r", "yaml", "toml", "make", "dockerfile", ""}
SLASH_COMMENTS = {
    "c",
    "cpp",
    "csharp",
    "java",
    "javascript",
    "typescript",
    "go",
    "rust",
    "swift",
    "kotlin",
    "scala",
    "php",
    "dart",
    "zig",
}
DASH_COMMENTS = {"sql", "lua", "haskell"}

STRING = (
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\''
    r'|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|`(?:\\.|[^`\\])*`'
)
WORD = r"\w+"
SYMBOL = r"[^\w\s]"
CLOSERS = {")", "]", "}"}


@dataclass(frozen=True)
class CodeBlock:
    language: str  # normalised fence tag ("python", "rust", ...), "" when untagged
    source: str


def extract_blocks(text: str) -> list[CodeBlock]:
    return [
        CodeBlock(_language(match.group(2)), match.group(3).rstrip("\n"))
        for match in FENCE.finditer(text)
    ]


def code_tokens(block: CodeBlock) -> tuple[str, ...]:
    """The block's tokens without comments, whitespace or quote style, and without a
    trailing comma before a closing bracket (formatters add and remove those)."""
    tokens: list[str] = []
    for match in _scanner(block.language).finditer(block.source):
        kind = match.lastgroup
        value = match.group()
        if kind == "comment":
            continue
        if kind == "string":
            tokens.append("str:" + _unquote(value))
        elif value in CLOSERS and tokens and tokens[-1] == ",":
            tokens[-1] = value
        else:
            tokens.append(value)
    return tuple(tokens)


def answer_code(text: str) -> tuple[str, ...]:
    """Every block of an answer, as one token sequence; empty when the answer has no code."""
    return tuple(token for block in extract_blocks(text) for token in code_tokens(block))


def readable_lines(text: str) -> list[str]:
    """The answer's code, a line per source line, comments dropped and spaces collapsed:
    what a diff between two answers' code shows."""
    lines: list[str] = []
    for block in extract_blocks(text):
        for line in block.source.splitlines():
            kept = " ".join(_strip_comment(line, block.language).split())
            if kept:
                lines.append(kept)
    return lines


def code_similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _language(tag: str) -> str:
    tag = tag.lower()
    return ALIASES.get(tag, tag)


_SCANNERS: dict[str, re.Pattern[str]] = {}


def _comment_pattern(language: str) -> str:
    parts = []
    if language in HASH_COMMENTS or language not in SLASH_COMMENTS | DASH_COMMENTS:
        parts.append(r"\#[^\n]*")
    if language in SLASH_COMMENTS:
        parts += [r"//[^\n]*", r"/\*[\s\S]*?\*/"]
    if language in DASH_COMMENTS:
        parts.append(r"--[^\n]*")
    return "|".join(parts)


def _scanner(language: str) -> re.Pattern[str]:
    if language not in _SCANNERS:
        _SCANNERS[language] = re.compile(
            f"(?P<string>{STRING})|(?P<comment>{_comment_pattern(language)})"
            f"|(?P<word>{WORD})|(?P<symbol>{SYMBOL})"
        )
    return _SCANNERS[language]


def _unquote(literal: str) -> str:
    for quote in ('"""', "'''", '"', "'", "`"):
        if literal.startswith(quote) and literal.endswith(quote) and len(literal) >= 2 * len(quote):
            return literal[len(quote) : -len(quote)]
    return literal


def _strip_comment(line: str, language: str) -> str:
    """The line up to its comment, leaving comment markers inside strings alone."""
    for match in _scanner(language).finditer(line):
        if match.lastgroup == "comment":
            return line[: match.start()]
    return line
