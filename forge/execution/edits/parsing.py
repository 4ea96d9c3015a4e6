"""The two edit formats: how a model is taught to write changes, and how its answer is read.

Parsing is purely textual. Whether a path is safe, whether the SEARCH text matches and whether a
replacement elides code are decided when the blocks are applied, against the repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from forge.execution.edits.model import EditBlock, EditError, EditFormatName

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
SEARCH = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*$", re.I)
DIVIDER = re.compile(r"^[ \t]*={5,9}[ \t]*$")
REPLACE = re.compile(r"^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$", re.I)
PATH_PREFIX = re.compile(r"^(?:#+|//+)[ \t]+|^(?:file(?:name)?|path)[ \t]*:[ \t]*", re.I)

# Fence languages a model may leave where the path belongs. Compared without case.
LANGUAGE_WORDS = """
    python py python3 rust rs diff patch text txt plaintext toml json jsonc yaml yml ini cfg conf
    javascript js jsx typescript ts tsx go golang java kotlin kt scala swift c cpp cxx h hpp
    csharp cs fsharp ruby rb php perl lua r dart zig nim elixir erlang haskell ocaml clojure julia
    shell sh bash zsh fish console powershell ps1 bat cmd html css scss sass less xml svg vue
    svelte sql graphql proto protobuf cmake nix hcl terraform groovy markdown md rst tex latex
    csv asm wasm solidity verilog vhdl fortran output
"""
LANGUAGE_TAGS = frozenset(LANGUAGE_WORDS.split())
# Files named without an extension. Any other bare word before a block ("Changes", "### Fix")
# is taken for prose unless written in backticks.
EXTENSIONLESS_WORDS = """
    makefile gnumakefile dockerfile containerfile license licence copying readme changelog
    authors contributors notice owners codeowners version build workspace procfile gemfile
    rakefile justfile jenkinsfile vagrantfile brewfile podfile pipfile caddyfile tiltfile
    snakefile earthfile
"""
EXTENSIONLESS = frozenset(EXTENSIONLESS_WORDS.split())
SHAPE = (
    "Each block is `<<<<<<< SEARCH`, the exact lines to find, `=======`, the new lines, "
    "`>>>>>>> REPLACE`."
)


class EditFormat(Protocol):
    """A way for a model to write file changes.

    Implement `instructions` (system-prompt text that teaches the format with a short example)
    and `parse` (the blocks of an answer, and an error for each part that cannot be read).
    """

    name: EditFormatName

    def instructions(self) -> str: ...

    def parse(self, answer: str) -> tuple[list[EditBlock], list[EditError]]: ...


def edit_format(name: EditFormatName) -> EditFormat:
    formats: dict[str, EditFormat] = {
        "search_replace": SearchReplaceFormat(),
        "whole": WholeFileFormat(),
    }
    if name not in formats:
        raise ValueError(f"unknown edit format {name!r}: expected one of {', '.join(formats)}")
    return formats[name]


@dataclass(frozen=True)
class _Path:
    """What the line before a block says about the block's file."""

    path: str | None = None  # a usable path
    line: int | None = None  # 0-based line of the answer it was written on
    language: str | None = None  # a fence language written where the path belongs
    fence_language: str | None = None  # the language of the fence the block is in


class _Malformed(Exception):
    def __init__(self, message: str, resume: int) -> None:
        super().__init__(message)
        self.message = message
        self.resume = resume  # the 0-based line where reading goes on


SEARCH_REPLACE_INSTRUCTIONS = """\
Make every change as a SEARCH/REPLACE block. Write the file's path, relative to the repository \
root, alone on a line, then the block in a fenced code block:

src/greet.py
```python
<<<<<<< SEARCH
def greet(name):
    return "Hello " + name
=======
def greet(name: str) -> str:
    return f"Hello, {name}!"
>>>>>>> REPLACE
```

Rules:
- The SEARCH text must match the current file exactly, character for character, with its \
whitespace, comments and blank lines, and it must match one place only: add surrounding lines \
until it does.
- Keep blocks small: the lines you change and a few lines around them. Use several blocks for \
several changes, in the order they appear in the file; each later block sees the file as the \
earlier ones left it.
- To create a new file, leave the SEARCH part empty and put the whole file in the replacement.
- To delete code, leave the replacement empty.
- Write out every line of a replacement. Never write placeholders such as "... existing code \
..." or "# rest of the function unchanged": forge refuses them, because they would replace real \
code.
- Only edit files inside the repository, by their relative path; never files under .git.
"""

