"""Rust source split into its items, enough to tell a new test from a changed one.

Not a parser: a scanner that knows where comments, string and character literals begin and
end (so a brace inside `"{"`, `'}'`, `r#"..."#` or a comment is not a brace), matches brackets,
and cuts a block into items: leading attributes and doc comments, then the item up to its
closing `}` or `;`. An inline `mod name { ... }`, an `impl` and a `trait` block are cut again
inside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

TokenKind = Literal["word", "punct", "literal", "comment", "doc", "inner doc"]
ItemKind = Literal["fn", "mod", "use", "inner attribute", "other"]

OPENERS = {"(": ")", "[": "]", "{": "}"}
KINDS: dict[str, ItemKind] = {"fn": "fn", "mod": "mod", "use": "use"}
HEAD = re.compile(
    r"(?:pub\s*(?:\([^)]*\))?\s*)?"
    r"(?:(?:default|const|async|unsafe|extern\s*(?:\"[^\"]*\")?)\s+)*"
    r"(fn|mod|use)\b\s*(?:r#)?(\w*)"
)
# `const X: T = T { .. };` ends at its `;`, not at the struct literal's `}` (as `use a::{b};`).
BLOCK_OF_ITEMS = re.compile(
    r"(?:pub\s*(?:\([^)]*\))?\s*)?(?:(?:unsafe|default|auto)\s+)*(?:impl|trait)\b"
)
ENDS_AT_SEMICOLON = re.compile(
    r"(?:pub\s*(?:\([^)]*\))?\s*)?(?:const|static)\s+"
    r"(?!(?:(?:unsafe|async|extern\s*(?:\"[^\"]*\")?)\s+)*fn\b)"
)


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    kind: TokenKind


@dataclass(frozen=True)
class Item:
    """One item: `text` from its first attribute or doc comment to its end."""

    start: int
    end: int
    kind: ItemKind
    name: str
    attributes: tuple[str, ...]
    text: str
    normal: str  # the tokens without plain comments, one space apart: layout does not count
    children: tuple[Item, ...] = ()  # an inline module's, an impl's or a trait's items
    has_body: bool = False  # a block (`mod x { }`, not `mod x;`)


def items(text: str) -> list[Item]:
    """The top-level items of `text`, inline modules cut into their own items."""
    tokens = tokenize(text)
    return _items(text, tokens, bracket_pairs(text, tokens), 0, len(tokens))


def cfg_test_modules(text: str) -> list[Item]:
    """The `#[cfg(test)]` modules of `text`, inside inline modules too, in order; each named
    by its path from the file's top (`tests`, `geometry::tests`)."""
    if "test" not in text:
        return []
    return list(_test_modules(items(text), ""))


def inline_modules(found: Iterable[Item], prefix: str = "") -> Iterator[tuple[str, Item]]:
    """The inline modules among `found` and inside them, each with its path."""
    for item in found:
        if item.kind == "mod" and item.has_body:
            yield prefix + item.name, item
            yield from inline_modules(item.children, f"{prefix}{item.name}::")


def _test_modules(found: Iterable[Item], prefix: str) -> Iterator[Item]:
    for item in found:
        if is_test_module(item):
            yield replace(item, name=prefix + item.name)
        elif item.kind == "mod" and item.has_body:
            yield from _test_modules(item.children, f"{prefix}{item.name}::")


def is_test_module(item: Item) -> bool:
    if item.kind != "mod":
        return False
    for attribute in item.attributes:
        compact = re.sub(r"\s+", "", attribute)
        if compact == "#[cfg(test)]" or compact.startswith("#[cfg(all(test,"):
            return True
    return False


def only_added(old: list[Item], new: list[Item]) -> bool:
    """Every item of `old` is still in `new`, unchanged and in order, and what `new` adds is
    functions, `use` lines or modules with new names; a module of the same name is compared
    item by item. `use` lines may change: a new test may need to import more."""
    old = [item for item in old if item.kind != "use"]
    new = [item for item in new if item.kind != "use"]
    modules = {item.name for item in old if item.kind == "mod"}
    remaining = iter(new)
    for item in old:
        for candidate in remaining:
            if _same(item, candidate):
                break
            if not _an_addition(candidate, modules):
                return False
        else:
            return False  # changed or removed
    return all(_an_addition(candidate, modules) for candidate in remaining)


def _same(old: Item, new: Item) -> bool:
    if old.normal == new.normal:
        return True
    return (
        old.kind == new.kind == "mod"
        and old.has_body
        and new.has_body
        and old.name == new.name
        and _normal(old.attributes) == _normal(new.attributes)
        and only_added(list(old.children), list(new.children))
    )


def _an_addition(item: Item, modules: set[str]) -> bool:
    return item.kind == "fn" or (item.kind == "mod" and item.name not in modules)


def _normal(attributes: tuple[str, ...]) -> list[str]:
    return [" ".join(attribute.split()) for attribute in attributes]


