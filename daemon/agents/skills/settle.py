"""What a run's end changes in the vault: the note of the `type: skill` task that asked for
it, the paths in its output, and the requests of a run that was cancelled.

Who writes which note, when two processes may be at work (`vaultd run`, and `vaultd runs
cancel` or `runs show` from a shell, or the REST API in the daemon's own process):

- The ledger decides, files follow. Cancelling a run marks its requests that are not yet
  executing as rejected in the same transaction that cancels it (RunStore.cancel), and the
  pipeline records a request as executing only in a transaction that checks its run
  (RunStore.claim). Whichever comes first wins, so a cancelled run's request never executes,
  wherever its file is, whoever moves it and whenever they do.
- The canceller then moves the notes of the requests it withdrew from Pending_Approval/ or
  Approved/ to Rejected/, with the reason written in, the way a person would: it rewrites a
  note only through Vault.write's signature check (never over a change made since it read
  the note; it reads it again and retries) and moves it with Vault.move (never over another
  file). A note it cannot move (being moved by someone else, or not where the ledger says)
  is left to the daemon: on its next look at the file, wherever it went, the pipeline finds
  the request's run cancelled and moves it to Rejected/ itself (skill_tasks.withdrawn).
  Requests still in Needs_Action/, which the pipeline has not taken in, are always left to
  it, so that only the pipeline ever records a new task for a file.
- The note of the task that asked for a run is in Done/ (or Failed/), where the pipeline
  never writes again. The process whose change of the run's state wins writes the end into
  it, with the same signature check; a write a crash or a person's edit prevented is caught
  up before the daemon's next dashboard write (Runs.refresh_waiting, from skill_task_notes).

Only vaultd's own keys (`status`, `result`, `error`) change; the body and the user's keys
are kept byte for byte (notes.render).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.agents.skills.store import CANCELLED, FAILED, SUCCEEDED, Run, RunStore
from daemon.core import ledger as task_states
from daemon.core import notes
from daemon.core.audit import AuditLog
from daemon.core.errors import VaultError
from daemon.core.ledger import Ledger
from daemon.core.taskfile import Unreadable, read_task_file
from daemon.core.vault import APPROVED, DONE, PENDING, REJECTED, Vault
from daemon.core.vault import FAILED as FAILED_FOLDER

Redact = Callable[[Any], Any]
# The approval recorded for a request withdrawn because its run was cancelled.
WITHDRAWN = "withdrawn"
# How often a note is read again when it changes under a rewrite before vaultd gives up.
TRIES = 3


def withdrawal_reason(run_id: str, why: str | None) -> str:
    """Given a cancelled run and why it was cancelled, return what its withdrawn requests say."""
    because = f" ({why})" if why else ""
    return (
        f"run cancelled: run {run_id} was cancelled{because}, so this request was withdrawn "
        "and will not be executed"
    )


def cancelled_run(store: RunStore, *run_ids: str | None) -> Run | None:
    """Given run ids (None for none), return the first of those runs that was cancelled."""
    for run_id in run_ids:
        run = store.get(run_id) if run_id else None
        if run is not None and run.state == CANCELLED:
            return run
    return None


def run_stamps(run: Run) -> dict[str, Any]:
    """Given a run, return what the note of the task that asked for it shows of it."""
    result: dict[str, Any] = {"run": run.id, "state": run.state}
    if run.state == SUCCEEDED and run.output is not None:
        result["output"] = run.output
    error = None
    if run.state == FAILED:
        error = f"run {run.id} failed: {run.error}"
    elif run.state == CANCELLED:
        error = f"run {run.id} cancelled: {run.error}"
    return {"status": run.state, "result": result, "error": error}


def note_run(vault: Vault, ledger: Ledger, redact: Redact, run: Run) -> bool:
    """Given a run a `type: skill` task asked for, write its state into that task's note;
    return True once the note shows it (or no note is left to show it), False if it is to
    be tried again: the note is still being filed, or kept changing while vaultd wrote."""
    task = ledger.task((run.requested_by or "").removeprefix("task:"))
    if task is None:
        return True
    path = vault.root / task.file
    if vault.folder_of(path) not in (DONE, FAILED_FOLDER):
        return False  # not filed yet: the filing stamps the run's state as it is then
    for _ in range(TRIES):
        try:
            loaded = read_task_file(path)
        except Unreadable:
            return not os.path.lexists(path)  # deleted: nothing to show it in
        if loaded.note.meta.get("id") != task.id:
            return True  # another note now has that name
        text = notes.render(loaded.note, redact({**loaded.note.stamps, **run_stamps(run)}))
        if text == notes.render(loaded.note, loaded.note.stamps):
            return True
        if vault.write(path, text, loaded.signature):
            return True
    return False


def relocated(value: Any, moves: dict[str, tuple[str, str]]) -> Any:
    """Given a run's output and, by the path it had, each request's (path, state) now,
    return the output naming where the requests are now. A tool's answer in it (with its
    `task_file` and `status: requested`) gets the request's state as its status."""
    if isinstance(value, str):
        return moves[value][0] if value in moves else value
    if isinstance(value, list):
        return [relocated(item, moves) for item in value]
    if isinstance(value, dict):
        moved = {key: relocated(item, moves) for key, item in value.items()}
        where = value.get("task_file")
        if isinstance(where, str) and where in moves and value.get("status") == "requested":
            moved["status"] = moves[where][1]
        return moved
    return value


