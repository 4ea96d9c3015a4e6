"""Hostile and broken answers: each one refused with a precise error, and nothing on disk changes.

Every case runs against the same small repository, which holds a symlink to a folder outside
it, a symlink to a file outside it, a dangling symlink and a `.git` folder. The bytes of the
repository and of the outside folder are compared before and after.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from forge.execution.edits import (
    EditFormatName,
    EditPolicy,
    EditRefused,
    ErrorKind,
    apply_answer,
    check_path,
    edit_format,
    write_changes,
)

APP = """\
def first():
    value = 1
    return value


def second():
    value = 1
    return value
"""
FILES: dict[str, bytes] = {
    "src/app.py": APP.encode(),
    "README.md": b"# Demo\n\nA demo project.\n",
    "notes/todo.txt": b"buy milk\n",
    "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "latin1.txt": "caf\xe9\n".encode("latin-1"),
    ".git/config": b"[core]\n\tbare = false\n",
    ".git/HEAD": b"ref: refs/heads/main\n",
}
ALLOWED = frozenset({"src/app.py", "README.md"})


def sr(path: str, search: str, replace: str, fence: str = "```python") -> str:
    return f"{path}\n{fence}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"


def whole(path: str, content: str) -> str:
    return f"{path}\n```\n{content}```\n"


def new_file(path: str) -> str:
    return sr(path, "", "print('pwned')\n")


@dataclass(frozen=True)
class Case:
    name: str
    answer: Callable[[Path], str]  # given the repository root
    kind: ErrorKind
    fragment: str  # a part of the error message
    fmt: EditFormatName = "search_replace"
    strict: bool = False  # --strict-files with ALLOWED


def case(
    name: str,
    answer: str | Callable[[Path], str],
    kind: ErrorKind,
    fragment: str,
    fmt: EditFormatName = "search_replace",
    strict: bool = False,
) -> Case:
    build = answer if callable(answer) else (lambda _root, text=answer: text)
    return Case(name, build, kind, fragment, fmt, strict)


CORPUS = [
    # Leaving the repository.
    case("dotdot", new_file("../outside/evil.py"), "unsafe", "leaves the repository"),
    case("dotdot-nested", new_file("a/../../outside/evil.py"), "unsafe", "leaves the repository"),
    case("dotdot-dot-prefix", new_file("./../evil.py"), "unsafe", "leaves the repository"),
    case("dotdot-deep", new_file("src/x/y/../../../../evil.py"), "unsafe", "leaves the repository"),
    case("dotdot-backslash", new_file("..\\..\\evil.py"), "unsafe", "leaves the repository"),
    case("dotdot-decorated", new_file("`../evil.py`:"), "unsafe", "leaves the repository"),
    case("absolute-unix", new_file("/etc/passwd"), "unsafe", "absolute paths are not allowed"),
    case(
        "absolute-outside-sentinel",
        lambda root: new_file(str(root.parent / "outside" / "evil.py")),
        "unsafe",
        "absolute paths are not allowed",
    ),
    case("absolute-windows", new_file("C:\\Windows\\win.ini"), "unsafe", "absolute paths"),
    case("absolute-windows-slash", new_file("c:/evil.py"), "unsafe", "absolute paths"),
    case("unc-share", new_file("\\\\server\\share\\evil.py"), "unsafe", "absolute paths"),
    case("home", new_file("~/.bashrc"), "unsafe", "home folder"),
    case("symlink-dir-escape", new_file("escape/evil.py"), "unsafe", "symlink"),
    case(
        "symlink-file-escape",
        whole("src/link.py", "print('pwned')\n"),
        "unsafe",
        "symlink that leads outside",
        fmt="whole",
    ),
    case("symlink-dangling", new_file("dangling.txt"), "unsafe", "symlink"),
    # The repository's own machinery.
    case("git-config", whole(".git/config", "[core]\n"), "unsafe", ".git", fmt="whole"),
    case("git-upper-hooks", new_file(".GIT/hooks/pre-commit"), "unsafe", ".git"),
    case("git-nested", new_file("sub/.git/x"), "unsafe", ".git"),
    case("git-through-dotdot", new_file("src/../.git/hooks/post-checkout"), "unsafe", ".git"),
    case("git-windows-dot", new_file(".git./config"), "unsafe", ".git"),
    case("git-through-symlink", new_file("gitlink/hooks/pre-commit"), "unsafe", ".git"),
    # Paths that are no paths.
    case("nul-in-path", new_file("src/app\x00.py"), "unsafe", "control character"),
    case("escape-in-path", new_file("src/\x1b[2Japp.py"), "unsafe", "control character"),
    case("zero-width-in-path", new_file(".g\u200cit/config"), "unsafe", "control character"),
    case("bidi-override-in-path", new_file("src/\u202etxt.py"), "unsafe", "control character"),
    case("file-as-folder", new_file("src/app.py/evil.py"), "format", "app.py is a file"),
    case("folder-as-file", whole("`notes`", "x\n"), "format", "notes is a folder", fmt="whole"),
    case("fifo", whole("`pipe`", "x\n"), "format", "pipe is not a regular file", fmt="whole"),
    case(
        "fence-tag-python",
        "python\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n",
        "format",
        "`python` is a code-fence language, not a file path",
    ),
    case(
        "fence-tag-rust",
        "```\nrust\n<<<<<<< SEARCH\n=======\nfn main() {}\n>>>>>>> REPLACE\n```\n",
        "format",
        "`rust` is a code-fence language",
    ),
    case(
        "fence-tag-diff",
        "Here it is:\n\ndiff\n```\n<<<<<<< SEARCH\n    value = 1\n=======\n    value = 2\n"
        ">>>>>>> REPLACE\n```\n",
        "format",
        "`diff` is a code-fence language",
    ),
    case(
        "fence-tag-whole",
        "toml\n```\n[package]\n```\n",
        "format",
        "`toml` is a code-fence language",
        fmt="whole",
    ),
    case(
        "missing-path",
        "```python\n<<<<<<< SEARCH\n    value = 1\n=======\n    value = 2\n>>>>>>> REPLACE\n```\n",
        "format",
        "Write the file path on its own line before the block",
    ),
    case(
        "missing-path-prose",
        "I changed the value:\n<<<<<<< SEARCH\n    value = 1\n=======\n    value = 2\n"
        ">>>>>>> REPLACE\n",
        "format",
        "has no file path",
    ),
    case(
        "missing-path-whole",
        "Here is the file:\n```python\nprint(1)\n```\n",
        "format",
        "has no file path",
        fmt="whole",
    ),
    # SEARCH text that does not say where.
    case(
        "ambiguous",
        sr("src/app.py", "    value = 1\n    return value\n", "    return 2\n"),
        "ambiguous",
        "matches 2 places in src/app.py, starting at lines 2 and 7",
    ),
    case(
        "no-match",
        sr("src/app.py", "def frist():\n    value = 1\n", "def first():\n    value = 2\n"),
        "no_match",
        "The closest match is lines 1-2:\n```\ndef first():\n    value = 1\n```",
    ),
    case(
        "no-match-missing-file",
        sr("src/gone.py", "x = 1\n", "x = 2\n"),
        "no_match",
        "src/gone.py does not exist",
    ),
    case(
        "create-over-existing",
        sr("src/app.py", "", "print('replaced')\n"),
        "format",
        "already exists and is not empty",
    ),
    # Elided code.
    case(
        "elision-existing-code",
        sr("src/app.py", "def first():\n", "def first():\n    # ... existing code ...\n"),
        "elision",
        "'# ... existing code ...'",
    ),
    case(
        "elision-rest-of-function",
        sr("src/app.py", "def second():\n", "def second():\n    // ... rest of the function\n"),
        "elision",
        "rest of the function",
    ),
    case(
        "elision-unchanged",
        sr("src/app.py", "def second():\n", "def second():\n    # ... unchanged ...\n"),
        "elision",
        "unchanged",
    ),
    case(
        "elision-bare-dots",
        sr("src/app.py", "    value = 1\n    return value\n\n\n", "    value = 3\n    ...\n"),
        "elision",
        "'...'",
    ),
    case(
        "elision-c-comment",
        sr("src/app.py", "def first():\n", "def first():\n    /* ... */\n"),
        "elision",
        "/* ... */",
    ),
    case(
        "elision-whole-rest-of-file",
        whole("src/app.py", "def first():\n    return 2\n\n(rest of file unchanged)\n"),
        "elision",
        "(rest of file unchanged)",
        fmt="whole",
    ),
    case(
        "elision-whole-remaining",
        whole("src/app.py", "def first():\n    return 2\n# remaining code here\n"),
        "elision",
        "# remaining code here",
        fmt="whole",
    ),
    case(
        "elision-whole-html",
        whole("README.md", "# Demo\n<!-- ... -->\n"),
        "elision",
        "<!-- ... -->",
        fmt="whole",
    ),
    case(
        "elision-new-file",
        sr("src/new.py", "", "import os\n# ... other imports ...\n"),
        "elision",
        "other imports",
    ),
    # Size.
    case("fifty-megabytes", lambda _root: "x" * (50 * 1024 * 1024), "too_large", "over the limit"),
    case(
        "large-with-a-valid-block",
        lambda _root: sr("src/app.py", "    value = 1\n", "    value = 2\n") + "#" * 2_000_000,
        "too_large",
        "none of it was read",
    ),
    # Broken markers.
    case(
        "replace-before-divider",
        "src/app.py\n<<<<<<< SEARCH\ndef first():\n>>>>>>> REPLACE\n",
        "format",
        "Block 1 (the `<<<<<<< SEARCH` at line 2 of the answer) has no `=======` before its "
        "`>>>>>>> REPLACE` at line 4",
    ),
    case(
        "divider-without-replace",
        "src/app.py\n<<<<<<< SEARCH\ndef first():\n=======\ndef one():\n"
        "<<<<<<< SEARCH\ndef second():\n=======\ndef two():\n>>>>>>> REPLACE\n",
        "format",
        "has its `=======` at line 4 but no `>>>>>>> REPLACE` before the next `<<<<<<< SEARCH` "
        "at line 6",
    ),
    case(
        "replace-without-search",
        "src/app.py\ndef first():\n=======\ndef one():\n>>>>>>> REPLACE\n",
        "format",
        "Line 5 of the answer has a `>>>>>>> REPLACE` without a `<<<<<<< SEARCH`",
    ),
    case(
        "second-search",
        "src/app.py\n<<<<<<< SEARCH\ndef first():\n<<<<<<< SEARCH\ndef second():\n=======\n"
        "def two():\n>>>>>>> REPLACE\n",
        "format",
        "has a second `<<<<<<< SEARCH` at line 4 before its `=======`",
    ),
    case(
        "unterminated",
        "src/app.py\n```\n<<<<<<< SEARCH\ndef first():\n",
        "format",
        "Block 1 (the `<<<<<<< SEARCH` at line 3 of the answer) is not terminated",
    ),
    case(
        "unterminated-after-divider",
        "src/app.py\n<<<<<<< SEARCH\ndef first():\n=======\ndef one():\n",
        "format",
        "ends after its `=======` at line 4 with no `>>>>>>> REPLACE`",
    ),
    case(
        "whole-unclosed-fence",
        "src/app.py\n```python\nprint(1)\n",
        "format",
        "never closed",
        fmt="whole",
    ),
    case(
        "whole-with-markers",
        whole("src/app.py", "<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n"),
        "format",
        "holds SEARCH/REPLACE markers",
        fmt="whole",
    ),
    case("no-block", "I would rename the function.", "format", "contains no SEARCH/REPLACE"),
    # Binary files and text.
    case(
        "binary-file",
        whole("logo.png", "not a png\n"),
        "binary",
        "logo.png is a binary file",
        fmt="whole",
    ),
    case("not-utf8-file", sr("latin1.txt", "caf\n", "cafe\n"), "binary", "not UTF-8"),
    case(
        "nul-in-replacement",
        sr("src/app.py", "    value = 1\n    return value\n\n\n", "    value = '\x00'\n"),
        "binary",
        "NUL byte",
    ),
    # Strict files.
    case(
        "not-allowed",
        sr("notes/todo.txt", "buy milk\n", "buy bread\n"),
        "not_allowed",
        "not among the files this task may change (strict files): README.md, src/app.py",
        strict=True,
    ),
]


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """The repository, and a folder outside it that must stay as it is."""
    root = tmp_path / "repo"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret\n")
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "src" / "link.py").symlink_to(outside / "secret.txt")
    (root / "dangling.txt").symlink_to(outside / "nothing-yet.txt")
    (root / "gitlink").symlink_to(root / ".git", target_is_directory=True)
    os.mkfifo(root / "pipe")  # reading it would hang
    return root, outside


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file's bytes and every symlink's target, by path."""
    found: dict[str, bytes | str] = {}
    for where, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(where) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_fifo():
                found[key] = "fifo"
            elif path.is_file():
                found[key] = path.read_bytes()
            else:
                found[key] = "folder"
    return found


