"""Cleanup that cannot lose work (issue 16, item 4): `code_cleanup.tidy` and the gc over it
keep every commit that was ever on a task branch reachable from a ref, and never remove a
dirty worktree's files, whatever interleaving of agent commits, crashes mid-cleanup, gc runs
and retries happens. Real git repos under tmp_path, no network."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from code_support import git, make_repo, task_worktree
from conftest import ram_dir
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from daemon.connectors import code_cleanup
from daemon.connectors import git as git_module
from daemon.connectors.code_cleanup import tidy
from daemon.connectors.code_gc import collect
from daemon.connectors.git import branch_commit
from daemon.core.ledger import Task

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


# --- interleavings: agent commits, crashes mid-cleanup, gc runs and retries ---------------

NIGHTLY = os.environ.get("VAULTD_NIGHTLY") == "1"


class Crash(BaseException):
    """The process dies here: nothing of vaultd catches it (no `except Exception` does)."""


@contextmanager
def before_call(call: int | None, then: Callable[[], None]) -> Iterator[None]:
    """Let vaultd's git calls run until the `call`-th (from 0); before it runs, `then`
    runs: a crash (cleanup stopped between two of its steps, each one git command), or
    the agent's process acting meanwhile. None: nothing happens."""
    real = git_module.git
    made = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        if made - 1 == call:
            then()  # its own git calls (the test's) count on, and never trigger again
        return real(*args, **kwargs)

    with patch.object(git_module, "git", counted), patch.object(code_cleanup, "git", counted):
        yield


def crash() -> None:
    raise Crash("the process died here")


# What happens before the N-th git call of a cleanup: it dies, or the agent acts meanwhile
# (a lingering process of it commits, edits, or pushes to the branch). N past the last
# call: the cleanup runs to its end.
MEANWHILE = st.sampled_from(["crash", "crash", "push", "rewrite", "commit", "edit"])


def a_task(task_id: str, state: str) -> Task:
    return Task(task_id, "code_task", f"Done/{task_id}.md", state, *[None] * 9, "", "")


