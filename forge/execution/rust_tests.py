"""The parts of a Rust source file that are tests, and how the base's are put back.

A source file's tests are its `#[cfg(test)]` modules (inside inline modules too; one declared
`mod tests;` has a file of its own, a test file through and through: see module_files), the
examples in its doc comments (rustdoc runs each fenced block as a test of its own), and the
code that behaves differently under test: an item with `cfg(test)`, `cfg(not(test))`,
`cfg_attr(test, ..)`, `cfg(doctest)` or `cfg!(test)` in it, outside the test modules. Such
code is no fix: a `#[cfg(test)] macro_rules! assert_eq` silences the base's assertions, a
`#[cfg(not(test))]` copy of a function keeps the bug where the tests do not look. Any change
to it is an edit.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from forge.execution import rust_items
from forge.execution.rust_items import Item, Token

Change = Literal["added", "edited"]

FENCE = re.compile(r"(`{3,}|~{3,})\s*(.*)")
# Words of a fence's info string that leave the block a Rust example rustdoc runs.
RUNS = re.compile(r"rust|should_panic|no_run|compile_fail|test_harness|standalone_crate|edition\d+")
CRATE_ROOT_FOLDERS = frozenset({"bin", "tests", "examples", "benches"})


@dataclass(frozen=True)
class Tests:
    """What is test in a source file, in a form that compares: equal means the same tests."""

    modules: tuple[tuple[str, str], ...]  # each `#[cfg(test)]` module's path and tokens
    examples: tuple[str, ...]  # each doc-test example, its lines stripped
    under_test: tuple[str, ...]  # the tokens of each item that behaves differently under test


@dataclass(frozen=True)
class DocBlock:
    """A run of doc comments: `key` names the item it documents, `examples` its doc tests."""

    key: tuple[str, int]
    start: int
    end: int
    examples: tuple[str, ...]


def tests_of(text: str) -> Tests:
    modules = rust_items.cfg_test_modules(text)
    return Tests(
        tuple(sorted((m.name, m.normal) for m in modules)),
        tuple(sorted(e for block in doc_blocks(text) for e in block.examples)),
        tuple(sorted(under_test(text))),
    )


def change(before: str, now: str) -> Change | None:
    """How the tests of the source file changed from `before` to `now`: new test functions
    and modules and new examples are added; any other change is an edit."""
    old, new = tests_of(before), tests_of(now)
    if old == new:
        return None
    added = (
        rust_items.only_added(rust_items.cfg_test_modules(before), rust_items.cfg_test_modules(now))
        and Counter(old.examples) <= Counter(new.examples)
        and old.under_test == new.under_test
    )
    return "added" if added else "edited"


def with_base_tests(before: str, now: str) -> str:
    """`now` with the base's tests: its test modules and the doc comments whose examples
    changed as `before` has them, the rest of its change kept. When that cannot give the
    base's tests back (code that behaves differently under test, a doc comment removed with
    its examples), the base's whole file."""
    text = _with_base_examples(before, _with_base_modules(before, now))
    old, new = tests_of(before), tests_of(text)
    if (old.modules, old.under_test) != (new.modules, new.under_test) or not Counter(
        old.examples
    ) <= Counter(new.examples):
        return before
    return text


def under_test(text: str) -> list[str]:
    """The tokens of each item outside the test modules whose attributes or body ask whether
    this is a test build (`cfg(test)`, `cfg_attr(test, ..)`, `cfg!(test)`, `cfg(doctest)`):
    the innermost item, so a fix elsewhere in the same `impl` does not count."""
    if "test" not in text:
        return []
    tokens = rust_items.tokenize(text)
    pairs = rust_items.bracket_pairs(text, tokens)
    found = rust_items.items(text)
    tested = [(m.start, m.end) for m in rust_items.cfg_test_modules(text)]
    sites: list[str] = []
    for k, token in enumerate(tokens):
        if token.kind != "word" or text[token.start : token.end] not in ("cfg", "cfg_attr"):
            continue
        j = k + 1 + (k + 1 < len(tokens) and _is(text, tokens[k + 1], "!"))
        if j >= len(tokens) or not _is(text, tokens[j], "("):
            continue
        asked = {text[t.start : t.end] for t in tokens[j : pairs[j] + 1] if t.kind == "word"}
        if asked.isdisjoint({"test", "doctest"}):
            continue
        if any(start <= token.start < end for start, end in tested):
            continue
        item = _innermost(found, token.start)
        sites.append(item.normal if item is not None else text[token.start : tokens[pairs[j]].end])
    return sites


def doc_blocks(text: str) -> list[DocBlock]:
    """The runs of doc comments in `text`, each keyed by the item it documents (the tokens
    that follow an outer doc comment up to the item's body; those before the block an inner
    one opens), numbered when the same key comes again."""
    if "//" not in text and "/*" not in text:
        return []
    tokens = rust_items.tokenize(text)
    blocks: list[DocBlock] = []
    seen: Counter[str] = Counter()
    k = 0
    while k < len(tokens):
        kind = tokens[k].kind
        if kind not in ("doc", "inner doc"):
            k += 1
            continue
        first = k
        while k < len(tokens) and tokens[k].kind == kind:
            k += 1
        key = _owner(text, tokens, k) if kind == "doc" else "!" + _enclosing(text, tokens, first)
        seen[key] += 1
        lines = [_doc_line(text[t.start : t.end]) for t in tokens[first:k]]
        examples = tuple(_examples("\n".join(lines).splitlines()))
        blocks.append(DocBlock((key, seen[key]), tokens[first].start, tokens[k - 1].end, examples))
    return blocks


