"""Asking a person (design §3, "needs approval → Pending_Approval"): write a request, as a new
version of it, into the note and move it to Pending_Approval/; and every way a note comes
to be asked about again: a note vaultd never asked about (a new request with a new id), an
approved note sent back because it is not what was approved, a failed task moved back for a
retry (same id), and a request whose task is no longer valid.
"""

from __future__ import annotations

from datetime import timedelta

from daemon.core import ledger, notes
from daemon.core.costs import estimated_cost
from daemon.core.errors import ValidationFailed
from daemon.core.ledger import Task
from daemon.core.models import Action, CodeTask
from daemon.core.outcome import Outcome
from daemon.core.policy import Decision, decide
from daemon.core.request_versions import changed, reference
from daemon.core.taskfile import Loaded, validate_note
from daemon.core.timestamps import iso, parse_time
from daemon.core.vault import PENDING
from daemon.lifecycle import code_tasks
from daemon.lifecycle.approval import render_request
from daemon.lifecycle.context import Context
from daemon.lifecycle.rejection import reject
from daemon.lifecycle.steps import facts, log, money, write_and_move


def request_approval(
    context: Context,
    loaded: Loaded,
    task_id: str,
    action: Action,
    decision: Decision,
    *,
    notice: str | None = None,
    expires: str | None = None,
    origin: str | None = None,
    keep_approval: bool = True,
) -> Outcome:
    """Put a task up for a person's approval as a new version of its request.

    A version that differs from the first one shown opens with a banner listing what
    changed. `vaultd approve`'s stamp of the version it approved stays on the note
    (`keep_approval`) unless the note is sent back because of it, so that a request an
    agent changed while the command moved it is refused, never run. A code task is shown
    as vaultd prepared it, whatever its note's `code` stamp says (or rejected if it cannot
    be prepared).
    """
    if isinstance(action, CodeTask):
        ready = code_tasks.take_in(context, loaded, task_id, action)
        if isinstance(ready, Outcome):
            return ready
        task_id, action = ready
    payload_hash = action.payload_hash()
    stale = context._done_with_another_version(task_id, payload_hash, action)
    if stale:
        warning = (
            f"{', '.join(stale)} already received an earlier version of this note: "
            f"remove {'it' if len(stale) == 1 else 'them'} from the note, or approving "
            "it sends nothing."
        )
        notice = f"{notice} {warning}" if notice else warning
    context.versions.issue(task_id, payload_hash, action.payload(), notice)
    expires_at = (
        parse_time(expires)
        if expires
        else context.clock() + timedelta(hours=context.policy.approval_expiry_hours)
    )
    context.ledger.put_task(
        task_id,
        **({"origin": origin} if origin else {}),
        type=action.type,
        file=context.vault.relative(loaded.path),
        state=ledger.PENDING,
        payload_hash=payload_hash,
        approval="required",
        rule=decision.rule,
        reason=decision.reason,
        expires_at=iso(expires_at),
        error=None,
        **money(decision),
    )
    block = render_request(
        hints=context.hints,
        cost=estimated_cost(action, context.prices),
        task_id=reference(task_id, payload_hash),
        action=action,
        decision=decision,
        payload_hash=payload_hash,
        expires_at=expires_at,
        notice=notice,
        changed=changed(context.versions.of(task_id), payload_hash),
        patch=code_tasks.patch_view(context, task_id, action),
    )
    stamps = {
        "id": task_id,
        "status": "pending_approval",
        "approval": {
            "rule": decision.rule,
            "reason": decision.reason,
            "expires_at": iso(expires_at),
            "payload_hash": payload_hash,
        },
        "note": notice,
        "approved_version": (loaded.note.meta.get("approved_version") if keep_approval else None),
        **code_tasks.stamps(action),
    }
    path = write_and_move(context, loaded, stamps, PENDING, block=block)
    context.ledger.put_task(task_id, file=context.vault.relative(path))
    log(
        context,
        "approval_requested",
        action,
        task_id,
        path,
        approval_status="pending",
        result={"status": "pending_approval", "rule": decision.rule},
        error=notice,
    )
    return Outcome("pending_approval", path)


