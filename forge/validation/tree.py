"""The files a validation looks at: what git tracks or would track, read without any tool."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SKIP_DIRS = {
    ".git",
    "target",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    "build",
    "dist",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


def git_root(start: Path) -> Path | None:
    """The git work tree containing `start` (the nearest folder with a `.git` folder or, in a
    worktree or submodule, a `.git` file), None outside one. No git process is needed."""
    resolved = start.resolve()
    for folder in (resolved, *resolved.parents):
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
    return None


def repository_root(path: Path) -> Path:
    """The git work tree containing `path`, else `path` itself."""
    return git_root(path) or path.resolve()


def list_files(root: Path) -> tuple[str, ...]:
    """Files git tracks or would track (untracked but not ignored), relative, sorted.

    Untracked files count because pytest collects them. Outside git: every file, minus the
    usual build and environment folders.
    """
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
    )
    if done.returncode == 0:
        names = {n for n in done.stdout.decode("utf-8", "replace").split("\0") if n}
        # Build output and bytecode that a project forgot to ignore would change on every run.
        kept = (n for n in names if not SKIP_DIRS.intersection(n.split("/")[:-1]))
        # Only what is a file here: not a deleted one, a submodule, a nested repository, a file
        # outside a sparse checkout or a broken link.
        base = str(root)
        return tuple(sorted(n for n in kept if os.path.isfile(os.path.join(base, n))))
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            found.append((Path(folder) / name).relative_to(root).as_posix())
    return tuple(sorted(found))
