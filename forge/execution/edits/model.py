"""The values edits are made of: a parsed block, an error, the policy, the outcome of applying."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

EditFormatName = Literal["search_replace", "whole"]

ErrorKind = Literal[
    "format", "no_match", "ambiguous", "elision", "unsafe", "binary", "too_large", "not_allowed"
]

# Larger than any honest answer; checked before any parsing so a huge answer costs nothing.
MAX_ANSWER_BYTES = 1_000_000


@dataclass(frozen=True)
class EditBlock:
    """One change a model asked for.

    `search` is None for a whole-file block and "" for a block that creates a new file.
    """

    index: int  # 1-based position in the answer
    path: str  # the path exactly as the model wrote it (stripped)
    search: str | None
    replace: str
    raw: str  # the block's text as it appeared in the answer (for re-asking)


@dataclass(frozen=True)
class EditError:
    """Why a block, or the answer as a whole, was refused; written for the model to act on."""

    message: str
    kind: ErrorKind
    block: EditBlock | None = None  # None when the answer as a whole is refused
    path: str | None = None  # repository-relative normalised path when known
    # 1-based inclusive region of the current file worth showing the model when re-asking.
    lines: tuple[int, int] | None = None
    # The file as the edits found it (earlier blocks of the same answer applied, in memory):
    # what `lines` count in, and what the model must copy from.
    current: str | None = field(default=None, repr=False)


class EditRefused(Exception):
    """A path or a file an edit may not touch; carries the error to report."""

    def __init__(self, error: EditError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class EditPolicy:
    root: Path  # the repository (a git worktree) the edits apply to
    # --strict-files: repository-relative paths a task may touch; None = any.
    allowed_files: frozenset[str] | None = None
    max_answer_bytes: int = MAX_ANSWER_BYTES
    # The files the task names: the only risky files (CI workflows, build scripts, git
    # metadata: see safety.risky_kind) an answer may change.
    named_files: frozenset[str] = frozenset()


@dataclass
class Application:
    """The outcome of applying an answer in memory; nothing is written until `write_changes`."""

    # repo-relative posix path -> complete new text, only files whose text changes (new included)
    changes: dict[str, str] = field(default_factory=dict)
    applied: list[EditBlock] = field(default_factory=list)
    already_present: list[EditBlock] = field(default_factory=list)  # counts as applied
    errors: list[EditError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error and at least one block applied or already present."""
        return not self.errors and bool(self.applied or self.already_present)
