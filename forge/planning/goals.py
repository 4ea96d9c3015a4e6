"""Goals in a sentence: `--goal "Fix all build errors, then work on milestone 3"` as a plan.

A goal splits into parts the way the router splits a task (list items, sentences, ";", "and",
"also", "then"), and a little further around the parts forge understands on its own:

- a fix part ("fix the build", "fix all build errors", "make the tests pass", "fix the clippy
  warnings", and "... and the lint" after one) runs the validators and becomes one task per
  file with findings, all in parallel;
- a milestone part ("work on milestone 3", "then the milestone") stands for the pending tasks of
  the milestone given beside the goal (`--milestone FILE`);
- any other part is one task, titled with its text.

A part comes after the one before it when it says so ("then", "after that"), and whatever follows
a fix part waits for the fixes: a part then depends on every task of the stage before it.
Consecutive parts that do not wait form one stage and run side by side.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from forge.config.schema import ValidationConfig
from forge.errors import UsageError
from forge.planning.milestone import Milestone, MilestoneError, MilestoneTask, find_cycle, slug
from forge.planning.plan_model import PlanRejected, plan_with_model
from forge.routing.subtasks import (
    CONNECTOR,
    DEPENDENT,
    LEADING_CONNECTOR,
    LIST_ITEM,
    SENTENCE,
    Part,
    split_task,
    starts_with_action,
)
from forge.validation.runner import validate
from forge.validation.types import (
    Diagnostic,
    Stage,
    Status,
    TestResult,
    ValidationReport,
    ValidatorResult,
)

__all__ = [
    "FIX_KINDS",
    "FixKind",
    "GoalPart",
    "GoalPlan",
    "PlanRejected",
    "fix_tasks",
    "plan_goal",
    "plan_with_model",
    "split_goal",
]

FixKind = Literal["build", "tests", "lint"]
FIX_KINDS: tuple[FixKind, ...] = get_args(FixKind)
Validate = Callable[[Path, ValidationConfig], ValidationReport]

MAX_FINDINGS_PER_TASK = 20
MAX_LINE = 200
MAX_ID_PATH = 60
BROKEN = frozenset({Status.FAILED, Status.TIMEOUT, Status.ERROR, Status.COULD_NOT_RUN})
STAGES: dict[FixKind, tuple[Stage, ...]] = {
    "build": (Stage.SYNTAX, Stage.BUILD),
    "tests": (Stage.TEST,),
    "lint": (Stage.LINT,),
}
WHAT: dict[FixKind, str] = {
    "build": "the build errors",
    "tests": "the failing tests",
    "lint": "the lint findings",
}
RAN_BY: dict[FixKind, str] = {"build": "the build", "tests": "the tests", "lint": "the linters"}
ID_TAG: dict[FixKind, str] = {"build": "", "tests": "-tests", "lint": "-lint"}

# -- recognising the parts forge understands -------------------------------------------------

_VERB = (
    r"(?:fix|repair|resolve|address|solve|squash|silence|clear|eliminate|handle|"
    r"clean\s+up|sort\s+out|deal\s+with|take\s+care\s+of|get\s+rid\s+of)"
)
_DET = (
    r"(?:(?:all|any|every|each)\s+(?:of\s+)?)?(?:the\s+|our\s+|my\s+|its\s+|these\s+)?"
    r"(?:(?:remaining|outstanding|current|existing|open|reported|broken|failing)\s+)?"
)
_FINDINGS = r"(?:errors?|failures?|warnings?|issues?|problems?|findings?|complaints?|breakages?)"
_PASS = r"(?:pass|passing|green|succeed|succeeding|work|working|clean|happy|quiet)"
_SCOPE = (
    r"(?:\s+(?:in|across|of|for)\s+(?:the\s+|this\s+|our\s+)?"
    r"(?:crate|project|repo|repository|workspace|codebase|code|package|tree))?"
    r"(?:\s+(?:first|again|now|everywhere|too|as\s+well))?"
)
# What each kind is called, with or without a verb before it ("the lint" after "fix the tests").
_NOUNS: dict[FixKind, str] = {
    "build": (
        rf"(?:build(?:\s+{_FINDINGS})?|compilation(?:\s+{_FINDINGS})?|"
        rf"(?:compile|compiler|syntax|type|cargo\s+check|cargo\s+build|rustc)\s+{_FINDINGS}|"
        r"errors)"
    ),
    "tests": (
        rf"(?:(?:unit\s+|integration\s+)?tests?(?:\s+suite)?(?:\s+{_FINDINGS})?|"
        rf"(?:pytest|cargo\s+test)(?:\s+{_FINDINGS})?)"
    ),
    "lint": (
        rf"(?:(?:lint|linter|linting|clippy|ruff|mypy|style)(?:\s+{_FINDINGS})?|lints|"
        r"(?:compiler\s+)?warnings)"
    ),
}
_MAKE: dict[FixKind, str] = {
    "build": r"(?:the\s+)?(?:build|code|crate|project|it|everything|cargo\s+check)\s+"
    r"(?:compile|compiles|compiling|build|builds|building|pass|passing|green|succeed|work)",
    "tests": r"(?:all\s+)?(?:the\s+)?(?:unit\s+|integration\s+)?(?:tests?(?:\s+suite)?|pytest|"
    r"cargo\s+test)\s+" + _PASS,
    "lint": r"(?:the\s+)?(?:lint|linter|linting|clippy|ruff|mypy)\s+" + _PASS,
}
FIX_PHRASE: dict[FixKind, re.Pattern[str]] = {
    kind: re.compile(
        rf"^(?:{_VERB}\s+{_DET}{_NOUNS[kind]}|(?:make|get|keep)\s+{_MAKE[kind]}){_SCOPE}$"
    )
    for kind in FIX_KINDS
}
ELLIPSIS: dict[FixKind, re.Pattern[str]] = {
    kind: re.compile(rf"^{_DET}{_NOUNS[kind]}{_SCOPE}$") for kind in FIX_KINDS
}
MILESTONE_PHRASE = re.compile(
    r"^(?:(?:work(?:ing)?\s+(?:on|through)|do|run|complete|finish|implement|tackle|execute|"
    r"start(?:\s+on)?|begin|carry\s+out|go\s+through|continue(?:\s+with)?|proceed\s+with|"
    r"move\s+on\s+to)\s+)?"
    r"(?:(?:all\s+)?(?:of\s+)?(?:the\s+)?(?:rest\s+of\s+the\s+|remaining\s+|pending\s+)?"
    r"(?:tasks?|items?|work)\s+(?:in|of|from|on)\s+)?"
    r"(?:the\s+|this\s+|our\s+)?(?:rest\s+of\s+the\s+|remaining\s+|next\s+)?milestone"
    r"(?:\s+[\w.#/-]+)?(?:\s+(?:tasks?|items?|checklist|file|plan))?$"
)
# Verbs a goal starts a part with that the router's vocabulary leaves out ("work on ...").
GOAL_VERB = re.compile(
    r"^(?:work\s+(?:on|through)|do|tackle|complete|finish|continue|start|begin|proceed|"
    r"move\s+on|carry\s+out|execute)\b",
    re.IGNORECASE,
)
POLITE = re.compile(
    r"^(?:(?:please|now|first|firstly|just|also|finally|next|and|then|"
    r"(?:can|could|would|will)\s+you|we\s+(?:need|want)\s+to|i\s+(?:need|want)\s+(?:you\s+)?to|"
    r"let'?s|go\s+ahead\s+and)\s+)+"
)
# rustc's primary label under the code: "^^^^ expected `i32`, found `&str`".
LABEL = re.compile(r"^[ \t]*\|[^^\n]*\^+[ \t]+(\S.*)$", re.M)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class GoalPart:
    text: str
    fix: FixKind | None  # a part forge carries out by running the validators
    after_previous: bool


def fix_kind(text: str) -> FixKind | None:
    """The kind of fix a part asks for, when one of its sentences is nothing but that request."""
    for sentence in SENTENCE_END.split(text):
        words = _normal(sentence)
        for kind in FIX_KINDS:
            if FIX_PHRASE[kind].match(words):
                return kind
    return None


def mentions_milestone(text: str) -> bool:
    """Whether a part stands for the milestone given beside the goal ("then the milestone")."""
    return any(MILESTONE_PHRASE.match(_normal(s)) for s in SENTENCE_END.split(text))


def _ellipsis_kind(text: str) -> FixKind | None:
    """ "the lint" in "fix the tests and the lint": a kind named without its verb."""
    words = _normal(text)
    return next((kind for kind in FIX_KINDS if ELLIPSIS[kind].match(words)), None)


def _normal(text: str) -> str:
    words = re.sub(r"[`'\"]", "", text.lower())
    words = re.sub(r"[^\w./#+-]+", " ", words).strip(" .")
    return POLITE.sub("", words).strip()


# -- splitting a goal ----------------------------------------------------------------------


def split_goal(goal: str) -> list[GoalPart]:
    """The goal's parts in order, by the router's subtask analysis, around goal phrases.

    "Fix all build errors, then work on milestone 3" -> [fix build, "work on milestone 3"
    after_previous]. A sentence that asks for nothing ("The CI is red.") is kept with a part.
    """
    drafts: list[Part] = []
    pending_context = ""
    for text, dependent in _chunks(goal):
        if not _asks_for_something(text, drafts):
            if drafts:
                drafts[-1] = Part(f"{drafts[-1].text} {text}", drafts[-1].after_previous)
            else:
                pending_context = f"{pending_context} {text}".strip()
            continue
        if pending_context:
            text, pending_context = f"{pending_context} {text}", ""
        for index, part in enumerate(_parts_of_chunk(text, drafts)):
            drafts.append(Part(part.text, part.after_previous or (dependent and index == 0)))
    if pending_context:
        drafts.append(Part(pending_context))
    return [GoalPart(d.text.strip(), fix_kind(d.text), d.after_previous) for d in drafts]


def _chunks(goal: str) -> list[tuple[str, bool]]:
    """List items, else sentences and ";"-pieces, each with whether it opens with "then"."""
    items = [m.group(1).strip() for m in map(LIST_ITEM.match, goal.splitlines()) if m]
    pieces = items if len(items) >= 2 else SENTENCE.split(goal)
    chunks: list[tuple[str, bool]] = []
    for piece in pieces:
        piece = piece.strip()
        match = LEADING_CONNECTOR.match(piece)
        dependent = match is not None and match.group(1).lower() in DEPENDENT
        text = piece[match.end() :].strip() if match else piece
        if text:
            chunks.append((text, dependent))
    return chunks


def _asks_for_something(text: str, before: list[Part]) -> bool:
    after_fix = bool(before) and fix_kind(before[-1].text) is not None
    return (
        starts_with_action(text)
        or GOAL_VERB.match(text) is not None
        or fix_kind(text) is not None
        or mentions_milestone(text)
        or (after_fix and _ellipsis_kind(text) is not None)
    )


def _parts_of_chunk(text: str, before: list[Part]) -> list[Part]:
    parts: list[Part] = []
    for routed in split_task(text):
        previous_fix = fix_kind((parts or before)[-1].text) if (parts or before) else None
        parts.extend(_around_goal_phrases(routed, previous_fix is not None))
    return parts


def _around_goal_phrases(part: Part, after_fix: bool) -> list[Part]:
    """Split where the router would not: "fix the tests and the lint", "..., then the milestone",
    "fix the build, then work on X" (the router splits only between two verbs it knows).

    A kind named without its verb right after a fix part gets the verb: "fix the lint".
    """
    text = part.text
    pieces: list[Part] = []
    start, after = 0, part.after_previous
    for match in CONNECTOR.finditer(text):
        left = _with_verb(text[start : match.start()].strip(" ,"), after_fix)
        right = _segment_after(text, match)
        left_fix = fix_kind(left) is not None
        right_goal = (
            fix_kind(right) is not None
            or mentions_milestone(right)
            or (left_fix and _ellipsis_kind(right) is not None)
        )
        left_goal = left_fix or mentions_milestone(left)
        goal_verb = GOAL_VERB.match(right) is not None
        right_action = goal_verb or starts_with_action(right)
        left_action = starts_with_action(left) or GOAL_VERB.match(left) is not None
        if not left or not (
            right_goal or (left_goal and right_action) or (goal_verb and left_action)
        ):
            continue
        pieces.append(Part(left, after))
        after_fix = left_fix
        after = match.group(1).lower() in DEPENDENT
        start = match.end()
    pieces.append(Part(_with_verb(text[start:].strip(" ,"), after_fix), after))
    return pieces


def _with_verb(text: str, after_fix: bool) -> str:
    if after_fix and fix_kind(text) is None and _ellipsis_kind(text) is not None:
        return f"fix {text}"
    return text


def _segment_after(text: str, match: re.Match[str]) -> str:
    """The words after a connector, up to the next one."""
    following = CONNECTOR.search(text, match.end())
    end = following.start() if following else len(text)
    return text[match.end() : end].strip(" ,.")


# -- fix tasks from a validation report ------------------------------------------------------


def fix_tasks(
    report: ValidationReport, kind: FixKind, *, id_prefix: str = "fix"
) -> list[MilestoneTask]:
    """One task per file with findings of `kind`, in path order, with stable unique ids.

    build: errors of the syntax and build stages (rustc through cargo check, Python syntax);
    tests: failing tests by the file they fail in (else their test file), and errors building
    the tests; lint: the lint stage's errors and warnings. Findings without a file, and a tool
    that broke without saying where, go to one more task, `<prefix>-<kind>-other`.
    """
    by_file: dict[str | None, list[str]] = {}
    for result in report.results:
        if result.stage not in STAGES[kind]:
            continue
        found = _findings(result, kind)
        if not found and result.status in BROKEN:
            found = [(None, _broken(result))]
        for file, line in found:
            lines = by_file.setdefault(file, [])
            if line not in lines:
                lines.append(line)
    tasks: list[MilestoneTask] = []
    taken: set[str] = set()
    for file in sorted(f for f in by_file if f is not None):
        task_id = _unique(f"{id_prefix}{ID_TAG[kind]}-{_path_id(file)}", taken)
        tasks.append(_fix_task(task_id, f"Fix {WHAT[kind]} in {file}", by_file[file], (file,)))
    if None in by_file:
        task_id = _unique(f"{id_prefix}-{kind}-other", taken)
        title = f"Fix {WHAT[kind]} reported without a file"
        tasks.append(_fix_task(task_id, title, by_file[None], ()))
    return tasks


def _findings(result: ValidatorResult, kind: FixKind) -> list[tuple[str | None, str]]:
    wanted = ("error", "warning") if kind == "lint" else ("error",)
    found = [(d.file, _diagnostic(d)) for d in result.diagnostics if d.severity in wanted]
    if kind == "tests":
        failed = (t for t in result.tests if t.outcome in ("failed", "error"))
        found.extend((t.file, _test(t)) for t in failed)
    return found


def _diagnostic(d: Diagnostic) -> str:
    where = f"{d.file}:{d.line}" if d.file and d.line else d.file or d.tool
    what = " ".join(x for x in (d.code, _first_line(d.message)) if x)
    label = LABEL.search(d.rendered or "")
    if label and label.group(1) not in what:
        what = f"{what} ({label.group(1).strip()})"
    line = _trim(f"{where}: {what}")
    if d.file is None and d.rendered:
        line = f"{line}\n{_tail(d.rendered, 10)}"
    return line


def _test(t: TestResult) -> str:
    where = f"{t.file}:{t.line}" if t.file and t.line else t.file or t.suite or "tests"
    name = f"{t.suite}::{t.name}" if t.suite and t.suite not in t.name else t.name
    message = f": {_first_line(t.message)}" if t.message else ""
    return _trim(f"{where}: test {name} {t.outcome}{message}")


def _broken(result: ValidatorResult) -> str:
    reason = f": {_first_line(result.reason)}" if result.reason else ""
    line = f"{result.name} {result.status.value}{reason}"
    return f"{line}\n{_tail(result.output_tail, 15)}" if result.output_tail else line


def _fix_task(task_id: str, title: str, lines: list[str], files: tuple[str, ...]) -> MilestoneTask:
    shown = lines[:MAX_FINDINGS_PER_TASK]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more")
    return MilestoneTask(
        id=task_id, title=title, description="\n".join(shown), files=files, type="bug_fix"
    )


def _path_id(path: str) -> str:
    """A path as an id fragment: readable, and unique even when long paths share a start."""
    words = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "file"
    if len(words) <= MAX_ID_PATH:
        return words
    digest = hashlib.sha1(path.encode("utf-8")).hexdigest()[:8]
    return f"{words[: MAX_ID_PATH - 9].rstrip('-')}-{digest}"


def _unique(base: str, taken: set[str]) -> str:
    task_id, number = base, 2
    while task_id in taken:
        task_id, number = f"{base}-{number}", number + 1
    taken.add(task_id)
    return task_id


def _first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _trim(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def _tail(text: str, lines: int) -> str:
    kept = [line.rstrip() for line in text.strip().splitlines()[-lines:]]
    return "\n".join(f"    {_trim(line)}" for line in kept)


# -- a goal as a plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class GoalPlan:
    """The goal's tasks, what planning found worth saying, and the report fix parts used."""

    milestone: Milestone
    notes: tuple[str, ...] = ()
    report: ValidationReport | None = None


