"""Worktrees: where a task's attempts happen, away from the user's checkout.

Each task gets a git worktree on its own branch `forge/<run>/<task>`, made from a base commit. The
worktree lives under forge's home, not inside the repository, so it never appears in the user's
`git status`; creating it touches neither the user's working tree, nor the index, nor the branch
they are on. A failed task leaves its branch at the base; the worktree is removed at the end unless
the user asks to keep it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forge.errors import ForgeError, UsageError
from forge.home import forge_home
from forge.validation.tree import GIT_LOCATION

if TYPE_CHECKING:
    from git import Repo

    from forge.config.schema import ValidationConfig
    from forge.validation.types import ValidationReport

# Used only when neither the repository nor the user configures an identity (CI machines).
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "forge",
    "GIT_AUTHOR_EMAIL": "forge@localhost",
    "GIT_COMMITTER_NAME": "forge",
    "GIT_COMMITTER_EMAIL": "forge@localhost",
}
BRANCH_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256
# git 2.39 races when worktrees are added or removed at once ("failed to read
# .git/worktrees/X/commondir"): one at a time within a process, and a retry for other processes.
WORKTREE_LOCK = threading.Lock()
WORKTREE_TRIES = 5
KNOWN_IDENTITY: dict[Path, bool] = {}  # per repository: whether git knows the user (asked once)
# A worktree to a task's branch, at a commit: what the last task changed is undone, submodules
# are left as they are, and a branch another (idle) worktree still has is taken all the same.
SWITCH = (
    "checkout",
    "--quiet",
    "--force",
    "--no-recurse-submodules",
    "--ignore-other-worktrees",
    "-B",
)
POST_CHECKOUT_HOOK: dict[Path, bool] = {}  # per repository: whether it has one (asked once)


class WorkspaceError(ForgeError):
    """git refused something forge needed; the message carries git's own words."""


def branch_part(name: str) -> str:
    """A task or run id made safe for a branch name component (git check-ref-format rules)."""
    cleaned = BRANCH_UNSAFE.sub("-", name)
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    while cleaned.endswith(".lock"):
        cleaned = cleaned.removesuffix(".lock")
    return cleaned.strip(".-") or "task"


