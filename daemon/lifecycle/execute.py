"""execute → move (design §3): run an approved action through its connectors (each call at
most once, daemon/lifecycle/execution.py), then file the note by how it went: Done/, or
Failed/ (an error, or an outcome nobody can tell), or left in Approved/ while a service
defers it or until its scheduled time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from daemon.core import ledger, notes
from daemon.core.costs import estimated_cost
from daemon.core.ledger import Task
from daemon.core.models import Action
from daemon.core.outcome import Outcome
from daemon.core.taskfile import Loaded
from daemon.core.timestamps import iso
from daemon.core.vault import DONE, FAILED
from daemon.lifecycle.context import Context
from daemon.lifecycle.execution import Execution
from daemon.lifecycle.steps import log, track, write_and_move


def run(context: Context, loaded: Loaded, task: Task, action: Action) -> Outcome:
    """Execute an approved action (each call at most once), then move it to its folder."""
    if context.skills is None:
        context.ledger.put_task(
            task.id, state=ledger.EXECUTING, file=context.vault.relative(loaded.path)
        )
    elif (cancelled := context.skills.start_execution(context, loaded, task)) is not None:
        return cancelled  # records EXECUTING, unless a cancel of its run came first
    # What the run means for the task is committed with the run's end: one transaction.
    execution = context.executor.run(
        task.id, task.payload_hash or "", action, then=lambda ran: _record(context, task, ran)
    )
    if execution.state == ledger.DEFERRED:
        return _wait(context, loaded, task, action, execution)
    return finish(context, loaded, task, action, execution, recorded=True)


def _record(context: Context, task: Task, execution: Execution) -> None:
    """Record in the ledger the task's state after a run: waiting in Approved/, or the
    state its note is about to be filed in."""
    if execution.state == ledger.DEFERRED:
        context.ledger.put_task(task.id, state=ledger.APPROVED, error=None)
    else:
        state, _, _, error = _ending(execution)
        context.ledger.put_task(task.id, state=state, error=error)


def schedule(context: Context, loaded: Loaded, task: Task, when: datetime) -> Outcome:
    """Leave an approved post in Approved/ until its `scheduled_for` time."""
    if loaded.note.meta.get("status") != "scheduled":
        stamps = {**loaded.note.stamps, "status": "scheduled"}
        context.vault.write(loaded.path, notes.render(loaded.note, stamps), loaded.signature)
    track(context, task, loaded.path)
    return Outcome("scheduled", loaded.path, retry_at=when)


def refuse_mixed_versions(
    context: Context, loaded: Loaded, task: Task, action: Action, stale: list[str]
) -> Outcome:
    """Fail a note whose new version would go where an earlier version already went."""
    error = (
        f"{', '.join(stale)} already received an earlier version of this note (task "
        f"{task.id}), so this version was not sent anywhere. Remove "
        f"{'it' if len(stale) == 1 else 'them'} from the note and move it to Approved/ "
        "to send this version to the rest, or drop a new task for a new post."
    )
    context.ledger.put_task(task.id, state=ledger.FAILED, error=error)
    stamps = {**loaded.note.stamps, "status": "failed", "error": error, "note": None}
    path = write_and_move(context, loaded, stamps, FAILED, block="")
    context.ledger.put_task(task.id, file=context.vault.relative(path))
    log(context, "failed", action, task.id, path, error=error)
    return Outcome("failed", path)


def _result(context: Context, action: Action, results: dict[str, Any]) -> dict[str, Any] | None:
    """Return what to stamp as a note's result: each call's answer, and its cost."""
    if not results:
        return None
    result = {"dry_run": context.dry_run, **results}
    cost = estimated_cost(action, context.prices)
    if cost is not None and "twitter" in results:
        result["estimated_cost_usd"] = str(cost)
    return result


def _wait(
    context: Context, loaded: Loaded, task: Task, action: Action, execution: Execution
) -> Outcome:
    """Leave an action in Approved/ until the service takes calls again (the ledger has
    the task back in APPROVED already, committed with the run: `_record`)."""
    retry_at = execution.retry_at() or context.clock()
    waiting = "; ".join(f"{t}: {reason}" for t, (reason, _) in execution.deferred.items())
    note = f"waiting until {iso(retry_at)}: {waiting}"
    stamps = {
        **loaded.note.stamps,
        "status": "waiting",
        "result": _result(context, action, execution.results),
        "note": note,
    }
    context.vault.write(loaded.path, notes.render(loaded.note, context.audit.redact(stamps)))
    log(context, "deferred", action, task.id, loaded.path, result={"status": "waiting"}, error=note)
    return Outcome("deferred", loaded.path, retry_at=retry_at)


def _ending(execution: Execution) -> tuple[str, str, str, str | None]:
    """Given what a run achieved, return (task state, folder, status, error) to file it by."""
    failures, unknown = execution.failures, execution.unknown
    if unknown:
        error = "outcome unknown, not retried: " + "; ".join(
            f"{t}: {e}" for t, e in unknown.items()
        )
        error += (
            ". Check the service; vaultd will not call it again by itself, and a new copy"
            " of this task asks a person first."
        )
        return ledger.UNKNOWN, FAILED, "outcome_unknown", error
    if failures:
        error = "; ".join(f"{t}: {e}" for t, e in failures.items())
        error += ". Move this note to Approved/ to retry what failed."
        return ledger.FAILED, FAILED, "failed", error
    return ledger.EXECUTED, DONE, "done", None


def finish(
    context: Context,
    loaded: Loaded,
    task: Task,
    action: Action,
    execution: Execution,
    *,
    recorded: bool = False,
) -> Outcome:
    """Given what a run achieved, record it and move the note to Done/ or Failed/
    (`recorded`: the ledger has the task's state already, committed with the run)."""
    results = execution.results
    state, folder, status, error = _ending(execution)
    if not recorded:
        context.ledger.put_task(task.id, state=state, error=error)
    stamps = {
        **loaded.note.stamps,
        "status": status,
        "result": _result(context, action, results),
        "error": error,
        "note": None,
    }
    # The approval request was for the decision, which is made: drop it from the note.
    path = write_and_move(context, loaded, stamps, folder, block="", sent=action.payload())
    final = ledger.DONE if state == ledger.EXECUTED else state
    context.ledger.put_task(task.id, state=final, file=context.vault.relative(path))
    log(
        context,
        {ledger.DONE: "executed", ledger.FAILED: "failed"}.get(final, "outcome_unknown"),
        action,
        task.id,
        path,
        approval_status=task.approval,
        result={"status": status, "dry_run": context.dry_run, **results},
        duration_ms=execution.duration_ms,
        error=error,
    )
    return Outcome(status, path)
