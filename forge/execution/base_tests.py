"""The base's tests are the judge: an attempt may add tests, but the tests that exist at its
base must still pass (or reach the task's target) with the attempt's change, as they were.

An answer that edits a test to expect the buggy value, reduces it to `assert True`, deletes it
or marks it skipped would otherwise pass its own validation; a new test module could patch the
code under test when pytest imports it, and a plugin named in pytest's `addopts` could too. So
when an attempt that passed changed or added tests, it is validated again with the base's
tests exactly: changed test files put back as the base has them, new ones set aside, and in a
file that is only partly tests (a Rust source file's `#[cfg(test)]` modules, the pytest or
`[dev-dependencies]` sections of pyproject.toml, setup.cfg, tox.ini, Cargo.toml) the base's
test parts spliced into the attempt's file, its other changes kept; the verdict of that run
decides. New tests (new files, new test functions and classes in an existing file or module)
are welcome (`Forge-Tests: added`); anything else is an edit (`Forge-Tests: edited`), which a
task may make only when allowed (`tests: edit`, a task of type test, or --allow-test-edits)
and which is otherwise undone, the same way.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from forge.execution import config_sections, doctests, rust_items, rust_tests

if TYPE_CHECKING:
    from forge.execution.workspace import Worktree

Change = Literal["added", "edited"]
T = TypeVar("T")

TEST_FOLDERS = frozenset({"tests", "test", "testing"})
# Folders whose every file is the tests' own: data a test reads, expected outputs, snapshots.
TEST_DATA_FOLDERS = TEST_FOLDERS | {"testdata", "test_data", "__snapshots__", "snapshots"}
# pytest's own configuration files, each read before pyproject.toml (pytest 9 reads the TOML
# ones too).
PYTEST_FILES = frozenset({"pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml"})


def is_test_file(path: str, modules: Collection[str] = ()) -> bool:
    """A file that is tests through and through: a Python test module (test_*.py, *_test.py,
    a .py under a tests folder, conftest.py), a Rust integration test (a .rs under a crate's
    tests/ folder) or test module (tests.rs, or one of `modules`: see rust_test_files), any
    other file under a tests or test-data folder (the data a test reads, its expected output),
    or test configuration of its own (pytest.ini, .cargo/config.toml)."""
    parts = path.split("/")
    name = parts[-1]
    if name.endswith(".py"):
        return (
            name.startswith("test_")
            or name.endswith("_test.py")
            or name == "conftest.py"
            or bool(TEST_FOLDERS.intersection(parts[:-1]))
        )
    if name.endswith(".rs") and (name == "tests.rs" or rust_tests.in_modules(path, modules)):
        return True
    return is_test_settings(path) or bool(TEST_DATA_FOLDERS.intersection(parts[:-1]))


def is_test_settings(path: str) -> bool:
    """A file that only configures how the tests run: any change to it is an edit."""
    parts = path.split("/")
    return parts[-1] in PYTEST_FILES or (
        parts[-1] in ("config.toml", "config") and parts[-2:-1] == [".cargo"]
    )


def may_hold_tests(path: str) -> bool:
    """A test file, or one with test parts: a Rust source file (its `#[cfg(test)]`
    modules), pyproject.toml, setup.cfg, tox.ini or Cargo.toml (their test sections)."""
    return (
        is_test_file(path)
        or path.endswith((".rs", ".py"))  # #[cfg(test)] modules, doctests
        or config_sections.holds_test_settings(path)
    )


def changed_tests(tree: Worktree, candidates: Iterable[str]) -> dict[str, Change]:
    """How the tests in each of `candidates` (repository paths) differ from the base."""
    found: dict[str, Change] = {}
    modules = rust_test_files(tree)
    for path in sorted(set(candidates)):
        if not may_hold_tests(path):
            continue
        how = change_in_tests(path, base_text(tree, path), _read(tree.path / path), modules)
        if how is not None:
            found[path] = how
    return found


def change_in_tests(
    path: str, before: str | None, now: str | None, modules: Collection[str] = ()
) -> Change | None:
    """How the tests in `path` changed from `before` to `now` (None: not there), None when
    they did not."""
    if not is_test_file(path, modules):
        return _test_parts_change(path, before or "", now or "")
    # git's output comes without its last newline.
    if before is not None and now is not None and before.rstrip("\n") == now.rstrip("\n"):
        return None
    if is_test_settings(path):
        return "edited"
    if before is None or (now is not None and _only_added(path, before, now)):
        return "added"
    return "edited"


def with_base_tests(
    path: str, before: str | None, now: str | None, modules: Collection[str] = ()
) -> str | None:
    """`path` as the attempt has it (`now`) with the base's tests (`before`): a test file is
    the base's (None: it has none), a file with test parts the attempt's with the base's
    parts put in their place."""
    if is_test_file(path, modules):
        return before
    if path.endswith(".rs"):
        return rust_tests.with_base_tests(before or "", now or "")
    if path.endswith(".py"):
        return doctests.with_base_docstrings(before or "", now or "")
    return config_sections.with_base_sections(path, before or "", now or "")


def base_text(tree: Worktree, path: str) -> str | None:
    """The file as the base commit has it, None when it is not there."""
    from forge.execution.workspace import WorkspaceError

    try:
        return tree.git("show", f"{tree.base}:{path}")
    except WorkspaceError:
        return None


def rust_test_files(tree: Worktree) -> frozenset[str]:
    """The base's Rust files whose every line is a test besides those under tests/: the
    files of its out-of-line test modules (`#[cfg(test)] mod tests;`, see
    rust_tests.module_files) and those its manifests' `[[test]]` and `[[bench]]` name."""
    declaring = r"\bmod[[:space:]]+(r#)?[[:alnum:]_]+[[:space:]]*;"
    found: set[str] = set()
    for path in _base_files(tree, declaring, "*.rs"):
        found |= rust_tests.module_files(path, base_text(tree, path) or "")
    for path in _base_files(tree, r"test|bench", "Cargo.toml", "*/Cargo.toml"):
        found |= config_sections.cargo_test_targets(path, base_text(tree, path) or "")
    return frozenset(found)