def open_repository(path: Path) -> Repo:
    """The git repository holding `path`; not one, or one without a commit, is a usage error."""
    from git import InvalidGitRepositoryError, NoSuchPathError, Repo

    try:
        repo = Repo(path, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise UsageError(
            f"{path} is not inside a git repository: forge works in git worktrees "
            "(run `git init` and commit your files first)"
        ) from None
    if repo.bare:
        raise UsageError(f"{path} is a bare repository; run forge inside a checkout")
    if not repo.head.is_valid():
        raise UsageError("the repository has no commit yet; commit your files first")
    return repo


def resolve_base(repo: Repo, ref: str) -> str:
    """The full commit id `ref` names, or a usage error naming the ref."""
    from git import BadName

    try:
        return str(repo.commit(ref).hexsha)
    except (BadName, ValueError):
        raise UsageError(f"--base {ref!r} names no commit in {repo.working_dir}") from None


@dataclass(frozen=True)
class Worktree:
    """One task's checkout: its folder, its branch and the commit it started from."""

    path: Path
    branch: str
    base: str
    repo_dir: Path  # the user's repository
    git_dir: Path | None = None  # the repository's own (common) git folder, where refs live

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        from git import Git, GitCommandError

        try:
            output: str = Git(str(self.path)).execute(
                ["git", *args], env=env, with_extended_output=False
            )
        except GitCommandError as exc:
            command = " ".join(args)
            raise WorkspaceError(f"git {command} failed in {self.path}: {exc.stderr}") from None
        return output

    def reset(self) -> None:
        """Back to the base commit: edits undone, files an attempt created removed.

        Ignored build output (cargo's target/, caches) stays, so the next build is warm.
        """
        self.git("reset", "--quiet", "--hard", "--no-recurse-submodules", self.base)
        self.git("clean", "-fdq")

    def commit(self, paths: Sequence[str], message: str) -> str | None:
        """Commit what changed among `paths` (the files the edits wrote) and return the commit
        id; None when every one of them is as it was at the base."""
        if not paths:
            return None
        # No automatic maintenance after each of a run's commits: the user's next git command
        # does it. Only these paths are committed, whatever else the index holds.
        command = ("-c", "maintenance.auto=false", "commit", "--quiet", "--no-verify", "-m")
        try:
            # Most often every path is a file git tracks, edited or deleted: one git process.
            self.git(*command, message, "--", *paths, env=self._identity())
        except WorkspaceError:
            # A new file, an ignored one, or nothing changed: git status says which.
            changed = self._stage(paths)
            if not changed:
                return None
            self.git(*command, message, "--", *changed, env=self._identity())
        return self._tip()

    def _tip(self) -> str:
        """The commit the branch points at: read from the ref file git just wrote when there is
        one (no process), else asked of git (packed refs, another ref format)."""
        if self.git_dir is not None:
            try:
                found = (self.git_dir / "refs" / "heads" / self.branch).read_text().strip()
            except (OSError, UnicodeDecodeError):
                found = ""
            if OBJECT_ID.fullmatch(found):
                return found
        return self.git("rev-parse", "HEAD")

    def _stage(self, paths: Sequence[str]) -> list[str]:
        """Add the new files among `paths`; returns the ones that changed. Raises when git
        ignores one, so a commit is never silently short of what was validated."""
        status = self.git(
            "status", "--porcelain", "-z", "--untracked-files=all", "--ignored", "--", *paths
        )
        entries = [entry for entry in status.split("\0") if entry]
        ignored = [entry[3:] for entry in entries if entry.startswith("!!")]
        if ignored:
            raise WorkspaceError(f"git ignores {', '.join(ignored)}: forge cannot commit it")
        new = [entry[3:] for entry in entries if entry.startswith("??")]
        if new:
            self.git("add", "--", *new)
        return [entry[3:] for entry in entries]

    def _identity(self) -> dict[str, str]:
        """Nothing when git knows who the user is; forge's identity, for this commit only, else."""
        known = KNOWN_IDENTITY.get(self.repo_dir)
        if known is None:
            known = bool(self._config("user.name") and self._config("user.email"))
            KNOWN_IDENTITY[self.repo_dir] = known
        if known:
            return {}
        return {k: v for k, v in FALLBACK_IDENTITY.items() if k not in os.environ}

    def _config(self, key: str) -> str | None:
        try:
            return self.git("config", "--get", key) or None
        except WorkspaceError:
            return None


def worktree(repo: Repo, *args: str) -> None:
    """`git worktree ARGS`, serialised, and tried again when git trips over another process."""
    import time

    from git import GitCommandError

    for attempt in range(WORKTREE_TRIES):
        try:
            with WORKTREE_LOCK:
                repo.git.worktree(*args)
            return
        except GitCommandError as exc:
            racing = "commondir" in str(exc.stderr) or "gitdir" in str(exc.stderr)
            if not racing or attempt == WORKTREE_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def add_worktree(repo: Repo, path: Path, *args: str) -> None:
    """`git worktree add ARGS` for a worktree at `path`: git's bookkeeping one at a time (see
    `worktree`), the checkout of its files after, so worktrees made at once (the first tasks of
    a run) check out side by side instead of queueing behind each other's checkout.

    A repository with a post-checkout hook gets git's own `worktree add`, checkout included,
    which runs the hook as it always has."""
    import subprocess

    from git import GitCommandError

    if _post_checkout_hook(repo):
        worktree(repo, "add", "--quiet", *args)
        return
    worktree(repo, "add", "--quiet", "--no-checkout", *args)
    # As `worktree add` checks out: submodules are not filled in, and git finds the repository
    # from the folder, whatever GIT_DIR a hook that started forge may have set.
    command = ["git", "reset", "--quiet", "--hard", "--no-recurse-submodules"]
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION}
    done = subprocess.run(command, cwd=path, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        remove_worktree(repo, path)  # not left half made
        raise GitCommandError(command, done.returncode, done.stderr)


def _post_checkout_hook(repo: Repo) -> bool:
    """Whether git would run a post-checkout hook here (core.hooksPath included); asked once."""
    root = Path(repo.working_dir)
    known = POST_CHECKOUT_HOOK.get(root)
    if known is None:
        hook = root / repo.git.rev_parse("--git-path", "hooks/post-checkout")
        known = POST_CHECKOUT_HOOK[root] = os.access(hook, os.X_OK)
    return known


def worktrees_home() -> Path:
    return forge_home() / "worktrees"


def create_worktree(
    repo: Repo, run_id: str, task_id: str, base: str, *, path: Path | None = None
) -> Worktree:
    """A new worktree on `forge/<run>/<task>` at `base`; the branch is reset there if it exists."""
    from git import GitCommandError

    branch = f"forge/{branch_part(run_id)}/{branch_part(task_id)}"
    path = path or worktrees_home() / branch_part(run_id) / branch_part(task_id)
    try:
        if path.exists():
            remove_worktree(repo, path)
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot make a worktree folder at {path}: {exc.strerror} "
            "(set FORGE_HOME to a writable folder)"
        ) from None
    try:
        add_worktree(repo, path, "--detach", str(path), base)
    except GitCommandError as exc:
        message = f"cannot create a worktree for task {task_id!r}: {exc.stderr}"
        raise WorkspaceError(message) from None
    made = Worktree(path, branch, base, Path(repo.working_dir), Path(repo.common_dir))
    # The task's branch, (re-)made at the base: a resumed run re-creates it where the task now
    # starts, and an idle worktree of the run's may still have it checked out (`worktree add
    # -B` would refuse). Without a checkout, so a post-checkout hook runs once, as for any
    # worktree made.
    made.git("update-ref", f"refs/heads/{branch}", base)
    made.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
    return made


