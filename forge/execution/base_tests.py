"""The base's tests are the judge: an attempt may add tests, but the tests that exist at its
base must still pass (or reach the task's target) with the attempt's change, as they were.

An answer that edits a test to expect the buggy value, reduces it to `assert True`, deletes it
or marks it skipped would otherwise pass its own validation; a new test module could patch the
code under test when pytest imports it. So when an attempt that passed changed or added any
test file, it is validated again with the base's tests exactly: changed files put back as the
base has them, new ones set aside; the verdict of that run decides. New tests (new files, or
new test functions and classes in an existing file) are welcome (`Forge-Tests: added`);
anything else is an edit (`Forge-Tests: edited`), which a task may make only when allowed
(`tests: edit`, a task of type test, or --allow-test-edits) and which is otherwise undone.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from forge.execution.workspace import Worktree

Change = Literal["added", "edited"]
T = TypeVar("T")

TEST_FOLDERS = frozenset({"tests", "test", "testing"})


def is_test_file(path: str) -> bool:
    """A Python test module (test_*.py, *_test.py, a .py under a tests folder, conftest.py)
    or a Rust integration test (a .rs under a crate's tests/ folder)."""
    parts = path.split("/")
    name = parts[-1]
    if name.endswith(".py"):
        return (
            name.startswith("test_")
            or name.endswith("_test.py")
            or name == "conftest.py"
            or bool(TEST_FOLDERS.intersection(parts[:-1]))
        )
    return name.endswith(".rs") and "tests" in parts[:-1]


def changed_tests(tree: Worktree, candidates: Iterable[str]) -> dict[str, Change]:
    """How each test file among `candidates` (repository paths) differs from the base."""
    found: dict[str, Change] = {}
    for path in sorted(set(candidates)):
        if not is_test_file(path):
            continue
        before = base_text(tree, path)
        now = _read(tree.path / path)
        # git's output comes without its last newline.
        if before is not None and now is not None and before.rstrip("\n") == now.rstrip("\n"):
            continue
        if before is None or (now is not None and _only_added(path, before, now)):
            found[path] = "added"
        else:
            found[path] = "edited"
    return found


def base_text(tree: Worktree, path: str) -> str | None:
    """The file as the base commit has it, None when it is not there."""
    from forge.execution.workspace import WorkspaceError

    try:
        return tree.git("show", f"{tree.base}:{path}")
    except WorkspaceError:
        return None


def with_base_versions(tree: Worktree, paths: list[str], run: Callable[[], T]) -> T:
    """`run()` with the base's versions of `paths` in the worktree, the attempt's put back
    after (deleted ones deleted again), whatever happens."""
    kept = {path: _read_bytes(tree.path / path) for path in paths}
    at_base = [path for path in paths if base_text(tree, path) is not None]
    try:
        if at_base:
            tree.git("checkout", tree.base, "--", *at_base)
        for path in paths:
            if path not in at_base:  # new: not part of the base's tests
                (tree.path / path).unlink(missing_ok=True)
        return run()
    finally:
        for path, data in kept.items():
            target = tree.path / path
            if data is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        if at_base:
            tree.git("reset", "--quiet", tree.base, "--", *at_base)


def _only_added(path: str, before: str, now: str) -> bool:
    """Only new tests were added: for Python, every statement of `before` is still there, in
    order and unchanged, and the new ones are imports or new functions and classes (a new
    module-level statement, such as `pytestmark = skip` or a patch, is an edit); for other
    files, every line of `before` but its `use` lines is still in `now`, in order."""
    if path.endswith(".py"):
        try:
            old, new = ast.parse(before).body, ast.parse(now).body
        except (SyntaxError, ValueError):
            return False
        kept = [ast.dump(s) for s in old]
        names = {getattr(s, "name", None) for s in old}
        remaining = iter(ast.dump(s) for s in new)
        if not all(any(dumped == seen for seen in remaining) for dumped in kept):
            return False  # a statement of the base was changed or removed
        added = [s for s in new if ast.dump(s) not in kept]
        tests = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
        return all(isinstance(s, tests) and getattr(s, "name", None) not in names for s in added)
    # A new test may need to import more: `use` lines may change.
    kept = [line for line in before.splitlines() if not line.lstrip().startswith("use ")]
    lines = [line for line in now.splitlines() if not line.lstrip().startswith("use ")]
    matcher = difflib.SequenceMatcher(None, kept, lines, autojunk=False)
    return all(tag in ("equal", "insert") for tag, *_ in matcher.get_opcodes())


def _read(path: Path) -> str | None:
    data = _read_bytes(path)
    return None if data is None else data.decode("utf-8", "replace")


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
