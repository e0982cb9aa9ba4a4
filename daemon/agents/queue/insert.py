"""Writing one queued run inside a transaction the caller holds: its `skill_runs` row, its
queue row, the runs it depends on and the statements recorded with it. Used for one run
(QueueStore.enqueue) and for a batch, all of whose runs are one transaction
(daemon/agents/queue/batches.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.agents.queue.records import Scheduling
from daemon.agents.skills.store import QUEUED
from daemon.core.timestamps import now_iso


@dataclass(frozen=True)
class NewRun:
    """A run to enqueue: its id, skill, inputs, who asked, identity key and scheduling, the
    statements recorded with it (`also`) and the runs it depends on."""

    run_id: str
    skill: str
    inputs: Any
    requested_by: str | None
    key: str
    scheduling: Scheduling
    also: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    parents: Sequence[str] = ()
    batch_id: str | None = None


def insert_run(db: sqlite3.Connection, redact: Callable[[Any], Any], new: NewRun) -> dict[str, Any]:
    """Given an open transaction, record a queued run (its row, queue row, parents and
    `also`); return its row as written. Raise sqlite3.IntegrityError if its identity key is
    taken by an unfinished run."""
    now, at, scheduling = now_iso(), time.time(), new.scheduling
    db.execute(
        "INSERT INTO skill_runs (id, skill, inputs, state, requested_by, created_at,"
        " updated_at, identity_key, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new.run_id,
            new.skill,
            json.dumps(redact(new.inputs), sort_keys=True, default=str),
            QUEUED,
            new.requested_by,
            now,
            now,
            new.key,
            new.batch_id,
        ),
    )
    db.execute(
        "INSERT INTO run_queue (run_id, channel, priority, eta, max_retries,"
        " retry_pattern, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            new.run_id,
            scheduling.channel,
            scheduling.priority,
            at if scheduling.eta is None else scheduling.eta,
            scheduling.max_retries,
            json.dumps(dict(scheduling.retry_pattern)),
            at,
        ),
    )
    for parent in new.parents:
        db.execute(
            "INSERT OR IGNORE INTO run_dependencies (run_id, parent_id) VALUES (?, ?)",
            (new.run_id, parent),
        )
    for sql, args in new.also:
        db.execute(sql, args)
    written = db.execute("SELECT * FROM skill_runs WHERE id = ?", (new.run_id,))
    return dict(written.fetchone())