def module_files(path: str, text: str) -> set[str]:
    """The files holding the `#[cfg(test)] mod name;` modules the source file `path`
    declares (inside inline modules too): `name.rs`, and everything under `name/`, in the
    folder its modules live in (`src/` for src/lib.rs, `src/geometry/` for src/geometry.rs),
    or the file a `#[path]` attribute names. A folder ends with `/`."""
    if "test" not in text:
        return set()
    here, _, name = path.rpartition("/")
    here = here + "/" if here else ""
    root = name in ("lib.rs", "main.rs", "mod.rs") or here[:-1].rpartition("/")[2] in (
        CRATE_ROOT_FOLDERS
    )
    found: set[str] = set()
    _declared(rust_items.items(text), here if root else here + name[:-3] + "/", here, False, found)
    return found


def in_modules(path: str, files: Iterable[str]) -> bool:
    """`path` is one of `files` (see module_files) or under one of its folders."""
    return any(path == f or (f.endswith("/") and path.startswith(f)) for f in files)


def _declared(found: Iterable[Item], folder: str, relative: str, test: bool, out: set[str]) -> None:
    for item in found:
        if item.kind != "mod":
            continue
        is_test = test or rust_items.is_test_module(item)
        named = _path_attribute(item)
        if item.has_body:
            inner = folder + (named.rstrip("/") if named else item.name) + "/"
            _declared(item.children, inner, inner, is_test, out)
        elif is_test and named:
            file = posixpath.normpath(relative + named)
            out.update((file, file.removesuffix(".rs") + "/"))
        elif is_test:
            out.update((f"{folder}{item.name}.rs", f"{folder}{item.name}/"))


def _path_attribute(item: Item) -> str | None:
    for attribute in item.attributes:
        found = re.fullmatch(r'#\[\s*path\s*=\s*"([^"]*)"\s*\]', attribute)
        if found:
            return found.group(1)
    return None


def _with_base_modules(before: str, now: str) -> str:
    """`now` with the base's `#[cfg(test)]` modules in place of its own: each where the one
    of its path is, else at the end of the inline module that held it, else of the file; a
    new one is set aside."""
    base = {module.name: module for module in rust_items.cfg_test_modules(before)}
    edits: list[tuple[int, int, str]] = []
    for module in rust_items.cfg_test_modules(now):
        edits.append(
            (module.start, module.end, base.pop(module.name).text if module.name in base else "")
        )
    parents = dict(rust_items.inline_modules(rust_items.items(now)))
    appended: list[str] = []
    for name, module in base.items():
        parent = parents.get(name.rpartition("::")[0])
        if parent is None:
            appended.append(module.text)
            continue
        indent = before[before.rfind("\n", 0, module.start) + 1 : module.start]
        edits.append((parent.end - 1, parent.end - 1, f"\n{indent}{module.text}\n"))
    text = _apply(now, edits).rstrip()
    if appended:
        text += "\n\n" if text else ""
        text += "\n\n".join(appended)
    return text + "\n" if text else ""


def _with_base_examples(before: str, now: str) -> str:
    """`now` with the base's doc comment in place of each of its own whose examples differ."""
    mine = {block.key: block for block in doc_blocks(now)}
    edits = [
        (block.start, block.end, before[base.start : base.end])
        for base in doc_blocks(before)
        if base.examples
        and (block := mine.get(base.key)) is not None
        and block.examples != base.examples
    ]
    return _apply(now, edits)


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _innermost(found: Iterable[Item], at: int) -> Item | None:
    for item in found:
        if item.start <= at < item.end:
            return _innermost(item.children, at) or item
    return None


def _owner(text: str, tokens: list[Token], k: int) -> str:
    """The tokens of the item an outer doc comment ending before token `k` documents, up
    to its body (attributes and comments aside)."""
    words: list[str] = []
    while k < len(tokens) and len(words) < 40:
        token = tokens[k]
        word = text[token.start : token.end]
        if token.kind == "punct" and word in "{;=" and words:
            break
        if token.kind not in ("comment", "doc", "inner doc"):
            words.append(word)
        k += 1
    return " ".join(words)


def _enclosing(text: str, tokens: list[Token], k: int) -> str:
    """The eight tokens before the `{` of the block token `k` is in ("" at the top)."""
    depth = 0
    for j in range(k - 1, -1, -1):
        if tokens[j].kind != "punct":
            continue
        c = text[tokens[j].start]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth == 0:
                before = [t for t in tokens[max(0, j - 8) : j] if t.kind != "comment"]
                return " ".join(text[t.start : t.end] for t in before)
            depth -= 1
    return ""


def _doc_line(comment: str) -> str:
    """The text of a doc comment without its markers."""
    if comment.startswith(("///", "//!")):
        return comment[3:]
    body = comment[3:].removesuffix("*/")
    return "\n".join(line.strip().removeprefix("*") for line in body.splitlines())


def _examples(lines: list[str]) -> Iterator[str]:
    """The fenced blocks rustdoc runs (with their info string), and lines that assert."""
    fence: str | None = None
    info, code = "", list[str]()
    for line in lines:
        stripped = line.strip()
        if fence is None:
            opening = FENCE.match(stripped)
            if opening:
                fence, info, code = opening.group(1), opening.group(2).strip(), []
            elif "assert" in stripped:
                yield stripped
        elif stripped.startswith(fence):
            if _runs(info):
                yield "\n".join([f"```{info}", *code])
            fence = None
        else:
            code.append(stripped)
    if fence is not None and _runs(info):
        yield "\n".join([f"```{info}", *code])


def _runs(info: str) -> bool:
    words = [w for w in re.split(r"[\s,]+", info) if w]
    return all(RUNS.fullmatch(w) or w.startswith("ignore-") for w in words)


def _is(text: str, token: Token, mark: str) -> bool:
    return token.kind == "punct" and text[token.start] == mark
