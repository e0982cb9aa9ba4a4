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
place) is hard-linked beside the repo's refs first; after the removal its entries name the
HEAD the worktree ended at and the commits it was at before, and each that no ref contains
(the last, and those the task's branch never was at: made on a detached HEAD) is kept as
`refs/vaultd/detached/<task-id>/<commit>`. A cleanup that died in between finds the link on its
next try and does the same. The reflog is found from the repo's side (the admin folder
whose `gitdir` names the worktree), never from the worktree's `.git` file, and opened below
folders opened without following a link: the agent can write both, and they must name no
place outside for vaultd to create, link or read. If it cannot be linked, the worktree stays.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from daemon.connectors.code_prepare import Places, branch_of
from daemon.connectors.git import branch_commit, commit_of, common_dir, git, out


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
        try:
            _link_head_log(repo, places.worktree, task_id)
        except OSError as error:
            done.kept.append(
                f"{places.worktree}: its HEAD log cannot be kept aside ({error}); the worktree "
                "is kept, so that a commit made there meanwhile is not lost"
            )
            return done
        if git(repo, "worktree", "remove", str(places.worktree), check=False).returncode:
            _drop_link(repo, task_id)
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
    return head if not _a_ref_containing(repo, head) else None


def _a_ref_containing(repo: Path, commit: str) -> str | None:
    """Return a ref of `repo` that contains `commit`, "" if none does, or None if git
    cannot tell (no such commit, say)."""
    refs = git(repo, "for-each-ref", "--count=1", "--contains", commit, check=False)
    return None if refs.returncode else str(refs.stdout).strip()


def _head_log_link(repo: Path, task_id: str) -> Path:
    return common_dir(repo) / "vaultd" / f"HEAD-log-{task_id}"


def head_log_left(repo: Path, task_id: str) -> bool:
    """Whether a cleanup of `task_id` that stopped left its worktree's HEAD log linked
    aside (the next `tidy` keeps what it names)."""
    return os.path.lexists(_head_log_link(repo, task_id))


# Every file this cleanup links, reads or unlinks is opened below a folder opened without
# following a symbolic link: the worktree's agent (or a process it left) can write its
# `.git` file and its admin folder, and they must name no place outside for vaultd to touch.
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_under(top: int, *names: str, make: bool = False) -> int:
    """Open the folder `top/names...` (each a name, never a link); with `make`, the last one
    is made if missing. Return its descriptor (the caller closes it)."""
    fd = top
    try:
        for index, name in enumerate(names):
            if make and index == len(names) - 1:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
            opened = os.open(name, _DIRECTORY, dir_fd=fd)
            if fd != top:
                os.close(fd)
            fd = opened
    except OSError:
        if fd != top:
            os.close(fd)
        raise
    return fd


def _admin_name(repo: Path, worktree: Path, task_id: str) -> str:
    """Return the name, under `<common>/worktrees/`, of the worktree's admin folder: found
    from the repo's side (its `gitdir` names the worktree), never from the worktree's `.git`
    file. Raise OSError if there is none."""
    folder = common_dir(repo) / "worktrees"
    names = sorted(p.name for p in folder.iterdir()) if not folder.is_symlink() else []
    for name in sorted(names, key=lambda name: name != task_id):
        gitdir = folder / name / "gitdir"
        with contextlib.suppress(OSError, ValueError):
            if not gitdir.is_symlink() and not (folder / name).is_symlink():
                named = Path(gitdir.read_text(encoding="utf-8").strip())
                if named.name == ".git" and named.parent.resolve() == worktree.resolve():
                    return name
    raise FileNotFoundError(f"no admin folder of {worktree} under {folder}")