def _base_files(tree: Worktree, pattern: str, *globs: str) -> list[str]:
    """The base's files matching `globs` with a line matching `pattern`."""
    from forge.execution.workspace import WorkspaceError

    try:
        listed = tree.git("grep", "-l", "-E", pattern, tree.base, "--", *globs)
    except WorkspaceError:  # nothing matched
        return []
    return [line.removeprefix(f"{tree.base}:") for line in listed.splitlines()]


def restore_base_tests(tree: Worktree, paths: list[str]) -> None:
    """The base's tests in `paths`: test files as the base has them (removed when it does not
    have them), the base's test parts spliced into the others."""
    modules = rust_test_files(tree)
    whole = [path for path in paths if is_test_file(path, modules)]
    at_base = [path for path in whole if base_text(tree, path) is not None]
    for path in whole:
        if path not in at_base:
            (tree.path / path).unlink(missing_ok=True)
    if at_base:
        tree.git("checkout", tree.base, "--", *at_base)
        tree.git("reset", "--quiet", tree.base, "--", *at_base)
    for path in paths:
        if path in whole:
            continue
        target = tree.path / path
        now = _read(target)
        text = with_base_tests(path, base_text(tree, path), now)
        if text is not None and text != now:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


def with_base_versions(tree: Worktree, paths: list[str], run: Callable[[], T]) -> T:
    """`run()` with the base's tests in `paths` (see restore_base_tests), the attempt's
    files put back after (deleted ones deleted again), whatever happens."""
    kept = {path: _read_bytes(tree.path / path) for path in paths}
    try:
        restore_base_tests(tree, paths)
        return run()
    finally:
        for path, data in kept.items():
            target = tree.path / path
            if data is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        modules = rust_test_files(tree)
        at_base = [p for p in paths if is_test_file(p, modules) and base_text(tree, p) is not None]
        if at_base:
            tree.git("reset", "--quiet", tree.base, "--", *at_base)


