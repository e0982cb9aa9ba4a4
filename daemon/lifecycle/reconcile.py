"""Start-up (design §3, "execute ─crash, outcome unknown─► reconcile"): settle every INTENT a
crash left behind by looking its marker up (Executor.reconcile), and record where a finished
task's note went when a crash cut in between its move and the ledger's record of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.core import ledger
from daemon.core.ledger import Task
from daemon.core.taskfile import Unreadable, read_task_file
from daemon.core.vault import DONE, FAILED
from daemon.lifecycle.context import Context


def reconcile(context: Context) -> list[str]:
    """Settle every INTENT a crash left behind, and every note a crash moved to its last
    folder before the ledger recorded the move. Return the markers looked up."""
    markers = context.executor.reconcile()
    _settle_last_moves(context)
    return markers


def _settle_last_moves(context: Context) -> None:
    """Record where a finished task's note went, when a crash cut in after its move.

    `finish` (daemon/lifecycle/execute.py) records EXECUTED, moves the note, then records
    DONE (or the note's new place in Failed/). Done/ and Failed/ are never processed, so
    nothing else would notice: look for the note, by its id, where it was going.
    """
    for task in context.ledger.tasks(ledger.EXECUTED, ledger.FAILED, ledger.UNKNOWN):
        if os.path.lexists(context.vault.root / task.file):
            continue  # still where the ledger says: the next look at it finishes it
        folder = DONE if task.state == ledger.EXECUTED else FAILED
        found = _note_of(context, task, folder)
        if found is None:
            continue  # moved elsewhere by a person: the next look at it tracks it
        settled = {"state": ledger.DONE} if task.state == ledger.EXECUTED else {}
        context.ledger.put_task(task.id, file=context.vault.relative(found), **settled)


def _note_of(context: Context, task: Task, folder: str) -> Path | None:
    """Return the note in `folder` that carries this task's id and its file's name."""
    stem = Path(task.file).stem
    for path in context.vault.files(folder):
        if not path.name.startswith(stem):
            continue
        try:
            if read_task_file(path).note.meta.get("id") == task.id:
                return path
        except Unreadable:
            continue
    return None