def _link_head_log(repo: Path, worktree: Path, task_id: str) -> None:
    """Hard-link the worktree's HEAD reflog beside the repo's refs (created empty first if
    git has not written one: git appends to the file it finds). Raise OSError if it is not
    a regular file of the worktree's admin folder."""
    admin = _admin_name(repo, worktree, task_id)
    link = _head_log_link(repo, task_id)
    common = os.open(link.parent.parent, _DIRECTORY)
    try:
        logs = _open_under(common, "worktrees", admin, "logs", make=True)
        try:
            try:  # read-only: it may be the agent's user's file, git's to write
                log = os.open("HEAD", _FILE | os.O_RDONLY, dir_fd=logs)
            except FileNotFoundError:
                log = os.open("HEAD", _FILE | os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666,
                              dir_fd=logs)  # fmt: skip
            try:
                made = os.fstat(log)
                if not stat.S_ISREG(made.st_mode):
                    raise OSError(f"{admin}'s logs/HEAD is not a regular file")
                aside = _open_under(common, link.parent.name, make=True)
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(link.name, dir_fd=aside)
                    os.link("HEAD", link.name, src_dir_fd=logs, dst_dir_fd=aside,
                            follow_symlinks=False)  # fmt: skip
                    linked = os.stat(link.name, dir_fd=aside, follow_symlinks=False)
                    if (linked.st_dev, linked.st_ino) != (made.st_dev, made.st_ino):
                        os.unlink(link.name, dir_fd=aside)  # swapped meanwhile: not its log
                        raise OSError(f"{admin}'s logs/HEAD was replaced while it was linked")
                finally:
                    os.close(aside)
            finally:
                os.close(log)
        finally:
            os.close(logs)
    finally:
        os.close(common)


def _logged_heads(repo: Path, task_id: str) -> list[str] | None:
    """Return the commits the reflog linked aside for `task_id` moved HEAD to, newest first
    (of its last 256 KiB); None if there is none. Raise OSError if it is not a regular file
    (vaultd links none other)."""
    link = _head_log_link(repo, task_id)
    try:
        aside = os.open(link.parent, _DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        try:
            fd = os.open(link.name, _FILE | os.O_RDONLY, dir_fd=aside)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as log:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{link} is not a regular file")
            log.seek(max(0, os.fstat(fd).st_size - (256 << 10)))
            lines = log.read().decode("utf-8", errors="replace").splitlines()
    finally:
        os.close(aside)
    heads: list[str] = []
    for line in reversed(lines):
        fields = line.split(" ", 2)
        new = fields[1] if len(fields) == 3 else ""
        if len(new) in (40, 64) and not set(new) - set("0123456789abcdef") and new not in heads:
            heads.append(new)
    return heads


def _drop_link(repo: Path, task_id: str) -> None:
    """Unlink the HEAD log linked aside; one that cannot be is read again next time."""
    link = _head_log_link(repo, task_id)
    with contextlib.suppress(OSError):
        aside = os.open(link.parent, _DIRECTORY)
        try:
            os.unlink(link.name, dir_fd=aside)
        finally:
            os.close(aside)


def _keep_last_head(repo: Path, task_id: str, done: Tidied) -> None:
    """After a worktree's removal (or a cleanup that died before this): keep each commit its
    HEAD was at that no ref contains, the last one and those its branch never was at (made
    on a detached HEAD, and moved on from), under `detached_ref`; then drop the link."""
    try:
        heads = _logged_heads(repo, task_id)
    except OSError as error:
        done.kept.append(f"the HEAD log kept aside for {task_id} cannot be read: {error}")
        return
    if not heads:
        _drop_link(repo, task_id)
        return
    # Not a commit its branch was at: one the agent amended or reset away is not kept.
    branch = git(repo, "log", "-g", "--format=%H", f"refs/heads/{branch_of(task_id)}", "--",
                 check=False)  # fmt: skip
    was_on_branch = set(str(branch.stdout).split()) if branch.returncode == 0 else set()
    for head in [heads[0], *(h for h in heads[1:] if h not in was_on_branch)]:
        # Newest first: an older one a kept one contains is then on a ref.
        if _a_ref_containing(repo, head) == "":
            ref = detached_ref(task_id, head)
            if commit_of(repo, ref) not in (None, head):  # another commit of that prefix
                ref = f"refs/vaultd/detached/{task_id}/{head}"
            git(repo, "update-ref", "-m", f"vaultd: keep task {task_id}", ref, head, "")
            done.kept.append(
                f"a commit the worktree's HEAD was at ({head[:12]}), on no ref, is kept as {ref}"
            )
    _drop_link(repo, task_id)


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
