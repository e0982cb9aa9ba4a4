"""At most once (design §3): how an approved action becomes remote calls.

Each connector call is one ledger step:

    INTENT (committed durably) → call → DONE with the remote result

When every connector of a run settles a call by lookup (found, or proven absent: the
dry-run connectors), and no rate limit may hold a call back, the run's INTENTs are committed
together before its first call, in one fsync (call_records.py); a crash before the last call
leaves each call not yet made an INTENT, which the next start proves absent and makes once.
A call's DONE is committed before the next call is begun, and the last one with the run's end.

A call that succeeded in any earlier run of the task is never made again. A call whose
outcome was never recorded (a crash, a lost answer) is looked up by its marker first:
found means done, proven absent means safe to call, unfinished (an Odoo draft invoice
vaultd made and did not post) means the connector finishes that very object, and a lookup
that cannot tell is tried again on a schedule (LookupSchedule, daemon/lifecycle/lookups.py)
before the call is left to a
person as "outcome unknown". Nothing but Found or Absent from a lookup (or Unfinished, which
`execute` finishes without making anything twice) ever leads to calling again.

A lost answer (OutcomeUnknown: a timeout, a dropped connection) is looked up straight away,
in the same run. What that first lookup cannot settle is not waited for in place: the
target is *deferred* (the pipeline leaves the note in Approved/ with `status: waiting` until
the next lookup is due, `Outcome("deferred", retry_at=...)`) and looked up again on the next
attempt, with exponential backoff and jitter, until the schedule's budget (2 minutes by
default) is spent. The daemon has one worker: sleeping two minutes inside one file's run
would stall every other file behind it, and a deferred look survives a restart, because
when the next lookup is due is kept in the ledger (its `progress` table, by marker). A
lookup that says Absent right after a lost answer is not acted on at once either: the write
may still be landing, so the next attempt looks again, and only that answer decides.

This module never touches the vault; the pipeline moves the files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from daemon.connectors import targets
from daemon.connectors.base import Absent, Connector, Found, Lookup, Undetermined, Unfinished
from daemon.core import failpoints, ledger
from daemon.core.audit import AuditLog
from daemon.core.errors import ConnectorError, Deferred, OutcomeUnknown
from daemon.core.ledger import Ledger, Step
from daemon.core.limits import Limiter
from daemon.core.models import Action
from daemon.lifecycle.call_records import (
    Execution,
    Succeeded,
    announce,
    can_announce_together,
    end_run,
    marker_for,
)
from daemon.lifecycle.lookups import (
    LookupSchedule,
    Waiting,
    look_again,
    next_lookup,
    start_looking,
    stop_looking,
)

__all__ = ["Execution", "Executor", "marker_for"]

# How many calls one run makes to one target at most: the call and, when its answer was
# lost and a lookup shows it unfinished, the call that finishes it.
MAX_CALLS = 2


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Executor:
    def __init__(
        self,
        ledger_: Ledger,
        connectors: dict[str, Connector],
        audit: AuditLog,
        *,
        dry_run: bool,
        limiter: Limiter | None = None,
        lookups: LookupSchedule | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.ledger = ledger_
        self.connectors = connectors
        self.audit = audit
        self.dry_run = dry_run
        self.limiter = limiter
        # When to look a call up again; by default what VAULTD_LOOKUP_SCHEDULE says.
        self.lookups = lookups or LookupSchedule.from_environment()
        self.clock = clock

    def completed(self, task_id: str, payload_hash: str | None = None) -> dict[str, Any]:
        """Return the results of every call of a task that succeeded, by target.

        With `payload_hash`, only the calls made for that version of the task.
        """
        return {
            step.target: step.result
            for step, version in self._succeeded(task_id)
            if payload_hash is None or version == payload_hash
        }

    def completed_versions(self, task_id: str) -> dict[str, str]:
        """Return, by target, the payload hash with which a call of the task succeeded."""
        return {step.target: version for step, version in self._succeeded(task_id)}

    def _succeeded(self, task_id: str) -> list[tuple[Step, str]]:
        """Return the task's succeeded calls, each with the payload hash its run executed."""
        hashes = self.ledger.run_hashes(task_id)
        if not hashes:
            return []  # never ran: no steps to read
        return [
            (step, hashes[step.run_id])
            for step in self.ledger.steps(task_id)
            if step.state == ledger.SUCCEEDED and step.run_id in hashes
        ]

    def run(
        self,
        task_id: str,
        payload_hash: str,
        action: Action,
        *,
        then: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Given an approved action, make each of its calls at most once; return what
        happened, per target (done, failed, unknown, or deferred until a time).

        `then` is called with the outcome inside the transaction that ends the run, so what
        the caller records of it (the task's state) is committed with the run's end.
        """
        started = time.monotonic()
        outcome = Execution(results=self.completed(task_id, payload_hash))
        # Succeeded in an earlier run: never post twice.
        pending = [target for target in targets(action) if target not in outcome.results]
        grouped = self.limiter is None and can_announce_together(
            self.ledger, [self.connectors.get(t) for t in pending], task_id, pending
        )
        with self.ledger.transaction(durable=grouped):
            run_id = self.ledger.start_run(
                task_id, payload_hash, dry_run=self.dry_run, running=True
            )
            ahead = pending if grouped else []  # the INTENTs recorded before the first call
            announced = announce(
                self.ledger, self.connectors, action, ahead, run_id=run_id, task_id=task_id
            )
        for target in announced:
            failpoints.hit("after-intent", marker_for(task_id, target))
        succeeded = Succeeded()
        try:
            for target in pending:
                # The DONE of the call before is committed before the next call is begun.
                succeeded.record(self.ledger)
                state, value = self._reach(
                    run_id, task_id, target, action, succeeded, announced=announced.get(target)
                )
                outcome.record(target, state, value)
        except Exception:
            succeeded.record(self.ledger)  # a bug after a call: keep what is known
            raise
        problems = {**outcome.failures, **outcome.unknown}
        problems.update({t: reason for t, (reason, _) in outcome.deferred.items()})
        summary = "; ".join(f"{t}: {e}" for t, e in problems.items())
        outcome.duration_ms = _ms(started)
        end_run(self.ledger, succeeded, run_id, outcome=outcome, summary=summary or None, then=then)
        succeeded.hit_after_done()
        return outcome

    def _reach(
        self,
        run_id: int,
        task_id: str,
        target: str,
        action: Action,
        succeeded: Succeeded,
        *,
        announced: int | None = None,
    ) -> tuple[str, Any]:
        """Given one target of an action, settle what earlier calls to it did and make the
        call if it is still to be made; return (step state, result, error or (reason, when)).

        A lost answer is looked up at once; Found ends it, Unfinished is finished by one more
        call, and anything else is deferred to the next lookup (see the module docstring).
        `announced`: the step of this call's INTENT, just recorded with the run's others
        (nothing earlier is in doubt, and no rate limit applies: it is made at once).
        """
        connector = self.connectors[target]
        marker = marker_for(task_id, target)
        calls = 0
        while True:
            if announced is not None:
                state, value = self._call(
                    run_id, task_id, target, connector, action, succeeded=succeeded, step=announced
                )
                announced, calls = None, 1
                if state != ledger.UNKNOWN:
                    stop_looking(self.ledger, marker)
                    return state, value
                start_looking(self.ledger, marker, str(value), self.clock())
                continue
            earlier = self._resolve_earlier(
                task_id, target, connector, just_lost=calls > 0, succeeded=succeeded
            )
            if isinstance(earlier, Found):
                stop_looking(self.ledger, marker)
                return ledger.SUCCEEDED, earlier.result
            if isinstance(earlier, Waiting):
                return ledger.DEFERRED, (earlier.reason, earlier.until)
            if isinstance(earlier, Undetermined):
                return self._look_again(marker, earlier.reason, lasting=earlier.lasting)
            if calls >= MAX_CALLS or (calls and not isinstance(earlier, Unfinished)):
                why = "not found right after its answer was lost; it may still be landing"
                if isinstance(earlier, Unfinished):
                    why = earlier.reason
                return self._look_again(marker, why)
            if self.limiter and (wait := self.limiter.wait(action.type, target)):
                return ledger.DEFERRED, wait
            state, value = self._call(
                run_id, task_id, target, connector, action, succeeded=succeeded
            )
            calls += 1
            if state != ledger.UNKNOWN:
                stop_looking(self.ledger, marker)
                return state, value
            # The answer was lost: look it up now.
            start_looking(self.ledger, marker, str(value), self.clock())

    def _call(
        self,
        run_id: int,
        task_id: str,
        target: str,
        connector: Connector,
        action: Action,
        *,
        succeeded: Succeeded,
        step: int | None = None,
    ) -> tuple[str, Any]:
        """Make one call behind a durable INTENT; return (step state, result or error).

        A call that succeeds is recorded DONE in the run's next commit (`succeeded`): before
        the next call is begun, or with the end of the run. Until then its step is an INTENT,
        which after a crash is looked up like any other: found, it is recorded done and never
        made again. `step`: the INTENT, if it is recorded already (`_announce`).
        """
        marker = marker_for(task_id, target)
        if step is None:
            failpoints.hit("before-intent", marker)
            request = connector.describe(action, marker=marker)
            step_id = self.ledger.record_intent(run_id, task_id, target, marker, request)
            failpoints.hit("after-intent", marker)
        else:
            step_id = step
        started = time.monotonic()
        try:
            result = connector.execute(action, marker=marker, dry_run=self.dry_run)
        except Deferred as error:
            self.ledger.finish_step(
                step_id, ledger.DEFERRED, error=str(error), duration_ms=_ms(started)
            )
            return ledger.DEFERRED, (str(error), error.retry_at)
        except OutcomeUnknown as error:
            state, problem = ledger.UNKNOWN, str(error)
        except ConnectorError as error:
            state, problem = ledger.FAILED, str(error)
        except Exception as error:  # noqa: BLE001 - a bug after sending may have sent
            state, problem = ledger.UNKNOWN, f"{type(error).__name__}: {error}"
        else:
            failpoints.hit("after-call", marker)
            succeeded.add(step_id, marker, result, _ms(started))
            return ledger.SUCCEEDED, result
        self.ledger.finish_step(step_id, state, error=problem, duration_ms=_ms(started))
        return state, problem

    def _resolve_earlier(
        self,
        task_id: str,
        target: str,
        connector: Connector,
        *,
        just_lost: bool = False,
        succeeded: Succeeded | None = None,
    ) -> Lookup | Waiting | None:
        """Settle earlier calls to this target whose outcome is not known.

        Return None (nothing earlier is in doubt), Waiting (in doubt, but the next lookup is
        not due yet), or the lookup's answer: Found (it happened), Absent (proven not to have
        happened), Unfinished (begun, not finished) or Undetermined (cannot tell). With
        `just_lost` (the call's answer was lost a moment ago), Absent leaves the calls in
        doubt, to be looked up again: the write may not have landed yet.
        """
        open_steps = [
            s
            for s in self.ledger.steps(task_id)
            if s.target == target and s.state in (ledger.INTENT, ledger.UNKNOWN)
        ]
        if not open_steps:
            return None
        marker = marker_for(task_id, target)
        looking = next_lookup(self.ledger, marker)
        if looking is not None and looking.until > self.clock():
            return looking
        if succeeded is not None:
            succeeded.record(self.ledger)  # first: a lookup may take long
        started = time.monotonic()
        answer = connector.lookup(marker)
        took = _ms(started)
        for step in open_steps:
            self._settle(step, answer, took, keep_open=just_lost and isinstance(answer, Absent))
        return answer

    def _look_again(self, marker: str, reason: str, *, lasting: bool = False) -> tuple[str, Any]:
        """Given a call a lookup could not settle, return (DEFERRED, (reason, when)) or, once
        looking again cannot tell, (UNKNOWN, reason): see lookups.look_again."""
        return look_again(
            self.ledger, marker, reason, now=self.clock(), lookups=self.lookups, lasting=lasting
        )

    def reconcile(self) -> list[str]:
        """Settle every INTENT left by a crash, before anything else runs.

        Return the markers looked up. The task's file is still in Approved/, so the next
        look at it finishes the work: a found call is not made again, an absent one is.
        """
        markers = []
        for step in self.ledger.open_intents():
            connector = self.connectors.get(step.target)
            started = time.monotonic()
            answer = (
                connector.lookup(step.marker)
                if connector
                else Undetermined(f"no connector named {step.target}", lasting=True)
            )
            self._settle(step, answer, _ms(started))
            self.ledger.set_run(step.run_id, ledger.UNKNOWN, "interrupted; reconciled at start-up")
            markers.append(step.marker)
        return markers

    def _settle(self, step: Step, answer: Lookup, took_ms: int, *, keep_open: bool = False) -> None:
        """Record what a marker lookup showed about one step, in the ledger and the log
        (`keep_open`: an Absent that does not settle it yet, just after a lost answer)."""
        if isinstance(answer, Found):
            self.ledger.finish_step(step.id, ledger.SUCCEEDED, result=answer.result)
        elif isinstance(answer, Absent) and keep_open:
            self.ledger.finish_step(
                step.id, ledger.UNKNOWN, error="not found right after its answer was lost"
            )
        elif isinstance(answer, Absent):
            self.ledger.finish_step(step.id, ledger.ABSENT)
        elif isinstance(answer, Unfinished):
            self.ledger.finish_step(step.id, ledger.UNFINISHED, error=answer.reason)
        else:
            self.ledger.finish_step(step.id, ledger.UNKNOWN, error=answer.reason)
        self.audit.write(
            "reconciled",
            action=None,
            task_id=step.task_id,
            file=None,
            result={
                "target": step.target,
                "marker": step.marker,
                "lookup": type(answer).__name__.lower(),
            },
            duration_ms=took_ms,
        )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
