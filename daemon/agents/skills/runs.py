"""Skill runs: create one, execute it, and follow its requests through the pipeline.

    create  → draft (inputs checked against the skill's schema)
    execute → queued → running (execute.py in a child, within timeout_s)
            → awaiting_approval if it requested world-changing actions, else succeeded;
              failed on an error, a refused tool call left unhandled, or the timeout
    refresh → awaiting_approval becomes succeeded once every request is Done, failed if a
              person rejected one or it failed; the output then names where they are now
    cancel  → cancelled, from draft or awaiting_approval: its requests not yet executing are
              withdrawn to Rejected/ and can no longer be executed (daemon/agents/skills/settle.py)

The note of a `type: skill` task that asked for a run shows the run's state as it changes.

Every interface (CLI, REST API, MCP, `type: skill` task files) goes through this module, so
the checks (groups, rate limit, cooldown, timeout) and the audit trail are the same for all.
No interface here can approve anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.agents.skills.registry import Registry, Skill
from daemon.agents.skills.run_errors import (
    Forbidden,
    InputsInvalid,
    NotExecutable,
    RunError,
    RunNotFound,
    SkillNotFound,
    Throttled,
)
from daemon.agents.skills.sandbox import run_script
from daemon.agents.skills.settle import (
    cancel_notices,
    note_run,
    relocated,
    withdraw,
    withdrawal_reason,
)
from daemon.agents.skills.store import (
    AWAITING_APPROVAL,
    CANCELLED,
    DRAFT,
    FAILED,
    QUEUED,
    RUNNING,
    STEP_DONE,
    STEP_REQUESTED,
    SUCCEEDED,
    WITHDRAWABLE,
    Run,
    RunStore,
    TraceStep,
    TransitionRefused,
    origin_of,
)
from daemon.agents.skills.tools import Reader, ToolBox
from daemon.core import ledger as task_states
from daemon.core.audit import AuditLog
from daemon.core.ledger import Ledger
from daemon.core.timestamps import iso, parse_time
from daemon.core.vault import Vault

# The states in which a request's task has ended, for the run that made it.
ENDED = (task_states.DONE, task_states.REJECTED, task_states.FAILED, task_states.UNKNOWN)
__all__ = [
    "Forbidden",
    "InputsInvalid",
    "NotExecutable",
    "RunError",
    "RunNotFound",
    "SkillNotFound",
    "Throttled",
]


@dataclass(frozen=True)
class Attempt:
    """How one attempt of a run ended: its result or error, and how many requests it wrote."""

    result: Any
    error: str | None
    requested: int


@dataclass(frozen=True)
class RunView:
    """A run with its trace, as every interface shows it."""

    run: Run
    trace: list[TraceStep]
    # What an action did besides the run's state (what cancelling did to each request).
    notices: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        run = self.run
        return {
            "id": run.id,
            "skill": run.skill,
            "state": run.state,
            "inputs": run.inputs,
            "output": run.output,
            "error": run.error,
            "requested_by": run.requested_by,
            "attempt": run.attempt,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "trace": [
                {
                    "attempt": step.attempt,
                    "seq": step.seq,
                    "tool": step.tool,
                    "state": step.state,
                    "inputs": step.inputs,
                    "output": step.output,
                    "error": step.error,
                    "duration_ms": step.duration_ms,
                    "task_file": step.task_file,
                }
                for step in self.trace
            ],
        }


class Runs:
    def __init__(
        self,
        registry: Registry,
        vault: Vault,
        ledger: Ledger,
        audit: AuditLog,
        *,
        readers: dict[str, Reader] | None = None,
    ) -> None:
        self.registry = registry
        self.vault = vault
        self.audit = audit
        self.store = RunStore(ledger)
        self.readers = readers or {}

    # -- create and execute ------------------------------------------------------------

    def create(
        self,
        skill_key: str,
        inputs: Any,
        *,
        requested_by: str | None,
        groups: set[str] | None = None,
        execute: bool = False,
    ) -> RunView:
        """Create a draft run after checking the caller and the inputs; optionally start it."""
        skill = self._skill(skill_key)
        self._check_groups(skill, groups)
        problems = skill.manifest.input_errors(inputs)
        if problems:
            raise InputsInvalid(skill_key, problems)
        run = self.store.create(skill_key, inputs, requested_by=requested_by)
        self._log("run_created", run, actor=requested_by or "vaultd")
        if execute:
            return self.execute(run.id, groups=groups)
        return self.view(run.id)

    def admit(self, skill_key: str, inputs: Any, groups: set[str] | None) -> Skill:
        """Given a skill, its inputs and the caller's groups, return the skill if a run of it
        may start now; raise SkillNotFound, Forbidden, InputsInvalid or Throttled if not."""
        skill = self._skill(skill_key)
        self._check_groups(skill, groups)
        problems = skill.manifest.input_errors(inputs)
        if problems:
            raise InputsInvalid(skill_key, problems)
        self._check_pace(skill)
        return skill

    def logged(self, run: Run, event: str | None = None, **fields: Any) -> None:
        """Write a run's event (default: run_<state>) into the audit log."""
        self._log(event or f"run_{run.state}", run, **fields)

    def execute(self, run_id: str, *, groups: set[str] | None = None) -> RunView:
        """Execute a draft or failed run to its end (or to awaiting_approval)."""
        run = self._run(run_id)
        if run.state not in (DRAFT, FAILED):
            raise NotExecutable(f"run {run_id} is {run.state}; only a draft or failed run runs")
        skill = self._skill(run.skill)
        self._check_groups(skill, groups)
        self._check_pace(skill)
        try:
            run = self.store.move(
                run_id, QUEUED, expect=(DRAFT, FAILED), attempt=run.attempt + 1, error=None
            )
        except TransitionRefused as refused:
            raise NotExecutable(
                f"run {run_id} is {refused.current}; only a draft or failed run runs"
            ) from None
        run = self.store.move(run_id, RUNNING, expect=(QUEUED,))
        return self.finish(run_id, self.attempt(run))

    def attempt(self, run: Run) -> Attempt:
        """Given a running run, run its script once (its tool calls recorded in its trace);
        return how it ended, leaving the run's state as it is."""
        skill = self._skill(run.skill)
        tools = ToolBox(self.vault, self.store, skill.manifest, run.id, run.attempt, self.readers)
        finished = run_script(
            skill.script, run.inputs, tools.handle, timeout_s=skill.manifest.timeout_s
        )
        return Attempt(finished.result, finished.error, tools.requested)

    def finish(self, run_id: str, attempt: Attempt) -> RunView:
        """Given a running run and how its attempt ended, record its end; return the run.
        Raise TransitionRefused if it is no longer running."""
        if attempt.error is not None:
            run = self.store.move(run_id, FAILED, expect=(RUNNING,), error=attempt.error)
        else:
            state = AWAITING_APPROVAL if attempt.requested else SUCCEEDED
            run = self.store.move(run_id, state, expect=(RUNNING,), output=attempt.result)
        self._log(f"run_{run.state}", run, error=run.error)
        self._note(run)
        return self.view(run_id)

    def cancel(self, run_id: str, *, reason: str) -> RunView:
        """Given a draft, queued run or run waiting for approval, cancel it and withdraw its
        requests; return it, with what became of each request. Raise NotExecutable in another
        state. A request not yet executing is rejected ("run cancelled") and never executed,
        wherever its file goes later; one executed, or being executed, stays as it is
        (daemon/agents/skills/settle.py says who moves which note)."""
        why = withdrawal_reason(run_id, reason)
        try:
            run, tasks = self.store.cancel(run_id, error=reason, withdrawal=why)
        except TransitionRefused as refused:
            raise NotExecutable(
                f"run {run_id} is {refused.current}; only a draft, a queued run or a run "
                "waiting for approval can be cancelled"
            ) from None
        self._log("run_cancelled", run, error=reason)
        withdrawn = [task for task in tasks if task["state"] in WITHDRAWABLE]
        where = withdraw(self.vault, self.store.ledger, self.audit, withdrawn, why)
        seen = {task["origin"] for task in tasks}
        not_taken_in = [
            step.task_file
            for step in self.store.steps(run_id)
            if step.token and step.task_file and origin_of(run_id, step.token) not in seen
        ]
        view = self.view(run_id)
        self._note(view.run)
        return replace(view, notices=cancel_notices(tasks, where, not_taken_in))

    # -- follow ----------------------------------------------------------------------------

    def view(self, run_id: str) -> RunView:
        """Return the run and its trace, first catching up with what became of its requests."""
        run = self.refresh(run_id)
        return RunView(run, self.store.steps(run_id))

    def refresh(self, run_id: str) -> Run:
        """Given a run, return it caught up with what became of its requests.

        A run waiting for approval succeeds once every request is Done, and fails if one was
        rejected or failed; a cancelled run's trace follows the requests still under way.
        """
        run = self._run(run_id)
        if run.state not in (AWAITING_APPROVAL, CANCELLED):
            return run
        waiting, failures, moves = self._follow(run)
        output = relocated(run.output, moves)
        try:
            if run.state == AWAITING_APPROVAL and failures:
                run = self.store.move(
                    run_id,
                    FAILED,
                    expect=(AWAITING_APPROVAL,),
                    error="; ".join(failures),
                    output=output,
                )
            elif run.state == AWAITING_APPROVAL and not waiting:
                run = self.store.move(run_id, SUCCEEDED, expect=(AWAITING_APPROVAL,), output=output)
            else:
                if moves:
                    self.store.set_output(run_id, output)
                return self._run(run_id) if moves else run
        except TransitionRefused:
            return self._run(run_id)  # another caller finished it a moment ago
        self._log(f"run_{run.state}", run, error=run.error)
        self._note(run)
        return run

    def _follow(self, run: Run) -> tuple[int, list[str], dict[str, tuple[str, str]]]:
        """Given a run, record in its trace the requests that ended; return how many still
        wait, why those that did not reach Done/ did not, and by the path the run knew each
        moved request at, its (path, state) now."""
        waiting, failures, moves = 0, [], {}
        for step in self.store.steps(run.id):
            if step.state != STEP_REQUESTED or not step.token:
                continue
            if run.state == AWAITING_APPROVAL and step.attempt != run.attempt:
                continue
            task = self.store.task_of(run.id, step.token)
            if task is None or task["state"] not in ENDED:
                waiting += 1  # not taken in by the pipeline yet, or still under way
                continue
            known = (step.output or {}).get("task_file") or step.task_file
            output = {**(step.output or {}), "task_file": task["file"]}
            if task["state"] == task_states.DONE:
                output.update(status="done", task_id=task["id"])
                self.store.update_step(step.id, state=STEP_DONE, output=output, error=None)
            else:
                why = f"{step.tool} ({task['file']}) {task['state']}"
                if task.get("error"):
                    why += f": {task['error']}"
                failures.append(why)
                output["status"] = task["state"]
                self.store.update_step(step.id, state=task["state"], output=output, error=why)
            for path in {known, step.task_file} - {None, task["file"]}:
                moves[str(path)] = (task["file"], output["status"])
        return waiting, failures, moves

    def refresh_waiting(self) -> list[Run]:
        """Catch up every run that waits for approval, and the note of every finished run
        that does not show its end yet; return the runs that finished now."""
        rows = self.store.ledger.rows(
            "SELECT id FROM skill_runs WHERE state = ?", (AWAITING_APPROVAL,)
        )
        finished = [self.refresh(row["id"]) for row in rows]
        for run in self.store.unnoted():
            self._note(run)
        return [run for run in finished if run.state != AWAITING_APPROVAL]

    def _note(self, run: Run) -> None:
        """Show a run's state in the note of the task that asked for it, if one did."""
        if (run.requested_by or "").startswith("task:") and note_run(
            self.vault, self.store.ledger, self.audit.redact, run
        ):
            self.store.noted(run.id, run.state)

    def listed(self, *, limit: int = 50) -> list[Run]:
        return [self.refresh(run.id) for run in self.store.listed(limit=limit)]

    # -- checks --------------------------------------------------------------------------

    def _skill(self, key: str) -> Skill:
        skill = self.registry.get(key)
        if skill is None:
            known = ", ".join(s.key for s in self.registry.listed()) or "none"
            raise SkillNotFound(f"no skill named {key!r} (known: {known})")
        return skill

    def _run(self, run_id: str) -> Run:
        run = self.store.get(run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}")
        return run

    @staticmethod
    def _check_groups(skill: Skill, groups: set[str] | None) -> None:
        """None means a local caller (the CLI, a task file): trusted like the vault's owner."""
        required = set(skill.manifest.required_groups)
        if groups is None or not required or required & groups:
            return
        raise Forbidden(
            f"skill {skill.key} requires one of the groups {', '.join(sorted(required))}"
        )

    def _check_pace(self, skill: Skill) -> None:
        now = datetime.now(UTC)
        manifest = skill.manifest
        if manifest.cooldown_seconds:
            recent = self.store.started_since(
                skill.key, iso(now - timedelta(seconds=manifest.cooldown_seconds))
            )
            if recent:
                ready = parse_time(recent[-1]) + timedelta(seconds=manifest.cooldown_seconds)
                raise Throttled(
                    f"skill {skill.key} is cooling down: one run per "
                    f"{manifest.cooldown_seconds:g} s (cooldown_seconds); next at {iso(ready)}",
                    ready,
                )
        if manifest.rate_limit:
            hour = self.store.started_since(skill.key, iso(now - timedelta(hours=1)))
            if len(hour) >= manifest.rate_limit:
                ready = parse_time(hour[-manifest.rate_limit]) + timedelta(hours=1)
                raise Throttled(
                    f"skill {skill.key} ran {len(hour)} times in the last hour "
                    f"(rate_limit {manifest.rate_limit}/hour); next at {iso(ready)}",
                    ready,
                )

    def _log(self, event: str, run: Run, **fields: Any) -> None:
        self.audit.write(
            event,
            action="skill",
            task_id=None,
            file=None,
            parameters={"run": run.id, "skill": run.skill, "inputs": run.inputs},
            result={"status": run.state, "attempt": run.attempt},
            **fields,
        )