def shown_block(context: Context, loaded: Loaded, task: Task, action: Action) -> str:
    """Return the request block vaultd wrote for a pending task: what the approver saw.

    Its notice and change banner come from the ledger, never from the note, whose
    `note:` key an agent can rewrite.
    """
    versions = context.versions.of(task.id)
    shown = next((v for v in versions if v.payload_hash == task.payload_hash), None)
    notice = shown.notice if shown else loaded.note.meta.get("note")
    expires_at = parse_time(task.expires_at) if task.expires_at else context.clock()
    decision = Decision(True, task.rule or "", task.reason or "", None, task.currency)
    return render_request(
        hints=context.hints,
        cost=estimated_cost(action, context.prices),
        task_id=reference(task.id, task.payload_hash or ""),
        action=action,
        decision=decision,
        payload_hash=task.payload_hash or "",
        expires_at=expires_at,
        notice=notice if isinstance(notice, str) else None,
        changed=changed(versions, task.payload_hash or ""),
        patch=code_tasks.patch_view(context, task.id, action),
    )


def adopt(context: Context, loaded: Loaded, task: Task | None, why: str) -> Outcome:
    """Turn a file vaultd did not ask about into a fresh approval request (new id)."""
    try:
        action = validate_note(loaded.note)
    except ValidationFailed as error:
        new_id = context.ledger.new_task_id()
        return reject(context, loaded, new_id, str(error), loaded.note.meta.get("type"))
    decision = decide(action, context.policy, facts(context, action))
    if not decision.needs_approval:
        decision = Decision(
            True, "unrequested", f"this note {why}", decision.amount, decision.currency
        )
    earlier = f" (it carried id {task.id}, now {task.state})" if task else ""
    notice = f"This note {why}{earlier}. It needs your approval as a new request."
    log(
        context,
        "approval_refused",
        action,
        loaded.note.meta.get("id"),
        loaded.path,
        error=f"this note {why}",
    )
    new_id = context.ledger.new_task_id()
    return request_approval(context, loaded, new_id, action, decision, notice=notice)


def send_back(
    context: Context, loaded: Loaded, task: Task, action: Action, *, why: str, notice: str
) -> Outcome:
    """Send an approved note back for a fresh approval (same id), saying why."""
    decision = decide(action, context.policy, facts(context, action))
    log(context, "approval_refused", action, task.id, loaded.path, error=why)
    return request_approval(
        context, loaded, task.id, action, decision, notice=notice, keep_approval=False
    )


def request_retry(context: Context, loaded: Loaded, task: Task) -> Outcome:
    """Ask again for a failed task a person moved back, under the same id.

    Keeping the id is what makes the retry safe: calls that already succeeded for this
    task are skipped, so a partly posted note is never posted twice.
    """
    try:
        action = validate_note(loaded.note)
    except ValidationFailed as error:
        return mark_invalid_request(context, loaded, task, str(error))
    done = sorted(context.executor.completed(task.id, action.payload_hash()))
    notice = f"Task {task.id} ended {task.state.replace('_', ' ')} before."
    if done:
        notice += f" Already done and skipped if you approve: {', '.join(done)}."
    decision = decide(action, context.policy, facts(context, action))
    return request_approval(context, loaded, task.id, action, decision, notice=notice)


def mark_invalid_request(context: Context, loaded: Loaded, task: Task, error: str) -> Outcome:
    """Given a request whose note no longer validates, say so in the note (once) and forget
    its payload hash, so that it cannot be approved as it is; return how."""
    if loaded.note.meta.get("error") == error and task.payload_hash is None:
        return Outcome("unchanged", loaded.path)
    context.ledger.put_task(task.id, payload_hash=None, error=error)
    stamps = {**loaded.note.stamps, "status": "invalid", "error": error}
    context.vault.write(loaded.path, notes.render(loaded.note, stamps), loaded.signature)
    log(context, "request_invalid", None, task.id, loaded.path, error=error)
    return Outcome("invalid", loaded.path)
