"""Applying an answer: every block checked, then applied in order to in-memory copies of files.

Nothing touches the disk until `write_changes`, and it only writes an application with no error,
so an answer is applied all or nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from forge.execution.edits.elision import elision_markers
from forge.execution.edits.matching import closest, contains, find
from forge.execution.edits.model import (
    Application,
    EditBlock,
    EditError,
    EditPolicy,
    EditRefused,
)
from forge.execution.edits.parsing import REPLACE, SEARCH, EditFormat
from forge.execution.edits.safety import check_new_text, check_path, read_text_file

HINT_LINES = 12  # at most this many lines of the closest region are quoted in a no-match error


def apply_answer(
    answer: str,
    fmt: EditFormat,
    policy: EditPolicy,
    *,
    extra_blocks: Sequence[EditBlock] = (),
) -> Application:
    """Parse, check and apply every block to in-memory copies of the files; writes nothing.

    `extra_blocks` (already parsed, from an earlier answer) are applied first, in order: the
    good blocks of a first answer combined with the repaired blocks of a re-ask. They are
    reported in `applied` and `already_present` with the answer's own blocks. A block given
    twice (equal in every field) is applied once: applying an insertion twice would insert twice.
    """
    if too_large := _size_error(answer, policy.max_answer_bytes):
        return Application(errors=[too_large])
    blocks, errors = fmt.parse(answer)
    if not blocks and not errors:
        errors.append(EditError(_no_block_message(fmt), "format"))
    application = Application(errors=errors)
    files: dict[str, _File] = {}
    for block in dict.fromkeys([*extra_blocks, *blocks]):
        try:
            relative = check_path(block.path, policy)
            if relative not in files:
                files[relative] = _File.load(relative, policy)
            outcome = _apply_block(block, files[relative])
        except EditRefused as refused:
            message = f"Block {block.index}: {refused.error.message}"
            application.errors.append(replace(refused.error, message=message, block=block))
            continue
        except OSError as exc:  # a name too long for the file system, a permission...
            message = f"Block {block.index}: {block.path} cannot be read: {exc.strerror}."
            application.errors.append(EditError(message, "unsafe", block=block))
            continue
        if outcome == "applied":
            application.applied.append(block)
        else:
            application.already_present.append(block)
    # A repair is asked for against the files as every good block leaves them, later ones too.
    application.errors = [_as_left(error, files) for error in application.errors]
    application.changes = {
        relative: file.rendered() for relative, file in files.items() if file.changed
    }
    for relative in application.changes:
        folder = next(
            (other for other in application.changes if relative.startswith(other + "/")), None
        )
        if folder is not None:
            message = f"{folder} cannot be both a file and the folder of {relative}."
            application.errors.append(EditError(message, "format", path=relative))
    return application


def write_changes(application: Application, policy: EditPolicy) -> list[str]:
    """Write the changes of an application without errors; the files written, sorted, as
    repository paths of the real files (an edit through a symlink inside the repository names
    the file it reached).

    Every path is checked again first, because a symlink may have appeared since the answer
    was applied; nothing is written unless all of them pass. Each file is replaced atomically.
    """
    if not application.ok:
        raise ValueError("an application with errors (or no applied block) is never written")
    planned: list[tuple[str, Path, str]] = []
    for relative, text in sorted(application.changes.items()):
        checked = check_path(relative, policy)
        check_new_text(text, checked)
        target = Path(os.path.realpath(os.path.join(policy.root, checked)))
        if target.exists() and not target.is_file():
            raise EditRefused(EditError(f"{checked} is not a regular file.", "format"))
        real = os.path.relpath(target, os.path.realpath(policy.root))
        planned.append((Path(real).as_posix(), target, text))
    for _, target, text in planned:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, text.encode("utf-8"))
    return [checked for checked, _, _ in planned]


@dataclass
class _File:
    """A file as the blocks so far have left it, in "\\n" line endings with a final newline."""

    relative: str
    original: str | None  # the text on disk; None when the file does not exist
    text: str
    crlf: bool = False
    final_newline: bool = True
    edited: bool = False  # a block has set its text

    @classmethod
    def load(cls, relative: str, policy: EditPolicy) -> _File:
        original = read_text_file(relative, policy)
        if original is None:
            return cls(relative, None, "")
        # Only a file that is CRLF throughout is converted; a mixed one is edited as it is
        # (the whitespace-tolerant match sees past a stray "\r").
        crlf = "\r\n" in original and original.count("\r\n") == original.count("\n")
        text = original.replace("\r\n", "\n") if crlf else original
        final_newline = not text or text.endswith("\n")
        return cls(relative, original, text if final_newline else text + "\n", crlf, final_newline)

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")[:-1]

    @property
    def changed(self) -> bool:
        return self.edited and self.rendered() != self.original

    def edit(self, text: str) -> None:
        self.text = text
        self.edited = True

    def rendered(self) -> str:
        text = self.text
        if not self.final_newline and text.endswith("\n"):
            text = text[:-1]
        return text.replace("\n", "\r\n") if self.crlf else text


def _as_left(error: EditError, files: dict[str, _File]) -> EditError:
    """A block's error told against its file as the whole answer leaves it: a later block of
    the answer may have changed the lines around the place it failed."""
    file = files.get(error.path or "")
    if error.block is None or error.current is None or file is None or file.text == error.current:
        return error
    try:
        _apply_block(error.block, replace(file))  # on a copy: the block failed, it stays out
    except EditRefused as refused:
        again = refused.error
        message = f"Block {error.block.index}: {again.message}"
        return replace(again, message=message, block=error.block)
    # It fits once the later blocks are in: the error stands as it was found, where it failed.
    return error


def _apply_block(block: EditBlock, file: _File) -> Literal["applied", "present"]:
    check_new_text(block.replace, file.relative)
    original = file.text if block.search is None else block.search
    if markers := elision_markers(block.replace, original):
        raise _elision(block, file, markers)
    if block.search is None:
        return _replace_whole(block, file)
    if not block.search:
        return _create(block, file)
    if file.original is None and not file.edited:
        raise EditRefused(
            EditError(
                f"{file.relative} does not exist, so its SEARCH text cannot match. To create "
                "the file, leave the SEARCH part empty; otherwise check the path.",
                "no_match",
                path=file.relative,
            )
        )
    lines = file.lines
    search, new = _lines(block.search), _lines(block.replace)
    found = find(lines, search, new)
    if found.match:
        match = found.match
        lines[match.start : match.start + match.length] = match.replacement
        file.edit("".join(line + "\n" for line in lines))
        return "applied"
    if found.ambiguous:
        raise _ambiguous(file, found.ambiguous, len(search))
    if contains(lines, new):
        return "present"
    raise _no_match(file, lines, search)


def _replace_whole(block: EditBlock, file: _File) -> Literal["applied", "present"]:
    if file.original is not None and file.text == block.replace:
        return "present"
    current = set(file.lines)
    if any(_is_marker(line) and line not in current for line in _lines(block.replace)):
        # A SEARCH/REPLACE block written where a whole file was asked for; the markers would
        # end up in the file. A file that already holds them (a test of this module) may.
        raise EditRefused(
            EditError(
                f"The new content of {file.relative} holds SEARCH/REPLACE markers; give the "
                "file's complete new content instead.",
                "format",
                path=file.relative,
            )
        )
    file.edit(block.replace)
    return "applied"


def _create(block: EditBlock, file: _File) -> Literal["applied", "present"]:
    if file.text.strip():
        if _same_text(file.text, block.replace):
            return "present"
        raise EditRefused(
            EditError(
                f"{file.relative} already exists and is not empty, but the block's SEARCH part "
                "is empty (which creates a new file). Use a SEARCH with the exact lines to "
                "change.",
                "format",
                path=file.relative,
            )
        )
    file.edit(block.replace)
    return "applied"


def _elision(block: EditBlock, file: _File, markers: list[str]) -> EditRefused:
    where = "the file" if block.search is None else "the SEARCH text"
    quoted = ", ".join(repr(marker) for marker in markers)
    return EditRefused(
        EditError(
            f"The new text for {file.relative} contains {quoted}, which stands for code that "
            f"is not written out and is not in {where}; applying it would delete that code. "
            "Write out every line of the new text.",
            "elision",
            path=file.relative,
        )
    )


def _ambiguous(file: _File, starts: tuple[int, ...], length: int) -> EditRefused:
    numbers = [str(start + 1) for start in starts]
    listed = ", ".join(numbers[:-1]) + f" and {numbers[-1]}"
    return EditRefused(
        EditError(
            f"The SEARCH text matches {len(starts)} places in {file.relative}, starting at "
            f"lines {listed}. Add surrounding lines to the SEARCH text so that it matches "
            "exactly one place.",
            "ambiguous",
            path=file.relative,
            lines=(starts[0] + 1, starts[-1] + length),
            current=file.text,
        )
    )


def _no_match(file: _File, lines: list[str], search: list[str]) -> EditRefused:
    message = f"The SEARCH text does not match {file.relative}."
    region = closest(lines, search)
    span: tuple[int, int] | None = None
    if region is not None:
        start, length = region
        span = (start + 1, start + length)
        quoted = "\n".join(lines[start : start + min(length, HINT_LINES)])
        more = "\n..." if length > HINT_LINES else ""
        where = f"lines {span[0]}-{span[1]}" if length > 1 else f"line {span[0]}"
        message += f" The closest match is {where}:\n```\n{quoted}{more}\n```\n"
    else:
        message += " "
    message += (
        "Copy the SEARCH text exactly from the current file, every space, comment and blank "
        "line (an earlier block may have changed it)."
    )
    return EditRefused(
        EditError(message, "no_match", path=file.relative, lines=span, current=file.text)
    )


def _is_marker(line: str) -> bool:
    # Not "=======": Markdown and reStructuredText underline headings with it.
    return bool(SEARCH.match(line) or REPLACE.match(line))


def _lines(text: str) -> list[str]:
    return text.removesuffix("\n").split("\n") if text else []


def _same_text(current: str, new: str) -> bool:
    return [line.rstrip() for line in current.splitlines()] == [
        line.rstrip() for line in new.splitlines()
    ]


def _size_error(answer: str, limit: int) -> EditError | None:
    # Counting characters is free and bounds the bytes from below (and from above, times
    # four), so a 50 MB answer is refused without encoding it.
    if len(answer) <= limit // 4:
        return None
    size = len(answer) if len(answer) > limit else len(answer.encode("utf-8", "surrogatepass"))
    if size <= limit:
        return None
    return EditError(
        f"The answer is {size:,} bytes or more, over the limit of {limit:,}; none of it was "
        "read. Answer with edit blocks for the files that change only.",
        "too_large",
    )


def _no_block_message(fmt: EditFormat) -> str:
    if fmt.name == "whole":
        return (
            "The answer contains no file: write each file's path alone on a line, then its "
            "complete new content in a fenced code block."
        )
    return (
        "The answer contains no SEARCH/REPLACE block: write the file path alone on a line, "
        "then `<<<<<<< SEARCH`, the exact lines to find, `=======`, the new lines, "
        "`>>>>>>> REPLACE`."
    )


def _write_atomically(target: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename it over the target, so a
    crash leaves the old file or the new one, never half of it; keeps the file's mode."""
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    temporary = target.with_name(f".{target.name}.{os.urandom(6).hex()}.forge-tmp")
    # O_EXCL: never write through something that appeared under the temporary name.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