@pytest.mark.parametrize("hostile", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_answer_is_refused_and_nothing_changes(
    hostile: Case, layout: tuple[Path, Path]
) -> None:
    root, outside = layout
    before = snapshot(root), snapshot(outside)
    policy = EditPolicy(root, allowed_files=ALLOWED if hostile.strict else None)
    application = apply_answer(hostile.answer(root), edit_format(hostile.fmt), policy)
    assert not application.ok
    assert [e.kind for e in application.errors] == [hostile.kind], application.errors
    assert hostile.fragment in application.errors[0].message
    with pytest.raises(ValueError):
        write_changes(application, policy)
    assert (snapshot(root), snapshot(outside)) == before


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


def test_ambiguous_and_unmatched_errors_point_at_the_lines(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    policy = EditPolicy(root)
    fmt = edit_format("search_replace")
    ambiguous = apply_answer(sr("src/app.py", "    value = 1\n", "    value = 2\n"), fmt, policy)
    assert ambiguous.errors[0].lines == (2, 7)
    assert ambiguous.errors[0].path == "src/app.py"
    missing = apply_answer(sr("src/app.py", "def secnod():\n", "def two():\n"), fmt, policy)
    assert missing.errors[0].lines == (6, 6)
    assert "def second():" in missing.errors[0].message


def test_a_bad_block_fails_the_answer_while_good_blocks_still_report(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    before = snapshot(root), snapshot(outside)
    answer = sr("README.md", "A demo project.\n", "A better project.\n") + new_file("../x.py")
    policy = EditPolicy(root)
    application = apply_answer(answer, edit_format("search_replace"), policy)
    assert [b.index for b in application.applied] == [1]
    assert [(e.kind, e.block and e.block.index) for e in application.errors] == [("unsafe", 2)]
    assert not application.ok
    with pytest.raises(ValueError):
        write_changes(application, policy)
    assert (snapshot(root), snapshot(outside)) == before


def test_write_changes_refuses_a_folder_that_became_a_symlink(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    policy = EditPolicy(root)
    application = apply_answer(
        sr("notes/todo.txt", "buy milk\n", "buy bread\n"), edit_format("search_replace"), policy
    )
    assert application.ok
    # Between applying and writing, the folder is swapped for a symlink to the outside.
    (root / "notes" / "todo.txt").unlink()
    (root / "notes").rmdir()
    (root / "notes").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with pytest.raises(EditRefused) as refused:
        write_changes(application, policy)
    assert refused.value.error.kind == "unsafe"
    assert "outside the repository" in refused.value.error.message
    assert snapshot(outside) == before
    assert not (outside / "todo.txt").exists()


def test_write_changes_refuses_a_file_that_became_a_symlink(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    policy = EditPolicy(root)
    application = apply_answer(whole("README.md", "# New\n"), edit_format("whole"), policy)
    assert application.ok
    (root / "README.md").unlink()
    (root / "README.md").symlink_to(outside / "secret.txt")
    with pytest.raises(EditRefused):
        write_changes(application, policy)
    assert (outside / "secret.txt").read_bytes() == b"secret\n"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/../lib.rs", "lib.rs"),
        ("./src//app.py", "src/app.py"),
        ("src\\app.py", "src/app.py"),
        ("src/.github/ci.yml", "src/.github/ci.yml"),
        (".gitignore", ".gitignore"),
    ],
)
def test_paths_inside_the_repository_are_normalised(
    path: str, expected: str, layout: tuple[Path, Path]
) -> None:
    root, _ = layout
    assert check_path(path, EditPolicy(root)) == expected


@pytest.mark.parametrize("path", ["", "   ", ".", "src/..", "\t"])
def test_empty_paths_are_unsafe(path: str, layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(EditRefused) as refused:
        check_path(path, EditPolicy(root))
    assert refused.value.error.kind == "unsafe"


def test_a_symlink_that_stays_inside_is_followed(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "docs").symlink_to(root / "notes", target_is_directory=True)
    policy = EditPolicy(root)
    application = apply_answer(
        sr("docs/todo.txt", "buy milk\n", "buy bread\n"), edit_format("search_replace"), policy
    )
    assert application.ok, application.errors
    # The real file is named, so that git stages what changed rather than the symlink.
    assert write_changes(application, policy) == ["notes/todo.txt"]
    assert (root / "notes" / "todo.txt").read_text() == "buy bread\n"
    assert (root / "docs").is_symlink()


RISKY = [
    (".github/workflows/ci.yml", "a CI workflow"),
    ("build.rs", "a Cargo build script"),
    ("crates/core/build.rs", "a Cargo build script"),
    ("setup.py", "a Python install script"),
    ("tests/conftest.py", "pytest configuration that runs before every test"),
    (".gitattributes", "git metadata (filters and attributes)"),
    (".gitmodules", "git metadata (submodules)"),
    (".pre-commit-config.yaml", "a git hook configuration"),
    (".gitlab-ci.yml", "a CI workflow"),
    ("pytest.ini", "pytest configuration"),
    (".cargo/config.toml", "cargo configuration (runners, wrappers, flags)"),
    ("sitecustomize.py", "code Python runs at every start"),
    (".github/actions/setup/action.yml", "a CI action"),
]


@pytest.mark.parametrize(("path", "kind"), RISKY)
def test_a_risky_file_is_changed_only_when_the_task_names_it(
    layout: tuple[Path, Path], path: str, kind: str
) -> None:
    root, _ = layout
    fmt = edit_format("search_replace")
    refused = apply_answer(new_file(path), fmt, EditPolicy(root))
    assert not refused.ok
    (error,) = refused.errors
    assert error.kind == "not_allowed"
    assert f"{path} is {kind}" in error.message
    assert "only when it names it" in error.message
    named = apply_answer(new_file(path), fmt, EditPolicy(root, named_files=frozenset({path})))
    assert named.ok and path in named.changes


def test_ordinary_files_named_like_nothing_risky_are_not_refused(
    layout: tuple[Path, Path],
) -> None:
    root, _ = layout
    fmt = edit_format("search_replace")
    for path in ("docs/workflows.md", "src/build.py", "tests/test_setup.py", "github/ci.yml"):
        assert apply_answer(new_file(path), fmt, EditPolicy(root)).ok, path
