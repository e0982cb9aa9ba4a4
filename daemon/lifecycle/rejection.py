"""Rejected/ (design §3): a request a person moved here is recorded as rejected, with the
reason they gave; and how vaultd itself refuses a file, an invalid task (its error written
into the note) or one it cannot read (moved unchanged, with a note beside it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.core import ledger, notes
from daemon.core.outcome import Outcome
from daemon.core.taskfile import Loaded, Unreadable, read_task_file
from daemon.core.timestamps import now_iso
from daemon.core.vault import REJECTED, fit_name
from daemon.lifecycle.context import Context
from daemon.lifecycle.steps import log, owned_task, write_and_move


def record_rejection(context: Context, path: Path) -> Outcome:
    """Given a note in Rejected/, record its task rejected by a person (once); return how."""
    try:
        loaded = read_task_file(path)
    except Unreadable:
        return Outcome("unchanged", path)
    task = owned_task(context, loaded)
    if task is None or task.state in (ledger.REJECTED, ledger.DONE, ledger.EXECUTING):
        return Outcome("unchanged", path)
    reason = loaded.note.meta.get("rejection_reason") or "moved to Rejected/ by a person"
    context.ledger.put_task(
        task.id,
        state=ledger.REJECTED,
        approval="human_rejected",
        error=str(reason),
        decided_at=now_iso(),
        file=context.vault.relative(path),
    )
    stamps = {**loaded.note.stamps, "status": "rejected", "error": str(reason)}
    context.vault.write(path, notes.render(loaded.note, stamps, block=""), loaded.signature)
    log(
        context,
        "rejected",
        task.type,
        task.id,
        path,
        actor="human",
        approval_status="human_rejected",
        error=str(reason),
    )
    return Outcome("rejected", path)


def reject(
    context: Context,
    loaded: Loaded,
    task_id: str,
    reason: str,
    action_type: Any,
    *,
    event: str = "rejected_invalid",
) -> Outcome:
    """Given a note vaultd refuses and why, record its task rejected and move it to
    Rejected/ with the reason written in; return how."""
    action_type = action_type if isinstance(action_type, str) else None
    context.ledger.put_task(
        task_id,
        type=action_type,
        file=context.vault.relative(loaded.path),
        state=ledger.REJECTED,
        error=reason,
    )
    stamps = {**loaded.note.stamps, "id": task_id, "status": "rejected", "error": reason}
    path = write_and_move(context, loaded, stamps, REJECTED)
    context.ledger.put_task(task_id, file=context.vault.relative(path))
    log(context, event, action_type, task_id, path, error=f"{loaded.path.name}: {reason}")
    return Outcome("rejected", path)


def reject_unreadable(
    context: Context, path: Path, reason: str, *, name: str | None = None
) -> Outcome:
    """Move a file vaultd cannot parse to Rejected/ unchanged, with a note beside it."""
    task_id = context.ledger.new_task_id()
    moved = context.vault.move(path, REJECTED, name)
    text = notes.render(
        notes.Note(None, {}, f"vaultd rejected [[{moved.name}]]: it {reason}.\n"),
        {
            "id": task_id,
            "status": "rejected",
            "error": f"{moved.name} {reason}",
            "note": f"about {moved.name}, which was left exactly as it arrived",
        },
    )
    context.vault.create(REJECTED, fit_name(moved.name, ".rejected.md"), text)
    context.ledger.put_task(
        task_id, file=context.vault.relative(moved), state=ledger.REJECTED, error=reason
    )
    log(context, "rejected_unreadable", None, task_id, moved, error=f"{moved.name} {reason}")
    return Outcome("rejected", moved)
