"""A task's worktree commits exactly what its edits changed, on real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from forge.execution.workspace import WorkspaceError, Worktree, create_worktree, open_repository


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_repo(root: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Dev")
    git(root, "config", "user.email", "dev@example.com")
    for name in ("a.txt", "b.txt", "c.txt"):
        (root / name).write_text(f"{name}\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Worktree:
    root = make_repo(tmp_path / "repo")
    return create_worktree(open_repository(root), "run", "task", git(root, "rev-parse", "HEAD"))


def committed(tree: Worktree, commit: str) -> dict[str, str]:
    """What the commit changed against its parent: path -> status letter."""
    lines = git(tree.path, "diff", "--name-status", f"{commit}^", commit).splitlines()
    return {line.split("\t")[1]: line.split("\t")[0] for line in lines}


def test_edited_new_and_deleted_files_are_committed_on_the_task_branch(tree: Worktree) -> None:
    (tree.path / "a.txt").write_text("edited\n")
    (tree.path / "new.txt").write_text("new\n")
    (tree.path / "b.txt").unlink()
    commit = tree.commit(["a.txt", "b.txt", "new.txt"], "Task\n\nForge-Task: task\n")
    assert commit is not None
    assert git(tree.path, "rev-parse", tree.branch) == commit
    assert git(tree.path, "rev-parse", f"{commit}^") == tree.base
    assert committed(tree, commit) == {"a.txt": "M", "b.txt": "D", "new.txt": "A"}
    assert git(tree.path, "log", "-1", "--format=%(trailers:key=Forge-Task,valueonly)") == "task"


def test_only_the_named_paths_are_committed(tree: Worktree) -> None:
    (tree.path / "a.txt").write_text("edited\n")
    (tree.path / "c.txt").write_text("staged by someone else\n")
    git(tree.path, "add", "c.txt")
    commit = tree.commit(["a.txt"], "Task")
    assert commit is not None
    assert committed(tree, commit) == {"a.txt": "M"}


def test_a_file_made_and_removed_again_is_left_out(tree: Worktree) -> None:
    """An earlier attempt wrote `gone.txt`, a later one removed it: git never knew it."""
    (tree.path / "a.txt").write_text("edited\n")
    commit = tree.commit(["a.txt", "gone.txt"], "Task")
    assert commit is not None
    assert committed(tree, commit) == {"a.txt": "M"}


def test_edits_that_change_nothing_make_no_commit(tree: Worktree) -> None:
    (tree.path / "a.txt").write_text("a.txt\n")
    assert tree.commit(["a.txt"], "Task") is None
    assert git(tree.path, "rev-parse", "HEAD") == tree.base


def test_the_commit_id_is_the_branch_tip_whatever_holds_the_ref(
    tree: Worktree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id is read from the ref file git wrote, without asking git; with the refs packed
    by a `git gc` that ran meanwhile, it is asked of git instead."""
    asked: list[tuple[str, ...]] = []
    run_git = Worktree.git

    def spy(self: Worktree, *args: str, env: dict[str, str] | None = None) -> str:
        asked.append(args)
        return run_git(self, *args, env=env)

    monkeypatch.setattr(Worktree, "git", spy)
    (tree.path / "a.txt").write_text("one\n")
    first = tree.commit(["a.txt"], "One")
    assert first == git(tree.path, "rev-parse", tree.branch)
    assert [a for a in asked if "rev-parse" in a] == []
    assert tree.git_dir is not None
    git(tree.path, "pack-refs", "--all")
    assert not (tree.git_dir / "refs" / "heads" / tree.branch).exists()
    assert tree._tip() == first
    assert [a for a in asked if "rev-parse" in a] == [("rev-parse", "HEAD")]
    (tree.path / "b.txt").write_text("two\n")
    second = tree.commit(["b.txt"], "Two")
    assert second == git(tree.path, "rev-parse", tree.branch) != first


