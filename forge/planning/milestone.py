"""Milestone files: the tasks of a plan, what they touch and what they come after.

Two formats. A Markdown checklist, one task per item, with an optional indented description:

    - [ ] parser: Accept empty input (files: src/parse.rs) (after: lexer)
      The parser panics on an empty file; it should return an empty module.
    - [x] lexer: Tokenise comments          <- done

and TOML:

    [[task]]
    id = "parser"                # optional
    title = "Accept empty input"
    description = "..."          # optional
    files = ["src/parse.rs"]     # optional
    after = ["lexer"]            # optional
    type = "bug_fix"             # optional: overrides the analysis
    tier = "cheap"               # optional: pins the first rung
    tests = "edit"               # optional: it may change existing tests (Markdown: (tests: edit))
    done = false                 # optional

A task without an id gets a stable one from its title ("Accept empty input" -> accept-empty-input,
then accept-empty-input-2 ...). A duplicate id, an `after` naming no task, or a dependency cycle
is an error (exit 2) that names the ids involved.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from forge.errors import ExitCode, ForgeError
from forge.routing.vocabulary import TYPES, TaskType

CHECKBOX = re.compile(r"^(?P<indent>\s*)(?:[-*+]|\d+[.)])\s+\[(?P<mark>[ xX])\]\s+(?P<body>.*)$")
ANNOTATION = re.compile(r"\(\s*(files|after|type|tier|tests)\s*:\s*([^)]*)\)", re.IGNORECASE)
TASK_ID = re.compile(r"^(?P<id>[A-Za-z0-9][\w.-]*):\s+(?P<title>\S.*)$")
SLUG_LENGTH = 40
TOML_TASK_KEYS = frozenset(
    {"id", "title", "description", "files", "after", "type", "tier", "done", "tests"}
)
# `tests: edit` lets a task change the tests that exist at its base; "keep" is the default.
TESTS_VALUES = ("keep", "edit")
TOML_TOP_KEYS = frozenset({"task", "title", "description"})


class MilestoneError(ForgeError):
    """A milestone file that cannot be planned: says where and which ids."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class MilestoneTask:
    id: str
    title: str
    description: str = ""
    files: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    type: TaskType | None = None
    tier: str | None = None
    done: bool = False
    where: str = ""  # "line 12" or "task 3", for messages
    edit_tests: bool = False  # `tests: edit`: it may change the tests that exist at its base

    @property
    def text(self) -> str:
        """What a model is asked to do: the title, then the description."""
        return f"{self.title}\n{self.description}".strip()


@dataclass(frozen=True)
class Milestone:
    source: str
    tasks: tuple[MilestoneTask, ...]
    title: str | None = None
    _by_id: dict[str, MilestoneTask] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id.update({t.id: t for t in self.tasks})

    def task(self, task_id: str) -> MilestoneTask:
        return self._by_id[task_id]

    def pending(self) -> tuple[MilestoneTask, ...]:
        return tuple(t for t in self.tasks if not t.done)

    def in_order(self) -> tuple[MilestoneTask, ...]:
        """Every task after the tasks it comes after; otherwise in file order."""
        waiting = {t.id: len(t.after) for t in self.tasks}
        followers: dict[str, list[str]] = {t.id: [] for t in self.tasks}
        for t in self.tasks:
            for before in t.after:
                followers[before].append(t.id)
        ready = deque(t.id for t in self.tasks if not t.after)
        ordered: list[MilestoneTask] = []
        while ready:
            current = ready.popleft()
            ordered.append(self._by_id[current])
            for follower in followers[current]:
                waiting[follower] -= 1
                if waiting[follower] == 0:
                    ready.append(follower)
        return tuple(ordered)

    def edges(self) -> list[tuple[str, str]]:
        """(before, after) pairs: what a DAG of the plan (networkx.DiGraph) is built from."""
        return [(before, t.id) for t in self.tasks for before in t.after]


def load_milestone(path: Path) -> Milestone:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MilestoneError(f"{path}: cannot read the milestone file ({exc})") from None
    if path.suffix.lower() == ".toml":
        return parse_toml(text, str(path))
    return parse_markdown(text, str(path))


# -- Markdown ------------------------------------------------------------------------------


def parse_markdown(text: str, source: str = "milestone.md") -> Milestone:
    drafts: list[dict[str, Any]] = []
    indent: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        item = CHECKBOX.match(line)
        if item:
            drafts.append(_markdown_task(item, number, source))
            indent = len(item.group("indent"))
        elif drafts and indent is not None and line.strip():
            if len(line) - len(line.lstrip()) > indent:
                drafts[-1]["description"].append(line.strip())
            else:
                indent = None  # a line back at the margin ends the description
    if not drafts:
        raise MilestoneError(
            f"{source}: no tasks found (expected checklist lines like "
            "'- [ ] id: title (files: a.rs) (after: other-id)')"
        )
    for draft in drafts:
        draft["description"] = "\n".join(draft["description"])
    return _finish(source, drafts)


def _markdown_task(item: re.Match[str], number: int, source: str) -> dict[str, Any]:
    body = item.group("body")
    draft: dict[str, Any] = {
        "done": item.group("mark") != " ",
        "description": [],
        "where": f"line {number}",
    }
    for key, value in ANNOTATION.findall(body):
        values = [v.strip() for v in value.split(",") if v.strip()]
        if key.lower() in ("files", "after"):
            draft[key.lower()] = values
        else:
            draft[key.lower()] = value.strip()
    title = ANNOTATION.sub("", body).strip()
    named = TASK_ID.match(title)
    if named:
        draft["id"], title = named.group("id"), named.group("title").strip()
    if not title:
        raise MilestoneError(f"{source}:{number}: the task has no title")
    draft["title"] = title
    return draft