@dataclass
class _Planner:
    milestone: Milestone | None
    report: ValidationReport | None
    tasks: list[MilestoneTask] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)
    fixes_planned: dict[str, str] = field(default_factory=dict)  # fix_tasks id -> plan id
    milestone_used: bool = False

    def part_tasks(self, number: int, part: GoalPart, waits_for: tuple[str, ...]) -> list[str]:
        """Add the tasks of one part, each root waiting for `waits_for`; their ids."""
        if part.fix is not None:
            return self.fix_part(number, part, part.fix, waits_for)
        if mentions_milestone(part.text) and self.milestone is not None:
            return self.milestone_part(part, waits_for)
        if mentions_milestone(part.text):
            self.notes.append(
                f"{part.text!r} is planned as one task: no milestone file was given with the goal"
            )
        task_id = _unique(slug(part.text), self.taken)
        title = part.text.rstrip(" .")
        self.tasks.append(MilestoneTask(task_id, title, after=waits_for, where=f"part {number}"))
        return [task_id]

    def fix_part(
        self, number: int, part: GoalPart, kind: FixKind, waits_for: tuple[str, ...]
    ) -> list[str]:
        assert self.report is not None
        found = fix_tasks(self.report, kind)
        blockers = _blockers(self.report, kind) if kind != "build" else []
        if blockers:
            # The tests (or clippy) cannot run on a broken build: fixing it comes first.
            found = fix_tasks(self.report, "build") + found
            names = ", ".join(sorted({r.name for r in blockers}))
            self.notes.append(
                f"{part.text!r}: {RAN_BY[kind]} could not run because {names} failed; "
                "the build errors are planned instead"
            )
        ids: list[str] = []
        for task in found:
            if task.id in self.fixes_planned:
                continue  # the same finding, asked for by an earlier part
            task_id = _unique(task.id, self.taken)
            self.fixes_planned[task.id] = task_id
            self.tasks.append(
                replace(task, id=task_id, after=waits_for, where=f"part {number}: {part.text}")
            )
            ids.append(task_id)
        if not found:
            self.notes.append(f"{part.text!r}: nothing to fix ({_clean(self.report, kind)})")
        return ids

    def milestone_part(self, part: GoalPart, waits_for: tuple[str, ...]) -> list[str]:
        assert self.milestone is not None
        if self.milestone_used:
            self.notes.append(f"{part.text!r}: the milestone is already in the plan")
            return []
        self.milestone_used = True
        pending = self.milestone.pending()
        if not pending:
            self.notes.append(f"{self.milestone.source}: every task is already done")
        open_ids = {t.id for t in pending}
        for task in pending:
            after = tuple(a for a in task.after if a in open_ids)  # done tasks wait for nothing
            self.tasks.append(replace(task, after=after or waits_for))
        return [t.id for t in pending]


