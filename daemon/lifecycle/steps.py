"""The steps every stage takes: find the ledger task a note is, gather the facts a decision
needs, write vaultd's keys into a note and move it, and log what was done.

Each is a function of the stage's Context (daemon/lifecycle/context.py). Skill task files
(daemon/agents/skills/tasks.py) use them too.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.connectors import targets
from daemon.core import failpoints, ledger, ledger_counts, notes
from daemon.core.errors import NoteError
from daemon.core.ledger import Task
from daemon.core.models import Action
from daemon.core.outcome import Outcome
from daemon.core.policy import Decision, Facts
from daemon.core.taskfile import Loaded, Unreadable, read_task_file
from daemon.core.vault import Signature
from daemon.lifecycle.context import Context


def owned_task(context: Context, loaded: Loaded) -> Task | None:
    """Given a note, return the ledger task it is, or None if it is none (or only a copy).

    A file owns its id if the ledger places the task at this path, or at a path that no
    longer exists (a person moved or renamed it). If the recorded file still exists
    elsewhere, this one is a copy and owns nothing.
    """
    here = context.vault.relative(loaded.path)
    task_id = loaded.note.meta.get("id")
    if not isinstance(task_id, str):
        # A pending request whose `id:` was deleted is still that request: it keeps its
        # versions and its change banner (found by the review). So is a note a crash cut
        # between its task's record and its move (the id is stamped with the move): left
        # out, a run's request would lose its origin to a new task, and its run would wait
        # for ever (found by the kill -9 test under the run queue).
        at_path = context.ledger.tasks_at(here, ledger.PENDING, ledger.APPROVED)
        return at_path[0] if len(at_path) == 1 else None
    task = context.ledger.task(task_id)
    if task is None:
        return None
    if task.file != here and os.path.lexists(context.vault.root / task.file):
        return None
    return task


def withdrawn(context: Context, loaded: Loaded, task: Task | None) -> Outcome | None:
    """Given a note and its task, return how it was withdrawn if its skill run was cancelled
    (daemon/agents/skills/tasks.py); else None."""
    return None if context.skills is None else context.skills.withdrawn(context, loaded, task)


def facts(context: Context, action: Action) -> Facts:
    """Given an action about to be decided, return the facts (and record its keys, so
    that the next decision counts it: daemon/core/ledger_counts.py)."""
    connector = context.connectors.get(targets(action)[0])
    known = connector.facts(action) if connector else Facts()
    ledger_counts.remember(context.ledger, action)
    before = ledger_counts.repeat_of(context.ledger, action)
    return replace(
        known,
        executed_before=before.task_id if before else None,
        executed_before_unsure=before.unsure if before else False,
        auto_approved=ledger_counts.auto_approved_since(
            context.ledger, context.clock() - ledger_counts.WINDOW
        ),
    )


def track(context: Context, task: Task, path: Path) -> None:
    """Given a task and where its note is now, record that place if it moved."""
    here = context.vault.relative(path)
    if task.file != here:
        context.ledger.put_task(task.id, file=here)


def money(decision: Decision) -> dict[str, Any]:
    """Given a decision, return the ledger fields of its amount (none if it has none)."""
    if decision.amount is None:
        return {}
    return {"amount": str(decision.amount), "currency": decision.currency}


def write_and_move(
    context: Context,
    loaded: Loaded,
    stamps: dict[str, Any],
    folder: str,
    *,
    block: str | None = None,
    sent: dict[str, Any] | None = None,
) -> Path:
    """Write vaultd's keys into the note, then move it. Return where it is now.

    If a person changed the file since it was read, the move still happens but the
    rewrite does not: their edit wins, and the next look at the file sees it. A note
    that was executed (`sent`: the payload that went out) is final, so its stamps go
    onto the edited note instead, with what was sent and a notice that the edit was not.
    """
    return _write_and_move(context, loaded, stamps, folder, block=block, sent=sent)[0]


def write_and_move_loaded(
    context: Context, loaded: Loaded, stamps: dict[str, Any], folder: str
) -> tuple[Path, Loaded | None]:
    """Write vaultd's keys into the note and move it, as `write_and_move` does; return where
    it is now and the note as it is there (what was written, with the signature of that
    write), or None for the note if a person's edit won: it must be read from disk."""
    path, text, signature = _write_and_move(context, loaded, stamps, folder, chain=True)
    if signature is None:
        return path, None
    settled = signature.ctime_at(path)
    if settled is None:
        return path, None
    try:
        return path, Loaded(path, notes.parse(text), signature, settled)
    except NoteError:
        return path, None  # not for a text render made; then read it as any other note


def _write_and_move(
    context: Context,
    loaded: Loaded,
    stamps: dict[str, Any],
    folder: str,
    *,
    block: str | None = None,
    sent: dict[str, Any] | None = None,
    chain: bool = False,
) -> tuple[Path, str, Signature | None]:
    """Return (where the note is now, the text written, that write's signature or None).

    `chain`: the signature is None unless the file is still the one written, ctime and
    all, just before it is moved (what a caller executes from memory must be what is
    there)."""
    vault = context.vault
    arrived = vault.settle_interrupted_move(loaded.path, folder)
    here = arrived or loaded.path
    text = notes.render(loaded.note, context.audit.redact(stamps), block)
    signature = vault.write_signed(here, text, loaded.signature)
    if signature is None and sent is not None:
        _stamp_edited(context, here, stamps, sent, block)
    if arrived is not None:
        return arrived, text, signature
    written = signature.ctime_at(here) if chain and signature else None
    failpoints.hit("mid-move", loaded.path.name)
    if chain and signature and (written is None or signature.ctime_at(here) != written):
        signature = None  # changed since the write: read it again where it lands
    return vault.move(loaded.path, folder), text, signature


def _stamp_edited(
    context: Context, path: Path, stamps: dict[str, Any], sent: dict[str, Any], block: str | None
) -> None:
    """Put an execution's final stamps on a note edited while its calls were in flight."""
    stamps = {
        **stamps,
        "result": {**(stamps.get("result") or {}), "sent": sent},
        "note": "This note was edited while it was being executed: `result.sent` is "
        "what was sent. The edit is kept here, but it was not sent.",
    }
    for _ in range(3):  # a writer still at work: try again on its newer version
        try:
            current = read_task_file(path)
        except Unreadable:
            return  # half-written: the person's bytes win; the ledger knows the result
        text = notes.render(current.note, context.audit.redact(stamps), block)
        if context.vault.write(path, text, current.signature):
            return


def log(
    context: Context,
    event: str,
    action: Action | str | None,
    task_id: str | None,
    path: Path | None,
    **fields: Any,
) -> None:
    """Write one audit entry about a file: the action's payload and hash if it is one, and
    how long the step on this file has taken so far (unless `duration_ms` is given)."""
    began = context.step_began()
    if began is not None and fields.get("duration_ms") is None:
        fields["duration_ms"] = int((time.monotonic() - began) * 1000)
    parameters = None
    if isinstance(action, Action):
        parameters = {**action.payload(), "content_hash": action.payload_hash()}
        action = action.type
    context.audit.write(
        event,
        action=action,
        task_id=task_id,
        file=context.vault.relative(path) if path else None,
        parameters=parameters,
        **fields,
    )
