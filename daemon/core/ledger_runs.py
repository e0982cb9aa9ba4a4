"""The ledger's execution runs and their steps (one remote call each), and what connectors
remember within a call.

A run goes queued → running → succeeded | failed | unknown. A step is recorded as an INTENT,
durably, before its call is made; an INTENT without an outcome after a crash is a call that
may have happened (`open_intents`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from daemon.core.ledger_db import LedgerDatabase, as_json
from daemon.core.ledger_states import INTENT, QUEUED, RUNNING, SUCCEEDED, UNKNOWN
from daemon.core.timestamps import now_iso


@dataclass(frozen=True)
class Step:
    id: int
    run_id: int
    task_id: str
    target: str
    marker: str
    state: str
    request: Any
    result: Any
    error: str | None
    duration_ms: int | None


class RunLog(LedgerDatabase):
    """The `runs`, `steps` and `progress` tables: what was called, and what came of it."""

    def start_run(
        self, task_id: str, payload_hash: str, *, dry_run: bool, running: bool = False
    ) -> int:
        """Create a queued (or, with `running`, a running) run for a task; return its id."""
        with self._tx() as db:
            (attempts,) = db.execute(
                "SELECT COUNT(*) FROM runs WHERE task_id = ?", (task_id,)
            ).fetchone()
            cursor = db.execute(
                "INSERT INTO runs (task_id, attempt, state, payload_hash, dry_run, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    task_id,
                    attempts + 1,
                    RUNNING if running else QUEUED,
                    payload_hash,
                    int(dry_run),
                    now_iso(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def set_run(self, run_id: int, state: str, error: str | None = None) -> None:
        finished = now_iso() if state not in (QUEUED, RUNNING) else None
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET state = ?, error = ?, finished_at = ? WHERE id = ?",
                (state, self._redact(error), finished, run_id),
            )

    def run_hashes(self, task_id: str) -> dict[int, str]:
        """Return the payload hash each run of a task executed, by run id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload_hash FROM runs WHERE task_id = ?", (task_id,)
            ).fetchall()
        return {int(run_id): str(payload_hash) for run_id, payload_hash in rows}

    def runs(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE task_id = ? ORDER BY id", (task_id,)
            ).fetchall()
        return [dict(row) for row in rows]

    def record_intent(
        self, run_id: int, task_id: str, target: str, marker: str, request: Any
    ) -> int:
        """Durably record that a remote call is about to be made; return the step id."""
        with self._tx(durable=True) as db:
            cursor = db.execute(
                "INSERT INTO steps (run_id, task_id, target, marker, state, request, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    task_id,
                    target,
                    marker,
                    INTENT,
                    as_json(self._redact(request)),
                    now_iso(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def finish_step(
        self,
        step_id: int,
        state: str,
        *,
        result: Any = None,
        error: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE steps SET state = ?, result = ?, error = ?, finished_at = ?,"
                " duration_ms = COALESCE(?, duration_ms) WHERE id = ?",
                (
                    state,
                    as_json(self._redact(result)),
                    self._redact(error),
                    now_iso(),
                    duration_ms,
                    step_id,
                ),
            )

    def steps(self, task_id: str) -> list[Step]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM steps WHERE task_id = ? ORDER BY id", (task_id,)
            ).fetchall()
        return [_step(row) for row in rows]

    def open_intents(self) -> list[Step]:
        """Return steps whose call may have happened but whose outcome was never recorded."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM steps WHERE state = ? ORDER BY id", (INTENT,)
            ).fetchall()
        return [_step(row) for row in rows]

    def recent_steps(self, limit: int = 10) -> list[Step]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM steps ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_step(row) for row in rows]

    def remember(self, marker: str, key: str, value: Any) -> None:
        """Durably record a connector's progress within one call (an Instagram container id,
        say), so that a lookup after a crash can find the remote object."""
        with self._tx(durable=True) as db:
            db.execute(
                "INSERT OR REPLACE INTO progress (marker, key, value, recorded_at)"
                " VALUES (?, ?, ?, ?)",
                (marker, key, as_json(self._redact(value)), now_iso()),
            )

    def recall(self, marker: str) -> dict[str, Any]:
        """Return what connectors remembered for a marker."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM progress WHERE marker = ?", (marker,)
            ).fetchall()
        return {key: json.loads(value) for key, value in rows}

    def call_times(
        self, since: str, *, target: str | None = None, action_type: str | None = None
    ) -> list[str]:
        """Return when calls (made, or perhaps made) were started since a time, oldest first.

        Filter by connector target or by the task's action type.
        """
        query = (
            "SELECT s.started_at FROM steps s JOIN tasks t ON t.id = s.task_id"
            " WHERE s.started_at >= ? AND s.state IN (?, ?, ?)"
        )
        args: list[Any] = [since, INTENT, SUCCEEDED, UNKNOWN]
        if target is not None:
            query += " AND s.target = ?"
            args.append(target)
        if action_type is not None:
            query += " AND t.type = ?"
            args.append(action_type)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY s.started_at", args).fetchall()
        return [row[0] for row in rows]


def _step(row: sqlite3.Row) -> Step:
    data = dict(row)
    return Step(
        id=data["id"],
        run_id=data["run_id"],
        task_id=data["task_id"],
        target=data["target"],
        marker=data["marker"],
        state=data["state"],
        request=json.loads(data["request"]) if data["request"] else None,
        result=json.loads(data["result"]) if data["result"] else None,
        error=data["error"],
        duration_ms=data["duration_ms"],
    )