def _test_parts_change(path: str, before: str, now: str) -> Change | None:
    if path.endswith(".py"):
        weakened = doctests.changed(before, now)
        if weakened:
            return "edited"
        grown = weakened is False and doctests.examples(before) != doctests.examples(now)
        return "added" if grown else None
    if path.endswith(".rs"):
        return rust_tests.change(before, now)
    if config_sections.holds_test_settings(path) and config_sections.changed(path, before, now):
        return "edited"
    return None


def _only_added(path: str, before: str, now: str) -> bool:
    """Only new tests were added: for Python, every statement of `before` is still there, in
    order and unchanged, and the new ones are imports or new functions and classes (a new
    module-level statement, such as `pytestmark = skip` or a patch, is an edit); for Rust,
    see rust_items.only_added."""
    if path.endswith(".py"):
        try:
            old, new = ast.parse(before).body, ast.parse(now).body
        except (SyntaxError, ValueError, RecursionError):
            return False
        return _python_only_added(old, new, _parameters(old))
    if path.endswith(".rs"):
        return rust_items.only_added(rust_items.items(before), rust_items.items(now))
    return False


NEW_IN_MODULE = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
NEW_IN_CLASS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
CLASS_HEADER = ("bases", "keywords", "decorator_list")
# Names pytest calls by themselves: a new one changes how existing tests run.
HOOKS = ("pytest_", "setup", "teardown")


def _python_only_added(
    old: list[ast.stmt],
    new: list[ast.stmt],
    parameters: set[str],
    kinds: tuple[type[ast.stmt], ...] = NEW_IN_MODULE,
) -> bool:
    """Every statement of `old` is in `new`, in order and unchanged (a class of the same name
    and header may gain members, compared the same way), and what `new` adds is functions
    and classes (imports too, at module level) that rebind no name `old` binds: a new `from
    fake import add`, or a fixture an existing test takes by name, changes what the existing
    tests run. Hooks and setup/teardown functions are never just added."""
    bound = _bound(old)
    remaining = iter(new)
    matched: set[int] = set()
    for statement in old:
        for candidate in remaining:
            if _same_or_grown(statement, candidate, parameters):
                matched.add(id(candidate))
                break
        else:
            return False  # a statement of the base was changed or removed
    for statement in new:
        if id(statement) in matched:
            continue
        if not isinstance(statement, kinds) or _binds(statement) & bound:
            return False
        name = getattr(statement, "name", "")
        if name.startswith(HOOKS) or (_is_fixture(statement) and name in parameters):
            return False
    return True


def _same_or_grown(old: ast.stmt, new: ast.stmt, parameters: set[str]) -> bool:
    """The same statement, or the same class with members added."""
    if ast.dump(old) == ast.dump(new):
        return True
    if not (isinstance(old, ast.ClassDef) and isinstance(new, ast.ClassDef)):
        return False
    if old.name != new.name or any(
        ast.dump(ast.List(getattr(old, f), ast.Load()))
        != ast.dump(ast.List(getattr(new, f), ast.Load()))
        for f in CLASS_HEADER
    ):
        return False
    return _python_only_added(old.body, new.body, parameters, NEW_IN_CLASS)


def _binds(statement: ast.stmt) -> set[str]:
    """The names a module- or class-level statement binds."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in statement.names}
    names: set[str] = set()
    for node in ast.walk(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _bound(statements: list[ast.stmt]) -> set[str]:
    return {name for statement in statements for name in _binds(statement)}


def _parameters(statements: list[ast.stmt]) -> set[str]:
    """The parameter names of every function in `statements`: the fixtures they ask for."""
    found: set[str] = set()
    for statement in statements:
        for node in ast.walk(statement):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
                found.update(a.arg for a in every)
    return found


def _is_fixture(statement: ast.stmt) -> bool:
    decorators = getattr(statement, "decorator_list", [])
    return any("fixture" in ast.dump(d) for d in decorators)


def _read(path: Path) -> str | None:
    data = _read_bytes(path)
    return None if data is None else data.decode("utf-8", "replace")


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
