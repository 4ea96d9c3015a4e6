"""Git bundles: commits carried between machines as bytes, with no shared file system.

The Ray executor ships a task's starting point to a node as two bundles: the run's base with
its history (made once per run, fetched once per node), and the integration line's commits
since the base (small: the run's own work). The node sends its result back the same way: the
task's commit, on top of the head it started from. git writes bundles only from refs, so each
is made from a hidden ref of the run's (`refs/forge/ship/<run>`), never from a user's branch.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from pathlib import Path

from forge.execution.workspace import WorkspaceError

SHIP_REFS = "refs/forge/ship"


def _git(repo_dir: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {repo_dir}: {done.stderr.strip()}")
    return done.stdout.strip()


def make_bundle(repo_dir: Path, ref: str, commit: str, since: str | None = None) -> bytes:
    """`commit` (and its history, or only what `since` lacks) as a bundle whose one ref is
    `ref`; the ref is set to `commit` first. Callers sharing a ref hold a lock."""
    _git(repo_dir, "update-ref", ref, commit)
    with tempfile.TemporaryDirectory(prefix="forge-bundle-") as folder:
        path = Path(folder) / "out.bundle"
        exclude = [f"^{since}"] if since else []
        _git(repo_dir, "bundle", "create", "--quiet", str(path), ref, *exclude)
        return path.read_bytes()


def take_bundle(repo_dir: Path, data: bytes, ref: str) -> str:
    """Store a bundle's objects in the repository and point `ref` at its commit, which is
    returned. Nothing else moves: no branch checked out, no index, no working tree. A bundle
    whose prerequisites the repository lacks is refused by git, with its words."""
    with tempfile.TemporaryDirectory(prefix="forge-bundle-") as folder:
        path = Path(folder) / "in.bundle"
        path.write_bytes(data)
        heads = _git(repo_dir, "bundle", "unbundle", str(path)).split()
    if not heads:
        raise WorkspaceError("the bundle holds no commit")
    commit = heads[0]
    _git(repo_dir, "update-ref", ref, commit)
    return commit


class Shipping:
    """The driver's bundles for one run, each made once and shared by every task that starts
    from the same head (the `put` callback stores one in Ray's object store)."""

    def __init__(self, repo_dir: Path, run_id: str, base: str) -> None:
        from forge.execution.workspace import branch_part

        self.repo_dir = repo_dir
        self.base = base
        self.ref = f"{SHIP_REFS}/{branch_part(run_id)}"
        self._lock = threading.Lock()
        self._full: bytes | None = None
        self._increments: dict[str, bytes] = {}
        self.sizes: dict[str, int] = {}  # by commit (the base's full bundle under "base")

    def base_bundle(self) -> bytes:
        with self._lock:
            if self._full is None:
                self._full = make_bundle(self.repo_dir, self.ref, self.base)
                self.sizes["base"] = len(self._full)
            return self._full

    def increment(self, head: str) -> bytes | None:
        """The line's commits from the base to `head`; None when `head` is the base."""
        if head == self.base:
            return None
        with self._lock:
            if head not in self._increments:
                # Only the latest is kept: tasks start from the line's newest head.
                data = make_bundle(self.repo_dir, self.ref, head, since=self.base)
                self._increments = {head: data}
                self.sizes[head] = len(data)
            return self._increments[head]

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
