"""Edits: a model's answer turned into file changes, under strict safety rules.

Two formats (SEARCH/REPLACE blocks and whole files) share one protocol, `EditFormat`.
`apply_answer` parses an answer and applies every block to in-memory copies of the files, refusing
what is unsafe or unclear with an error a model can act on; `write_changes` writes the result,
all or nothing.
"""

from forge.execution.edits.apply import apply_answer, write_changes
from forge.execution.edits.model import (
    MAX_ANSWER_BYTES,
    Application,
    EditBlock,
    EditError,
    EditFormatName,
    EditPolicy,
    EditRefused,
    ErrorKind,
)
from forge.execution.edits.parsing import (
    EditFormat,
    SearchReplaceFormat,
    WholeFileFormat,
    edit_format,
)
from forge.execution.edits.safety import check_path, risky_kind

__all__ = [
    "MAX_ANSWER_BYTES",
    "Application",
    "EditBlock",
    "EditError",
    "EditFormat",
    "EditFormatName",
    "EditPolicy",
    "EditRefused",
    "ErrorKind",
    "SearchReplaceFormat",
    "WholeFileFormat",
    "apply_answer",
    "check_path",
    "edit_format",
    "risky_kind",
    "write_changes",
]