WHOLE_FILE_INSTRUCTIONS = """\
Give every file you change in full. Write the file's path, relative to the repository root, \
alone on a line, then the complete new content of the file in a fenced code block:

src/greet.py
```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```

Rules:
- Write the whole file, every line, including the parts that do not change. Never write \
placeholders such as "... rest of the file unchanged ..." or "# existing code here": forge \
refuses them, because they would delete the code they stand for.
- A new file is written the same way.
- If the file itself contains ``` fences, open and close its block with four backticks (````).
- Every code block in the answer is a file: put no examples or commands in code blocks.
- Only edit files inside the repository, by their relative path; never files under .git.
"""


class SearchReplaceFormat:
    """SEARCH/REPLACE blocks, the aider convention: small, exact, checkable edits."""

    name: EditFormatName = "search_replace"

    def instructions(self) -> str:
        return SEARCH_REPLACE_INSTRUCTIONS

    def parse(self, answer: str) -> tuple[list[EditBlock], list[EditError]]:
        lines = answer.replace("\r\n", "\n").split("\n")
        blocks: list[EditBlock] = []
        errors: list[EditError] = []
        number = 0
        path: str | None = None  # the previous block's, for a block without a path line
        floor = 0  # a block's path is never looked for inside the block before it
        at = 0
        while at < len(lines):
            if REPLACE.match(lines[at]):
                errors.append(
                    _error(
                        f"Line {at + 1} of the answer has a `>>>>>>> REPLACE` "
                        "without a `<<<<<<< SEARCH` before it. " + SHAPE
                    )
                )
                floor = at = at + 1
                continue
            if not SEARCH.match(lines[at]):
                at += 1
                continue
            number += 1
            written = _path_before(lines, at, floor)
            try:
                body = _read_block(lines, at, number)
            except _Malformed as broken:
                errors.append(_error(broken.message))
                path = written.path or path
                floor = at = broken.resume
                continue
            floor = at = body.end + 1
            path = written.path or path
            if path is None or written.language:
                errors.append(_error(_no_path(number, body.start, written)))
                continue
            first = body.start if written.line is None else written.line
            raw = "\n".join(lines[first : body.end + 1])
            search = _text(body.search)
            # A SEARCH of blank lines only is a model's way of writing an empty one.
            search = search if search.strip() else ""
            blocks.append(EditBlock(number, path, search, _text(body.replace), raw))
        return blocks, errors


class WholeFileFormat:
    """Whole files: the path alone on a line, then the file's complete content in a fence."""

    name: EditFormatName = "whole"

    def instructions(self) -> str:
        return WHOLE_FILE_INSTRUCTIONS

    def parse(self, answer: str) -> tuple[list[EditBlock], list[EditError]]:
        lines = answer.replace("\r\n", "\n").split("\n")
        blocks: list[EditBlock] = []
        errors: list[EditError] = []
        number = 0
        floor = 0
        at = 0
        while at < len(lines):
            opened = FENCE.match(lines[at])
            if not opened:
                at += 1
                continue
            number += 1
            fence = opened.group(1)
            end = _closing_fence(lines, at, fence)
            if end is None:
                errors.append(
                    _error(
                        f"Block {number}: the code block opened at line {at + 1} "
                        f"of the answer is never closed; close it with {fence} "
                        "on a line of its own."
                    )
                )
                break
            written = _path_before(lines, at, floor, through_fences=False)
            content = lines[at + 1 : end]
            if written.line is None or written.path is None:
                errors.append(_error(_no_path(number, at, written)))
            else:
                raw = "\n".join(lines[written.line : end + 1])
                blocks.append(EditBlock(number, written.path, None, _text(content), raw))
            floor = at = end + 1
        return blocks, errors


@dataclass(frozen=True)
class _Body:
    search: list[str]
    replace: list[str]
    start: int  # 0-based line of the SEARCH marker
    end: int  # 0-based line of the REPLACE marker