def reject_note(vault: Vault, redact: Redact, path: Path, task_id: str, reason: str) -> Path:
    """Given a request's note and why it is withdrawn, write that into it and move it to
    Rejected/; return where it landed. Raise Vanished if it is gone.

    The rewrite is made only over the note as it was read (retried if it changes); a note
    that keeps changing is moved without it, as the pipeline moves one a person edits.
    """
    for _ in range(TRIES):
        try:
            loaded = read_task_file(path)
        except Unreadable:
            break
        stamps = {**loaded.note.stamps, "id": task_id, "status": "rejected", "error": reason}
        if vault.write(path, notes.render(loaded.note, redact(stamps), block=""), loaded.signature):
            break
    return vault.move(path, REJECTED)


def withdraw(
    vault: Vault, ledger: Ledger, audit: AuditLog, tasks: list[dict[str, Any]], reason: str
) -> dict[str, str | None]:
    """Given the tasks a cancel withdrew in the ledger, move their notes from Pending_Approval/
    or Approved/ to Rejected/ and log each; return, by task id, where its note is now (None
    if it was not where the ledger said: the pipeline withdraws it when it next sees it)."""
    where: dict[str, str | None] = {}
    for task in tasks:
        path = vault.root / task["file"]
        where[task["id"]] = None
        if vault.folder_of(path) in (PENDING, APPROVED) and os.path.lexists(path):
            try:
                moved = reject_note(vault, audit.redact, path, task["id"], reason)
            except VaultError:
                moved = None  # moved or deleted meanwhile: the pipeline sees to it
            if moved is not None:
                where[task["id"]] = vault.relative(moved)
                ledger.put_task(task["id"], file=where[task["id"]])
        audit.write(
            "rejected",
            action=task["type"],
            task_id=task["id"],
            file=where[task["id"]] or task["file"],
            approval_status=WITHDRAWN,
            error=reason,
        )
    return where


def cancel_notices(
    tasks: list[dict[str, Any]], where: dict[str, str | None], not_taken_in: list[str]
) -> tuple[str, ...]:
    """Given a cancelled run's requests' tasks as they were, where the withdrawn ones are
    now, and its request files the pipeline has not taken in, return what became of each."""
    said = []
    for task in tasks:
        file, state = task["file"], task["state"]
        if task["id"] in where:
            now = where[task["id"]]
            said.append(
                f"{file}: withdrawn to {now}; it will not be executed"
                if now
                else f"{file}: withdrawn; it will not be executed (vaultd moves its note to "
                "Rejected/ when it next sees it)"
            )
        elif state in (task_states.DONE, task_states.EXECUTED):
            said.append(f"{file}: already executed, stays done (cancelling cannot undo it)")
        elif state == task_states.EXECUTING:
            said.append(f"{file}: being executed (cancelling cannot stop it)")
        elif state == task_states.REJECTED:
            said.append(f"{file}: already rejected")
        else:
            said.append(f"{file}: {state}; it stays for a person, and can no longer be retried")
    said.extend(
        f"{file}: not yet taken in; vaultd rejects it (run cancelled) when it does"
        for file in not_taken_in
    )
    return tuple(said)
