"""Pending_Approval/ (design §3): while a request waits for a person, an edit of its action
re-renders and re-hashes it (a new version), an edit of the request vaultd showed is put
back, and a request past its expiry goes to Rejected/.
"""

from __future__ import annotations

from pathlib import Path

from daemon.core import ledger, notes
from daemon.core.errors import ValidationFailed
from daemon.core.ledger import Task
from daemon.core.models import Action
from daemon.core.outcome import Outcome
from daemon.core.policy import decide
from daemon.core.taskfile import Loaded, Unreadable, read_task_file, validate_note
from daemon.core.vault import APPROVED, REJECTED
from daemon.lifecycle.approval_check import has_expired
from daemon.lifecycle.context import Context
from daemon.lifecycle.request import (
    adopt,
    mark_invalid_request,
    request_approval,
    request_retry,
    shown_block,
)
from daemon.lifecycle.steps import facts, log, owned_task, track, withdrawn, write_and_move


def review(context: Context, path: Path) -> Outcome:
    """Given a note in Pending_Approval/, keep its request true to the note; return how."""
    try:
        loaded = read_task_file(path)
    except Unreadable as error:
        # A person may be half-way through an edit: leave the file, never lose it.
        log(context, "request_unreadable", None, None, path, error=str(error))
        return Outcome("unreadable", path)
    task = owned_task(context, loaded)
    if (cancelled := withdrawn(context, loaded, task)) is not None:
        return cancelled
    if task is not None and task.state in (ledger.FAILED, ledger.UNKNOWN):
        return request_retry(context, loaded, task)
    if (
        task is not None
        and task.state == ledger.REJECTED
        and task.file == context.vault.relative(loaded.path)
    ):
        return _finish_rejection(context, loaded, task)
    if task is None or task.state not in (ledger.PENDING, ledger.APPROVED):
        return adopt(context, loaded, task, "was placed in Pending_Approval/ by hand")
    if task.state == ledger.APPROVED and context.ledger.steps(task.id):
        return _keep_approved(context, loaded, task)
    if has_expired(task, context.clock()):
        return expire(context, loaded, task)
    try:
        action = validate_note(loaded.note)
    except ValidationFailed as error:
        return mark_invalid_request(context, loaded, task, str(error))
    if action.payload_hash() == task.payload_hash:
        track(context, task, loaded.path)
        if task.state == ledger.PENDING:
            return _restore_request(context, loaded, task, action)
        return Outcome("unchanged", loaded.path)
    decision = decide(action, context.policy, facts(context, action))
    return request_approval(context, loaded, task.id, action, decision, expires=task.expires_at)


def _keep_approved(context: Context, loaded: Loaded, task: Task) -> Outcome:
    """Send back to Approved/ an approved note whose execution began and that was moved
    back here: its calls may have gone out and cannot be taken back, so it is settled in
    Approved/ as ever (a lookup, or its end), never expired as if no one had decided."""
    path = context.vault.move(loaded.path, APPROVED)
    context.ledger.put_task(task.id, file=context.vault.relative(path))
    reason = (
        "moved back to Pending_Approval/ after its execution had begun; a call that went "
        "out cannot be taken back, so it stays approved and is finished in Approved/"
    )
    log(context, "approval_kept", task.type, task.id, path, error=reason)
    return Outcome("approval_kept", path)


def _restore_request(context: Context, loaded: Loaded, task: Task, action: Action) -> Outcome:
    """Put back the request vaultd showed if its block or stamps were edited.

    The approver must see what the ledger will hold them to, not someone's edit of it
    (for instance a smaller amount typed into the rendered block).
    """
    block = shown_block(context, loaded, task, action)
    approval = {
        "rule": task.rule,
        "reason": task.reason,
        "expires_at": task.expires_at,
        "payload_hash": task.payload_hash,
    }
    stamps = {**loaded.note.stamps, "id": task.id, "status": "pending_approval"}
    stamps["approval"] = approval
    text = notes.render(loaded.note, stamps, block)
    if text == notes.render(loaded.note, loaded.note.stamps):
        return Outcome("unchanged", loaded.path)
    context.vault.write(loaded.path, text, loaded.signature)
    log(context, "request_restored", action, task.id, loaded.path, error="request was edited")
    return Outcome("restored", loaded.path)


def _finish_rejection(context: Context, loaded: Loaded, task: Task) -> Outcome:
    """Finish moving a note to Rejected/ that a crash stopped on its way (an expiry)."""
    status = "expired" if task.approval == "expired" else "rejected"
    stamps = {**loaded.note.stamps, "id": task.id, "status": status, "error": task.error}
    path = write_and_move(context, loaded, stamps, REJECTED, block="")
    context.ledger.put_task(task.id, file=context.vault.relative(path))
    log(context, status, task.type, task.id, path, approval_status=status, error=task.error)
    return Outcome(status, path)


def expire(context: Context, loaded: Loaded, task: Task) -> Outcome:
    """Given a request past its expiry, record it expired and move it to Rejected/."""
    reason = f"the approval request expired at {task.expires_at} without a decision"
    context.ledger.put_task(task.id, state=ledger.REJECTED, error=reason, approval="expired")
    stamps = {**loaded.note.stamps, "status": "expired", "error": reason}
    path = write_and_move(context, loaded, stamps, REJECTED, block="")
    context.ledger.put_task(task.id, file=context.vault.relative(path))
    log(context, "expired", task.type, task.id, path, approval_status="expired", error=reason)
    return Outcome("expired", path)
