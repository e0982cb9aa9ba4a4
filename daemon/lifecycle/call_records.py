"""The calls of one execution run that succeeded and whose DONE is not committed yet.

An INTENT is committed durably before its call; the DONE of a call that succeeded is
committed with the next thing the run commits: before the next call is begun, or with the
end of the run and the task's new state (one transaction, daemon/lifecycle/execution.py).
Until then a crash leaves the call an INTENT, which the next start looks up by its marker
like any other: found, it is recorded done and never made again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daemon.core import failpoints


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

    def committed(self) -> None:
        """The DONEs are recorded (or joined to a transaction that will commit them)."""
        self.recorded += self.markers
        self.steps, self.markers = [], []

    def hit_after_done(self) -> None:
        """Pass the `after-done` point of every call recorded since the last time."""
        recorded, self.recorded = self.recorded, []
        for marker in recorded:
            failpoints.hit("after-done", marker)