def plan_goal(
    goal: str,
    *,
    root: Path,
    validation: ValidationConfig,
    milestone: Milestone | None = None,
    validate_fn: Validate = validate,
) -> GoalPlan:
    """The goal as a plan of tasks, validated like a milestone file.

    Fix parts run the validators once, on `root`, and share the report. A fix part that finds
    nothing adds no task and a note. A milestone no part mentions comes after everything else.
    """
    parts = split_goal(goal)
    if not parts:
        raise UsageError("the goal is empty: say what should be done")
    report = validate_fn(root, validation) if any(p.fix for p in parts) else None
    planner = _Planner(milestone, report)
    if milestone is not None:
        planner.taken.update(t.id for t in milestone.tasks)
    waits_for: tuple[str, ...] = ()
    stage: list[str] = []
    for number, part in enumerate(parts, start=1):
        previous = parts[number - 2] if number > 1 else None
        follows_fix = previous is not None and previous.fix is not None and part.fix is None
        if (part.after_previous or follows_fix) and stage:
            waits_for, stage = tuple(stage), []
        stage.extend(planner.part_tasks(number, part, waits_for))
    if milestone is not None and not planner.milestone_used:
        if stage:
            waits_for = tuple(stage)
        end = GoalPart("the milestone", None, True)
        planner.milestone_part(end, waits_for)
        planner.notes.append(f"{milestone.source}: its pending tasks come after the goal's tasks")
    plan = Milestone("goal", tuple(planner.tasks), title=goal)
    _check(plan)
    return GoalPlan(plan, tuple(planner.notes), report)


