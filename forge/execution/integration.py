"""The run's integration line: validated task commits merged one at a time, without a checkout.

While a run is going, its integration head is the hidden ref `refs/forge/runs/<run>`; task
branches are `forge/<run>/<task>`. Merges use `git merge-tree --write-tree`, so neither the
user's working tree nor their index is involved. A task commit made on the current head is
fast-forwarded; one made on an older head is re-created on the new head with its message and
trailers (the history stays linear); a conflict names its files. When the run ends, the task
branches are deleted and the branch `forge/<run>` is set to the integration head: git cannot
hold a branch `forge/<run>` beside branches `forge/<run>/<task>`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forge.errors import UsageError
from forge.execution.workspace import FALLBACK_IDENTITY, WorkspaceError, branch_part

RUN_REFS = "refs/forge/runs"


@dataclass(frozen=True)
class Merge:
    head: str | None  # the new integration head, None on a conflict
    conflicts: tuple[str, ...] = ()
    previous: str = ""  # the head it goes on
    fast_forward: bool = False  # the task's own, validated commit: nothing new to check
    empty: bool = False  # the change is already on the line: nothing to add


class Integration:
    def __init__(self, repo_dir: Path, run_id: str) -> None:
        self.repo_dir = repo_dir
        self.run_id = run_id
        self.ref = f"{RUN_REFS}/{branch_part(run_id)}"
        self.branch = f"forge/{branch_part(run_id)}"
        self._head: str | None = None
        self._known_identity: bool | None = None  # whether git knows the user, asked once

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=self.repo_dir,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = self.run(*args, env=env)
        if done.returncode != 0:
            command = " ".join(args)
            raise WorkspaceError(f"git {command} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self, base: str) -> None:
        self.git("update-ref", self.ref, base)
        self._head = base

    def head(self) -> str:
        """The line's head; this process is the only one moving it, so it is kept in memory."""
        if self._head is None:
            self._head = self.git("rev-parse", self.ref)
        return self._head

    def resume(self) -> str:
        """Before tasks run again: the finished branch goes, so task branches can exist."""
        for path, branch in self._checked_out():
            if branch == self.branch:
                raise UsageError(
                    f"{self.branch} is checked out; switch to another branch to resume the run "
                    "(forge re-creates that branch when the run ends)"
                )
            if branch.startswith(f"{self.branch}/"):
                raise UsageError(
                    f"{branch} is checked out in {path}; switch to another branch to resume "
                    "the run (the task's branch is made again where the task starts over)"
                )
        if self._exists(f"refs/heads/{self.branch}"):
            self.git("update-ref", self.ref, self.git("rev-parse", f"refs/heads/{self.branch}"))
            self.git("branch", "-D", self.branch)
        return self.head()

    def prepare(self, commit: str, parent: str | None = None, onto: str | None = None) -> Merge:
        """The commit that would put `commit`'s change on the line; the ref does not move.
        `parent`, when the caller knows it, is `commit`'s parent (the head its task started on);
        `onto` is a head prepared but not yet advanced to (a batch of merges), else the line's."""
        head = onto or self.head()
        if parent is None:
            parent = self.git("rev-parse", f"{commit}^")
        if parent == head:
            return Merge(commit, previous=head, fast_forward=True)
        done = self.run("merge-tree", "--write-tree", "--name-only", "--no-messages", head, commit)
        lines = done.stdout.strip().splitlines()
        if done.returncode == 1:
            conflicts = tuple(dict.fromkeys(line for line in lines[1:] if line))
            return Merge(None, conflicts, previous=head)
        if done.returncode != 0 or not lines:
            raise WorkspaceError(f"git merge-tree failed: {done.stderr.strip()}")
        # One git process for what both commits say: the head's tree, the commit's author and
        # message (kept when the change is re-created on the head). No field can hold a NUL.
        layout = "--format=%T%x00%an%x00%ae%x00%aI%x00%B%x00"
        fields = self.git("show", "--no-patch", layout, head, commit).split("\0")
        if lines[0] == fields[0].strip():
            return Merge(head, previous=head, empty=True)
        name, email, date, message = fields[6:10]
        recreated = self._recreate((name, email, date), message.rstrip("\n"), lines[0], head)
        return Merge(recreated, previous=head)

    def advance(self, merge: Merge) -> None:
        """Move the line to the prepared head (only if nobody moved it meanwhile)."""
        assert merge.head is not None
        if merge.head != merge.previous:
            self.git("update-ref", self.ref, merge.head, merge.previous)
            self._head = merge.head

    def _recreate(self, author: tuple[str, str, str], message: str, tree: str, head: str) -> str:
        """A change as a new commit on `head`: the same message, author and trailers."""
        env = {}
        if self._known_identity is None:
            self._known_identity = bool(self._config("user.name") and self._config("user.email"))
        if not self._known_identity:
            env = {k: v for k, v in FALLBACK_IDENTITY.items() if k not in os.environ}
        env |= {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1]}
        env["GIT_AUTHOR_DATE"] = author[2]
        return self.git("commit-tree", tree, "-p", head, "-m", message, env=env)

    def merged_tasks(self, base: str) -> set[str]:
        """Tasks whose commits are on the integration line: what a resumed run must not redo."""
        text = self.git(
            "log", "--format=%(trailers:key=Forge-Task,valueonly)", f"{base}..{self.ref}"
        )
        return {line.strip() for line in text.splitlines() if line.strip()}

    def on_line(self, base: str) -> set[str]:
        """The commits of the integration line, its base included."""
        return {base, *self.git("rev-list", f"{base}..{self.ref}").split()}

    def finish(self, base: str, keep_worktrees: tuple[Path, ...] = ()) -> str | None:
        """Task branches removed, `forge/<run>` at the integration head; returns the branch.
        A line still at `base` (nothing merged) makes no branch: there is nothing to review,
        and `--resume` reads the line from the run's hidden ref."""
        for tree in keep_worktrees:
            subprocess.run(["git", "checkout", "--quiet", "--detach"], cwd=tree, check=False)
        prefix = f"refs/heads/{self.branch}/"
        listed = self.git("for-each-ref", "--format=%(refname)", prefix)
        if listed:
            # One git process for every task branch, however many tasks the run had.
            deletions = "".join(f"delete {ref}\n" for ref in listed.splitlines())
            done = subprocess.run(
                ["git", "update-ref", "--stdin"],
                cwd=self.repo_dir,
                input=deletions,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise WorkspaceError(f"git update-ref failed: {done.stderr.strip()}")
        if self.head() == base:
            return None
        self.git("branch", "-f", self.branch, self.head())
        return self.branch

    def _checked_out(self) -> list[tuple[str, str]]:
        """(folder, branch) of every worktree of the user's with a branch checked out; the
        run's own worktrees (under forge's home, left by a crashed process) are not theirs."""
        from forge.execution.workspace import worktrees_home

        home = worktrees_home().resolve()
        found, path = [], ""
        for line in self.git("worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                path = line.removeprefix("worktree ")
            elif line.startswith("branch refs/heads/") and not Path(path).resolve().is_relative_to(
                home
            ):
                found.append((path, line.removeprefix("branch refs/heads/")))
        return found

    def _exists(self, ref: str) -> bool:
        try:
            self.git("rev-parse", "--verify", "--quiet", ref)
        except WorkspaceError:
            return False
        return True

    def _config(self, key: str) -> str | None:
        try:
            return self.git("config", "--get", key) or None
        except WorkspaceError:
            return None
