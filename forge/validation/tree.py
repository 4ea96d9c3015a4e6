"""The files a validation looks at: what git tracks or would track, read without any tool."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Listing:
    """The files a validation looks at, and the content ids git already holds for them."""

    files: tuple[str, ...]
    # Git's blob id of each regular file the work tree holds exactly as git's index does: the
    # validation cache keys those by it instead of reading them.
    ids: Mapping[str, str] = field(default_factory=dict)


def list_files(root: Path) -> tuple[str, ...]:
    """Files git tracks or would track (untracked but not ignored), relative, sorted."""
    return listing(root).files


def listing(root: Path) -> Listing:
    """Files git tracks or would track (untracked but not ignored), relative, sorted, with the
    ids git knows for the unchanged ones; one git process.

    Untracked files count because pytest collects them. Outside git: every file, minus the
    usual build and environment folders, and no ids.
    """
    # -v: lower-case tags for files marked assume-unchanged, whose ids are not to be trusted;
    # -m: files whose content differs from the index ("C"), which git compares when a time
    # stamp alone cannot tell.
    command = ["git", "ls-files", "-z", "-v", "-s", "--cached", "--modified", "--others"]
    done = subprocess.run(
        [*command, "--exclude-standard"],
        cwd=root,
        capture_output=True,
    )
    if done.returncode != 0:
        return Listing(_walk(root))
    names: set[str] = set()
    ids: dict[str, str] = {}
    changed: set[str] = set()
    for entry in done.stdout.decode("utf-8", "replace").split("\0"):
        tag, _, rest = entry.partition(" ")
        if tag == "?":  # untracked: "? NAME"
            names.add(rest)
            continue
        info, _, name = rest.partition("\t")  # "TAG MODE ID STAGE\tNAME"
        if not name:
            continue
        if tag == "C":
            changed.add(name)
            continue
        names.add(name)
        mode, object_id, stage = [*info.split(" "), "", "", ""][:3]
        # Only plain files: a link's id is its target's name, not the content read through it.
        if tag == "H" and stage == "0" and mode in ("100644", "100755"):
            ids[name] = object_id
    # Build output and bytecode that a project forgot to ignore would change on every run.
    kept = (n for n in names if not SKIP_DIRS.intersection(n.split("/")[:-1]))
    # Only what is a file here: not a deleted one, a submodule, a nested repository, a file
    # outside a sparse checkout or a broken link.
    base = str(root)
    files = tuple(sorted(n for n in kept if os.path.isfile(os.path.join(base, n))))
    return Listing(files, {n: ids[n] for n in files if n in ids and n not in changed})


def content_key(root: Path, name: str, ids: Mapping[str, str]) -> bytes:
    """What a cache key holds for a file's content: git's id when the listing has one (nothing
    is read), else a hash of the bytes. The two kinds never meet, so a line-ending filter that
    makes git's id differ from the bytes cannot make two different files look the same."""
    known = ids.get(name)
    if known is not None:
        return b"git " + known.encode()
    try:
        return b"file " + hashlib.sha256((root / name).read_bytes()).digest()
    except OSError:
        return b"unreadable"


def _walk(root: Path) -> tuple[str, ...]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            found.append((Path(folder) / name).relative_to(root).as_posix())
    return tuple(sorted(found))
