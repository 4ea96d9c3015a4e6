"""What the repository says about the files a task names: their size and how widely used they are.

One `Codebase` per repository root is kept for the life of the process, and everything in it is
computed on first need: the list of tracked files only when a task names a file, a file's line
count and its reference count only for files a task names. A task that names no file never
starts git.
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from forge.validation.tree import git_root

# File stems too common to count references by ("mod.rs", "__init__.py"): the folder names them.
GENERIC_STEMS = frozenset({"mod", "lib", "main", "index", "__init__", "__main__", "init", "app"})
MIN_STEM_LENGTH = 3
GIT_TIMEOUT_SECONDS = 10
IDENTIFIER = re.compile(r"[A-Za-z_]\w{2,}")
# Where tests live, as git pathspecs.
TESTS = ("*test*", "*spec*")


def _is_test(path: str) -> bool:
    pure = PurePosixPath(path)
    return (
        pure.name.startswith("test")
        or pure.stem.endswith(("_test", "_spec"))
        or any(part in ("tests", "test", "testing", "spec") for part in pure.parts[:-1])
    )


@dataclass(frozen=True)
class FileFacts:
    """A tracked file: its repository path, size and how many other tracked files name it."""

    path: str
    lines: int
    size_bytes: int
    referenced_by: int


@dataclass(frozen=True)
class NamedFile:
    """A file the task names; `found` when the repository tracks it (sizes are then real)."""

    path: str
    found: bool
    lines: int | None
    referenced_by: int | None
    tokens: int


@dataclass
class Codebase:
    root: Path
    _tracked: tuple[str, ...] | None = None
    _by_name: dict[str, list[str]] = field(default_factory=dict)
    _facts: dict[str, FileFacts | None] = field(default_factory=dict)
    _tested: dict[str, bool] = field(default_factory=dict)
    _defined: dict[str, str | None] = field(default_factory=dict)
    _listing: threading.Lock = field(default_factory=threading.Lock)  # tasks route in threads

    def facts(self, named: str) -> FileFacts | None:
        """Facts about the tracked file a task calls `named`, or None when none matches."""
        if named not in self._facts:
            path = self._resolve(named)
            self._facts[named] = None if path is None else self._measure(path)
        return self._facts[named]

    def defining(self, symbol: str) -> str | None:
        """The tracked Python file that defines `symbol` (a function or class), if one does."""
        name = symbol.rsplit(".", 1)[-1]
        if not IDENTIFIER.fullmatch(name):
            return None
        if name not in self._defined:
            pattern = rf"^\s*(async\s+)?(def|class)\s+{name}\b"
            listed = self._git("grep", "-l", "-z", "-E", "-I", "-e", pattern, "--", "*.py")
            found = sorted((p for p in listed.split("\0") if p and not _is_test(p)), key=len)
            self._defined[name] = found[0] if found else None
        return self._defined[name]

    def tested(self, files: tuple[NamedFile, ...]) -> dict[str, bool]:
        """For each named file the repository has: whether a test file names its module."""
        return {f.path: self._is_tested(f.path) for f in files if f.found}

    def _is_tested(self, path: str) -> bool:
        if path not in self._tested:
            pure = PurePosixPath(path)
            stem = pure.parent.name if pure.stem in GENERIC_STEMS else pure.stem
            named = any(_is_test(p) and stem in PurePosixPath(p).name for p in self.tracked())
            if _is_test(path) or len(stem) < MIN_STEM_LENGTH or named:
                self._tested[path] = True
            else:
                listed = self._git("grep", "-l", "-z", "-w", "-F", "-I", "-e", stem, "--", *TESTS)
                self._tested[path] = any(p for p in listed.split("\0"))
        return self._tested[path]

    def tracked(self) -> tuple[str, ...]:
        with self._listing:
            if self._tracked is None:
                listed = self._git("ls-files", "-z")
                for path in (tracked := tuple(p for p in listed.split("\0") if p)):
                    self._by_name.setdefault(PurePosixPath(path).name, []).append(path)
                self._tracked = tracked
            return self._tracked

    def _resolve(self, named: str) -> str | None:
        """The tracked path `named` spells out, or the shortest one ending with it."""
        wanted = named.removeprefix("./")
        self.tracked()
        # "src/a.py" names "lib/src/a.py"; a traceback's "/usr/lib/.../pkg/a.py" names "pkg/a.py".
        candidates = [
            p
            for p in self._by_name.get(PurePosixPath(wanted).name, ())
            if p == wanted or p.endswith("/" + wanted) or wanted.endswith("/" + p)
        ]
        return min(candidates, key=len) if candidates else None

    def _measure(self, path: str) -> FileFacts | None:
        try:
            data = (self.root / path).read_bytes()
        except OSError:
            return None
        return FileFacts(path, data.count(b"\n"), len(data), self._references(path))

    def _references(self, path: str) -> int:
        """Tracked files other than `path` that mention its module name as a whole word."""
        pure = PurePosixPath(path)
        stem = pure.parent.name if pure.stem in GENERIC_STEMS else pure.stem
        if len(stem) < MIN_STEM_LENGTH:
            return 0
        listed = self._git("grep", "-l", "-z", "-w", "-F", "-I", "-e", stem)
        return sum(1 for p in listed.split("\0") if p and p != path)

    def _git(self, *args: str) -> str:
        """git's answer, or nothing: a missing git or an odd repository only loses detail."""
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=self.root,
                capture_output=True,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.decode("utf-8", "replace") if done.returncode in (0, 1) else ""


_CODEBASES: dict[Path, Codebase] = {}


def codebase_at(start: Path) -> Codebase | None:
    """The cached index of the repository that holds `start`, or None outside a repository."""
    root = git_root(start)
    if root is None:
        return None
    if root not in _CODEBASES:
        _CODEBASES[root] = Codebase(root)
    return _CODEBASES[root]
