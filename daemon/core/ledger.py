"""The ledger: vaultd's durable memory, in SQLite outside the vault.

It knows every task vaultd has seen (its id, where its file is, the payload hash a human
approved), every execution run (queued → running → succeeded | failed | unknown) and every
step of a run (one remote call each). An INTENT is committed with `synchronous=FULL` before
the call, so after any crash vaultd knows which calls may have happened.

`Ledger` is made of parts, each in a module of its own: the database and its transactions
(ledger_db, ledger_schema), the task table (ledger_tasks), the runs and steps (ledger_runs),
and the states they record (ledger_states, re-exported here: `ledger.EXECUTING`). This
module adds the circuit breakers, the briefing claims and the meta values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.core.ledger_runs import RunLog, Step
from daemon.core.ledger_states import (
    ABSENT,
    APPROVED,
    DEFERRED,
    DONE,
    EXECUTED,
    EXECUTING,
    FAILED,
    INTENT,
    PENDING,
    QUEUED,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    UNFINISHED,
    UNKNOWN,
)
from daemon.core.ledger_tasks import Task, TaskTable
from daemon.core.timestamps import now_iso, parse_time

__all__ = [
    "ABSENT",
    "APPROVED",
    "DEFERRED",
    "DONE",
    "EXECUTED",
    "EXECUTING",
    "FAILED",
    "INTENT",
    "PENDING",
    "QUEUED",
    "REJECTED",
    "RUNNING",
    "SUCCEEDED",
    "UNFINISHED",
    "UNKNOWN",
    "Ledger",
    "Step",
    "Task",
]


class Ledger(TaskTable, RunLog):
    """The ledger of one state directory: tasks, runs and steps, breakers, briefings, meta."""

    def set_breaker(self, name: str, state: str, failures: int) -> None:
        """Record a circuit breaker's state (closed, open, half-open)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO breakers (name, state, failures, changed_at)"
                " VALUES (?, ?, ?, ?)",
                (name, state, failures, now_iso()),
            )

    def breakers(self) -> list[dict[str, Any]]:
        """Return every circuit breaker's last recorded state, by name."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM breakers ORDER BY name").fetchall()
        return [dict(row) for row in rows]

    def claim_briefing(self, week: str, *, stale_after: timedelta = timedelta(minutes=10)) -> bool:
        """Claim the right to write a week's briefing; return False if it is not ours.

        One row per week makes the briefing happen once, whatever restarts, clock changes or
        second daemons do. A claim never completed (the writer died) may be taken over once
        it is `stale_after` old.
        """
        now = datetime.now(UTC)
        with self._tx(durable=True) as db:
            row = db.execute(
                "SELECT claimed_at, written_at FROM briefings WHERE week = ?", (week,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO briefings (week, claimed_at) VALUES (?, ?)", (week, now_iso())
                )
                return True
            claimed_at, written_at = row
            if written_at is None and parse_time(claimed_at) < now - stale_after:
                db.execute("UPDATE briefings SET claimed_at = ? WHERE week = ?", (now_iso(), week))
                return True
            return False

    def briefing_written(self, week: str, path: str, *, late: bool) -> None:
        with self._tx(durable=True) as db:
            db.execute(
                "UPDATE briefings SET written_at = ?, path = ?, late = ? WHERE week = ?",
                (now_iso(), path, int(late), week),
            )

    def briefings(self) -> list[dict[str, Any]]:
        """Return every briefing week vaultd claimed, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM briefings ORDER BY week DESC").fetchall()
        return [dict(row) for row in rows]

    def meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def set_meta_once(self, key: str, value: str) -> str:
        """Set a value unless it is set already; return the value that holds."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
            (held,) = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(held)
