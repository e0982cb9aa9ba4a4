"""The queue's small records: the identity key, the retry delay, how a run is scheduled,
what recovery did, and how its times are shown."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.core.timestamps import iso_ms


def identity_key(skill: str, inputs: Any) -> str:
    """Given a skill and its inputs, return the default identity key: the SHA-256 of the
    skill's key and the inputs as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{skill}\n{canonical}".encode()).hexdigest()


def callers_key(skill: str, key: str) -> str:
    """Given a skill and an identity key a caller chose, return the key it holds: within
    that skill, as the default one, and never equal to a default key."""
    return hashlib.sha256(f"{skill}\ncaller's key\n{key}".encode()).hexdigest()


def retry_delay(pattern: dict[int, float], tries: int) -> float:
    """Given a retry pattern ({after N tries: seconds}) and the tries made, return the wait
    before the next: the entry of the largest N not above `tries` (0 s before the first)."""
    due = [seconds for after, seconds in sorted(pattern.items()) if after <= tries]
    return due[-1] if due else 0.0


@dataclass(frozen=True)
class Scheduling:
    """How an enqueued run is scheduled."""

    channel: str = "default"
    priority: int = 10
    eta: float | None = None  # epoch seconds; None: now
    max_retries: int = 2
    retry_pattern: tuple[tuple[int, float], ...] = ((1, 10.0),)


@dataclass(frozen=True)
class Recovered:
    """What recovery did with a run whose worker was lost: its new state, and why."""

    run_id: str
    state: str
    reason: str


class IdentityTaken(Exception):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"an unfinished run with this identity key exists: {run_id}")
        self.run_id = run_id


def when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return iso_ms(datetime.fromtimestamp(epoch, UTC))
