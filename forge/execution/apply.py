"""`--apply`: move the user's branch to the run's result, only when nothing can be lost."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)


def fast_forward(repo: Path, branch: str | None, *, state: str, base: str) -> str:
    """Fast-forward the current branch to `branch`, or say why not and change nothing.

    Only a run that finished every task, started from the commit the branch is on now: a
    partial run, or one from another base, is for the user to review and merge by hand.
    """
    if branch is None:
        return "--apply: the run produced no branch; nothing applied"
    if state != "done":
        return f"--apply: the run is {state}, not done; nothing applied (review {branch} first)"
    current = _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD").stdout.strip()
    if not current:
        return "--apply: HEAD is detached; nothing applied (merge the branch yourself)"
    changed = _git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    if changed:
        return (
            f"--apply: your working tree has uncommitted changes; nothing applied "
            f"(commit or stash them, then `git merge --ff-only {branch}`)"
        )
    head = _git(repo, "rev-parse", "HEAD").stdout.strip()
    if head != base:
        return (
            f"--apply: the run started from {base[:10]}, but {current} is at {head[:10]}; "
            f"nothing applied (merge or rebase {branch} yourself)"
        )
    if _git(repo, "merge-base", "--is-ancestor", "HEAD", branch).returncode != 0:
        return (
            f"--apply: {current} has moved on since the run started, so {branch} is not a "
            f"fast-forward; nothing applied (merge or rebase it yourself)"
        )
    done = _git(repo, "merge", "--ff-only", "--quiet", branch)
    if done.returncode != 0:
        return f"--apply: git refused the fast-forward ({done.stderr.strip()}); nothing applied"
    return f"--apply: {current} fast-forwarded to {branch}"