def test_a_file_the_edits_made_git_ignore_is_refused_not_dropped(tree: Worktree) -> None:
    (tree.path / ".gitignore").write_text("secret.txt\n")
    (tree.path / "secret.txt").write_text("validated with this file\n")
    with pytest.raises(WorkspaceError, match=r"git ignores secret\.txt"):
        tree.commit([".gitignore", "secret.txt"], "Task")
    assert git(tree.path, "rev-parse", "HEAD") == tree.base


def test_the_pool_reuses_a_worktree_clean_and_gives_a_task_its_branch_again(
    tree: Worktree,
) -> None:
    """A worktree given back is cleaned and reused; a task that runs again (after a merge
    conflict) gets its branch at the new base, though an idle worktree still has it."""
    from forge.execution.workspace import WorktreePool

    repo = open_repository(tree.repo_dir)
    pool = WorktreePool(repo, "pooled")
    first = pool.acquire("task", tree.base)
    (first.path / "a.txt").write_text("first try\n")
    (first.path / "junk.txt").write_text("left by a validator\n")
    assert first.commit(["a.txt"], "First try") is not None
    pool.release(first)

    other = pool.acquire("other", tree.base)
    assert other.path == first.path, "the idle worktree is reused"
    assert not (other.path / "junk.txt").exists()
    assert (other.path / "a.txt").read_text() == "a.txt\n"
    pool.release(other)

    (tree.repo_dir / "c.txt").write_text("moved on\n")
    git(tree.repo_dir, "commit", "-qam", "the line moved on")
    head = git(tree.repo_dir, "rev-parse", "HEAD")
    again = pool.acquire("task", head)
    assert again.branch == first.branch
    assert git(again.path, "rev-parse", "HEAD") == git(again.path, "rev-parse", again.branch)
    assert git(again.path, "rev-parse", "HEAD") == head
    assert git(again.path, "status", "--porcelain") == ""
    pool.release(again)
    pool.close()
    assert not again.path.exists()
    assert len(git(tree.repo_dir, "worktree", "list").splitlines()) == 2  # main and `tree`


def test_worktrees_made_ahead_are_what_the_first_tasks_take(tree: Worktree) -> None:
    from forge.execution.workspace import WorktreePool

    repo = open_repository(tree.repo_dir)
    pool = WorktreePool(repo, "ahead")
    pool.prepare(2, tree.base)
    first, second = pool.acquire("one", tree.base), pool.acquire("two", tree.base)
    assert {first.path.name, second.path.name} == {"slot-1", "slot-2"}, "none made on demand"
    for made in (first, second):
        assert git(made.path, "symbolic-ref", "--short", "HEAD") == made.branch
        assert git(made.path, "rev-parse", "HEAD") == tree.base
        assert (made.path / "a.txt").read_text() == "a.txt\n"
        assert git(made.path, "status", "--porcelain") == ""
    pool.close()
    assert not first.path.exists() and not second.path.exists()


def test_idle_worktrees_no_task_will_take_are_removed_before_the_end(tree: Worktree) -> None:
    """Near a run's end: of three idle worktrees, one more task will take one, and it takes
    the one kept; even a task nobody expected (a merge conflict's re-run) still gets one."""
    from forge.execution.workspace import WorktreePool

    repo = open_repository(tree.repo_dir)
    pool = WorktreePool(repo, "tail")
    taken = [pool.acquire(name, tree.base) for name in ("one", "two", "three")]
    for made in taken:
        pool.release(made)
    pool.shrink(1)
    pool._releaser.submit(lambda: None).result()  # what was queued before it is done
    left = [made.path for made in taken if made.path.exists()]
    assert left == [taken[2].path], "the one given back last is kept: nearest the line's head"
    last = pool.acquire("four", tree.base)
    assert last.path == left[0]
    unexpected = pool.acquire("one", tree.base)
    assert git(unexpected.path, "rev-parse", "HEAD") == tree.base
    pool.release(last)
    pool.release(unexpected)
    pool.shrink(0)  # the run's last task is done: the end has nothing left to remove
    pool.close()
    assert not any(made.path.exists() for made in (*taken, unexpected))
    assert len(git(tree.repo_dir, "worktree", "list").splitlines()) == 2  # main and `tree`