class CleanupModel(RuleBasedStateMachine):
    """One code task's repo, worktree and branch, and the ledger's state of it; the rules
    are what the agent, a person and vaultd (crashing or not) do to them."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="vaultd-gc-", dir=ram_dir()))
        self.repo = make_repo(self.tmp / "demo")
        self.state_dir = self.tmp / "state"
        self.worktree = task_worktree(self.repo, self.state_dir, TASK, commits=0)
        self.ledger_state = "pending_approval"
        self.on_branch: set[str] = set()  # every commit ever on vaultd/<id>
        self.loose: set[str] = set()  # commits made on a detached HEAD in the worktree
        self.dirty: dict[str, str] = {}  # the worktree's uncommitted files: name -> text
        self.count = 0

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _here(self) -> bool:
        return self.worktree.is_dir() and (self.worktree / ".git").exists()

    def _branch(self) -> str | None:
        return branch_commit(self.repo, f"vaultd/{TASK}")

    def _head_attached(self) -> bool:
        return bool(git(self.worktree, "branch", "--show-current"))

    @rule()
    def agent_commits(self) -> None:
        if not self._here():
            return
        self.count += 1
        (self.worktree / f"commit-{self.count}.txt").write_text(f"work {self.count}\n")
        git(self.worktree, "add", "--all")
        git(self.worktree, "commit", "-q", "-m", f"Work {self.count}")
        head = git(self.worktree, "rev-parse", "HEAD")
        (self.on_branch if self._head_attached() else self.loose).add(head)
        self.dirty.clear()  # committed with the rest (add --all)

    @rule()
    def a_commit_is_pushed_to_the_branch(self) -> None:
        """A process the agent left behind (or a person) moves the branch, worktree or not."""
        head = self._branch()
        if head is None:
            return
        self.count += 1
        tree = git(self.repo, "rev-parse", f"{head}^{{tree}}")
        new = git(self.repo, "commit-tree", tree, "-p", head, "-m", f"Pushed {self.count}")
        git(self.repo, "update-ref", f"refs/heads/vaultd/{TASK}", new, head)
        self.on_branch.add(new)

    @rule()
    def the_branch_is_rewritten(self) -> None:
        """A process the agent left behind resets the branch elsewhere (`reset --hard`,
        a force-push): its old commits are on no branch now, only vaultd can keep them."""
        head, main = self._branch(), branch_commit(self.repo, "main")
        if head is None or main is None:
            return
        self.count += 1
        tree = git(self.repo, "rev-parse", f"{main}^{{tree}}")
        new = git(self.repo, "commit-tree", tree, "-p", main, "-m", f"Rewritten {self.count}")
        git(self.repo, "update-ref", f"refs/heads/vaultd/{TASK}", new, head)
        # What no ref keeps now, the agent dropped itself; what vaultd archived it keeps.
        self.on_branch = (self.on_branch & self._reachable()) | {new}

    def _reachable(self) -> set[str]:
        tips = git(self.repo, "for-each-ref", "--format=%(objectname)").split()
        return set(git(self.repo, "rev-list", *tips).split())

    @rule(tracked=st.booleans())
    def agent_leaves_a_file_uncommitted(self, tracked: bool) -> None:
        if not self._here():
            return
        self.count += 1
        name = "README.md" if tracked else f"unsaved-{self.count}.txt"
        text = f"not committed {self.count}\n"
        (self.worktree / name).write_text(text)
        self.dirty[name] = text

    @rule()
    def agent_detaches_its_head(self) -> None:
        if self._here():
            git(self.worktree, "checkout", "-q", "--detach")

    @rule()
    def the_change_is_landed_as_a_copy(self) -> None:
        """Landing cherry-picks: the target gets copies, never the branch's own commits."""
        head, main = self._branch(), branch_commit(self.repo, "main")
        if head is None or main is None:
            return
        tree = git(self.repo, "rev-parse", f"{head}^{{tree}}")
        copy = git(self.repo, "commit-tree", tree, "-p", main, "-m", f"Vaultd-Task: {TASK}")
        git(self.repo, "update-ref", "refs/heads/main", copy, main)

    @rule(state=st.sampled_from(["done", "rejected", "failed", "approved"]))
    def the_ledger_records(self, state: str) -> None:
        self.ledger_state = state

    def _meanwhile(self, what: str) -> Callable[[], None]:
        return {
            "crash": crash,
            "push": self.a_commit_is_pushed_to_the_branch,
            "rewrite": self.the_branch_is_rewritten,
            "commit": self.agent_commits,
            "edit": lambda: self.agent_leaves_a_file_uncommitted(tracked=False),
        }[what]

    @rule(call=st.integers(0, 8), what=MEANWHILE)
    def vaultd_tidies_after_landing(self, call: int, what: str) -> None:
        """The connector's own cleanup, after a landing or a rejection (no gc checks)."""
        with contextlib.suppress(Crash), before_call(call, self._meanwhile(what)):
            tidy(self.repo, self.state_dir, TASK)

    @rule(call=st.integers(0, 12), what=MEANWHILE, dry_run=st.booleans())
    def a_person_runs_gc(self, call: int, what: str, dry_run: bool) -> None:
        with contextlib.suppress(Crash), before_call(call, self._meanwhile(what)):
            collect(
                self.state_dir,
                {"demo": self.repo},
                lambda task_id: a_task(task_id, self.ledger_state),
                dry_run=dry_run,
            )

    @invariant()
    def no_commit_of_the_branch_is_lost(self) -> None:
        reachable = self._reachable()
        assert self.on_branch <= reachable, self.on_branch - reachable
        tips = git(self.repo, "for-each-ref", "--format=%(objectname)").split()
        listing = git(self.repo, "worktree", "list", "--porcelain").splitlines()
        heads = [line.removeprefix("HEAD ") for line in listing if line.startswith("HEAD ")]
        held = set(git(self.repo, "rev-list", *tips, *heads).split())
        assert self.loose <= held, self.loose - held

    @invariant()
    def no_uncommitted_file_is_removed(self) -> None:
        for name, text in self.dirty.items():
            assert (self.worktree / name).read_text() == text, name

    @invariant()
    def the_artifacts_stay(self) -> None:
        assert (self.state_dir / "code" / TASK / "agent.log").is_file()


