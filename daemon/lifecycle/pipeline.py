"""The lifecycle of one file (design §3): read → validate → decide → execute → move → log.

`Pipeline.process(path)` is the only entry point. It looks at which folder the file is in
and does the one step that folder calls for:

    Needs_Action/     validate; invalid → Rejected/. Decide: approval needed →
                      Pending_Approval/ with a request; auto-approved → Approved/ → execute.
    Pending_Approval/ edits re-render and re-hash the request; expired → Rejected/.
    Approved/         execute only what vaultd asked about (or auto-approved) with the very
                      payload hash it showed; anything else goes back to Pending_Approval/.
                      Each remote call: INTENT (durable) → call → DONE → Done/ or Failed/.
    Rejected/         a request a person moved here is recorded as rejected.

Every step is written to the ledger first and the audit log after, and every file ends in
exactly one terminal folder with its body intact.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from daemon.connectors import targets
from daemon.connectors.base import Connector
from daemon.core import failpoints, ledger, ledger_counts, notes
from daemon.core.audit import AuditLog
from daemon.core.costs import Prices, estimated_cost
from daemon.core.errors import ValidationFailed
from daemon.core.hints import Hints
from daemon.core.ledger import Ledger, Task
from daemon.core.limits import Limiter, RateLimits
from daemon.core.models import Action, SocialPost
from daemon.core.origin import read_origin, stricter
from daemon.core.outcome import Outcome
from daemon.core.policy import Decision, Facts, Policy, decide
from daemon.core.request_versions import RequestVersions, changed, reference, version_of
from daemon.core.taskfile import Loaded, Unreadable, read_task_file, validate_note
from daemon.core.timestamps import iso, now_iso, parse_time
from daemon.core.vault import (
    APPROVED,
    DONE,
    FAILED,
    NEEDS_ACTION,
    PENDING,
    REJECTED,
    Vanished,
    Vault,
    fit_name,
    is_ignored,
    is_sync_conflict,
)
from daemon.lifecycle.approval import render_request
from daemon.lifecycle.execution import Execution, Executor

Clock = Callable[[], datetime]
# How long an empty note must be untouched before vaultd refuses it (see _being_written).
EMPTY_QUIET_S = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


# The port to the skill run service (daemon/agents/skills/tasks.py), plugged in by open_app.
class SkillSteps(Protocol):
    def take_in(self, pipeline: Pipeline, loaded: Loaded, task_id: str) -> Outcome:
        """Given a `type: skill` task file, start (once) the run it asks for and file it."""

    def withdrawn(self, pipeline: Pipeline, loaded: Loaded, task: Task | None) -> Outcome | None:
        """Given a request, withdraw it to Rejected/ if its run was cancelled; else None."""

    def start_execution(self, pipeline: Pipeline, loaded: Loaded, task: Task) -> Outcome | None:
        """Given an approved task, record it executing and return None, unless its run was
        cancelled: then withdraw it and return how."""


class Pipeline:
    def __init__(
        self,
        vault: Vault,
        ledger_: Ledger,
        audit: AuditLog,
        policy: Policy,
        connectors: dict[str, Connector],
        *,
        dry_run: bool = True,
        clock: Clock = utc_now,
        limits: RateLimits | None = None,
        prices: Prices | None = None,
        hints: Hints | None = None,
    ) -> None:
        self.vault = vault
        self.hints = hints or Hints.for_vault(vault.root)
        self.ledger = ledger_
        self.audit = audit
        self.policy = policy
        self.connectors = connectors
        self.dry_run = dry_run
        self.clock = clock
        self.prices = prices or Prices()
        # The skill run service, set by open_app: `type: skill` task files start runs.
        self.skills: SkillSteps | None = None
        limiter = Limiter(limits, ledger_) if limits and limits.per_hour else None
        self.executor = Executor(ledger_, connectors, audit, dry_run=dry_run, limiter=limiter)
        # Every version of a request shown to a person, to say what changed since the first.
        self.versions = RequestVersions(ledger_)
        # When the step on this thread's file began: the audit entries' duration_ms.
        self._step = threading.local()

    # -- the entry point -----------------------------------------------------------------

    def process(self, path: Path) -> Outcome:
        """Given a file in a pipeline folder, do the step its folder calls for."""
        folder = self.vault.folder_of(path)
        if folder is None or is_ignored(path.name) or not os.path.lexists(path):
            return Outcome("ignored", None)
        if is_sync_conflict(path.name):
            # Copies made by sync tools are for a person to merge, never tasks of their own.
            return Outcome("ignored", path)
        handler = {
            NEEDS_ACTION: self._intake,
            PENDING: self._review,
            APPROVED: self._execute_approved,
            REJECTED: self._record_rejection,
        }.get(folder)
        if handler is None:
            return Outcome("unchanged", path)
        if folder == NEEDS_ACTION and not _utf8(path.name):
            safe = os.fsencode(path.name).decode("utf-8", "backslashreplace")
            return self._reject_unreadable(
                path, "has a file name that is not UTF-8; renamed to this safe form", name=safe
            )
        if folder in (NEEDS_ACTION, APPROVED) and (wait := self._being_written(path)):
            return wait
        self._step.began = time.monotonic()
        try:
            return handler(path)
        except Vanished as error:
            return self._vanished(path, str(error))
        finally:
            self._step.began = None

    def _being_written(self, path: Path) -> Outcome | None:
        """Given a file, return a wait if it is an empty note a writer may still be filling.

        Editors create a note first and fill it after, and a writer may truncate a note and
        pause: an empty file is left alone until it has been untouched for EMPTY_QUIET_S.
        Then it is refused by moving it as it is (the same inode: a writer that still holds
        it open writes into the note in Rejected/), never by rewriting it.
        """
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size:
            return None
        quiet_until = info.st_mtime + EMPTY_QUIET_S
        if time.time() < quiet_until:
            return Outcome("waiting", path, retry_at=datetime.fromtimestamp(quiet_until, UTC))
        return self._reject_unreadable(path, f"is empty (untouched for {EMPTY_QUIET_S:.0f} s)")

    def _vanished(self, path: Path, reason: str) -> Outcome:
        """A file deleted while it was being handled: nothing to move, nothing lost by vaultd.

        A task decided for it but never executed is closed; one whose calls were made keeps
        its state, so the ledger never forgets what reached a service.
        """
        for task in self.ledger.tasks_at(
            self.vault.relative(path), ledger.PENDING, ledger.APPROVED
        ):
            self.ledger.put_task(task.id, state=ledger.REJECTED, error=reason)
        self._log("vanished", None, None, path, error=reason)
        return Outcome("vanished", None)

    # -- Needs_Action ------------------------------------------------------------------

    def _intake(self, path: Path) -> Outcome:
        try:
            loaded = read_task_file(path)
        except Unreadable as error:
            return self._reject_unreadable(path, str(error))
        if loaded.note.meta.get("type") == "alert":
            # vaultd's own alert for the human (daemon/service/supervisor.py): nothing to do.
            return Outcome("unchanged", loaded.path)
        task = self._owned_task(loaded)
        if (cancelled := self._withdrawn(loaded, task)) is not None:
            return cancelled  # a request of a cancelled run (daemon/agents/skills/tasks.py)
        if task is not None and task.state in (ledger.FAILED, ledger.UNKNOWN):
            return self._request_retry(loaded, task)
        # A file still in Needs_Action/ with a pending or approved (not yet executing) task is
        # that task, moved back or interrupted by a crash before its move: keep its id. So is
        # one that a crash stopped half-way into Rejected/.
        here = self.vault.relative(loaded.path)
        if task is not None and (
            task.state in (ledger.PENDING, ledger.APPROVED)
            or (task.state == ledger.REJECTED and task.file == here)
        ):
            task_id = task.id
        else:
            task_id = self.ledger.new_task_id()
        if loaded.note.meta.get("type") == "skill":
            if self.skills is None:
                reason = "skills are not available in this vaultd"
                return self.reject_task(loaded, task_id, reason, "skill")
            return self.skills.take_in(self, loaded, task_id)
        try:
            action = validate_note(loaded.note)
        except ValidationFailed as error:
            return self._reject(loaded, task_id, str(error), loaded.note.meta.get("type"))
        origin = read_origin(loaded.note.meta, loaded.path.name, self.ledger)
        decision = stricter(decide(action, self.policy, self._facts(action)), origin)
        if decision.needs_approval:
            return self._request_approval(loaded, task_id, action, decision, origin=origin.key)
        return self._auto_approve(loaded, task_id, action, decision, origin=origin.key)

    def _auto_approve(
        self,
        loaded: Loaded,
        task_id: str,
        action: Action,
        decision: Decision,
        *,
        origin: str | None = None,
    ) -> Outcome:
        payload_hash = action.payload_hash()
        self.ledger.put_task(
            task_id,
            **({"origin": origin} if origin else {}),
            type=action.type,
            file=self.vault.relative(loaded.path),
            state=ledger.APPROVED,
            payload_hash=payload_hash,
            approval="auto_approved",
            rule=decision.rule,
            reason=decision.reason,
            decided_at=now_iso(),
            **_money(decision),
        )
        stamps = {
            "id": task_id,
            "status": "approved",
            "approval": {"by": "policy", "rule": decision.rule, "reason": decision.reason},
        }
        path = self._write_and_move(loaded, stamps, APPROVED)
        self._log(
            "auto_approved",
            action,
            task_id,
            path,
            approval_status="auto_approved",
            result={"status": "approved", "rule": decision.rule},
        )
        return self._execute_approved(path)

    # -- Pending_Approval --------------------------------------------------------------

    def _review(self, path: Path) -> Outcome:
        try:
            loaded = read_task_file(path)
        except Unreadable as error:
            # A person may be half-way through an edit: leave the file, never lose it.
            self._log("request_unreadable", None, None, path, error=str(error))
            return Outcome("unreadable", path)
        task = self._owned_task(loaded)
        if (cancelled := self._withdrawn(loaded, task)) is not None:
            return cancelled
        if task is not None and task.state in (ledger.FAILED, ledger.UNKNOWN):
            return self._request_retry(loaded, task)
        if (
            task is not None
            and task.state == ledger.REJECTED
            and task.file == self.vault.relative(loaded.path)
        ):
            return self._finish_rejection(loaded, task)
        if task is None or task.state not in (ledger.PENDING, ledger.APPROVED):
            return self._adopt(loaded, task, "was placed in Pending_Approval/ by hand")
        if self._expired(task):
            return self._expire(loaded, task)
        try:
            action = validate_note(loaded.note)
        except ValidationFailed as error:
            return self._mark_invalid_request(loaded, task, str(error))
        if action.payload_hash() == task.payload_hash:
            self._track(task, loaded.path)
            if task.state == ledger.PENDING:
                return self._restore_request(loaded, task, action)
            return Outcome("unchanged", loaded.path)
        decision = decide(action, self.policy, self._facts(action))
        return self._request_approval(loaded, task.id, action, decision, expires=task.expires_at)

    def _restore_request(self, loaded: Loaded, task: Task, action: Action) -> Outcome:
        """Put back the request vaultd showed if its block or stamps were edited.

        The approver must see what the ledger will hold them to, not someone's edit of it
        (for instance a smaller amount typed into the rendered block).
        """
        block = self._shown_block(loaded, task, action)
        approval = {
            "rule": task.rule,
            "reason": task.reason,
            "expires_at": task.expires_at,
            "payload_hash": task.payload_hash,
        }
        stamps = {**loaded.note.stamps, "id": task.id, "status": "pending_approval"}
        stamps["approval"] = approval
        text = notes.render(loaded.note, stamps, block)
        if text == notes.render(loaded.note, loaded.note.stamps):
            return Outcome("unchanged", loaded.path)
        self.vault.write(loaded.path, text, loaded.signature)
        self._log("request_restored", action, task.id, loaded.path, error="request was edited")
        return Outcome("restored", loaded.path)

    def _shown_block(self, loaded: Loaded, task: Task, action: Action) -> str:
        """Return the request block vaultd wrote for a pending task: what the approver saw.

        Its notice and change banner come from the ledger, never from the note, whose
        `note:` key an agent can rewrite.
        """
        versions = self.versions.of(task.id)
        shown = next((v for v in versions if v.payload_hash == task.payload_hash), None)
        notice = shown.notice if shown else loaded.note.meta.get("note")
        expires_at = parse_time(task.expires_at) if task.expires_at else self.clock()
        decision = Decision(True, task.rule or "", task.reason or "", None, task.currency)
        return render_request(
            hints=self.hints,
            cost=estimated_cost(action, self.prices),
            task_id=reference(task.id, task.payload_hash or ""),
            action=action,
            decision=decision,
            payload_hash=task.payload_hash or "",
            expires_at=expires_at,
            notice=notice if isinstance(notice, str) else None,
            changed=changed(versions, task.payload_hash or ""),
        )

    def _request_retry(self, loaded: Loaded, task: Task) -> Outcome:
        """Ask again for a failed task a person moved back, under the same id.

        Keeping the id is what makes the retry safe: calls that already succeeded for this
        task are skipped, so a partly posted note is never posted twice.
        """
        try:
            action = validate_note(loaded.note)
        except ValidationFailed as error:
            return self._mark_invalid_request(loaded, task, str(error))
        done = sorted(self.executor.completed(task.id, action.payload_hash()))
        notice = f"Task {task.id} ended {task.state.replace('_', ' ')} before."
        if done:
            notice += f" Already done and skipped if you approve: {', '.join(done)}."
        decision = decide(action, self.policy, self._facts(action))
        return self._request_approval(loaded, task.id, action, decision, notice=notice)

    def _mark_invalid_request(self, loaded: Loaded, task: Task, error: str) -> Outcome:
        if loaded.note.meta.get("error") == error and task.payload_hash is None:
            return Outcome("unchanged", loaded.path)
        self.ledger.put_task(task.id, payload_hash=None, error=error)
        stamps = {**loaded.note.stamps, "status": "invalid", "error": error}
        self.vault.write(loaded.path, notes.render(loaded.note, stamps), loaded.signature)
        self._log("request_invalid", None, task.id, loaded.path, error=error)
        return Outcome("invalid", loaded.path)

    def expire_due(self) -> list[Outcome]:
        """Reject every pending request whose expiry has passed; return what was done."""
        outcomes = []
        for task in self.ledger.tasks(ledger.PENDING):
            if self._expired(task):
                path = self.vault.root / task.file
                if path.parent.name == PENDING and path.exists():
                    outcomes.append(self.process(path))
        return outcomes

    def _finish_rejection(self, loaded: Loaded, task: Task) -> Outcome:
        """Finish moving a note to Rejected/ that a crash stopped on its way (an expiry)."""
        status = "expired" if task.approval == "expired" else "rejected"
        stamps = {**loaded.note.stamps, "id": task.id, "status": status, "error": task.error}
        path = self._write_and_move(loaded, stamps, REJECTED, block="")
        self.ledger.put_task(task.id, file=self.vault.relative(path))
        self._log(status, task.type, task.id, path, approval_status=status, error=task.error)
        return Outcome(status, path)

    def _expired(self, task: Task) -> bool:
        return task.expires_at is not None and parse_time(task.expires_at) <= self.clock()

    def _expire(self, loaded: Loaded, task: Task) -> Outcome:
        reason = f"the approval request expired at {task.expires_at} without a decision"
        self.ledger.put_task(task.id, state=ledger.REJECTED, error=reason, approval="expired")
        stamps = {**loaded.note.stamps, "status": "expired", "error": reason}
        path = self._write_and_move(loaded, stamps, REJECTED, block="")
        self.ledger.put_task(task.id, file=self.vault.relative(path))
        self._log("expired", task.type, task.id, path, approval_status="expired", error=reason)
        return Outcome("expired", path)

    # -- Approved ----------------------------------------------------------------------

    def _execute_approved(self, path: Path) -> Outcome:
        try:
            loaded = read_task_file(path)
        except Unreadable as error:
            return self._reject_unreadable(path, str(error))
        task = self._owned_task(loaded)
        if (cancelled := self._withdrawn(loaded, task)) is not None:
            return cancelled
        try:
            action = validate_note(loaded.note)
        except ValidationFailed as error:
            task_id = task.id if task else self.ledger.new_task_id()
            return self._reject(loaded, task_id, str(error), loaded.note.meta.get("type"))
        payload_hash = action.payload_hash()

        if task is None or task.state in (ledger.REJECTED, ledger.DONE):
            executed = self.ledger.executed_hashes(payload_hash)
            if task is not None and task.state == ledger.DONE:
                executed.insert(0, task)
            if executed:
                first = executed[0]
                reason = (
                    f"this action was already executed as task {first.id} ({first.file}); "
                    "vaultd never runs an action twice. Drop a new task into Needs_Action/ "
                    "if you really want it again."
                )
                return self._reject(
                    loaded, self.ledger.new_task_id(), reason, action.type, event="replay_refused"
                )
            why = (
                "it was rejected before"
                if task
                else "vaultd never issued an approval request for it"
            )
            return self._adopt(loaded, task, f"appeared in Approved/ but {why}; not executed")
        if task.state == ledger.EXECUTED:
            done = Execution(results=self.executor.completed(task.id, payload_hash))
            return self._finish(loaded, task, action, done)
        if task.payload_hash != payload_hash:
            return self._refuse_approval(
                loaded,
                task,
                action,
                "payload changed after the approval request",
                "This note changed after its approval request, so it was not executed. "
                "Review the version below and approve it again.",
            )
        if task.state == ledger.PENDING:
            if self._expired(task):
                return self._expire(loaded, task)
            pinned = loaded.note.meta.get("approved_version")
            if pinned is not None and pinned != payload_hash:
                return self._refuse_approval(
                    loaded,
                    task,
                    action,
                    "vaultd approve approved another version",
                    f"`vaultd approve` approved version {version_of(str(pinned))}, but the "
                    f"note holds version {version_of(payload_hash)}, so it was not executed. "
                    "Review this version and approve it.",
                )
            if not task.file.startswith(PENDING + "/"):
                # A crash stopped vaultd while it sent this note to Pending_Approval/: no
                # person has seen the request there, so nobody approved it. Send it on.
                return self._refuse_approval(
                    loaded,
                    task,
                    action,
                    "the approval request never reached Pending_Approval/",
                    "vaultd was interrupted while it asked for approval of this note, so it "
                    "was not executed. Review it here and approve it again.",
                )
            shown = self._shown_block(loaded, task, action)
            stamps = loaded.note.stamps
            if loaded.note.block and notes.render(loaded.note, stamps, shown) != notes.render(
                loaded.note, stamps
            ):
                # The approver read an edited request (a smaller amount, say): they did not
                # approve what would run. A block removed altogether hides nothing.
                return self._refuse_approval(
                    loaded,
                    task,
                    action,
                    "the approval request was edited before it was approved",
                    "The request shown in this note was edited, so it was not executed. "
                    "Review the request as vaultd wrote it below and approve it again.",
                )
            self.ledger.put_task(
                task.id,
                state=ledger.APPROVED,
                approval="human_approved",
                decided_at=now_iso(),
                file=self.vault.relative(loaded.path),
            )
            self._log(
                "approved",
                action,
                task.id,
                loaded.path,
                actor="human",
                approval_status="human_approved",
            )
            task = replace(task, state=ledger.APPROVED, approval="human_approved")
        stale = self._done_with_another_version(task.id, payload_hash, action)
        if stale:
            return self._refuse_mixed_versions(loaded, task, action, stale)
        when = action.scheduled_for if isinstance(action, SocialPost) else None
        if when and when > self.clock():
            return self._schedule(loaded, task, when)
        return self._run(loaded, task, action)

    def _done_with_another_version(
        self, task_id: str, payload_hash: str, action: Action
    ) -> list[str]:
        """Return the targets of this action that an earlier version of the task reached."""
        earlier = self.executor.completed_versions(task_id)
        return sorted(t for t in targets(action) if earlier.get(t, payload_hash) != payload_hash)

    def _refuse_mixed_versions(
        self, loaded: Loaded, task: Task, action: Action, stale: list[str]
    ) -> Outcome:
        """Fail a note whose new version would go where an earlier version already went."""
        error = (
            f"{', '.join(stale)} already received an earlier version of this note (task "
            f"{task.id}), so this version was not sent anywhere. Remove "
            f"{'it' if len(stale) == 1 else 'them'} from the note and move it to Approved/ "
            "to send this version to the rest, or drop a new task for a new post."
        )
        self.ledger.put_task(task.id, state=ledger.FAILED, error=error)
        stamps = {**loaded.note.stamps, "status": "failed", "error": error, "note": None}
        path = self._write_and_move(loaded, stamps, FAILED, block="")
        self.ledger.put_task(task.id, file=self.vault.relative(path))
        self._log("failed", action, task.id, path, error=error)
        return Outcome("failed", path)

    def _refuse_approval(
        self, loaded: Loaded, task: Task, action: Action, why: str, notice: str
    ) -> Outcome:
        """Send an approved note back for a fresh approval (same id), saying why."""
        decision = decide(action, self.policy, self._facts(action))
        self._log("approval_refused", action, task.id, loaded.path, error=why)
        return self._request_approval(
            loaded, task.id, action, decision, notice=notice, keep_approval=False
        )

    def _schedule(self, loaded: Loaded, task: Task, when: datetime) -> Outcome:
        if loaded.note.meta.get("status") != "scheduled":
            stamps = {**loaded.note.stamps, "status": "scheduled"}
            self.vault.write(loaded.path, notes.render(loaded.note, stamps), loaded.signature)
        self._track(task, loaded.path)
        return Outcome("scheduled", loaded.path, retry_at=when)

    def _withdrawn(self, loaded: Loaded, task: Task | None) -> Outcome | None:
        return None if self.skills is None else self.skills.withdrawn(self, loaded, task)

    def _run(self, loaded: Loaded, task: Task, action: Action) -> Outcome:
        """Execute an approved action (each call at most once), then move it to its folder."""
        if self.skills is None:
            self.ledger.put_task(
                task.id, state=ledger.EXECUTING, file=self.vault.relative(loaded.path)
            )
        elif (cancelled := self.skills.start_execution(self, loaded, task)) is not None:
            return cancelled  # records EXECUTING, unless a cancel of its run came first
        execution = self.executor.run(task.id, task.payload_hash or "", action)
        if execution.state == ledger.DEFERRED:
            return self._wait(loaded, task, action, execution)
        return self._finish(loaded, task, action, execution)

    def _result(self, action: Action, results: dict[str, Any]) -> dict[str, Any] | None:
        """Return what to stamp as a note's result: each call's answer, and its cost."""
        if not results:
            return None
        result = {"dry_run": self.dry_run, **results}
        cost = estimated_cost(action, self.prices)
        if cost is not None and "twitter" in results:
            result["estimated_cost_usd"] = str(cost)
        return result

    def _wait(self, loaded: Loaded, task: Task, action: Action, execution: Execution) -> Outcome:
        """Leave an action in Approved/ until the service takes calls again."""
        retry_at = execution.retry_at() or self.clock()
        waiting = "; ".join(f"{t}: {reason}" for t, (reason, _) in execution.deferred.items())
        note = f"waiting until {iso(retry_at)}: {waiting}"
        self.ledger.put_task(task.id, state=ledger.APPROVED, error=None)
        stamps = {
            **loaded.note.stamps,
            "status": "waiting",
            "result": self._result(action, execution.results),
            "note": note,
        }
        self.vault.write(loaded.path, notes.render(loaded.note, self.audit.redact(stamps)))
        self._log(
            "deferred", action, task.id, loaded.path, result={"status": "waiting"}, error=note
        )
        return Outcome("deferred", loaded.path, retry_at=retry_at)

    def _finish(
        self,
        loaded: Loaded,
        task: Task,
        action: Action,
        execution: Execution,
    ) -> Outcome:
        results, failures, unknown = execution.results, execution.failures, execution.unknown
        if unknown:
            state, folder, status = ledger.UNKNOWN, FAILED, "outcome_unknown"
            error = "outcome unknown, not retried: " + "; ".join(
                f"{t}: {e}" for t, e in unknown.items()
            )
            error += (
                ". Check the service; vaultd will not call it again by itself, and a new copy"
                " of this task asks a person first."
            )
        elif failures:
            state, folder, status = ledger.FAILED, FAILED, "failed"
            error = "; ".join(f"{t}: {e}" for t, e in failures.items())
            error += ". Move this note to Approved/ to retry what failed."
        else:
            state, folder, status, error = ledger.EXECUTED, DONE, "done", None
        self.ledger.put_task(task.id, state=state, error=error)
        stamps = {
            **loaded.note.stamps,
            "status": status,
            "result": self._result(action, results),
            "error": error,
            "note": None,
        }
        # The approval request was for the decision, which is made: drop it from the note.
        path = self._write_and_move(loaded, stamps, folder, block="", sent=action.payload())
        final = ledger.DONE if state == ledger.EXECUTED else state
        self.ledger.put_task(task.id, state=final, file=self.vault.relative(path))
        self._log(
            {ledger.DONE: "executed", ledger.FAILED: "failed"}.get(final, "outcome_unknown"),
            action,
            task.id,
            path,
            approval_status=task.approval,
            result={"status": status, "dry_run": self.dry_run, **results},
            duration_ms=execution.duration_ms,
            error=error,
        )
        return Outcome(status, path)

    # -- Rejected ----------------------------------------------------------------------

    def _record_rejection(self, path: Path) -> Outcome:
        try:
            loaded = read_task_file(path)
        except Unreadable:
            return Outcome("unchanged", path)
        task = self._owned_task(loaded)
        if task is None or task.state in (ledger.REJECTED, ledger.DONE, ledger.EXECUTING):
            return Outcome("unchanged", path)
        reason = loaded.note.meta.get("rejection_reason") or "moved to Rejected/ by a person"
        self.ledger.put_task(
            task.id,
            state=ledger.REJECTED,
            approval="human_rejected",
            error=str(reason),
            decided_at=now_iso(),
            file=self.vault.relative(path),
        )
        stamps = {**loaded.note.stamps, "status": "rejected", "error": str(reason)}
        self.vault.write(path, notes.render(loaded.note, stamps, block=""), loaded.signature)
        self._log(
            "rejected",
            task.type,
            task.id,
            path,
            actor="human",
            approval_status="human_rejected",
            error=str(reason),
        )
        return Outcome("rejected", path)

    # -- shared steps --------------------------------------------------------------------

    def _facts(self, action: Action) -> Facts:
        """Given an action about to be decided, return the facts (and record its keys, so
        that the next decision counts it: daemon/core/ledger_counts.py)."""
        connector = self.connectors.get(targets(action)[0])
        facts = connector.facts(action) if connector else Facts()
        ledger_counts.remember(self.ledger, action)
        before = ledger_counts.repeat_of(self.ledger, action)
        return replace(
            facts,
            executed_before=before.task_id if before else None,
            executed_before_unsure=before.unsure if before else False,
            auto_approved=ledger_counts.auto_approved_since(
                self.ledger, self.clock() - ledger_counts.WINDOW
            ),
        )

    def _owned_task(self, loaded: Loaded) -> Task | None:
        """Return the ledger task this file is, or None if it is none (or only a copy of one).

        A file owns its id if the ledger places the task at this path, or at a path that no
        longer exists (a person moved or renamed it). If the recorded file still exists
        elsewhere, this one is a copy and owns nothing.
        """
        here = self.vault.relative(loaded.path)
        task_id = loaded.note.meta.get("id")
        if not isinstance(task_id, str):
            # A pending request whose `id:` was deleted is still that request: it keeps its
            # versions and its change banner (found by the review).
            at_path = self.ledger.tasks_at(here, ledger.PENDING)
            return at_path[0] if len(at_path) == 1 else None
        task = self.ledger.task(task_id)
        if task is None:
            return None
        if task.file != here and os.path.lexists(self.vault.root / task.file):
            return None
        return task

    def _track(self, task: Task, path: Path) -> None:
        here = self.vault.relative(path)
        if task.file != here:
            self.ledger.put_task(task.id, file=here)

    def _request_approval(
        self,
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
        agent changed while the command moved it is refused, never run.
        """
        payload_hash = action.payload_hash()
        stale = self._done_with_another_version(task_id, payload_hash, action)
        if stale:
            warning = (
                f"{', '.join(stale)} already received an earlier version of this note: "
                f"remove {'it' if len(stale) == 1 else 'them'} from the note, or approving "
                "it sends nothing."
            )
            notice = f"{notice} {warning}" if notice else warning
        self.versions.issue(task_id, payload_hash, action.payload(), notice)
        expires_at = (
            parse_time(expires)
            if expires
            else self.clock() + timedelta(hours=self.policy.approval_expiry_hours)
        )
        self.ledger.put_task(
            task_id,
            **({"origin": origin} if origin else {}),
            type=action.type,
            file=self.vault.relative(loaded.path),
            state=ledger.PENDING,
            payload_hash=payload_hash,
            approval="required",
            rule=decision.rule,
            reason=decision.reason,
            expires_at=iso(expires_at),
            error=None,
            **_money(decision),
        )
        block = render_request(
            hints=self.hints,
            cost=estimated_cost(action, self.prices),
            task_id=reference(task_id, payload_hash),
            action=action,
            decision=decision,
            payload_hash=payload_hash,
            expires_at=expires_at,
            notice=notice,
            changed=changed(self.versions.of(task_id), payload_hash),
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
            "approved_version": (
                loaded.note.meta.get("approved_version") if keep_approval else None
            ),
        }
        path = self._write_and_move(loaded, stamps, PENDING, block=block)
        self.ledger.put_task(task_id, file=self.vault.relative(path))
        self._log(
            "approval_requested",
            action,
            task_id,
            path,
            approval_status="pending",
            result={"status": "pending_approval", "rule": decision.rule},
            error=notice,
        )
        return Outcome("pending_approval", path)

    def _adopt(self, loaded: Loaded, task: Task | None, why: str) -> Outcome:
        """Turn a file vaultd did not ask about into a fresh approval request (new id)."""
        try:
            action = validate_note(loaded.note)
        except ValidationFailed as error:
            return self._reject(
                loaded, self.ledger.new_task_id(), str(error), loaded.note.meta.get("type")
            )
        decision = decide(action, self.policy, self._facts(action))
        if not decision.needs_approval:
            decision = Decision(
                True, "unrequested", f"this note {why}", decision.amount, decision.currency
            )
        earlier = f" (it carried id {task.id}, now {task.state})" if task else ""
        notice = f"This note {why}{earlier}. It needs your approval as a new request."
        self._log(
            "approval_refused",
            action,
            loaded.note.meta.get("id"),
            loaded.path,
            error=f"this note {why}",
        )
        return self._request_approval(
            loaded, self.ledger.new_task_id(), action, decision, notice=notice
        )

    def _reject(
        self,
        loaded: Loaded,
        task_id: str,
        reason: str,
        action_type: Any,
        *,
        event: str = "rejected_invalid",
    ) -> Outcome:
        action_type = action_type if isinstance(action_type, str) else None
        self.ledger.put_task(
            task_id,
            type=action_type,
            file=self.vault.relative(loaded.path),
            state=ledger.REJECTED,
            error=reason,
        )
        stamps = {**loaded.note.stamps, "id": task_id, "status": "rejected", "error": reason}
        path = self._write_and_move(loaded, stamps, REJECTED)
        self.ledger.put_task(task_id, file=self.vault.relative(path))
        self._log(event, action_type, task_id, path, error=f"{loaded.path.name}: {reason}")
        return Outcome("rejected", path)

    def _reject_unreadable(self, path: Path, reason: str, *, name: str | None = None) -> Outcome:
        """Move a file vaultd cannot parse to Rejected/ unchanged, with a note beside it."""
        task_id = self.ledger.new_task_id()
        moved = self.vault.move(path, REJECTED, name)
        text = notes.render(
            notes.Note(None, {}, f"vaultd rejected [[{moved.name}]]: it {reason}.\n"),
            {
                "id": task_id,
                "status": "rejected",
                "error": f"{moved.name} {reason}",
                "note": f"about {moved.name}, which was left exactly as it arrived",
            },
        )
        self.vault.create(REJECTED, fit_name(moved.name, ".rejected.md"), text)
        self.ledger.put_task(
            task_id, file=self.vault.relative(moved), state=ledger.REJECTED, error=reason
        )
        self._log("rejected_unreadable", None, task_id, moved, error=f"{moved.name} {reason}")
        return Outcome("rejected", moved)

    # Steps that other lifecycle modules (daemon/agents/skills/tasks.py) use as they are.
    def reject_task(self, loaded: Loaded, task_id: str, reason: str, action_type: Any) -> Outcome:
        return self._reject(loaded, task_id, reason, action_type)

    def write_and_move(self, loaded: Loaded, stamps: dict[str, Any], folder: str) -> Path:
        return self._write_and_move(loaded, stamps, folder)

    def log(
        self, event: str, action: str | None, task_id: str | None, path: Path | None, **fields: Any
    ) -> None:
        self._log(event, action, task_id, path, **fields)

    def _write_and_move(
        self,
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
        arrived = self.vault.settle_interrupted_move(loaded.path, folder)
        here = arrived or loaded.path
        text = notes.render(loaded.note, self.audit.redact(stamps), block)
        if not self.vault.write(here, text, loaded.signature) and sent is not None:
            self._stamp_edited(here, stamps, sent, block)
        if arrived is not None:
            return arrived
        failpoints.hit("mid-move", loaded.path.name)
        return self.vault.move(loaded.path, folder)

    def _stamp_edited(
        self, path: Path, stamps: dict[str, Any], sent: dict[str, Any], block: str | None
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
            text = notes.render(current.note, self.audit.redact(stamps), block)
            if self.vault.write(path, text, current.signature):
                return

    def _log(
        self,
        event: str,
        action: Action | str | None,
        task_id: str | None,
        path: Path | None,
        **fields: Any,
    ) -> None:
        began = getattr(self._step, "began", None)
        if began is not None and fields.get("duration_ms") is None:
            fields["duration_ms"] = int((time.monotonic() - began) * 1000)
        parameters = None
        if isinstance(action, Action):
            parameters = {**action.payload(), "content_hash": action.payload_hash()}
            action = action.type
        self.audit.write(
            event,
            action=action,
            task_id=task_id,
            file=self.vault.relative(path) if path else None,
            parameters=parameters,
            **fields,
        )

    # -- start-up ----------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Settle every INTENT a crash left behind (see Executor.reconcile), and every note
        a crash moved to its last folder before the ledger recorded the move."""
        markers = self.executor.reconcile()
        self._settle_last_moves()
        return markers

    def _settle_last_moves(self) -> None:
        """Record where a finished task's note went, when a crash cut in after its move.

        `_finish` records EXECUTED, moves the note, then records DONE (or the note's new
        place in Failed/). Done/ and Failed/ are never processed, so nothing else would
        notice: look for the note, by its id, where it was going.
        """
        for task in self.ledger.tasks(ledger.EXECUTED, ledger.FAILED, ledger.UNKNOWN):
            if os.path.lexists(self.vault.root / task.file):
                continue  # still where the ledger says: the next look at it finishes it
            folder = DONE if task.state == ledger.EXECUTED else FAILED
            found = self._note_of(task, folder)
            if found is None:
                continue  # moved elsewhere by a person: the next look at it tracks it
            settled = {"state": ledger.DONE} if task.state == ledger.EXECUTED else {}
            self.ledger.put_task(task.id, file=self.vault.relative(found), **settled)

    def _note_of(self, task: Task, folder: str) -> Path | None:
        """Return the note in `folder` that carries this task's id and its file's name."""
        stem = Path(task.file).stem
        for path in self.vault.files(folder):
            if not path.name.startswith(stem):
                continue
            try:
                if read_task_file(path).note.meta.get("id") == task.id:
                    return path
            except Unreadable:
                continue
        return None


def _utf8(name: str) -> bool:
    """Return whether a file name is text (a name with bytes that are not UTF-8 is not)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _money(decision: Decision) -> dict[str, Any]:
    if decision.amount is None:
        return {}
    return {"amount": str(decision.amount), "currency": decision.currency}