def _read_block(lines: list[str], start: int, number: int) -> _Body:
    """The block that opens at `start`, or _Malformed saying what is wrong with it."""
    where = f"Block {number} (the `<<<<<<< SEARCH` at line {start + 1} of the answer)"
    divider: int | None = None
    for at in range(start + 1, len(lines)):
        line = lines[at]
        if SEARCH.match(line):
            if divider is None:
                why = f"has a second `<<<<<<< SEARCH` at line {at + 1} before its `=======`"
            else:
                why = (
                    f"has its `=======` at line {divider + 1} but no `>>>>>>> REPLACE` before "
                    f"the next `<<<<<<< SEARCH` at line {at + 1}"
                )
            raise _Malformed(f"{where} {why}. {SHAPE}", at)
        if divider is None and DIVIDER.match(line):
            divider = at
        elif REPLACE.match(line):
            if divider is None:
                why = f"has no `=======` before its `>>>>>>> REPLACE` at line {at + 1}"
                raise _Malformed(f"{where} {why}. {SHAPE}", at + 1)
            return _Body(lines[start + 1 : divider], lines[divider + 1 : at], start, at)
    if divider is None:
        why = "is not terminated: the answer ends with no `=======` and no `>>>>>>> REPLACE`"
    else:
        why = (
            f"is not terminated: the answer ends after its `=======` at line {divider + 1} "
            "with no `>>>>>>> REPLACE`"
        )
    raise _Malformed(f"{where} {why}. {SHAPE}", len(lines))


def _closing_fence(lines: list[str], start: int, fence: str) -> int | None:
    """The line that closes the fence opened at `start`.

    A fence of the same length that opens with a language ("```python") inside the content is
    taken as nested, so a Markdown file with code blocks survives a three-backtick outer fence.
    """
    depth = 0
    for at in range(start + 1, len(lines)):
        inner = FENCE.match(lines[at])
        if not inner or inner.group(1)[0] != fence[0] or len(inner.group(1)) < len(fence):
            continue
        if inner.group(2):
            if len(inner.group(1)) == len(fence):
                depth += 1
        elif depth:
            depth -= 1
        else:
            return at
    return None


def _path_before(lines: list[str], at: int, floor: int, *, through_fences: bool = True) -> _Path:
    """The path written on a line of its own before line `at`, blank lines (and, when
    `through_fences`, the block's opening fence) in between."""
    language = _language(lines[at]) if not through_fences else None
    line = at - 1
    while line >= floor:
        if through_fences and FENCE.match(lines[line]):
            language = language or _language(lines[line])
        elif lines[line].strip():
            break
        line -= 1
    else:
        return _Path(fence_language=language)
    text = lines[line].strip()
    candidate = _strip_decoration(text)
    if candidate is None:
        return _Path(fence_language=language)
    if "/" not in candidate and "." not in candidate:
        if candidate.lower() in LANGUAGE_TAGS:
            return _Path(language=candidate, fence_language=language)
        if candidate.lower() not in EXTENSIONLESS and "`" not in text:
            return _Path(fence_language=language)
    return _Path(candidate, line, fence_language=language)


def _language(line: str) -> str | None:
    """The language of a fence line ("```python"), None for a bare fence or ordinary line."""
    fence = FENCE.match(line)
    tag = fence.group(2) if fence else ""
    return tag if tag and "/" not in tag and "." not in tag else None


def _strip_decoration(text: str) -> str | None:
    """The path in a line such as "**src/app.py**", "`src/app.py`:" or "# src/app.py"."""
    text = PATH_PREFIX.sub("", text, count=1)
    before = None
    while text != before:
        before = text
        # A sentence's full stop or colon is not part of a path ("Fixed." is no file).
        text = text.rstrip(":.,").strip().strip("*`'\"").strip()
    if not text or " " in text or "\t" in text or not any(c.isalnum() for c in text):
        return None
    if SEARCH.match(text) or DIVIDER.match(text) or REPLACE.match(text):
        return None
    return text


def _no_path(number: int, start: int, written: _Path) -> str:
    where = f"Block {number} (line {start + 1} of the answer)"
    fix = "Write the file path on its own line before the block."
    if written.language:
        return f"{where}: `{written.language}` is a code-fence language, not a file path. {fix}"
    if written.fence_language:
        language = written.fence_language
        return f"{where} has no file path (`{language}` after the fence is its language). {fix}"
    return f"{where} has no file path. {fix}"


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _error(message: str) -> EditError:
    return EditError(message, "format")
