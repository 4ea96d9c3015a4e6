"""What a model's answer may touch: paths inside the repository, text files, allowed files.

Model output is untrusted input. Every block's path goes through `check_path` before its file is
read, and again right before it is written, because a symlink can appear in between.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from forge.execution.edits.model import EditError, EditPolicy, EditRefused

WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# Control and format characters and Unicode line breaks: none belongs in a file name; some let
# a path hide what it is in a terminal or a log (bidi overrides), and macOS ignores some
# (zero-width joiners), which would let ".g\u200cit" reach .git there.
HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def check_path(path: str, policy: EditPolicy) -> str:
    """The normalised repository-relative posix path, or raise EditRefused."""
    parts = _relative_parts(path)
    relative = "/".join(parts)
    root = os.path.realpath(policy.root)
    _check_symlinks(path, root, parts)
    if policy.allowed_files is not None and relative not in _normalised(policy.allowed_files):
        allowed = ", ".join(sorted(policy.allowed_files)) or "(none)"
        raise EditRefused(
            EditError(
                f"{relative} is not among the files this task may change (strict files): "
                f"{allowed}. Put the change in one of those files.",
                "not_allowed",
                path=relative,
            )
        )
    if (kind := risky_kind(relative)) is not None and relative not in policy.named_files:
        raise EditRefused(
            EditError(
                f"{relative} is {kind}: it runs on every build, test run, checkout or CI job, so "
                "a task may change it only when it names it. Make the change without it.",
                "not_allowed",
                path=relative,
            )
        )
    return relative


# Files that run code (or decide what runs) outside the task's own change: on every build,
# test run, checkout or CI job. A model's answer changes one only when the task names it.
RISKY_NAMES = {
    "build.rs": "a Cargo build script",
    "setup.py": "a Python install script",
    "conftest.py": "pytest configuration that runs before every test",
    ".gitmodules": "git metadata (submodules)",
    ".gitattributes": "git metadata (filters and attributes)",
    ".pre-commit-config.yaml": "a git hook configuration",
    "pytest.ini": "pytest configuration",
    ".pytest.ini": "pytest configuration",
    "pytest.toml": "pytest configuration",
    ".pytest.toml": "pytest configuration",
    "tox.ini": "test configuration (tox, pytest)",
    "noxfile.py": "test configuration (nox)",
    "sitecustomize.py": "code Python runs at every start",
    "usercustomize.py": "code Python runs at every start",
    ".gitlab-ci.yml": "a CI workflow",
    ".travis.yml": "a CI workflow",
    "azure-pipelines.yml": "a CI workflow",
    "Jenkinsfile": "a CI workflow",
}
RISKY_FOLDERS = {
    ".github/workflows": "a CI workflow",
    ".github/actions": "a CI action",
    ".cargo": "cargo configuration (runners, wrappers, flags)",
    ".circleci": "a CI workflow",
    ".githooks": "a git hook",
    ".husky": "a git hook",
}


def risky_kind(relative: str) -> str | None:
    """What kind of risky file `relative` (a repository path) is, or None."""
    name = relative.rsplit("/", 1)[-1]
    if name in RISKY_NAMES:
        return RISKY_NAMES[name]
    for folder, kind in RISKY_FOLDERS.items():
        if relative.startswith(folder + "/") or f"/{folder}/" in f"/{relative}":
            return kind
    return None


def _relative_parts(path: str) -> list[str]:
    def refuse(why: str) -> EditRefused:
        return EditRefused(EditError(f"Refused path {path!r}: {why}.", "unsafe"))

    if not path.strip():
        raise refuse("the path is empty")
    if hidden := [c for c in path if unicodedata.category(c) in HIDDEN]:
        raise refuse(f"it contains the control character {hidden[0]!r}")
    if path.startswith("~"):
        raise refuse("a path in a home folder is outside the repository; use a relative path")
    if path.startswith(("/", "\\")) or WINDOWS_DRIVE.match(path):
        raise refuse("absolute paths are not allowed; write the path relative to the repository")
    # A model on Windows habits writes backslashes; treating them as separators also keeps
    # "..\\..\\x" from slipping past the ".." check.
    written = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
    if any(_is_git(part) for part in written):
        raise refuse("files under .git are never edited")
    parts: list[str] = []
    for part in written:
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise refuse("it leaves the repository")
    if not parts:
        raise refuse("it names the repository itself, not a file")
    if path.endswith(("/", "\\")):
        raise EditRefused(EditError(f"{path!r} names a folder, not a file.", "format"))
    return parts


def _is_git(part: str) -> bool:
    # Windows drops trailing dots and spaces, so ".git." is ".git" there.
    return part.rstrip(". ").lower() == ".git"


def _check_symlinks(path: str, root: str, parts: list[str]) -> None:
    """Refuse a path whose existing part resolves outside the repository or into its .git."""
    for depth in range(1, len(parts) + 1):
        here = os.path.join(root, *parts[:depth])
        if not os.path.lexists(here):
            break
        resolved = os.path.realpath(here)
        if os.path.commonpath([root, resolved]) != root:
            raise EditRefused(
                EditError(
                    f"Refused path {path!r}: {'/'.join(parts[:depth])} is a symlink that leads "
                    "outside the repository.",
                    "unsafe",
                    path="/".join(parts),
                )
            )
        if any(_is_git(part) for part in Path(os.path.relpath(resolved, root)).parts):
            raise EditRefused(
                EditError(
                    f"Refused path {path!r}: it leads into .git through a symlink.",
                    "unsafe",
                    path="/".join(parts),
                )
            )


def _normalised(paths: frozenset[str]) -> set[str]:
    return {
        "/".join(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))
        for path in paths
    }


def read_text_file(relative: str, policy: EditPolicy) -> str | None:
    """The file's text, None when it does not exist; refuses binary files and folders."""
    target = Path(os.path.realpath(os.path.join(policy.root, relative)))
    if not target.exists():
        folder = next(parent for parent in target.parents if parent.exists())
        if not folder.is_dir():
            raise EditRefused(
                EditError(
                    f"{relative} cannot be created: {folder.name} is a file, not a folder.",
                    "format",
                    path=relative,
                )
            )
        return None
    if not target.is_file():
        # A folder, or a FIFO or device that reading would hang on or never finish.
        what = "a folder" if target.is_dir() else "not a regular file"
        raise EditRefused(EditError(f"{relative} is {what}.", "format", path=relative))
    data = target.read_bytes()
    try:
        if b"\0" in data:
            raise UnicodeError
        return data.decode("utf-8")
    except UnicodeError:
        raise EditRefused(
            EditError(
                f"{relative} is a binary file (not UTF-8 text); forge does not edit binary files.",
                "binary",
                path=relative,
            )
        ) from None


def check_new_text(text: str, relative: str) -> None:
    """Refuse replacement text that would make the file binary."""
    why = ""
    if "\0" in text:
        why = "contains a NUL byte"
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            why = "contains characters that cannot be written as UTF-8"
    if why:
        raise EditRefused(
            EditError(
                f"The new text for {relative} {why}; forge writes text files only.",
                "binary",
                path=relative,
            )
        )
