"""At most once (design §3): how an approved action becomes remote calls.

Each connector call is one ledger step:

    INTENT (committed durably) → call → DONE with the remote result

A call that succeeded in any earlier run of the task is never made again. A call whose
outcome was never recorded (a crash, a lost answer) is looked up by its marker first:
found means done, proven absent means safe to call, anything else stays unknown and is
left to a person. This module never touches the vault; the pipeline moves the files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon import failpoints, ledger
from daemon.audit import AuditLog
from daemon.connectors import targets
from daemon.connectors.base import Absent, Connector, Found, Lookup, Undetermined
from daemon.errors import ConnectorError, Deferred, OutcomeUnknown
from daemon.ledger import Ledger, Step
from daemon.limits import Limiter
from daemon.models import Action


@dataclass
class Execution:
    """What one run achieved, per connector target."""

    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    # Calls the service would not take yet (rate limit, quota): reason and when to retry.
    deferred: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    # Wall time of the run: its look-ups and calls, measured.
    duration_ms: int | None = None

    def record(self, target: str, state: str, value: Any) -> None:
        if state == ledger.SUCCEEDED:
            self.results[target] = value
        elif state == ledger.FAILED:
            self.failures[target] = value
        elif state == ledger.DEFERRED:
            self.deferred[target] = value
        else:
            self.unknown[target] = value

    @property
    def state(self) -> str:
        if self.unknown:
            return ledger.UNKNOWN
        if self.failures:
            return ledger.FAILED
        return ledger.DEFERRED if self.deferred else ledger.SUCCEEDED

    def retry_at(self) -> datetime | None:
        return min((when for _, when in self.deferred.values()), default=None)


def marker_for(task_id: str, target: str) -> str:
    """Return the marker vaultd puts into the remote object, to find it again."""
    return f"vaultd:{task_id}:{target}"


class Executor:
    def __init__(
        self,
        ledger_: Ledger,
        connectors: dict[str, Connector],
        audit: AuditLog,
        *,
        dry_run: bool,
        limiter: Limiter | None = None,
    ) -> None:
        self.ledger = ledger_
        self.connectors = connectors
        self.audit = audit
        self.dry_run = dry_run
        self.limiter = limiter

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

    def run(self, task_id: str, payload_hash: str, action: Action) -> Execution:
        """Make each call of an approved action at most once; return what happened."""
        started = time.monotonic()
        run_id = self.ledger.start_run(task_id, payload_hash, dry_run=self.dry_run)
        self.ledger.set_run(run_id, ledger.RUNNING)
        outcome = Execution(results=self.completed(task_id, payload_hash))
        for target in targets(action):
            if target in outcome.results:
                continue  # succeeded in an earlier run: never post twice
            connector = self.connectors[target]
            earlier = self._resolve_earlier(task_id, target, connector)
            if isinstance(earlier, Found):
                outcome.results[target] = earlier.result
            elif isinstance(earlier, Undetermined):
                outcome.unknown[target] = earlier.reason
            elif self.limiter and (wait := self.limiter.wait(action.type, target)):
                outcome.deferred[target] = wait
            else:
                state, value = self._call(run_id, task_id, target, connector, action)
                outcome.record(target, state, value)
        problems = {**outcome.failures, **outcome.unknown}
        problems.update({t: reason for t, (reason, _) in outcome.deferred.items()})
        summary = "; ".join(f"{t}: {e}" for t, e in problems.items())
        self.ledger.set_run(run_id, outcome.state, summary or None)
        outcome.duration_ms = _ms(started)
        return outcome

    def _call(
        self, run_id: int, task_id: str, target: str, connector: Connector, action: Action
    ) -> tuple[str, Any]:
        """Make one call behind a durable INTENT; return (step state, result or error)."""
        marker = marker_for(task_id, target)
        failpoints.hit("before-intent", marker)
        request = connector.describe(action, marker=marker)
        step_id = self.ledger.record_intent(run_id, task_id, target, marker, request)
        failpoints.hit("after-intent", marker)
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
            self.ledger.finish_step(
                step_id, ledger.SUCCEEDED, result=result, duration_ms=_ms(started)
            )
            failpoints.hit("after-done", marker)
            return ledger.SUCCEEDED, result
        self.ledger.finish_step(step_id, state, error=problem, duration_ms=_ms(started))
        return state, problem

    def _resolve_earlier(self, task_id: str, target: str, connector: Connector) -> Lookup:
        """Settle earlier calls to this target whose outcome is not known.

        Return Found (it happened), Undetermined (still cannot tell: do not call), or
        Absent (nothing earlier, or proven not to have happened: safe to call).
        """
        open_steps = [
            s
            for s in self.ledger.steps(task_id)
            if s.target == target and s.state in (ledger.INTENT, ledger.UNKNOWN)
        ]
        if not open_steps:
            return Absent()
        started = time.monotonic()
        answer = connector.lookup(marker_for(task_id, target))
        took = _ms(started)
        for step in open_steps:
            self._settle(step, answer, took)
        return answer

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
                else Undetermined(f"no connector named {step.target}")
            )
            self._settle(step, answer, _ms(started))
            self.ledger.set_run(step.run_id, ledger.UNKNOWN, "interrupted; reconciled at start-up")
            markers.append(step.marker)
        return markers

    def _settle(self, step: Step, answer: Lookup, took_ms: int) -> None:
        """Record what a marker lookup showed about one step, in the ledger and the log."""
        if isinstance(answer, Found):
            self.ledger.finish_step(step.id, ledger.SUCCEEDED, result=answer.result)
        elif isinstance(answer, Absent):
            self.ledger.finish_step(step.id, ledger.ABSENT)
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
