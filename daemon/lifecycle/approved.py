"""Approved/ (design §3): read the note, validate it, ask the approval check whether it is the
one a person approved (daemon/lifecycle/approval_check.py), and do what the verdict says:
execute it, finish it, send it back to Pending_Approval/, expire it, or refuse it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from daemon.core import ledger
from daemon.core.errors import ValidationFailed
from daemon.core.ledger import Task
from daemon.core.models import Action, CodeTask, SocialPost
from daemon.core.outcome import Outcome
from daemon.core.taskfile import Loaded, Unreadable, read_task_file, validate_note
from daemon.core.timestamps import now_iso
from daemon.lifecycle.approval_check import Ruling, Verdict, check
from daemon.lifecycle.code_tasks import moved_since_approval
from daemon.lifecycle.context import Context
from daemon.lifecycle.execute import finish, refuse_mixed_versions, run, schedule
from daemon.lifecycle.execution import Execution
from daemon.lifecycle.rejection import reject, reject_unreadable
from daemon.lifecycle.request import adopt, send_back, shown_block
from daemon.lifecycle.review import expire
from daemon.lifecycle.steps import log, owned_task, withdrawn


def execute_approved(context: Context, path: Path, loaded: Loaded | None = None) -> Outcome:
    """Given a note in Approved/, execute it if it is what a person (or the policy)
    approved; otherwise send it back or refuse it, saying why. Return how it went.

    `loaded`: the note as vaultd has just written it there (not read again), used only
    while the file there is still the one written (one lstat): an edit or a swap since the
    write (a symlink, another file) is read and checked as any other note.
    """
    if loaded is not None and not _still_as_written(path, loaded):
        loaded = None
    try:
        loaded = loaded or read_task_file(path)
    except Unreadable as error:
        return reject_unreadable(context, path, str(error))
    task = owned_task(context, loaded)
    if (cancelled := withdrawn(context, loaded, task)) is not None:
        return cancelled
    try:
        action = validate_note(loaded.note)
    except ValidationFailed as error:
        task_id = task.id if task else context.ledger.new_task_id()
        return reject(context, loaded, task_id, str(error), loaded.note.meta.get("type"))
    payload_hash = action.payload_hash()
    verdict = check(
        task,
        loaded.note,
        payload_hash,
        now=context.clock(),
        executed=context.ledger.executed_hashes(payload_hash),
        shown_block=(
            shown_block(context, loaded, task, action)
            if task is not None and task.state == ledger.PENDING
            else None
        ),
    )
    if verdict.ruling is Ruling.REPLAY:
        new_id = context.ledger.new_task_id()
        return reject(context, loaded, new_id, verdict.reason, action.type, event="replay_refused")
    if task is None or verdict.ruling is Ruling.UNREQUESTED:
        return adopt(context, loaded, task, verdict.reason)
    if verdict.ruling is Ruling.FINISH:
        done = Execution(results=context.executor.completed(task.id, payload_hash))
        return finish(context, loaded, task, action, done)
    if verdict.ruling is Ruling.SEND_BACK:
        return send_back(
            context, loaded, task, action, why=verdict.reason, notice=verdict.notice or ""
        )
    if verdict.ruling is Ruling.EXPIRED:
        return expire(context, loaded, task)
    return _execute(context, loaded, task, action, verdict)


def _execute(
    context: Context, loaded: Loaded, task: Task, action: Action, verdict: Verdict
) -> Outcome:
    """Given a note the check let through, record a person's approval if it is new, then
    execute it, unless part of it went out as another version or its time has not come."""
    if verdict.ruling is Ruling.APPROVE:
        context.ledger.put_task(
            task.id,
            state=ledger.APPROVED,
            approval="human_approved",
            decided_at=now_iso(),
            file=context.vault.relative(loaded.path),
        )
        log(
            context,
            "approved",
            action,
            task.id,
            loaded.path,
            actor="human",
            approval_status="human_approved",
        )
        task = replace(task, state=ledger.APPROVED, approval="human_approved")
    # The check let through only the payload the task was asked about: `task.payload_hash`.
    stale = context._done_with_another_version(task.id, task.payload_hash or "", action)
    if stale:
        return refuse_mixed_versions(context, loaded, task, action, stale)
    if isinstance(action, CodeTask) and (moved := moved_since_approval(context, task, action)):
        return send_back(context, loaded, task, moved.action, why=moved.why, notice=moved.notice)
    when = action.scheduled_for if isinstance(action, SocialPost) else None
    if when and when > context.clock():
        return schedule(context, loaded, task, when)
    return run(context, loaded, task, action)


def _still_as_written(path: Path, loaded: Loaded) -> bool:
    """Whether the file at `path` is still the version `loaded` was written as (one lstat:
    its signature, and its ctime where vaultd kept it)."""
    if loaded.signature is None:
        return False
    ctime = loaded.signature.ctime_at(path)
    return ctime is not None and loaded.ctime_ns in (None, ctime)
