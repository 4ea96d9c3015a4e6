"""Git bundles: commits carried between machines as bytes, with no shared file system.

The Ray executor ships a task's starting point to a node as bundles: the run's base with its
history (made once per run, fetched once per node), then the integration line's newer commits in
small pieces a node takes only when it lacks them (see Shipping). The node sends its result
back the same way: the task's commit, on top of the head it started from. git writes bundles
only from refs, so each is made from a hidden ref of the run's (`refs/forge/ship/<run>`),
never from a user's branch.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.execution.workspace import WorkspaceError

SHIP_REFS = "refs/forge/ship"
# git's `bundle unbundle` takes a file name, not "-"; where the system names standard input as
# a file, a bundle is given on a pipe.
STDIN = Path("/dev/stdin")
CHECKPOINT = 32  # pieces between two checkpoints of the whole line


def _git(repo_dir: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {repo_dir}: {done.stderr.strip()}")
    return done.stdout.strip()


def _git_bytes(repo_dir: Path, args: list[str], given: bytes | None = None) -> bytes:
    """git's standard output as bytes, `given` on its standard input."""
    done = subprocess.run(
        ["git", *args], cwd=repo_dir, input=given, capture_output=True, check=False
    )
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise WorkspaceError(f"git {' '.join(args[:2])} failed in {repo_dir}: {stderr}")
    return done.stdout


def make_bundle(
    repo_dir: Path, ref: str, commit: str, since: str | None = None, *, ref_is_set: bool = False
) -> bytes:
    """`commit` (and its history, or only what `since` lacks) as a bundle whose one ref is
    `ref`; the ref is set to `commit` first, unless the caller knows it points there already
    (`ref_is_set`: a branch just committed on). Callers sharing a ref hold a lock."""
    if not ref_is_set:
        _git(repo_dir, "update-ref", ref, commit)
    exclude = [f"^{since}"] if since else []
    # Written to standard output ("-"): no file to make, read and remove.
    return _git_bytes(repo_dir, ["bundle", "create", "--quiet", "-", ref, *exclude])


def take_bundle(repo_dir: Path, data: bytes, ref: str) -> str:
    """Store a bundle's objects in the repository and point `ref` at its commit, which is
    returned. Nothing else moves: no branch checked out, no index, no working tree. A bundle
    whose prerequisites the repository lacks is refused by git, with its words."""
    if STDIN.exists():  # read from a pipe: no file to write and remove
        heads = _git_bytes(repo_dir, ["bundle", "unbundle", str(STDIN)], data).decode().split()
    else:
        with tempfile.TemporaryDirectory(prefix="forge-bundle-") as folder:
            path = Path(folder) / "in.bundle"
            path.write_bytes(data)
            heads = _git(repo_dir, "bundle", "unbundle", str(path)).split()
    if not heads:
        raise WorkspaceError("the bundle holds no commit")
    commit = heads[0]
    _git(repo_dir, "update-ref", ref, commit)
    return commit


@dataclass(frozen=True)
class Piece:
    """The line's commits from `since` to `head`, as a bundle stored in the object store."""

    head: str
    since: str
    data: Any  # Ray's object ref of the bundle's bytes


class Shipping:
    """The driver's bundles for one run: the base with its history, made once, and a chain of
    small pieces along the integration line, each the commits from the previous piece's head to
    its own, made once and shared by every task that starts from that head (`put` stores one
    in Ray's object store). Every CHECKPOINT pieces, a checkpoint holds the whole line since
    the base, so a task carries at most CHECKPOINT + 1 pieces to a node that is behind, whatever
    the length of the run. A node applies only the pieces it lacks, oldest first."""

    def __init__(self, repo_dir: Path, run_id: str, base: str, put: Callable[[bytes], Any]) -> None:
        from forge.execution.workspace import branch_part

        self.repo_dir = repo_dir
        self.base = base
        self.put = put
        self.ref = f"{SHIP_REFS}/{branch_part(run_id)}"
        self._lock = threading.Lock()
        self._base: Any = None
        self._chain: list[Piece] = []  # since the last checkpoint
        self._checkpoint: Piece | None = None
        self._shipped: dict[str, list[Piece]] = {}  # head -> what a task from it carries
        self.sizes: list[int] = []  # of every bundle made, the base's first
        self.seconds: list[float] = []  # to make each

    def base_object(self) -> Any:
        with self._lock:
            if self._base is None:
                self._base = self.put(self._bundle(self.base, None))
            return self._base

    def pieces(self, head: str) -> list[Piece]:
        """What a task starting from `head` carries: the checkpoint and the chain up to `head`
        (nothing when `head` is the base)."""
        with self._lock:
            if head == self.base:
                return []
            if head not in self._shipped:
                self._extend(head)
            return self._shipped[head]

    def _extend(self, head: str) -> None:
        last = self._chain[-1].head if self._chain else None
        last = last or (self._checkpoint.head if self._checkpoint else self.base)
        if not self._is_ancestor(last, head):
            # An older head than the chain's (a task that read the line just before a merge):
            # a piece of its own from the base.
            self._shipped[head] = [Piece(head, self.base, self.put(self._bundle(head, self.base)))]
            return
        if len(self._chain) >= CHECKPOINT:
            self._checkpoint = Piece(head, self.base, self.put(self._bundle(head, self.base)))
            self._chain = []
        else:
            self._chain.append(Piece(head, last, self.put(self._bundle(head, last))))
        carried = [self._checkpoint] if self._checkpoint else []
        self._shipped[head] = [*carried, *self._chain]

    def _bundle(self, head: str, since: str | None) -> bytes:
        started = time.perf_counter()
        data = make_bundle(self.repo_dir, self.ref, head, since)
        self.seconds.append(time.perf_counter() - started)
        self.sizes.append(len(data))
        return data

    def _is_ancestor(self, older: str, newer: str) -> bool:
        done = subprocess.run(
            ["git", "merge-base", "--is-ancestor", older, newer],
            cwd=self.repo_dir,
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def close(self) -> None:
        """The run's shipping ref goes; the commits it held are on the line or in no use."""
        with self._lock:
            subprocess.run(
                ["git", "update-ref", "-d", self.ref],
                cwd=self.repo_dir,
                capture_output=True,
                check=False,
                env={**os.environ},
            )
