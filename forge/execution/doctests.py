"""Doctests: the examples in a Python module's docstrings are tests too.

With `--doctest-modules` (or `python -m doctest`), `>>> add(2, 3)` followed by `5` in a
docstring is a test, and an answer that changes the `5` to the buggy value has weakened it
without touching a test file. Each docstring's examples (source and expected output) are
read with the standard library's parser, per the qualified name of what the docstring
belongs to; the base's docstrings can be put back in place of the attempt's, keeping its
code.
"""

from __future__ import annotations

import ast
import doctest

Examples = dict[str, tuple[tuple[str, str], ...]]


def examples(text: str) -> Examples | None:
    """Each docstring's examples by the qualified name of its owner ("" for the module);
    None when the text does not parse."""
    found = _docstrings(text)
    if found is None:
        return None
    parser = doctest.DocTestParser()
    result: Examples = {}
    for name, node in found.items():
        value = node.value
        assert isinstance(value, str)
        try:
            parsed = parser.get_examples(value)
        except ValueError:  # malformed examples: the docstring's text is what counts
            result[name] = ((value, ""),)
            continue
        if parsed:
            result[name] = tuple((e.source, e.want) for e in parsed)
    return result


def changed(before: str, now: str) -> bool | None:
    """Whether the base's examples are not all still there, unchanged, in the same owners:
    True; only added ones (or none changed): False; None when either does not parse."""
    old, new = examples(before), examples(now)
    if old is None or new is None:
        return None
    return any(new.get(name, ())[: len(kept)] != kept for name, kept in old.items())


def with_base_docstrings(before: str, now: str) -> str:
    """`now` with each docstring that has examples in `before` replaced by the base's, where
    its owner is still there; the code around them is the attempt's."""
    old, new = _docstrings(before), _docstrings(now)
    if old is None or new is None:
        return now
    wanted = examples(before) or {}
    lines = before.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for name, node in new.items():
        base = old.get(name)
        if base is None or name not in wanted:
            continue
        edits.append((*_span(now, node), _source(lines, base)))
    text = now
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _docstrings(text: str) -> dict[str, ast.Constant] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    found: dict[str, ast.Constant] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        first = body[0] if body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            found[prefix] = first.value
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(node.body, f"{prefix}.{node.name}" if prefix else node.name)

    visit(tree.body, "")
    return found


def _span(text: str, node: ast.Constant) -> tuple[int, int]:
    """The character offsets of `node` in `text`."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    assert node.end_lineno is not None and node.end_col_offset is not None
    # ast's columns count UTF-8 bytes.
    first, last = starts[node.lineno - 1], starts[node.end_lineno - 1]
    return (
        first + _chars(text, first, node.col_offset),
        last + _chars(text, last, node.end_col_offset),
    )


def _chars(text: str, line_start: int, byte_offset: int) -> int:
    line = text[line_start:].split("\n", 1)[0]
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", "replace"))


def _source(lines: list[str], node: ast.Constant) -> str:
    text = "".join(lines)
    start, end = _span(text, node)
    return text[start:end]
