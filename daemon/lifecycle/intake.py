"""Needs_Action/ (design §3): read a new task file, validate it (invalid → Rejected/ with the
error written in), and decide by the policy: a task that needs approval becomes a request in
Pending_Approval/; an auto-approved one moves to Approved/ and is executed at once. A
`type: skill` file starts a skill run instead (daemon/agents/skills/tasks.py).
"""

from __future__ import annotations

from pathlib import Path

from daemon.core import ledger
from daemon.core.errors import ValidationFailed
from daemon.core.models import Action
from daemon.core.origin import read_origin, stricter
from daemon.core.outcome import Outcome
from daemon.core.policy import Decision, decide
from daemon.core.taskfile import Loaded, Unreadable, read_task_file, validate_note
from daemon.core.timestamps import now_iso
from daemon.core.vault import APPROVED
from daemon.lifecycle.approved import execute_approved
from daemon.lifecycle.context import Context
from daemon.lifecycle.rejection import reject, reject_unreadable
from daemon.lifecycle.request import request_approval, request_retry
from daemon.lifecycle.steps import (
    facts,
    log,
    money,
    owned_task,
    withdrawn,
    write_and_move_loaded,
)


def take_in(context: Context, path: Path) -> Outcome:
    """Given a file in Needs_Action/, validate and decide it, and file it; return how."""
    try:
        loaded = read_task_file(path)
    except Unreadable as error:
        return reject_unreadable(context, path, str(error))
    if loaded.note.meta.get("type") == "alert":
        # vaultd's own alert for the human (daemon/service/supervisor.py): nothing to do.
        return Outcome("unchanged", loaded.path)
    task = owned_task(context, loaded)
    if (cancelled := withdrawn(context, loaded, task)) is not None:
        return cancelled  # a request of a cancelled run (daemon/agents/skills/tasks.py)
    if task is not None and task.state in (ledger.FAILED, ledger.UNKNOWN):
        return request_retry(context, loaded, task)
    # A file still in Needs_Action/ with a pending or approved (not yet executing) task is
    # that task, moved back or interrupted by a crash before its move: keep its id. So is
    # one that a crash stopped half-way into Rejected/.
    here = context.vault.relative(loaded.path)
    if task is not None and (
        task.state in (ledger.PENDING, ledger.APPROVED)
        or (task.state == ledger.REJECTED and task.file == here)
    ):
        task_id = task.id
    else:
        task_id = context.ledger.new_task_id()
    if loaded.note.meta.get("type") == "skill":
        if context.skills is None:
            return reject(
                context, loaded, task_id, "skills are not available in this vaultd", "skill"
            )
        return context.skills.take_in(context, loaded, task_id)
    try:
        action = validate_note(loaded.note)
    except ValidationFailed as error:
        return reject(context, loaded, task_id, str(error), loaded.note.meta.get("type"))
    origin = read_origin(loaded.note.meta, loaded.path.name, context.ledger)
    decision = stricter(decide(action, context.policy, facts(context, action)), origin)
    if decision.needs_approval:
        return request_approval(context, loaded, task_id, action, decision, origin=origin.key)
    return _auto_approve(context, loaded, task_id, action, decision, origin=origin.key)


def _auto_approve(
    context: Context,
    loaded: Loaded,
    task_id: str,
    action: Action,
    decision: Decision,
    *,
    origin: str | None = None,
) -> Outcome:
    """Record a task the policy approves, move it to Approved/ and execute it there."""
    context.ledger.put_task(
        task_id,
        **({"origin": origin} if origin else {}),
        type=action.type,
        file=context.vault.relative(loaded.path),
        state=ledger.APPROVED,
        payload_hash=action.payload_hash(),
        approval="auto_approved",
        rule=decision.rule,
        reason=decision.reason,
        decided_at=now_iso(),
        **money(decision),
    )
    stamps = {
        "id": task_id,
        "status": "approved",
        "approval": {"by": "policy", "rule": decision.rule, "reason": decision.reason},
    }
    path, approved = write_and_move_loaded(context, loaded, stamps, APPROVED)
    log(
        context,
        "auto_approved",
        action,
        task_id,
        path,
        approval_status="auto_approved",
        result={"status": "approved", "rule": decision.rule},
    )
    # The note just written is not read back: what is in Approved/ is what was written,
    # unless a person's edit won the write (then it is read, and checked, as any other).
    return execute_approved(context, path, approved)
