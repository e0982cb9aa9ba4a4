"""Cleanup that cannot lose work (issue 16, item 4): `code_cleanup.tidy` and the gc over it
keep every commit that was ever on a task branch reachable from a ref, and never remove a
dirty worktree's files, whatever interleaving of agent commits, crashes mid-cleanup, gc runs
and retries happens. Real git repos under tmp_path, no network."""

from __future__ import annotations

from pathlib import Path

from code_support import git, make_repo, task_worktree

from daemon.connectors.code_cleanup import tidy

TASK = "20261201-abcdef"


def test_tidy_keeps_a_worktree_whose_head_is_on_no_ref(tmp_path: Path):
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    worktree = task_worktree(repo, state, TASK)
    git(worktree, "checkout", "-q", "--detach")
    (worktree / "only-here.txt").write_text("a commit on no branch\n")
    git(worktree, "add", "only-here.txt")
    git(worktree, "commit", "-q", "-m", "On a detached HEAD")
    loose = git(worktree, "rev-parse", "HEAD")
    done = tidy(repo, state, TASK)
    assert not done.removed_worktree and "on no branch or ref" in done.kept[0]
    assert git(worktree, "rev-parse", "HEAD") == loose


def test_tidy_does_not_follow_a_symlink_in_place_of_the_worktree(tmp_path: Path):
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    outside = tmp_path / "outside"
    git(repo, "worktree", "add", "-q", "-b", f"vaultd/{TASK}", "--", str(outside), "main")
    (state / "worktrees").mkdir(parents=True)
    (state / "worktrees" / TASK).symlink_to(outside, target_is_directory=True)
    done = tidy(repo, state, TASK)
    assert not done.removed_worktree and not done.deleted_branch
    assert "symbolic link" in done.kept[0]
    assert (outside / "README.md").exists()