# -- TOML ----------------------------------------------------------------------------------


def parse_toml(text: str, source: str = "milestone.toml") -> Milestone:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MilestoneError(f"{source}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - TOML_TOP_KEYS)
    if unknown:
        raise MilestoneError(f"{source}: unknown key {unknown[0]!r} (expected [[task]] tables)")
    tasks = data.get("task")
    if not isinstance(tasks, list) or not tasks:
        raise MilestoneError(f"{source}: no tasks found (expected [[task]] tables)")
    drafts = [_toml_task(entry, index, source) for index, entry in enumerate(tasks, start=1)]
    title = data.get("title")
    return _finish(source, drafts, title if isinstance(title, str) else None)


def _toml_task(entry: object, index: int, source: str) -> dict[str, Any]:
    where = f"task {index}"
    if not isinstance(entry, dict):
        raise MilestoneError(f"{source}: {where}: expected a table")
    unknown = sorted(set(entry) - TOML_TASK_KEYS)
    if unknown:
        guess = difflib.get_close_matches(unknown[0], sorted(TOML_TASK_KEYS), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise MilestoneError(f"{source}: {where}: unknown key {unknown[0]!r}{hint}")
    draft: dict[str, Any] = {"where": where, "done": entry.get("done", False)}
    for key in ("id", "title", "description", "type", "tier", "tests"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise MilestoneError(f"{source}: {where}: {key} must be a string, found {value!r}")
        if value is not None:
            draft[key] = value
    for key in ("files", "after"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MilestoneError(f"{source}: {where}: {key} must be a list of strings")
        draft[key] = value
    if not isinstance(draft["done"], bool):
        raise MilestoneError(f"{source}: {where}: done must be true or false")
    if not draft.get("title"):
        raise MilestoneError(f"{source}: {where}: title is required")
    return draft


# -- ids, dependencies, cycles ---------------------------------------------------------------


def slug(title: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return words[:SLUG_LENGTH].rstrip("-") or "task"


def _finish(source: str, drafts: list[dict[str, Any]], title: str | None = None) -> Milestone:
    _check_duplicates(source, drafts)
    taken = {d["id"] for d in drafts if "id" in d}
    for draft in drafts:
        if "id" not in draft:
            draft["id"] = _free_id(slug(draft["title"]), taken)
            taken.add(draft["id"])
    tasks = tuple(_task(source, d) for d in drafts)
    _check_after(source, tasks)
    cycle = find_cycle(tasks)
    if cycle:
        raise MilestoneError(
            f"{source}: dependency cycle: {' -> '.join(cycle)} (each task comes after the next)"
        )
    return Milestone(source, tasks, title)


def _check_duplicates(source: str, drafts: list[dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for draft in drafts:
        task_id = draft.get("id")
        if task_id is None:
            continue
        if task_id in seen:
            raise MilestoneError(
                f"{source}: duplicate task id {task_id!r} ({seen[task_id]} and {draft['where']})"
            )
        seen[task_id] = draft["where"]


def _free_id(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _task(source: str, draft: dict[str, Any]) -> MilestoneTask:
    task_type = draft.get("type")
    if task_type is not None and task_type not in TYPES:
        raise MilestoneError(
            f"{source}: {draft['where']}: unknown type {task_type!r} "
            f"(expected one of {', '.join(TYPES)})"
        )
    tests = draft.get("tests", "keep").strip().lower()
    if tests not in TESTS_VALUES:
        raise MilestoneError(
            f"{source}: {draft['where']}: tests must be one of {', '.join(TESTS_VALUES)}, "
            f"found {draft.get('tests')!r}"
        )
    return MilestoneTask(
        id=draft["id"],
        title=draft["title"],
        description=draft.get("description", ""),
        files=tuple(draft.get("files", ())),
        after=tuple(dict.fromkeys(draft.get("after", ()))),
        type=cast(TaskType | None, task_type),
        tier=draft.get("tier"),
        done=draft["done"],
        where=draft["where"],
        edit_tests=tests == "edit",
    )


def _check_after(source: str, tasks: tuple[MilestoneTask, ...]) -> None:
    known = [t.id for t in tasks]
    for t in tasks:
        for before in t.after:
            if before not in known:
                guess = difflib.get_close_matches(before, known, n=1)
                hint = f"; did you mean {guess[0]!r}?" if guess else ""
                raise MilestoneError(
                    f"{source}: task {t.id!r} ({t.where}) comes after unknown id {before!r}{hint}"
                )


def find_cycle(tasks: tuple[MilestoneTask, ...]) -> list[str] | None:
    """A dependency cycle as the ids along it, first id repeated at the end; None if acyclic."""
    after = {t.id: t.after for t in tasks}
    state: dict[str, int] = {}  # 1: on the current path, 2: fully explored
    for start in after:
        if start in state:
            continue
        path = [start]
        stack: list[Iterator[str]] = [iter(after[start])]
        state[start] = 1
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(following) == 1:
                return [*path[path.index(following) :], following]
            elif following not in state:
                state[following] = 1
                path.append(following)
                stack.append(iter(after[following]))
    return None
