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
skill's rate limit or cooldown holds back waits in Needs_Action/ until it may start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon import ledger
from daemon.outcome import Outcome
from daemon.skills.runs import RunError, RunView, Throttled
from daemon.skills.store import FAILED as RUN_FAILED
from daemon.skills.store import SUCCEEDED as RUN_SUCCEEDED
from daemon.taskfile import Loaded
from daemon.vault import DONE, FAILED

if TYPE_CHECKING:
    from daemon.pipeline import Pipeline

SKILL_KEYS = {"type", "skill", "params"}


def is_skill_task(meta: dict[str, Any]) -> bool:
    return meta.get("type") == "skill"


def skill_task(pipeline: Pipeline, loaded: Loaded, task_id: str) -> Outcome:
    """Start (once) the run a skill task file asks for; file the note by how it went."""
    meta = loaded.note.user_meta
    problems = skill_problems(meta)
    runs = pipeline.skills
    if runs is None:
        problems.append("skills are not available in this vaultd")
    if problems or runs is None:
        return pipeline.reject_task(loaded, task_id, "; ".join(problems), "skill")
    # A restart finds the task it started by the file (its id is stamped only at the end).
    started = pipeline.ledger.tasks_at(
        pipeline.vault.relative(loaded.path),
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
            pipeline.ledger.put_task(
                task_id,
                type="skill",
                file=pipeline.vault.relative(loaded.path),
                state=ledger.EXECUTING,
                approval="not_required",
                reason="a skill run asks for its world-changing actions one by one",
            )
            view = runs.create(
                meta["skill"], meta.get("params") or {}, requested_by=requested_by, execute=True
            )
    except Throttled as error:
        pipeline.ledger.put_task(task_id, state=ledger.APPROVED, error=str(error))
        return Outcome("deferred", loaded.path, retry_at=error.retry_at)
    except RunError as error:
        return pipeline.reject_task(loaded, task_id, str(error), "skill")
    return _file(pipeline, loaded, task_id, view)


def _file(pipeline: Pipeline, loaded: Loaded, task_id: str, view: RunView) -> Outcome:
    run = view.run
    failed = run.state == RUN_FAILED
    state, folder = (ledger.FAILED, FAILED) if failed else (ledger.DONE, DONE)
    result = {"run": run.id, "state": run.state}
    if run.state == RUN_SUCCEEDED and run.output is not None:
        result["output"] = run.output
    error = f"run {run.id} failed: {run.error}" if failed else None
    pipeline.ledger.put_task(task_id, state=state, error=error)
    stamps = {"id": task_id, "status": run.state, "result": result, "error": error}
    path = pipeline.write_and_move(loaded, stamps, folder)
    pipeline.ledger.put_task(task_id, file=pipeline.vault.relative(path))
    pipeline.log(
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
