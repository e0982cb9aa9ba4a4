"""Task files that ask for a skill run (`type: skill`), a step of the pipeline.

    ---
    type: skill
    skill: post-social-media
    params: {text: "Winter sale starts Monday", platforms: [facebook]}
    ---

Starting a run changes nothing in the world by itself: the run's world-changing requests
become task files of their own, each approved as usual. So a skill task is not asked about;
it starts its run once (a restart finds the run by the task's id instead of starting another)
and goes to Done/ with the run's id and state, or to Failed/ if the run failed. A run the
skill's rate limit or cooldown holds back waits in Needs_Action/ until it may start. When
the run ends, its end is written into the note in Done/ (daemon/agents/skills/settle.py).

The pipeline also asks here about every request a run wrote: one whose run was cancelled is
withdrawn to Rejected/ instead of being asked about or executed (`withdrawn`), and one about
to be executed is recorded as executing only if its run is not cancelled, checked in the
same transaction (`start_execution`), so a cancel racing an execution stops it or finds it
executing, never both.
"""

from __future__ import annotations

from typing import Any

from daemon.agents.skills.runs import RunError, Runs, RunView, Throttled
from daemon.agents.skills.settle import WITHDRAWN, cancelled_run, reject_note, run_stamps
from daemon.agents.skills.settle import withdrawal_reason as withdrawal
from daemon.agents.skills.store import FAILED as RUN_FAILED
from daemon.agents.skills.store import run_of
from daemon.core import ledger
from daemon.core.ledger import Task
from daemon.core.origin import read_origin
from daemon.core.outcome import Outcome
from daemon.core.taskfile import Loaded
from daemon.core.timestamps import now_iso
from daemon.core.vault import DONE, FAILED
from daemon.lifecycle.context import Context
from daemon.lifecycle.rejection import reject
from daemon.lifecycle.steps import log, write_and_move

SKILL_KEYS = {"type", "skill", "params"}


class SkillRuns(Runs):
    """The run service, doing the pipeline's skill steps (its port SkillSteps)."""

    def take_in(self, context: Context, loaded: Loaded, task_id: str) -> Outcome:
        return skill_task(context, self, loaded, task_id)

    def withdrawn(self, context: Context, loaded: Loaded, task: Task | None) -> Outcome | None:
        return withdrawn(context, self, loaded, task)

    def start_execution(self, context: Context, loaded: Loaded, task: Task) -> Outcome | None:
        return start_execution(context, self, loaded, task)


def skill_task(context: Context, runs: Runs, loaded: Loaded, task_id: str) -> Outcome:
    """Start (once) the run a skill task file asks for; file the note by how it went."""
    meta = loaded.note.user_meta
    problems = skill_problems(meta)
    if problems:
        return reject(context, loaded, task_id, "; ".join(problems), "skill")
    # A restart finds the task it started by the file (its id is stamped only at the end).
    started = context.ledger.tasks_at(
        context.vault.relative(loaded.path),
        ledger.EXECUTING,
        ledger.APPROVED,
        ledger.DONE,
        ledger.FAILED,
    )
    task_id = next((task.id for task in started if task.type == "skill"), task_id)
    requested_by = f"task:{task_id}"
    earlier = runs.store.runs_requested_by(requested_by)
    try:
        if earlier:
            view = runs.view(earlier[0].id)
        else:
            context.ledger.put_task(
                task_id,
                type="skill",
                file=context.vault.relative(loaded.path),
                state=ledger.EXECUTING,
                approval="not_required",
                reason="a skill run asks for its world-changing actions one by one",
            )
            view = runs.create(
                meta["skill"], meta.get("params") or {}, requested_by=requested_by, execute=True
            )
    except Throttled as error:
        context.ledger.put_task(task_id, state=ledger.APPROVED, error=str(error))
        return Outcome("deferred", loaded.path, retry_at=error.retry_at)
    except RunError as error:
        return reject(context, loaded, task_id, str(error), "skill")
    return _file(context, loaded, task_id, view)