def _blockers(report: ValidationReport, kind: FixKind) -> list[ValidatorResult]:
    """The failed syntax and build checks that kept `kind`'s validators from running."""
    gates = [
        r for r in report.results if r.stage in (Stage.SYNTAX, Stage.BUILD) and r.status in BROKEN
    ]
    stopped = [r for r in report.results if r.stage in STAGES[kind] and r.status is Status.SKIPPED]
    return [
        gate
        for gate in gates
        if any(r.project == gate.project and gate.name in (r.reason or "") for r in stopped)
    ]


def _clean(report: ValidationReport, kind: FixKind) -> str:
    ran = [r for r in report.results if r.stage in STAGES[kind]]
    if not ran:
        return f"no validator checks {WHAT[kind].removeprefix('the ')}"
    return "; ".join(
        f"{r.name} {r.status.value}" + (f": {r.reason}" if r.reason else "") for r in ran
    )


def _check(plan: Milestone) -> None:
    """What a milestone file must satisfy; a goal's plan is built to, this makes sure."""
    seen: set[str] = set()
    for task in plan.tasks:
        if task.id in seen:
            raise MilestoneError(f"{plan.source}: duplicate task id {task.id!r}")
        seen.add(task.id)
    for task in plan.tasks:
        unknown = [a for a in task.after if a not in seen]
        if unknown:
            raise MilestoneError(
                f"{plan.source}: {task.id!r} comes after unknown id {unknown[0]!r}"
            )
    cycle = find_cycle(plan.tasks)
    if cycle:
        raise MilestoneError(f"{plan.source}: dependency cycle: {' -> '.join(cycle)}")
