"""The words a model receives for a task: the task, its context, the failures so far.

Everything a model reads here came from the repository, the task file or validators. What it
writes back is untrusted: it is parsed as edits and nothing else (forge never runs a command a
model proposes), which the system prompt says so the model does not waste tokens on commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from forge.execution.edits import EditError, EditFormat
from forge.execution.feedback import Finding, render_finding
from forge.execution.symbols import read_text

REGION_MARGIN = 3
TARGETS_LIMIT_CHARS = 6_000

SYSTEM = """\
You are an expert software engineer making one change to a git repository.
You cannot run commands, and nobody will run commands you write: answer only with file edits.
Change only what the task needs. Keep the code style of the files you edit.
After your edits the repository's build, linters and tests run; your change must not add a
problem, and it must fix the problems the task lists.

{format}"""


@dataclass(frozen=True)
class TaskBrief:
    """What one attempt is told, apart from the repository's text."""

    title: str
    description: str
    allowed_files: tuple[str, ...] | None  # --strict-files with files named
    targets: Sequence[Finding]
    earlier_rungs: str | None  # after an escalation: what was tried and how it failed
    feedback: str | None  # after a failed attempt on this rung: what went wrong, in full


def system_prompt(fmt: EditFormat) -> str:
    return SYSTEM.format(format=fmt.instructions().strip())


def task_prompt(brief: TaskBrief, context: str, root: Path) -> str:
    parts = [f"# Task\n{brief.title}"]
    if brief.description:
        parts.append(brief.description)
    if brief.allowed_files is not None:
        listed = "\n".join(f"- {f}" for f in brief.allowed_files)
        parts.append(f"You may edit only these files:\n{listed}")
    if brief.targets:
        parts.append("# Problems this task must fix\n" + _targets(brief.targets, root))
    parts.append("# Repository context\n" + context)
    if brief.earlier_rungs:
        parts.append(
            "# Earlier attempts\nOther models tried this task and failed; the repository is "
            "back at its starting point. What they tried:\n" + brief.earlier_rungs
        )
    if brief.feedback:
        parts.append("# Your previous attempt\n" + brief.feedback)
    return "\n\n".join(parts)


def validation_feedback(rendered: str) -> str:
    return (
        "Your edits were applied (the files above show them) but validation failed. "
        "Fix these problems:\n" + rendered
    )


def refused_feedback(reasons: Sequence[str]) -> str:
    listed = "\n".join(f"- {r}" for r in reasons)
    return "Your last answer's edits were not applied (none of them were kept):\n" + listed


def _targets(targets: Sequence[Finding], root: Path) -> str:
    shown: list[str] = []
    used = 0
    for finding in targets:
        block = render_finding(finding, root)
        if used + len(block) > TARGETS_LIMIT_CHARS:
            shown.append(f"... and {len(targets) - len(shown)} more\n")
            break
        shown.append(block)
        used += len(block)
    return "\n".join(shown).strip()


def repair_prompt(errors: Sequence[EditError], root: Path) -> str:
    """Ask again for the failed blocks only, showing the current text where each went wrong."""
    parts = [
        "Some of your edits could not be applied. The others are kept: do not send them again. "
        "Send corrected edits for the failed ones only, in the same format."
    ]
    for number, error in enumerate(errors, 1):
        lines = [f"## Problem {number}", error.message]
        if error.block is not None:
            lines += ["Your block was:", error.block.raw.strip()]
        region = _region(root, error)
        if region:
            lines += [f"The current text of {error.path} there:", region]
        elif error.block is None:
            lines.append("Send all of your edits again, in the format described.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _region(root: Path, error: EditError) -> str | None:
    if error.path is None or error.lines is None:
        return None
    # The text the edits saw: earlier blocks of the answer may have changed the file in memory.
    text = error.current if error.current is not None else read_text(root, error.path)
    if text is None:
        return None
    rows = text.splitlines()
    start = max(1, error.lines[0] - REGION_MARGIN)
    end = min(len(rows), error.lines[1] + REGION_MARGIN)
    body = "\n".join(rows[start - 1 : end])
    return f"(lines {start}-{end})\n```\n{body}\n```"
