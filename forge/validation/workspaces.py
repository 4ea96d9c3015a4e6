"""Cargo and uv workspaces as their manifests declare them: which folders are members.

Folders are repository-relative posix strings ("." for the root). Only folders that hold a
manifest are ever members, so member globs are matched against those instead of the disk.
"""

from __future__ import annotations

import posixpath
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

DEPENDENCY_TABLES = ("dependencies", "dev-dependencies", "build-dependencies")


def read_toml(path: Path) -> dict[str, Any]:
    """The file's tables, or {} when it cannot be read (the tool that reads it says why)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def inside(folder: str, parent: str) -> bool:
    """`folder` is `parent` or below it."""
    return parent == "." or folder == parent or folder.startswith(parent + "/")


def join(base: str, relative: str) -> str:
    joined = posixpath.normpath(posixpath.join("" if base == "." else base, relative.strip()))
    return "." if joined in ("", ".") else joined


def glob_match(folder: str, pattern: str) -> bool:
    """Whether `folder` matches a member glob, one path component per `*` and any number of
    components per `**`, as cargo's and uv's glob expansion on the disk would find it."""

    def match(parts: list[str], globs: list[str]) -> bool:
        if not globs:
            return not parts
        if globs[0] == "**":
            return any(match(parts[i:], globs[1:]) for i in range(len(parts) + 1))
        return bool(parts) and fnmatchcase(parts[0], globs[0]) and match(parts[1:], globs[1:])

    return match(_parts(folder), _parts(pattern))


def _parts(folder: str) -> list[str]:
    return [] if folder == "." else folder.split("/")


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class CargoWorkspace:
    """A Cargo.toml with a `[workspace]` table, and its members among the known crates."""

    folder: str
    excluded: tuple[str, ...]  # the folders its `exclude` names
    explicit: tuple[str, ...]  # its `members` entries taken literally: `exclude` yields to them
    members: frozenset[str]

    def excludes(self, folder: str) -> bool:
        """Cargo's rule: below an `exclude` entry and not below a literal `members` entry."""
        return any(inside(folder, e) for e in self.excluded) and not any(
            inside(folder, m) for m in self.explicit
        )


def cargo_workspace(folder: str, crates: dict[str, dict[str, Any]]) -> CargoWorkspace:
    """Its members as cargo finds them: the root package, folders its `members` globs match,
    and, followed from those, path dependencies inside the workspace folder; never one that
    `exclude` names. `crates` maps every known crate folder to its parsed Cargo.toml."""
    manifest = crates[folder]
    table = _table(manifest.get("workspace"))
    patterns = [join(folder, m) for m in _strings(table.get("members"))]
    ws = CargoWorkspace(
        folder,
        tuple(join(folder, e) for e in _strings(table.get("exclude"))),
        tuple(patterns),
        frozenset(),
    )
    members = {folder} if "package" in manifest else set()
    members |= {
        crate
        for crate in crates
        if any(glob_match(crate, p) for p in patterns) and not ws.excludes(crate)
    }
    shared = _table(table.get("dependencies"))
    queue = list(members)
    while queue:
        member = queue.pop()
        for dependency in _path_dependencies(member, crates.get(member, {}), folder, shared):
            usable = dependency in crates and inside(dependency, folder)
            if usable and dependency not in members and not ws.excludes(dependency):
                members.add(dependency)
                queue.append(dependency)
    return CargoWorkspace(ws.folder, ws.excluded, ws.explicit, frozenset(members))


def _path_dependencies(
    crate: str, manifest: dict[str, Any], workspace: str, shared: dict[str, Any]
) -> list[str]:
    """Folders of the crate's `path` dependencies, of every kind and platform."""
    tables = [manifest, *(_table(t) for t in _table(manifest.get("target")).values())]
    found = []
    for table in tables:
        for kind in (*DEPENDENCY_TABLES, "dev_dependencies", "build_dependencies"):
            for name, spec in _table(table.get(kind)).items():
                spec = _table(spec)
                if isinstance(spec.get("path"), str):
                    found.append(join(crate, spec["path"]))
                elif spec.get("workspace") is True:
                    path = _table(shared.get(name)).get("path")
                    if isinstance(path, str):
                        found.append(join(workspace, path))
    return found


def has_library(crate: str, manifest: dict[str, Any], files: frozenset[str]) -> bool:
    """Whether cargo finds a library target in the package: a `[lib]` table, or src/lib.rs."""
    if "package" not in manifest:
        return False
    if "lib" in manifest:
        return True
    autolib = _table(manifest.get("package")).get("autolib")
    return autolib is not False and join(crate, "src/lib.rs") in files


def is_cargo_fuzz(manifest: dict[str, Any]) -> bool:
    metadata = _table(_table(manifest.get("package")).get("metadata"))
    return metadata.get("cargo-fuzz") is True


def uv_members(folder: str, pyproject: dict[str, Any], projects: list[str]) -> list[str] | None:
    """The members of the uv workspace rooted here among the folders with a pyproject.toml,
    or None when `[tool.uv.workspace]` is not declared here."""
    table = _table(pyproject.get("tool")).get("uv")
    workspace = _table(table).get("workspace") if isinstance(table, dict) else None
    if not isinstance(workspace, dict):
        return None
    members = [join(folder, m) for m in _strings(workspace.get("members"))]
    excluded = [join(folder, e) for e in _strings(workspace.get("exclude"))]
    return [
        p
        for p in projects
        if p != folder
        and any(glob_match(p, m) for m in members)
        and not any(glob_match(p, e) for e in excluded)
    ]