def remove_worktree(repo: Repo, path: Path) -> None:
    """Remove the folder and git's record of it; the branch stays."""
    from git import GitCommandError

    try:
        worktree(repo, "remove", "--force", str(path))
    except GitCommandError:
        shutil.rmtree(path, ignore_errors=True)
        worktree(repo, "prune")


def validate_commit(
    repo: Repo,
    commit: str,
    settings: ValidationConfig,
    stop: threading.Event | None = None,
    secrets: tuple[str, ...] = (),
) -> ValidationReport | None:
    """`forge validate` on a commit, in a scratch worktree (never the user's checkout); None
    when there is nothing to validate."""
    import tempfile

    from git import GitCommandError

    from forge.validation.runner import NothingToValidate, Options, validate

    with tempfile.TemporaryDirectory(prefix="forge-check-") as scratch:
        path = Path(scratch) / "tree"
        try:
            add_worktree(repo, path, "--detach", str(path), commit)
        except GitCommandError as exc:
            message = f"cannot make a worktree to validate {commit}: {exc.stderr}"
            raise WorkspaceError(message) from None
        try:
            checkout = Path(repo.working_dir)
            options = Options(
                stop=stop, environment_root=checkout, scrub_secrets=True, secrets=secrets
            )
            return validate(path, settings, options)
        except NothingToValidate:
            return None
        finally:
            remove_worktree(repo, path)


def checking_worktree(repo: Repo, run_id: str, commit: str, current: Path | None) -> Path:
    """The run's worktree for validating merged trees, moved to `commit` (made on first use)."""
    from git import Git, GitCommandError

    if current is None:
        current = worktrees_home() / branch_part(run_id) / "_merged"
        if current.exists():
            remove_worktree(repo, current)
        current.parent.mkdir(parents=True, exist_ok=True)
        try:
            add_worktree(repo, current, "--detach", str(current), commit)
        except GitCommandError as exc:
            raise WorkspaceError(f"cannot make the merge-checking worktree: {exc.stderr}") from None
        return current
    git = Git(str(current))
    try:
        switch = ["git", "checkout", "--quiet", "--detach", "--force", "--no-recurse-submodules"]
        git.execute([*switch, commit])
        git.execute(["git", "clean", "-fdq"])
    except GitCommandError as exc:
        raise WorkspaceError(f"cannot move the merge-checking worktree: {exc.stderr}") from None
    return current