def test_a_worktree_that_cannot_be_made_ahead_is_made_when_a_task_needs_it(
    tree: Worktree,
) -> None:
    from forge.execution.workspace import WorktreePool

    repo = open_repository(tree.repo_dir)
    pool = WorktreePool(repo, "broken")
    pool.prepare(1, "0" * 40)  # no such commit
    made = pool.acquire("one", tree.base)
    assert made.path.name == "slot-2"
    assert git(made.path, "rev-parse", "HEAD") == tree.base
    pool.close()
    assert not made.path.exists()
    assert len(git(tree.repo_dir, "worktree", "list").splitlines()) == 2  # main and `tree`


def test_a_second_worktree_can_take_a_branch_an_idle_one_still_has(tree: Worktree) -> None:
    """A task that runs again may need a new worktree while its old one still has its branch."""
    repo = open_repository(tree.repo_dir)
    again = create_worktree(repo, "run", "task", tree.base, path=tree.path.parent / "again")
    assert again.branch == tree.branch
    assert git(again.path, "rev-parse", "HEAD") == tree.base


def test_worktrees_of_a_repository_with_submodules_and_submodule_recurse(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q", "-b", "main")
    (sub / "lib.txt").write_text("lib\n")
    git(sub, "add", "-A")
    git(sub, "-c", "user.name=Dev", "-c", "user.email=d@e", "commit", "-qm", "lib")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Dev")
    git(root, "config", "user.email", "dev@example.com")
    (root / "a.txt").write_text("a\n")
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    git(root, "config", "submodule.recurse", "true")
    base = git(root, "rev-parse", "HEAD")

    from forge.execution.workspace import WorktreePool

    pool = WorktreePool(open_repository(root), "subs")
    pool.prepare(1, base)
    first = pool.acquire("one", base)
    assert (first.path / "a.txt").read_text() == "a\n"
    pool.release(first)
    second = pool.acquire("two", base)
    assert second.path == first.path
    fresh = pool.acquire("three", base)
    assert (fresh.path / "a.txt").read_text() == "a\n"
    pool.close()

    from forge.execution.workspace import checking_worktree, remove_worktree

    (root / "a.txt").write_text("a2\n")
    git(root, "commit", "-qam", "next")
    checking = checking_worktree(open_repository(root), "subs", base, None)
    moved = checking_worktree(
        open_repository(root), "subs", git(root, "rev-parse", "HEAD"), checking
    )
    assert (moved / "a.txt").read_text() == "a2\n"
    remove_worktree(open_repository(root), moved)


def test_a_post_checkout_hook_runs_in_a_new_worktree(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "hooked")
    hook = root / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho ran >> hook-ran.txt\n")
    hook.chmod(0o755)
    made = create_worktree(open_repository(root), "run", "task", git(root, "rev-parse", "HEAD"))
    assert (made.path / "hook-ran.txt").read_text() == "ran\n", "once, as git runs it"
    assert git(made.path, "symbolic-ref", "--short", "HEAD") == made.branch


def test_a_run_does_not_resume_while_the_user_has_one_of_its_task_branches(
    tmp_path: Path,
) -> None:
    """The task would start over by re-making its branch: under the user's checkout of it."""
    from forge.errors import UsageError
    from forge.execution.integration import Integration
    from forge.execution.workspace import worktrees_home

    root = make_repo(tmp_path / "repo")
    base = git(root, "rev-parse", "HEAD")
    integration = Integration(root, "r1")
    integration.start(base)
    git(root, "branch", "forge/r1/t1", base)
    mine = tmp_path / "mine"
    git(root, "worktree", "add", "-q", str(mine), "forge/r1/t1")
    with pytest.raises(UsageError, match=f"forge/r1/t1 is checked out in {mine}"):
        integration.resume()
    git(root, "worktree", "remove", str(mine))
    # A worktree the crashed run left under forge's home is the run's own, not the user's.
    own = worktrees_home() / "r1" / "slot-1"
    own.parent.mkdir(parents=True)
    git(root, "worktree", "add", "-q", str(own), "forge/r1/t1")
    assert integration.resume() == base
