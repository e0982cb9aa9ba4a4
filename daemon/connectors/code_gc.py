"""Reclaiming the disk of finished code tasks (`vaultd code gc`, issue 16): which task
worktrees under `<state>/worktrees/` are safe to remove, and why the others are not.

A worktree is reclaimed only through `code_cleanup.tidy`, and only when its task is
finished in the ledger (done or rejected), its repo is one of `[code.repos]`, and it is a
clean folder whose HEAD is on a ref. Everything else is left alone and named: a task not
finished, a dirty worktree, a HEAD on no ref, a folder no task owns, a symbolic link (never
followed), an interrupted landing's worktree. A finished task whose worktree is gone but
whose branch is left gets its branch archived and deleted the same way.

The artifacts under `<state>/code/<task-id>/` (the patch, the spec, the logs the Done note
links to) are read, never removed. Disk is measured before and after, not estimated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from daemon.connectors.code_cleanup import archive_ref, head_log_left, head_off_refs, tidy
from daemon.connectors.code_prepare import INPUTS, Places, branch_of
from daemon.connectors.git import branch_commit, out
from daemon.core.errors import ConnectorError
from daemon.core.ledger_states import DONE, REJECTED
from daemon.core.ledger_tasks import Task

FINISHED = (DONE, REJECTED)
LANDING = ".landing"


class GcRefused(ConnectorError):
    """The state directory is not one gc can walk safely (its worktrees folder is a link)."""


@dataclass
class Candidate:
    """One entry of `<state>/worktrees/` (or a finished task's branch left without one):
    whether it is safe to reclaim, and why or why not."""

    name: str
    path: str
    task_id: str | None = None
    state: str | None = None
    repo: str | None = None
    safe: bool = False
    reasons: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # what reclaiming it did
    reclaimed: bool = False

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Report:
    """What one run of the gc found, did and freed (bytes of `<state>/worktrees/`)."""

    root: str
    dry_run: bool
    candidates: list[Candidate]
    bytes_before: int = 0
    bytes_after: int = 0
    reclaimable_bytes: int = 0  # what the safe worktrees take, measured before

    @property
    def freed_bytes(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)

    def to_json(self) -> dict[str, object]:
        return {
            "worktrees": self.root,
            "dry_run": self.dry_run,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "freed_bytes": self.freed_bytes,
            "reclaimable_bytes": self.reclaimable_bytes,
            "reclaimed": sum(c.reclaimed for c in self.candidates),
            "kept": sum(not c.reclaimed for c in self.candidates),
            "entries": [c.to_json() for c in self.candidates],
        }


TaskOf = Callable[[str], Task | None]


def collect(
    state_dir: Path, repos: Mapping[str, Path], task_of: TaskOf, *, dry_run: bool
) -> Report:
    """Given a state directory, the allowed repos and the ledger's `task` lookup, reclaim
    what is safe (nothing with `dry_run`) and return the report of every entry."""
    root = state_dir / "worktrees"
    if root.is_symlink() or (state_dir / "code").is_symlink():
        raise GcRefused(f"{root.parent}: worktrees/ or code/ is a symbolic link; nothing done")
    candidates = survey(state_dir, repos, task_of)
    report = Report(str(root), dry_run, candidates, bytes_before=disk_usage(root))
    report.reclaimable_bytes = sum(
        disk_usage(Path(c.path)) for c in candidates if c.safe and not Path(c.path).is_symlink()
    )
    if not dry_run:
        for candidate in candidates:
            if candidate.safe:
                reclaim(state_dir, repos, candidate)
    report.bytes_after = report.bytes_before if dry_run else disk_usage(root)
    return report


def survey(state_dir: Path, repos: Mapping[str, Path], task_of: TaskOf) -> list[Candidate]:
    """Return, for every entry of `<state>/worktrees/` and every finished task whose branch
    outlived its worktree, whether it is safe to reclaim; nothing is changed."""
    root = state_dir / "worktrees"
    found = []
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    for name in names:
        candidate = Candidate(name, str(root / name))
        _judge_entry(state_dir, repos, task_of, candidate)
        found.append(candidate)
    artifacts = state_dir / "code"
    for task_id in sorted(p.name for p in artifacts.iterdir()) if artifacts.is_dir() else []:
        if task_id in names or (artifacts / task_id).is_symlink():
            continue
        left = _branch_left(state_dir, repos, task_of, task_id)
        if left is not None:
            found.append(left)
    return found


def _judge_entry(
    state_dir: Path, repos: Mapping[str, Path], task_of: TaskOf, candidate: Candidate
) -> None:
    path = Path(candidate.path)
    why = candidate.reasons
    if path.is_symlink():
        why.append(f"a symbolic link (to {path.readlink()}): not followed, not removed")
        return
    if not path.is_dir():
        why.append("not a folder: vaultd did not make it, so it is left for a person")
        return
    if candidate.name.endswith(LANDING):
        why.append(
            "the worktree of an interrupted landing: the task's next landing removes it; "
            "gc leaves it for a person"
        )
        return
    if not _task_finished(state_dir, repos, task_of, candidate):
        return
    repo = repos[str(candidate.repo)]
    try:
        status = out(path, "status", "--porcelain", "--untracked-files=all")
        if status:
            why.append(f"has changes not committed: {status[:200]}")
            return
        if (loose := head_off_refs(repo, path)) is not None:
            why.append(f"its HEAD {loose[:12]} is on no branch or ref: removing it loses commits")
            return
        why.append(f"task {candidate.state}, worktree clean, its HEAD on a ref")
        _say_branch(repo, candidate)
    except ConnectorError as error:
        why.append(f"git cannot read it: {error}")
        return
    candidate.safe = True


def _task_finished(
    state_dir: Path, repos: Mapping[str, Path], task_of: TaskOf, candidate: Candidate
) -> bool:
    """Fill in the candidate's task, state and repo; return whether its task is finished
    and its repo allowed (else say why not)."""
    why = candidate.reasons
    try:
        candidate.name.encode()
    except UnicodeEncodeError:
        why.append("its name is not UTF-8, so no task has it (an orphan folder): left alone")
        return False
    task = task_of(candidate.name)
    if task is None:
        why.append("no task of this name in the ledger (an orphan folder): left for a person")
        return False
    candidate.task_id, candidate.state = task.id, task.state
    if task.type != "code_task":
        why.append(f"task {task.id} is a {task.type}, not a code task")
        return False
    if task.state not in FINISHED:
        why.append(f"task not finished (ledger: {task.state})")
        return False
    candidate.repo = _repo_name(state_dir, task.id)
    if candidate.repo is None:
        why.append(f"its repo is not known: no {Places.of(state_dir, task.id).artifacts / INPUTS}")
        return False
    if candidate.repo not in repos:
        why.append(f"its repo {candidate.repo!r} is not in [code.repos]")
        return False
    return True


def _branch_left(
    state_dir: Path, repos: Mapping[str, Path], task_of: TaskOf, task_id: str
) -> Candidate | None:
    """Return a candidate for a task whose worktree is gone but whose branch (or the HEAD log
    a cleanup that stopped linked aside) is left; None if it left neither."""
    repo = repos.get(_repo_name(state_dir, task_id) or "")
    if repo is None:
        return None
    try:
        head = branch_commit(repo, branch_of(task_id))
        left = head_log_left(repo, task_id)
    except ConnectorError:
        return None
    if head is None and not left:
        return None
    candidate = Candidate(task_id, str(Places.of(state_dir, task_id).worktree))
    candidate.reasons.append(
        f"worktree missing, branch {branch_of(task_id)} left"
        if head is not None
        else "worktree missing, the HEAD log of a cleanup that stopped left: what it names "
        "is kept when it is reclaimed"
    )
    if _task_finished(state_dir, repos, task_of, candidate):
        candidate.safe = True
        _say_branch(repo, candidate)
    return candidate


def _say_branch(repo: Path, candidate: Candidate) -> None:
    task_id = str(candidate.task_id)
    head = branch_commit(repo, branch_of(task_id))
    if head is not None:
        candidate.reasons.append(
            f"its branch {branch_of(task_id)} ({head[:12]}) is kept as {archive_ref(task_id)} "
            "when it is reclaimed"
        )


def _repo_name(state_dir: Path, task_id: str) -> str | None:
    """Return the repo key a task was prepared in, from vaultd's own record of its inputs."""
    try:
        inputs = json.loads((Places.of(state_dir, task_id).artifacts / INPUTS).read_text())
    except (OSError, ValueError):
        return None
    repo = inputs.get("repo") if isinstance(inputs, dict) else None
    return repo if isinstance(repo, str) else None


def reclaim(state_dir: Path, repos: Mapping[str, Path], candidate: Candidate) -> None:
    """Reclaim one safe candidate through the cleanup that cannot lose work; record what it
    did, and what it kept and why (it checks again: a worktree can change meanwhile)."""
    task_id, repo = str(candidate.task_id), repos[str(candidate.repo)]
    try:
        tidied = tidy(repo, state_dir, task_id)
    except ConnectorError as error:
        candidate.done.append(f"cleanup stopped: {error}")
        return
    if tidied.removed_worktree:
        candidate.done.append("worktree removed")
    if tidied.deleted_branch:
        candidate.done.append(f"branch deleted, kept as {archive_ref(task_id)}")
    candidate.done.extend(tidied.kept)
    candidate.reclaimed = tidied.removed_worktree or tidied.deleted_branch


def disk_usage(path: Path) -> int:
    """Return the bytes of disk the files and folders under `path` take (as `du` counts
    them), never following a symbolic link; 0 if there is nothing."""
    try:
        top = path.lstat()
    except OSError:
        return 0
    total = getattr(top, "st_blocks", 0) * 512 or top.st_size
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                stat = (Path(root) / name).lstat()
            except OSError:
                continue
            total += getattr(stat, "st_blocks", 0) * 512 or stat.st_size
    return total


def human(count: int) -> str:
    """Return a byte count as a person reads it: 512 B, 4.0 KiB, 1.2 MiB."""
    if count < 1024:
        return f"{count} B"
    size, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{size:.1f} {unit}"