def _file(context: Context, loaded: Loaded, task_id: str, view: RunView) -> Outcome:
    run = view.run
    failed = run.state == RUN_FAILED
    state, folder = (ledger.FAILED, FAILED) if failed else (ledger.DONE, DONE)
    stamps = {"id": task_id, **run_stamps(run)}
    result, error = stamps["result"], stamps["error"]
    context.ledger.put_task(task_id, state=state, error=error)
    path = write_and_move(context, loaded, stamps, folder)
    context.ledger.put_task(task_id, file=context.vault.relative(path))
    log(
        context,
        "skill_run_started" if not failed else "failed",
        "skill",
        task_id,
        path,
        result=result,
        error=error,
    )
    return Outcome(run.state, path)


def skill_problems(meta: dict[str, Any]) -> list[str]:
    """Return every problem of a skill task's fields, as "field: message"."""
    problems = [f"{key}: not a field of a skill task" for key in sorted(set(meta) - SKILL_KEYS)]
    if not isinstance(meta.get("skill"), str) or not meta.get("skill"):
        problems.append("skill: the name of a skill is required (see `vaultd skills list`)")
    if "params" in meta and not isinstance(meta["params"], dict):
        problems.append("params: must be a mapping of the skill's inputs")
    return problems


# A request in these states has reached a service (or is reaching it): cancelling its run
# cannot take it back, so it goes on through the lifecycle as usual.
UNDER_WAY = (ledger.EXECUTING, ledger.EXECUTED, ledger.DONE)


def withdrawn(context: Context, runs: Runs, loaded: Loaded, task: Task | None) -> Outcome | None:
    """Given a file in Needs_Action/, Pending_Approval/ or Approved/ and the task it is (None
    if it is none), return how it went to Rejected/ if it is a request of a cancelled run
    and not under way; return None for any other file (with no query for one no run wrote).

    Its task (or a new one, for a request not yet taken in) is recorded rejected before
    the note moves, with the reason written in: a person moving it on later (into Approved/
    or back to Pending_Approval/) finds it withdrawn again, never asked about or executed.
    Its recorded place changes only once the note has moved: if a canceller moved it first,
    the move here finds it gone (Vanished) and the canceller's record stands.
    """
    if task is not None and task.state in UNDER_WAY:
        return None
    origin = loaded.note.meta.get("origin")
    named = origin.get("run") if isinstance(origin, dict) else None
    run = cancelled_run(
        runs.store,
        run_of(task.origin) if task is not None else None,
        named if isinstance(named, str) else None,
    )
    if run is None:
        return None
    reason = withdrawal(run.id, run.error)
    task_id, action_type, new = (task.id, task.type, {}) if task else _new_task(context, loaded)
    context.ledger.put_task(
        task_id,
        **new,
        state=ledger.REJECTED,
        approval=WITHDRAWN,
        error=reason,
        decided_at=now_iso(),
    )
    path = reject_note(context.vault, context.audit.redact, loaded.path, task_id, reason)
    context.ledger.put_task(task_id, file=context.vault.relative(path))
    log(context, "rejected", action_type, task_id, path, approval_status=WITHDRAWN, error=reason)
    runs.refresh(run.id)  # its trace and output follow the request to Rejected/
    return Outcome("rejected", path)


def _new_task(context: Context, loaded: Loaded) -> tuple[str, str | None, dict[str, Any]]:
    """Given a request not yet taken in, return a new task id, its type and its fields."""
    meta = loaded.note.meta
    action_type = meta["type"] if isinstance(meta.get("type"), str) else None
    origin = read_origin(meta, loaded.path.name, context.ledger).key
    here = context.vault.relative(loaded.path)
    fields = {"type": action_type, "origin": origin, "file": here}
    return context.ledger.new_task_id(), action_type, fields


def start_execution(context: Context, runs: Runs, loaded: Loaded, task: Task) -> Outcome | None:
    """Given an approved task about to be executed, record it as executing and return None;
    if it is the request of a run that was cancelled, withdraw it and return how instead.

    For a run's request the check of the run and the record are one ledger transaction
    (RunStore.claim): a cancel made a moment before is seen here, and one made after finds
    the request executing and says so.
    """
    here = context.vault.relative(loaded.path)
    run_id = run_of(task.origin)
    if run_id is None:
        context.ledger.put_task(task.id, state=ledger.EXECUTING, file=here)
        return None
    if runs.store.claim(task.id, run_id, here):
        return None
    return withdrawn(context, runs, loaded, task) or Outcome("unchanged", loaded.path)