class WorktreePool:
    """The run's worktrees, reused from task to task.

    Making a worktree costs a checkout of the whole tree and git's worktree bookkeeping (which
    git 2.39 cannot do for two at once); moving an idle one to a new branch and base costs a
    checkout of what differs. A task takes an idle worktree or a new one. Giving one back happens
    in the background, off the task's time: it is cleaned of what the task left, then it is idle
    again, still on the task's branch (the run checks that branch out elsewhere, when the task
    runs again, and deletes it at the end regardless). Those no task will take any more are
    removed while the last tasks run (`shrink`), the rest at the end of the run. Build output
    git ignores (cargo's target/) stays, so later builds are warm.
    """

    def __init__(self, repo: Repo, run_id: str, home: Path | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.repo = repo
        self.run_id = run_id
        # Where its worktrees go: the run's folder under forge's home, unless told (a Ray
        # node gives each task its own, since tasks of one run share the node's clone).
        self.home = home or worktrees_home() / branch_part(run_id)
        self._git_dir = Path(repo.common_dir)
        self._idle: list[Path] = []
        self._all: list[Path] = []
        self._made = 0
        self._dropped = False  # idle ones removed before the end: git's records go at the end
        self._lock = threading.Lock()
        self._coming: set[Future[None]] = set()  # worktrees being given back or made ahead
        self._releaser = ThreadPoolExecutor(1, thread_name_prefix="forge-worktrees")
        self._makers: ThreadPoolExecutor | None = None

    def prepare(self, count: int, base: str) -> None:
        """Start making `count` worktrees at `base` in the background, for the run's first
        tasks: their checkouts overlap the run's start-up instead of holding back its first
        model calls. A task takes one as soon as it is ready (see `acquire`)."""
        from concurrent.futures import ThreadPoolExecutor

        if count < 1:
            return
        # As many at once as there are cores: checkouts side by side on more than that only
        # contend in the kernel, and one ready early lets a task start early.
        workers = min(count, os.cpu_count() or 1)
        self._makers = ThreadPoolExecutor(workers, thread_name_prefix="forge-worktrees-new")
        for _ in range(count):
            path = self._new_path()
            self._expect(self._makers.submit(self._make, path, base))

    def _new_path(self) -> Path:
        with self._lock:
            self._made += 1  # never reused: a slot given up after an error keeps its number
            path = self.home / f"slot-{self._made}"
            self._all.append(path)
        return path

    def _make(self, path: Path, base: str) -> None:
        from git import GitCommandError

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            add_worktree(self.repo, path, "--detach", str(path), base)
        except (GitCommandError, OSError):  # a task makes its own instead, and says why
            self._give_up(path)
            return
        with self._lock:
            self._idle.append(path)

    def _expect(self, future: Future[None]) -> None:
        with self._lock:
            self._coming.add(future)
        future.add_done_callback(self._arrived)

    def _arrived(self, future: Future[None]) -> None:
        with self._lock:
            self._coming.discard(future)

    def acquire(self, task_id: str, base: str) -> Worktree:
        branch = f"forge/{branch_part(self.run_id)}/{branch_part(task_id)}"
        while True:
            with self._lock:
                path = self._idle.pop() if self._idle else None
                coming = [f for f in self._coming if not f.done()] if path is None else []
            if path is not None or not coming:
                break
            # One is on its way: waiting a moment beats checking out a whole new tree.
            wait(coming, return_when=FIRST_COMPLETED)
        fresh = path is None
        if path is None:
            path = self._new_path()
        tree = Worktree(path, branch, base, Path(self.repo.working_dir), self._git_dir)
        if fresh:
            made = create_worktree(self.repo, self.run_id, task_id, base, path=path)
            return made
        try:
            # An idle worktree still has the branch of its last task checked out, and a task
            # that runs again may find its own branch there: neither is in use any more.
            tree.git(*SWITCH, branch, base)  # cleaned on release
        except WorkspaceError:
            self._give_up(path)
            return self.acquire(task_id, base)
        return tree

    def release(self, tree: Worktree) -> None:
        """Give a worktree back; the work happens in the background."""
        self._expect(self._releaser.submit(self._give_back, tree))

    def _give_back(self, tree: Worktree) -> None:
        """What the task left that git does not track goes; then the worktree is idle again.
        (Its files are as the task's commit or its base has them: see TaskEngine._finish.)"""
        try:
            tree.git("clean", "-fdq")
        except Exception:  # git refused, or the folder is gone: not reused
            self._give_up(tree.path)
            return
        with self._lock:
            self._idle.append(tree.path)

    def shrink(self, needed: int) -> None:
        """At most `needed` more tasks will take a worktree: idle ones beyond that are removed
        now, in the background (after the releases before it), instead of at the end. The
        ones kept are those given back last, whose checkouts are nearest the line's head."""
        self._releaser.submit(self._shrink, needed)

    def _shrink(self, needed: int) -> None:
        with self._lock:
            surplus = self._idle[: max(0, len(self._idle) - needed)]
            del self._idle[: len(surplus)]
            for path in surplus:
                self._all.remove(path)
            self._dropped = self._dropped or bool(surplus)
        for path in surplus:
            shutil.rmtree(path, ignore_errors=True)

    def _give_up(self, path: Path) -> None:
        """A worktree git cannot move any more is removed now, or with the others at the end."""
        from git import GitCommandError

        try:
            remove_worktree(self.repo, path)
        except (GitCommandError, OSError):
            return
        with self._lock:
            self._all.remove(path)

    def keep(self, tree: Worktree) -> None:
        """--keep-worktrees: the worktree stays as the task left it and is not reused."""
        with self._lock:
            if tree.path in self._all:
                self._all.remove(tree.path)

    def clear_stale(self) -> None:
        """A resumed run first removes what a crashed process left (worktrees holding branches)."""
        folder = self.home
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                remove_worktree(self.repo, path)
        worktree(self.repo, "prune")

    def close(self) -> None:
        """Remove every worktree: folders first, then git's records of them in one prune."""
        self._releaser.shutdown(wait=True)
        if self._makers is not None:
            self._makers.shutdown(wait=True)
        with self._lock:
            paths, self._all, self._idle = list(self._all), [], []
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        if paths or self._dropped:
            worktree(self.repo, "prune")
        # The run's folder goes too, unless it holds a worktree kept by --keep-worktrees.
        with contextlib.suppress(OSError):
            self.home.rmdir()
