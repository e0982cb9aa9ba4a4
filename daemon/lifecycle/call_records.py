"""What one execution run achieved (`Execution`), the calls of a run that succeeded and
whose DONE is not committed yet (`Succeeded`), and when a run's INTENTs may be committed
together, before its first call (`can_announce_together`, `announce`).

An INTENT is committed durably before its call; the DONE of a call that succeeded is
committed with the next thing the run commits: before the next call is begun, or with the
end of the run and the task's new state (one transaction, `end_run`). Until then a crash
leaves the call an INTENT, which the next start looks up by its marker like any other:
found, it is recorded done and never made again. An error (not a crash) that rolls back the
run's end leaves the DONEs recorded alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.connectors.base import Connector
from daemon.core import failpoints, ledger
from daemon.core.ledger import Ledger
from daemon.core.models import Action


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


@dataclass
class Succeeded:
    """Calls of a run that succeeded and whose DONE is not committed yet: step id, result,
    duration. Their markers pass the `after-done` crash point once it is committed."""

    steps: list[tuple[int, Any, int]] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)

    def add(self, step_id: int, marker: str, result: Any, duration_ms: int) -> None:
        self.steps.append((step_id, result, duration_ms))
        self.markers.append(marker)

    def unrecorded(self) -> Succeeded:
        """Return a copy of the calls whose DONE is not committed yet (to record them
        alone if the transaction they are about to join is rolled back)."""
        return Succeeded(list(self.steps), list(self.markers))

    def record(self, ledger_: Ledger, *, then_hit: bool = True) -> None:
        """Record DONE for the calls that succeeded since the last commit (one transaction,
        or the caller's); with `then_hit`, pass their `after-done` crash points."""
        if not self.steps:
            return
        with ledger_.transaction():
            for step_id, result, duration_ms in self.steps:
                ledger_.finish_step(
                    step_id, ledger.SUCCEEDED, result=result, duration_ms=duration_ms
                )
        self.recorded += self.markers
        self.steps, self.markers = [], []
        if then_hit:
            self.hit_after_done()

    def hit_after_done(self) -> None:
        """Pass the `after-done` point of every call recorded since the last time."""
        recorded, self.recorded = self.recorded, []
        for marker in recorded:
            failpoints.hit("after-done", marker)


def can_announce_together(
    ledger_: Ledger, connectors: list[Connector | None], task_id: str, targets: list[str]
) -> bool:
    """Given the calls a run is about to make (their targets and connectors), return whether
    their INTENTs may be committed together, before the first of them is made (one fsync).

    Only if a crash between them leaves every one settled by a lookup (each connector's
    lookup finds a call that was made and proves absent one that was not: `lookup_settles`)
    and nothing earlier of them is in doubt. The caller also makes sure no rate limit may
    hold one of them back.
    """
    if len(targets) < 2 or not all(getattr(c, "lookup_settles", False) for c in connectors):
        return False
    return not any(
        step.target in targets and step.state in (ledger.INTENT, ledger.UNKNOWN)
        for step in ledger_.steps(task_id)
    )


def marker_for(task_id: str, target: str) -> str:
    """Return the marker vaultd puts into the remote object, to find it again."""
    return f"vaultd:{task_id}:{target}"


def announce(
    ledger_: Ledger,
    connectors: dict[str, Connector],
    action: Action,
    targets: list[str],
    *,
    run_id: int,
    task_id: str,
) -> dict[str, int]:
    """Record the INTENT of each call of a run (in the caller's durable transaction: one
    fsync for them all); return the step id of each, by target."""
    announced = {}
    for target in targets:
        marker = marker_for(task_id, target)
        failpoints.hit("before-intent", marker)
        request = connectors[target].describe(action, marker=marker)
        announced[target] = ledger_.record_intent(run_id, task_id, target, marker, request)
    return announced


def end_run(
    ledger_: Ledger,
    succeeded: Succeeded,
    run_id: int,
    *,
    outcome: Execution,
    summary: str | None,
    then: Callable[[Execution], None] | None,
) -> None:
    """Record a run's end in one transaction: the DONE of its calls not recorded yet, the
    run's state and what `then` records of the outcome (the task's state).

    If that transaction fails (an error, not a crash), the calls that went out keep their
    DONE, recorded alone, before the error is raised: a live service's lookup may not find
    them again.
    """
    ending = succeeded.unrecorded()
    try:
        with ledger_.transaction():
            succeeded.record(ledger_, then_hit=False)
            ledger_.set_run(run_id, outcome.state, summary)
            if then is not None:
                then(outcome)
    except Exception:
        ending.record(ledger_)
        raise