def tokenize(text: str) -> list[Token]:
    """The tokens of `text` that matter here; whitespace dropped, one token per literal."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        kind: TokenKind = "punct"
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            kind = _comment_kind(text[i : i + 4], "/")
        elif text.startswith("/*", i):
            end = _block_comment_end(text, i)
            kind = _comment_kind(text[i : i + 4], "*")
        elif c == '"':
            end, kind = _string_end(text, i + 1), "literal"
        elif c == "'":
            end = _quote_end(text, i)
            kind = "literal" if end > i + 1 else "punct"  # a lifetime's `'` alone
        elif c.isalnum() or c == "_":
            end = i
            while end < n and (text[end].isalnum() or text[end] == "_"):
                end += 1
            kind = "word"
            literal = _prefixed_literal_end(text, text[i:end], end)
            if literal is not None:
                end, kind = literal, "literal"
        else:
            end = i + 1
        tokens.append(Token(i, end, kind))
        i = end
    return tokens


def _comment_kind(opening: str, mark: str) -> TokenKind:
    """`///` and `/**` document the next item, `//!` and `/*!` the enclosing one; `////`,
    `/***` and `/**/` are plain comments."""
    if opening[2:3] == "!":
        return "inner doc"
    if opening[2:3] == mark and opening[3:4] != mark and opening != "/**/":
        return "doc"
    return "comment"


def _block_comment_end(text: str, i: int) -> int:
    depth = 0
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def _string_end(text: str, i: int) -> int:
    """After the `"` that closes a string whose contents start at `i`."""
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return len(text)


def _quote_end(text: str, i: int) -> int:
    """After a character literal at `i` (`'x'`, `'\\n'`, `'\\u{7f}'`); `i + 1` for a
    lifetime or label (`'a`, `'static`), which has no closing quote."""
    if text.startswith("\\", i + 1):
        end = text.find("'", i + 3)
        return len(text) if end < 0 else end + 1
    if i + 2 < len(text) and text[i + 2] == "'" and text[i + 1] != "\n":
        return i + 3
    return i + 1


def _prefixed_literal_end(text: str, word: str, i: int) -> int | None:
    """After a literal that `word` prefixes (`b"..."`, `b'x'`, `r#"..."#`, `br"..."`,
    `c"..."`); None when `word` is a plain word (`r#ident` included)."""
    if word in ("r", "br", "cr"):
        hashes = i
        while hashes < len(text) and text[hashes] == "#":
            hashes += 1
        if hashes < len(text) and text[hashes] == '"':
            close = '"' + "#" * (hashes - i)
            end = text.find(close, hashes + 1)
            return len(text) if end < 0 else end + len(close)
        return None
    if word in ("b", "c") and text.startswith('"', i):
        return _string_end(text, i + 1)
    if word == "b" and text.startswith("'", i):
        return _quote_end(text, i)
    return None


def bracket_pairs(text: str, tokens: list[Token]) -> dict[int, int]:
    """Token index of each opening bracket to that of its closing one (unclosed: the end)."""
    pairs: dict[int, int] = {}
    open_: list[int] = []
    for k, token in enumerate(tokens):
        if token.kind != "punct":
            continue
        c = text[token.start]
        if c in OPENERS:
            open_.append(k)
        elif c in ")]}" and open_:
            pairs[open_.pop()] = k
    for k in open_:
        pairs[k] = len(tokens) - 1
    return pairs


def _items(text: str, tokens: list[Token], pairs: dict[int, int], lo: int, hi: int) -> list[Item]:
    found: list[Item] = []
    k = lo
    while k < hi:
        if tokens[k].kind == "comment":
            k += 1
            continue
        first = k
        attributes: list[str] = []
        while k < hi:
            token = tokens[k]
            if token.kind == "comment":
                k += 1
            elif token.kind == "doc":
                attributes.append(text[token.start : token.end])
                k += 1
            elif _punct(text, token, "#") and k + 1 < hi and _punct(text, tokens[k + 1], "["):
                close = min(pairs[k + 1], hi - 1)
                attributes.append(text[token.start : tokens[close].end])
                k = close + 1
            else:
                break
        if k >= hi:  # attributes with no item: keep them as one
            found.append(_item(text, tokens, first, hi, "other", "", attributes, ()))
            break
        token = tokens[k]
        if token.kind == "inner doc" or (
            _punct(text, token, "#") and k + 2 < hi and _punct(text, tokens[k + 1], "!")
        ):
            end = k + 1 if token.kind == "inner doc" else min(pairs.get(k + 2, k + 2), hi - 1) + 1
            found.append(_item(text, tokens, first, end, "inner attribute", "", attributes, ()))
            k = end
            continue
        match = HEAD.match(text, token.start)
        holds_items = BLOCK_OF_ITEMS.match(text, token.start) is not None
        semicolon_only = (match is not None and match.group(1) == "use") or (
            ENDS_AT_SEMICOLON.match(text, token.start) is not None
        )
        body: tuple[int, int] | None = None
        while k < hi:
            token = tokens[k]
            if token.kind == "punct" and text[token.start] in OPENERS:
                close = min(pairs[k], hi - 1)
                if text[token.start] == "{" and not semicolon_only:
                    body = (k + 1, close)
                    k = close + 1
                    break
                k = close + 1
            elif _punct(text, token, ";"):
                k += 1
                break
            else:
                k += 1
        kind: ItemKind = KINDS[match.group(1)] if match else "other"
        name = match.group(2) if match else ""
        children: tuple[Item, ...] = ()
        if (kind == "mod" or holds_items) and body is not None:
            children = tuple(_items(text, tokens, pairs, *body))
        found.append(_item(text, tokens, first, k, kind, name, attributes, children, body))
    return found


def _item(
    text: str,
    tokens: list[Token],
    first: int,
    end: int,
    kind: ItemKind,
    name: str,
    attributes: list[str],
    children: tuple[Item, ...],
    body: tuple[int, int] | None = None,
) -> Item:
    start, stop = tokens[first].start, tokens[end - 1].end
    normal = " ".join(text[t.start : t.end] for t in tokens[first:end] if t.kind != "comment")
    return Item(
        start,
        stop,
        kind,
        name,
        tuple(attributes),
        text[start:stop],
        normal,
        children,
        body is not None,
    )


def _punct(text: str, token: Token, mark: str) -> bool:
    return token.kind == "punct" and text[token.start] == mark