CLEANUP_SETTINGS = settings(
    max_examples=400 if NIGHTLY else 4,
    stateful_step_count=40 if NIGHTLY else 10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_no_interleaving_of_commits_crashes_and_cleanups_loses_work() -> None:
    run_state_machine_as_test(CleanupModel, settings=CLEANUP_SETTINGS)


# --- every step of a cleanup, interrupted, then retried ----------------------------------

LAST_CALL = 10**6  # past a cleanup's last git call: it runs to its end


def interrupted_then_retried(what: str, call: int, *, via_gc: bool) -> CleanupModel:
    """A finished task with two commits, landed as copies; its cleanup is interrupted
    before git call `call` by `what`, checked, then retried by gc and checked again."""
    model = CleanupModel()
    model.agent_commits()
    model.agent_commits()
    model.the_change_is_landed_as_a_copy()
    model.the_ledger_records(state="done")
    if via_gc:
        model.a_person_runs_gc(call=call, what=what, dry_run=False)
    else:
        model.vaultd_tidies_after_landing(call=call, what=what)
    check(model)
    model.a_person_runs_gc(call=LAST_CALL, what="crash", dry_run=False)
    check(model)
    return model


def check(model: CleanupModel) -> None:
    model.no_commit_of_the_branch_is_lost()
    model.no_uncommitted_file_is_removed()
    model.the_artifacts_stay()


# What the agent does when cleanup is cut short. A rewrite is what lost the archived commits
# (the bug this sweep found); every kind runs nightly.
SWEPT = ("crash", "push", "rewrite", "commit", "edit") if NIGHTLY else ("crash", "rewrite", "edit")


@pytest.mark.parametrize("what", SWEPT)
def test_tidy_interrupted_at_any_step_and_retried_loses_nothing(what: str):
    for call in range(9):
        model = interrupted_then_retried(what, call, via_gc=False)
        try:
            if what in ("crash", "push", "commit"):  # nothing left that must stay
                assert not model.worktree.exists(), (call, what)
                assert model._branch() is None, (call, what)
        finally:
            model.teardown()


def test_gc_crashed_at_any_step_and_retried_loses_nothing_and_finishes():
    """gc's own steps come first (its checks), then tidy's, swept above."""
    for call in range(13):
        model = interrupted_then_retried("crash", call, via_gc=True)
        try:
            assert not model.worktree.exists() and model._branch() is None, call
        finally:
            model.teardown()


def test_a_commit_on_a_detached_head_made_while_tidy_runs_is_kept_by_a_ref():
    """The interleaving hypothesis found: the worktree's HEAD is detached but on a ref when
    tidy checks it, and a lingering process commits there before git removes it. The
    commit is kept (refs/vaultd/detached/...), whichever step it lands before; a crash just
    before keeping it is made good by the next cleanup."""
    for call in range(9):
        model = CleanupModel()
        try:
            model.agent_detaches_its_head()
            model.vaultd_tidies_after_landing(call=call, what="commit")
            check(model)
            model.vaultd_tidies_after_landing(call=LAST_CALL, what="crash")
            check(model)
        finally:
            model.teardown()


def commit_late(worktree: Path) -> str:
    """Commit in the worktree as a process left behind would, after tidy's checks; return
    the commit."""
    (worktree / "late.txt").write_text("made after the check\n")
    git(worktree, "add", "late.txt")
    git(worktree, "commit", "-q", "-m", "Late")
    return git(worktree, "rev-parse", "HEAD")


def detached_commit_after_the_link(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """A task's worktree with a detached HEAD whose log tidy has linked aside, and a commit
    made there after that: return (repo, state dir, worktree, that commit)."""
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    worktree = task_worktree(repo, state, TASK, commits=0)
    git(worktree, "checkout", "-q", "--detach")
    code_cleanup._link_head_log(repo, worktree, TASK)
    return repo, state, worktree, commit_late(worktree)


def test_a_cleanup_that_died_after_removing_the_worktree_keeps_its_last_head_next_time(
    tmp_path: Path,
):
    repo, state, worktree, late = detached_commit_after_the_link(tmp_path)
    git(repo, "worktree", "remove", str(worktree))  # ... and the cleanup died here
    done = tidy(repo, state, TASK)
    kept = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/vaultd/detached")
    assert kept == f"refs/vaultd/detached/{TASK}/{late[:12]} {late}"
    assert any(late[:12] in line for line in done.kept), done.kept


# --- review: the worktree's own files (its agent can write them) name no place outside -----


def _admin(worktree: Path) -> Path:
    return Path(git(worktree, "rev-parse", "--path-format=absolute", "--git-dir"))


def test_a_head_log_that_is_a_symlink_is_neither_followed_nor_linked(tmp_path: Path):
    """The agent (or a process it left) can write its worktree's admin folder: a symbolic
    link as `logs/HEAD` made vaultd create the file it names (touch), and hard-link it (or
    any file of vaultd's user it names) into the repo's git folder."""
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    worktree = task_worktree(repo, state, TASK)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("vaultd's user's file\n")
    log = _admin(worktree) / "logs" / "HEAD"
    log.unlink()
    log.symlink_to(outside / "made-by-vaultd")
    done = tidy(repo, state, TASK)
    assert not (outside / "made-by-vaultd").exists(), "vaultd created a file the agent named"
    log.unlink(missing_ok=True)
    if not done.removed_worktree:
        log.symlink_to(secret)
        done = tidy(repo, state, TASK)
    assert secret.stat().st_nlink == 1, "vaultd hard-linked a file the agent named"
    assert done.removed_worktree or done.kept, done


def test_a_head_log_that_is_a_folder_does_not_crash_tidy_or_gc(tmp_path: Path):
    """`logs/HEAD` made a folder (git then writes no HEAD log, and works on): os.link raised
    an OSError that neither the landing (ConnectorError only), nor gc, nor the rejection
    path catches, at every cleanup of that task."""
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    worktree = task_worktree(repo, state, TASK)
    log = _admin(worktree) / "logs" / "HEAD"
    log.unlink()
    log.mkdir()
    assert git(worktree, "status", "--porcelain") == ""
    done = tidy(repo, state, TASK)
    assert done.removed_worktree or any("HEAD log" in line for line in done.kept), done
    collect(state, {"demo": repo}, {TASK: a_task(TASK, "done")}.get, dry_run=False)


def test_a_git_file_rewritten_meanwhile_makes_vaultd_create_nothing_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A process the agent left rewrites the worktree's `.git` file after tidy checked the
    worktree (the window this cleanup is about): vaultd made `<anywhere>/logs/HEAD`, with
    every folder up to it, and linked it."""
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    worktree = task_worktree(repo, state, TASK)
    elsewhere = tmp_path / "elsewhere" / "deep"
    size = code_cleanup._size

    def meanwhile(path: Path) -> int:
        (worktree / ".git").write_text(f"gitdir: {elsewhere}\n")
        return size(path)

    monkeypatch.setattr(code_cleanup, "_size", meanwhile)
    with contextlib.suppress(git_module.GitError):
        tidy(repo, state, TASK)
    assert not (tmp_path / "elsewhere").exists(), "vaultd made folders the agent named"


def test_a_kept_detached_commit_never_moves_a_ref_kept_before(tmp_path: Path):
    """`refs/vaultd/detached/<id>/<12 hex>` was set without a compare-and-swap: a second
    commit of the same 12-hex prefix (a retry of the task, or an agent that looks for one:
    2^24 tries) moved the ref, and the commit it kept was lost to the next `git gc`."""
    repo, state, worktree, late = detached_commit_after_the_link(tmp_path)
    git(worktree, "checkout", "-q", "--detach", "HEAD~1")
    (worktree / "earlier.txt").write_text("kept before, under the same prefix\n")
    git(worktree, "add", "earlier.txt")
    git(worktree, "commit", "-q", "-m", "Earlier")
    earlier = git(worktree, "rev-parse", "HEAD")
    git(repo, "update-ref", f"refs/vaultd/detached/{TASK}/{late[:12]}", earlier)
    git(worktree, "checkout", "-q", "--detach", late)
    git(repo, "worktree", "remove", str(worktree))  # ... and the cleanup died here
    tidy(repo, state, TASK)
    kept = git(repo, "for-each-ref", "--format=%(objectname)", "refs/vaultd/detached").split()
    assert sorted(kept) == sorted([earlier, late])


def test_a_detached_commit_made_meanwhile_is_kept_even_if_head_moved_on_after_it(
    tmp_path: Path,
):
    """Only the HEAD log's last entry was read: a process left behind that commits on a
    detached HEAD and then checks its branch out again (or any other commit) before git
    removes the worktree lost that commit; the log still names it."""
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    worktree = task_worktree(repo, state, TASK, commits=1)
    git(worktree, "commit", "-q", "--amend", "-m", "Amended")  # its first version: not kept
    code_cleanup._link_head_log(repo, worktree, TASK)
    git(worktree, "checkout", "-q", "--detach")
    late = commit_late(worktree)
    git(worktree, "checkout", "-q", f"vaultd/{TASK}")
    git(repo, "worktree", "remove", str(worktree))  # ... and the cleanup died here
    tidy(repo, state, TASK)
    kept = git(repo, "for-each-ref", "--format=%(objectname)", "refs/vaultd/detached").split()
    assert kept == [late]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_head_log_vaultd_may_not_write_is_still_linked_and_read(tmp_path: Path):
    """Under OS-user confinement the HEAD log can be the agent's user's file (git rewrites
    it by a rename): vaultd only reads it, so opening it to write must not be needed."""
    repo, state = make_repo(tmp_path / "demo"), tmp_path / "state"
    worktree = task_worktree(repo, state, TASK)
    log = _admin(worktree) / "logs" / "HEAD"
    log.chmod(0o444)
    try:
        done = tidy(repo, state, TASK)
    finally:
        if log.exists():
            log.chmod(0o644)
    assert done.removed_worktree, done.kept


def test_gc_keeps_the_detached_commit_of_a_cleanup_that_died_after_worktree_and_branch_went(
    tmp_path: Path,
):
    """A process left behind commits on a detached HEAD and deletes the task's branch (no
    longer checked out), git removes the worktree, and the cleanup dies: nothing of the task
    was left for gc to find, so the HEAD log linked aside (and the only name of that commit)
    stayed in the repo's git folder for good, until `git gc` pruned the commit."""
    repo, state, worktree, late = detached_commit_after_the_link(tmp_path)
    git(repo, "branch", "-q", "-D", f"vaultd/{TASK}")
    git(repo, "worktree", "remove", str(worktree))  # ... and the cleanup died here
    tasks = {TASK: a_task(TASK, "done")}.get
    dry = collect(state, {"demo": repo}, tasks, dry_run=True)
    assert [c.task_id for c in dry.candidates if c.safe] == [TASK], dry.to_json()
    collect(state, {"demo": repo}, tasks, dry_run=False)
    kept = git(repo, "for-each-ref", "--format=%(objectname)", "refs/vaultd/detached").split()
    assert kept == [late]
    assert not (repo / ".git" / "vaultd" / f"HEAD-log-{TASK}").exists()
