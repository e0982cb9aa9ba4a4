"""Cleanup of a code task's worktree and branch that cannot lose work (issue 16).

A finished task's worktree is removed, and its branch deleted, only when:
- the worktree is a folder, not a symbolic link (never followed), and clean (`git worktree
  remove` without `--force`: git itself refuses a dirty one, and vaultd checks first so it
  can say why), and its HEAD is on a ref (a commit made on a detached HEAD there would go
  with the worktree), and
- every commit of the branch stays reachable: from the target, or from
  `refs/vaultd/archive/<task-id>`, which vaultd sets to the branch's head first (only
  forward, compare-and-swap: a branch rewritten since it was archived is kept). The branch
  is then deleted with a compare-and-swap `update-ref -d <branch> <head>`, so a commit
  pushed to it meanwhile keeps it. Never `--force`, never `branch -D`.

Landed commits are cherry-picked copies, so the archive ref is what keeps the originals
(and the agent's own history) for a person, at the cost of a ref, not of disk.

A process the agent left behind can still commit on a detached HEAD after that check and
before git removes the worktree. So the worktree's HEAD reflog (which git appends to in
place) is hard-linked beside the repo's refs first; after the removal its last entry is
the HEAD the worktree ended at, and a commit no ref contains is kept as
`refs/vaultd/detached/<task-id>/<commit>`. A cleanup that died in between finds the link on its
next try and does the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from daemon.connectors.code_prepare import Places, branch_of
from daemon.connectors.git import branch_commit, commit_of, git, out


def archive_ref(task_id: str) -> str:
    return f"refs/vaultd/archive/{task_id}"


def detached_ref(task_id: str, commit: str) -> str:
    return f"refs/vaultd/detached/{task_id}/{commit[:12]}"


@dataclass
class Tidied:
    """What cleanup of one task did, and what it kept and why."""

    task_id: str
    removed_worktree: bool = False
    deleted_branch: bool = False
    freed_bytes: int = 0
    kept: list[str] = field(default_factory=list)


def tidy(repo: Path, state_dir: Path, task_id: str) -> Tidied:
    """Given a finished (landed or rejected) task, remove its worktree and branch where
    that loses nothing; return what was done and what was kept, saying why."""
    done = Tidied(task_id)
    places = Places.of(state_dir, task_id)
    branch = branch_of(task_id)
    head = branch_commit(repo, branch)
    if places.worktree.is_symlink():
        done.kept.append(f"{places.worktree} is a symbolic link: not followed, not removed")
        return done
    _keep_last_head(repo, task_id, done)
    if places.worktree.exists():
        status = out(places.worktree, "status", "--porcelain", "--untracked-files=all")
        if status:
            done.kept.append(f"{places.worktree} has changes not committed: {status[:200]}")
            return done  # its branch stays checked out there: keep both
        if (loose := head_off_refs(repo, places.worktree)) is not None:
            done.kept.append(
                f"{places.worktree}: its HEAD {loose[:12]} is on no branch or ref of {repo}; "
                "removing the worktree would lose its commits"
            )
            return done
        size = _size(places.worktree)
        _link_head_log(repo, places.worktree, task_id)
        if git(repo, "worktree", "remove", str(places.worktree), check=False).returncode:
            _head_log_link(repo, task_id).unlink(missing_ok=True)
            done.kept.append(f"git would not remove {places.worktree}")
            return done
        done.removed_worktree, done.freed_bytes = True, size
        _keep_last_head(repo, task_id, done)
    if head is None:
        return done
    # The archive only moves forward: a branch rewritten since it was archived (a retry
    # after a crash) must not make the archive let go of the commits it keeps.
    archived = commit_of(repo, archive_ref(task_id))
    if archived not in (None, head) and not _contains(repo, head, str(archived)):
        done.kept.append(
            f"{branch} ({head[:12]}) no longer contains {archive_ref(task_id)} "
            f"({str(archived)[:12]}): both kept for a person"
        )
        return done
    git(
        repo,
        "update-ref",
        "-m",
        f"vaultd: archive task {task_id}",
        archive_ref(task_id),
        head,
        archived or "",  # compare-and-swap: "" means it must not exist yet
        check=False,
    )
    if commit_of(repo, archive_ref(task_id)) != head:
        done.kept.append(f"{branch}: its archive ref could not be set")
        return done
    deleted = git(repo, "update-ref", "-d", f"refs/heads/{branch}", head, check=False)
    if deleted.returncode:
        done.kept.append(f"{branch} moved while it was cleaned up: kept")
    else:
        done.deleted_branch = True
    return done


def head_off_refs(repo: Path, worktree: Path) -> str | None:
    """Return the commit a worktree's HEAD is at if no ref of `repo` contains it (a commit
    made on a detached HEAD: only the worktree knows it), else None."""
    head = out(worktree, "rev-parse", "--verify", "HEAD")
    refs = git(repo, "for-each-ref", "--count=1", "--contains", head, check=False)
    return head if refs.returncode or not str(refs.stdout).strip() else None


def _head_log_link(repo: Path, task_id: str) -> Path:
    common = Path(out(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    return common / "vaultd" / f"HEAD-log-{task_id}"


def _link_head_log(repo: Path, worktree: Path, task_id: str) -> None:
    """Hard-link the worktree's HEAD reflog beside the repo's refs (created empty first if
    git has not written one: git appends to the file it finds)."""
    pointer = (worktree / ".git").read_text(encoding="utf-8", errors="replace").strip()
    log = Path(pointer.removeprefix("gitdir:").strip()) / "logs" / "HEAD"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    link = _head_log_link(repo, task_id)
    link.parent.mkdir(exist_ok=True)
    link.unlink(missing_ok=True)
    os.link(log, link)


def _keep_last_head(repo: Path, task_id: str, done: Tidied) -> None:
    """After a worktree's removal (or a cleanup that died before this): keep the HEAD it
    ended at under `detached_ref` if no ref contains it, then drop the reflog's link."""
    link = _head_log_link(repo, task_id)
    if not link.is_file():
        return
    lines = link.read_text(encoding="utf-8", errors="replace").splitlines()
    last = lines[-1].split(" ", 2)[1] if lines and lines[-1].count(" ") >= 2 else ""
    if last and not set(last) - set("0123456789abcdef"):
        refs = git(repo, "for-each-ref", "--count=1", "--contains", last, check=False)
        if refs.returncode == 0 and not str(refs.stdout).strip():
            git(
                repo,
                "update-ref",
                "-m",
                f"vaultd: keep task {task_id}",
                detached_ref(task_id, last),
                last,
            )
            done.kept.append(
                f"a commit made on the worktree's detached HEAD meanwhile ({last[:12]}) is "
                f"kept as {detached_ref(task_id, last)}"
            )
    link.unlink(missing_ok=True)


def _contains(repo: Path, descendant: str, commit: str) -> bool:
    done = git(repo, "merge-base", "--is-ancestor", commit, descendant, check=False)
    return done.returncode == 0


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total
