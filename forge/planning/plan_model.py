"""`--plan-with MODEL`: a model writes the milestone checklist for a free-text goal.

The answer is untrusted input. Control characters are dropped before anything reads it; the
checklist is parsed by the same parser as a milestone file, so ids, `after` and cycles are held
to the same rules; paths in `(files: ...)` must stay inside the repository and are only ever
text. A malformed answer gets one repair request that quotes the problem; a second bad answer
is a `PlanRejected` error (exit 1: the model failed, not the user).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from forge.errors import ForgeError
from forge.planning.milestone import CHECKBOX, Milestone, MilestoneError, parse_markdown

if TYPE_CHECKING:
    from forge.providers.client import ModelClient

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*[\w+-]*[ \t]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
# Terminal escape sequences, then C0 controls but tab and newline, DEL and C1: none of them
# belongs in a plan, and a title is printed to the user's terminal.
CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
DRIVE = re.compile(r"^[A-Za-z]:")
SHOWN_LINES = 20

INSTRUCTIONS = """\
You plan coding work for forge, which hands each task to a model and runs independent tasks in
parallel. Answer with the plan as a Markdown checklist in exactly this format:

```markdown
- [ ] lexer: Tokenise comments (files: src/lexer.rs)
- [ ] parser: Accept empty input (files: src/parse.rs, src/ast.rs) (after: lexer)
  The parser panics on an empty file; it should return an empty module.
- [ ] docs: Document empty modules (files: README.md) (after: parser)
```

Rules:
- One task per line: "- [ ] ", a short unique id (lowercase letters, digits and "-"), ": ",
  then the task's title.
- (files: ...) lists the files the task changes, as paths relative to the repository root.
- (after: ...) lists the ids of the tasks that must be finished first. Leave it out when the
  task can start at once; add it only where the order matters. No cycles.
- Details go on indented lines under their task.
- Keep each task to one focused change a developer could review on its own.
- Answer with the checklist only, in one ```markdown block."""


class PlanRejected(ForgeError):
    """The planning model's checklist was still unusable after one repair request."""


async def plan_with_model(
    client: ModelClient, model: str, goal: str, *, context: str = ""
) -> Milestone:
    """The model's plan for `goal` as a milestone; `context` is what it should know of the repo.

    Raises `PlanRejected` (exit 1) when the answer is still malformed after one repair request.
    """
    source = f"plan by {model}"
    request = f"Goal: {goal.strip()}"
    if context.strip():
        request = f"{request}\n\nWhat you should know about the repository:\n{context.strip()}"
    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": request}]
    answer = (await client.complete(model, messages)).text
    try:
        return read_plan(answer, source)
    except MilestoneError as exc:
        problem = str(exc)
    messages += [
        {"role": "assistant", "content": answer},
        {
            "role": "user",
            "content": f"That checklist cannot be used: {problem}\n"
            "Write the whole checklist again with this fixed, in the same format, "
            "in one ```markdown block.",
        },
    ]
    answer = (await client.complete(model, messages)).text
    try:
        return read_plan(answer, source)
    except MilestoneError as exc:
        raise PlanRejected(
            f"{model} did not write a usable plan, even after a repair request: {exc}\n"
            f"Its answer began:\n{_excerpt(answer)}"
        ) from None


def read_plan(answer: str, source: str) -> Milestone:
    """The checklist in a model's answer, parsed and checked; `MilestoneError` says what's wrong."""
    plan = parse_markdown(extract_checklist(answer), source)
    for task in plan.tasks:
        for path in task.files:
            problem = _outside(path)
            if problem:
                raise MilestoneError(
                    f"{source}: task {task.id!r} ({task.where}): (files: {path}) {problem}; "
                    "name files by their path relative to the repository root"
                )
    return plan


def extract_checklist(answer: str) -> str:
    """The last fenced block that holds checklist items, else the answer itself."""
    text = CONTROL.sub("", answer.replace("\r\n", "\n"))
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    with_items = [b for b in blocks if any(CHECKBOX.match(line) for line in b.splitlines())]
    return with_items[-1] if with_items else text


def _outside(path: str) -> str | None:
    if path.startswith(("/", "\\", "~")) or DRIVE.match(path):
        return "is not a relative path"
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        return "leaves the repository"
    return None


def _excerpt(answer: str) -> str:
    lines = CONTROL.sub("", answer).strip().splitlines() or ["(empty)"]
    shown = [f"  {line}" for line in lines[:SHOWN_LINES]]
    if len(lines) > SHOWN_LINES:
        shown.append(f"  ... ({len(lines) - SHOWN_LINES} more lines)")
    return "\n".join(shown)
