"""The lifecycle's part of code tasks (issue 16): prepare the change when the task is taken
in (before its approval request is written), show the exact patch in the request, and,
before landing, make sure the branch still holds the approved head.

The approval binds the payload hash, and a code task's payload includes what was prepared
(`models.Prepared`: the base and head SHAs and the diff's SHA-256), so a request a person
approves names one diff. A commit pushed to `vaultd/<id>` afterwards does not land: the
task goes back to Pending_Approval/ with the new diff and a notice saying why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from daemon.connectors.code import CodeConnector
from daemon.connectors.code_cleanup import tidy
from daemon.connectors.code_prepare import Places, Refused, prepare, refresh
from daemon.connectors.git import branch_commit
from daemon.core import ledger
from daemon.core.errors import ValidationFailed
from daemon.core.ledger import Task
from daemon.core.models import CodeTask, Prepared
from daemon.core.outcome import Outcome
from daemon.core.taskfile import Loaded, Unreadable, read_task_file
from daemon.lifecycle import rejection
from daemon.lifecycle.context import Context
from daemon.lifecycle.rejection import reject


@dataclass(frozen=True)
class PatchView:
    """The patch as an approval request shows it: its first lines, and where it is whole."""

    path: str
    shown: str
    shown_lines: int
    lines: int
    truncated: bool
    intact: bool  # the file's SHA-256 is the approved diff's


def connector(context: Context) -> CodeConnector | None:
    found = context.connectors.get("code")
    return found if isinstance(found, CodeConnector) else None


def take_in(
    context: Context, loaded: Loaded, task_id: str, action: CodeTask
) -> tuple[str, CodeTask] | Outcome:
    """Given a code task just validated, prepare it and return its id (the one given, or the
    one its preparation in the background was started under) and it with what was prepared;
    or reject it to Rejected/, naming the field at fault, and return how; or, while it is
    being prepared in the background (code_background.py), say when to look again."""
    code = connector(context)
    if code is None:
        return reject(context, loaded, task_id, "code tasks are not available here", action.type)
    # Never the note's `code` stamp: vaultd's record, or a preparation now.
    bare = action.model_copy(update={"prepared": None})

    def made(task: str) -> Prepared:
        return prepare(code.config, code.state_dir, task, bare)

    answer: Prepared | Refused
    if context.code_preparations is None:
        try:
            answer = made(task_id)
        except Refused as error:
            answer = error
    else:
        key = (context.vault.relative(loaded.path), bare.payload_hash())
        got = context.code_preparations.get(key, task_id, made)
        if isinstance(got, datetime):
            return Outcome("unchanged", loaded.path, retry_at=got)
        task_id, answer = got
    if isinstance(answer, Refused):
        reason = str(ValidationFailed([(answer.field or "(preparation)", str(answer))]))
        return reject(context, loaded, task_id, reason, action.type)
    return task_id, action.model_copy(update={"prepared": answer})


def stamps(action: object) -> dict[str, object]:
    """Return the `code` stamp of a prepared code task (nothing for any other action)."""
    if isinstance(action, CodeTask) and action.prepared is not None:
        return {"code": action.prepared.model_dump(mode="json")}
    return {}


@dataclass(frozen=True)
class Moved:
    """A code task whose branch moved after approval: the task as the branch is now, and
    what to tell the log and the person."""

    action: CodeTask
    why: str
    notice: str


def moved_since_approval(context: Context, task: Task, action: CodeTask) -> Moved | None:
    """Given an approved code task about to land, return None if its branch still holds the
    approved head (or cannot be read: the connector then refuses it, saying why); else the
    task re-described from the branch as it is now."""
    code = connector(context)
    approved = action.prepared
    repo = code.config.repos.get(action.repo) if code else None
    if code is None or approved is None or repo is None:
        return None
    if branch_commit(repo, approved.branch) in (approved.head_sha, None):
        return None
    now = refresh(code.config, code.state_dir, task.id, action)
    old, new = approved.head_sha[:12], now.head_sha[:12]
    return Moved(
        action.model_copy(update={"prepared": now}),
        f"{approved.branch} moved after approval, from {old} to {new}",
        f"A commit was pushed to {approved.branch} after it was approved (head {old}, now "
        f"{new}), so nothing was landed. Review the diff as it is now and approve it again.",
    )


def patch_view(context: Context, task_id: str, action: object) -> PatchView | None:
    """Return how a code task's request shows its patch; None for other actions."""
    code = connector(context)
    if not isinstance(action, CodeTask) or action.prepared is None or code is None:
        return None
    path = Places.of(code.state_dir, task_id).patch(action.prepared.diff_sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return PatchView(str(path), "", 0, 0, truncated=False, intact=False)
    lines = data.decode("utf-8", errors="replace").splitlines()
    limit = code.config.shown_patch_lines
    return PatchView(
        path=str(path),
        shown="\n".join(lines[:limit]),
        shown_lines=min(limit, len(lines)),
        lines=len(lines),
        truncated=len(lines) > limit,
        intact=hashlib.sha256(data).hexdigest() == action.prepared.diff_sha256,
    )


def record_rejection(context: Context, path: Path) -> Outcome:
    """Record a note a person moved to Rejected/ (daemon/lifecycle/rejection.py); a rejected
    or expired code task's worktree and branch are then cleaned up where that loses nothing:
    its commits stay under `refs/vaultd/archive/<id>` (daemon/connectors/code_cleanup.py)."""
    outcome = rejection.record_rejection(context, path)
    code = connector(context)
    if outcome.status not in ("rejected", "unchanged") or code is None:
        return outcome  # "unchanged" too: a request that expired, moved here by vaultd
    try:
        loaded = read_task_file(path)
    except Unreadable:
        return outcome
    task_id, repo = loaded.note.meta.get("id"), loaded.note.meta.get("repo")
    task = context.ledger.task(task_id) if isinstance(task_id, str) else None
    where = code.config.repos.get(repo) if isinstance(repo, str) else None
    if (
        task is not None
        and task.type == "code_task"
        and task.state == ledger.REJECTED
        and where is not None
        and Places.of(code.state_dir, task.id).worktree.exists()
    ):
        tidy(where, code.state_dir, task.id)
    return outcome
