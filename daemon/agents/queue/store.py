"""The durable run queue, in the ledger's database: which runs wait, in which channel, when
they may start, who holds each running one, and what happens to a run whose worker died.

    enqueue  → the run (state queued) and its queue row, in one transaction; the identity
               key is UNIQUE among unfinished runs (a partial index), so of two identical
               enqueues racing, the second fails inside that same transaction: 409
    claim    → queued → running for the best due run of a channel below its capacity
               (priority, then eta, then age), with a lease: one transaction, so two
               workers (or two processes) never take the same run, nor more than capacity
    renew    → every lease a live worker holds is pushed on (its heartbeat)
    recover  → a running run whose lease ran out (or whose process is seen dead):
               - asked for a world-changing action (a request step in this attempt):
                 awaiting_approval, followed through its task files; never run again
               - else, tries left: queued again after retry_pattern's delay
               - else: failed, saying why
    requeue  → a failed attempt with no request and tries left: queued again, same rules
    orphans  → a queued run whose parent (depends_on) failed or was cancelled: failed, naming
               it (and so on down); a run starts only once every parent succeeded

A run's state lives in `skill_runs` (daemon/agents/skills/store.py); this module's table only
says how it is scheduled. Times here are epoch seconds: they are compared, not shown.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from daemon.agents.queue.insert import NewRun, insert_run
from daemon.agents.queue.records import IdentityTaken, Recovered, Scheduling, retry_delay, when
from daemon.agents.skills.store import AWAITING_APPROVAL, FAILED, QUEUED, RUNNING
from daemon.core.ledger_db import LedgerDatabase
from daemon.core.timestamps import now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS run_queue (
    run_id        TEXT PRIMARY KEY REFERENCES skill_runs(id),
    channel       TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    eta           REAL NOT NULL,
    tries         INTEGER NOT NULL DEFAULT 0,
    max_retries   INTEGER NOT NULL,
    retry_pattern TEXT NOT NULL,
    lease_owner   TEXT,
    lease_until   REAL,
    heartbeat_at  REAL,
    enqueued_at   REAL NOT NULL,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS run_queue_due ON run_queue(channel, priority, eta, enqueued_at);
CREATE INDEX IF NOT EXISTS skill_runs_state ON skill_runs(state);
CREATE TABLE IF NOT EXISTS run_dependencies (
    run_id        TEXT NOT NULL REFERENCES skill_runs(id),
    parent_id     TEXT NOT NULL REFERENCES skill_runs(id),
    PRIMARY KEY (run_id, parent_id)
);
CREATE INDEX IF NOT EXISTS run_dependencies_parent ON run_dependencies(parent_id);
"""
# A parent is always older than its child (it must exist when the child is enqueued), so
# no cycle of depends_on can be written.
# Unfinished: any state but succeeded, failed and cancelled (a run waiting for approval too:
# a second one would write its requests again).
IDENTITY_INDEX = """
CREATE UNIQUE INDEX IF NOT EXISTS skill_runs_identity ON skill_runs(identity_key)
WHERE identity_key IS NOT NULL AND state NOT IN ('succeeded', 'failed', 'cancelled');
"""


def due_in(db: sqlite3.Connection) -> bool:
    """Given a (read) connection to the ledger, return whether a queued run is due."""
    row = db.execute(
        "SELECT 1 FROM skill_runs r JOIN run_queue q ON q.run_id = r.id"
        " WHERE r.state = ? AND q.eta <= ? LIMIT 1",
        (QUEUED, time.time()),
    ).fetchone()
    return row is not None


class QueueStore:
    def __init__(self, ledger: LedgerDatabase) -> None:
        self.ledger = ledger
        ledger.ensure_schema(SCHEMA)
        # A ledger from before the queue, or before batches.
        ledger.add_text_columns("skill_runs", "identity_key", "batch_id")
        ledger.ensure_schema(IDENTITY_INDEX)

    def enqueue(
        self,
        run_id: str,
        skill: str,
        inputs: Any,
        *,
        requested_by: str | None,
        key: str,
        scheduling: Scheduling,
        also: Sequence[tuple[str, tuple[Any, ...]]] = (),
        parents: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Durably record a queued run, its queue row, the runs it depends on (which must
        exist) and `also`'s statements in one transaction; return the run's row as that
        transaction wrote it (a worker may have taken it the moment it committed). Raise
        IdentityTaken, recording nothing, if an unfinished run has `key`."""
        new = NewRun(run_id, skill, inputs, requested_by, key, scheduling, tuple(also), parents)
        try:
            with self.ledger.transaction(durable=True) as db:
                return insert_run(db, self.ledger.redact, new)
        except sqlite3.IntegrityError:
            holder = self.unfinished_with(key)
            if holder is None:
                raise  # not the identity: a bug worth its traceback
            raise IdentityTaken(holder) from None

    def unfinished_with(self, key: str) -> str | None:
        rows = self.ledger.rows(
            "SELECT id FROM skill_runs WHERE identity_key = ?"
            " AND state NOT IN ('succeeded', 'failed', 'cancelled')",
            (key,),
        )
        return rows[0]["id"] if rows else None

    def claim(self, channel: str, capacity: int, owner: str, lease_s: float) -> str | None:
        """Given a channel, its capacity and a worker, take the best due run of the channel
        (queued → running, attempt + 1, a lease for `owner`); return its id, or None if none
        is due or the channel is full."""
        now = time.time()
        with self.ledger.transaction() as db:
            # From the runs by state (CROSS JOIN keeps that order): the queue keeps a row
            # for every run ever queued, and walking a channel's rows made a claim cost
            # 35 ms after 10,000 finished runs, 740 ms after 50,000.
            (running,) = db.execute(
                "SELECT COUNT(*) FROM skill_runs r CROSS JOIN run_queue q ON q.run_id = r.id"
                " WHERE r.state = ? AND q.channel = ?",
                (RUNNING, channel),
            ).fetchone()
            if running >= capacity:
                return None
            row = db.execute(
                "SELECT q.run_id FROM skill_runs r CROSS JOIN run_queue q ON q.run_id = r.id"
                " WHERE r.state = ? AND q.channel = ? AND q.eta <= ?"
                " AND NOT EXISTS (SELECT 1 FROM run_dependencies d JOIN skill_runs p"
                " ON p.id = d.parent_id WHERE d.run_id = q.run_id AND p.state != 'succeeded')"
                " ORDER BY q.priority, q.eta, q.enqueued_at LIMIT 1",
                (QUEUED, channel, now),
            ).fetchone()
            if row is None:
                return None
            run_id = str(row[0])
            stamp = now_iso()
            db.execute(
                "UPDATE skill_runs SET state = ?, attempt = attempt + 1, started_at = ?,"
                " updated_at = ?, error = NULL WHERE id = ? AND state = ?",
                (RUNNING, stamp, stamp, run_id, QUEUED),
            )
            db.execute(
                "UPDATE run_queue SET tries = tries + 1, lease_owner = ?, lease_until = ?,"
                " heartbeat_at = ? WHERE run_id = ?",
                (owner, now + lease_s, now, run_id),
            )
        return run_id

    def renew(self, owners: list[str], lease_s: float) -> int:
        """Push on the leases of these workers (their heartbeat); return how many runs."""
        if not owners:
            return 0
        now = time.time()
        marks = ",".join("?" * len(owners))
        with self.ledger.transaction() as db:
            cursor = db.execute(
                f"UPDATE run_queue SET lease_until = ?, heartbeat_at = ?"  # noqa: S608
                f" WHERE lease_owner IN ({marks})",
                (now + lease_s, now, *owners),
            )
            return cursor.rowcount

    def holds(self, run_id: str, owner: str, lease_s: float) -> bool:
        """Return True, renewing the lease, if `owner` still holds this running run."""
        now = time.time()
        with self.ledger.transaction() as db:
            cursor = db.execute(
                "UPDATE run_queue SET lease_until = ?, heartbeat_at = ? WHERE run_id = ?"
                " AND lease_owner = ? AND EXISTS (SELECT 1 FROM skill_runs r WHERE r.id = ?"
                " AND r.state = ?)",
                (now + lease_s, now, run_id, owner, run_id, RUNNING),
            )
            return cursor.rowcount == 1

    def release(self, run_id: str, owner: str) -> None:
        with self.ledger.transaction() as db:
            db.execute(
                "UPDATE run_queue SET lease_owner = NULL, lease_until = NULL"
                " WHERE run_id = ? AND lease_owner = ?",
                (run_id, owner),
            )

    def requeue(self, run_id: str, owner: str, error: str) -> float | None:
        """Given a running run this worker holds whose attempt failed before asking for
        anything, queue it again after the retry delay if it has tries left; return the
        delay, or None (recording nothing) if it has none left or is not held."""
        with self.ledger.transaction() as db:
            row = db.execute(
                "SELECT q.tries, q.max_retries, q.retry_pattern FROM run_queue q"
                " JOIN skill_runs r ON r.id = q.run_id"
                " WHERE q.run_id = ? AND q.lease_owner = ? AND r.state = ?",
                (run_id, owner, RUNNING),
            ).fetchone()
            if row is None or row[0] > row[1]:
                return None
            return self._again(db, run_id, row, error)

    def _again(self, db: sqlite3.Connection, run_id: str, row: Any, error: str) -> float:
        tries, _max, pattern = row[0], row[1], json.loads(row[2])
        delay = retry_delay({int(k): float(v) for k, v in pattern.items()}, tries)
        db.execute(
            "UPDATE skill_runs SET state = ?, error = ?, updated_at = ? WHERE id = ?",
            (QUEUED, self.ledger.redact(error), now_iso(), run_id),
        )
        db.execute(
            "UPDATE run_queue SET eta = ?, lease_owner = NULL, lease_until = NULL,"
            " last_error = ? WHERE run_id = ?",
            (time.time() + delay, self.ledger.redact(error), run_id),
        )
        return delay

    def recover(self, dead: set[str] | None = None) -> list[Recovered]:
        """Take back every running run whose lease ran out or whose owner is in `dead`;
        return what became of each (see the module's docstring)."""
        now, dead = time.time(), dead or set()
        done: list[Recovered] = []
        with self.ledger.transaction() as db:
            rows = db.execute(
                "SELECT q.run_id, q.tries, q.max_retries, q.retry_pattern, q.lease_owner,"
                " q.lease_until, r.attempt FROM run_queue q JOIN skill_runs r ON r.id = q.run_id"
                " WHERE r.state = ?",
                (RUNNING,),
            ).fetchall()
            for row in rows:
                run_id, tries, max_retries, _, owner, until, attempt = row
                if owner not in dead and until is not None and until > now:
                    continue
                lost = (
                    f"its worker {owner} stopped (lease until {when(until)} not renewed) "
                    f"in try {tries}"
                )
                (requests,) = db.execute(
                    "SELECT COUNT(*) FROM skill_steps WHERE run_id = ? AND attempt = ?"
                    " AND token IS NOT NULL",
                    (run_id, attempt),
                ).fetchone()
                if requests:
                    reason = (
                        f"{lost} after asking for {requests} world-changing action(s): "
                        "not run again; followed through its task files"
                    )
                    self._settle(db, run_id, AWAITING_APPROVAL, reason)
                    done.append(Recovered(run_id, AWAITING_APPROVAL, reason))
                elif tries <= max_retries:
                    delay = self._again(db, run_id, row[1:4], lost)
                    done.append(Recovered(run_id, QUEUED, f"{lost}: tried again in {delay:g} s"))
                else:
                    reason = f"{lost}; no tries left (max_retries {max_retries})"
                    self._settle(db, run_id, FAILED, reason)
                    done.append(Recovered(run_id, FAILED, reason))
        return done

    def _settle(self, db: sqlite3.Connection, run_id: str, state: str, reason: str) -> None:
        now = now_iso()
        finished = now if state == FAILED else None
        db.execute(
            "UPDATE skill_runs SET state = ?, error = ?, updated_at = ?,"
            " finished_at = COALESCE(?, finished_at) WHERE id = ? AND state = ?",
            (state, self.ledger.redact(reason), now, finished, run_id, RUNNING),
        )
        db.execute(
            "UPDATE run_queue SET lease_owner = NULL, lease_until = NULL, last_error = ?"
            " WHERE run_id = ?",
            (self.ledger.redact(reason), run_id),
        )

    def orphans(self) -> list[Recovered]:
        """Fail every queued run whose parent failed or was cancelled, and so on down to
        their children; return each, with why."""
        query = (
            "SELECT d.run_id, p.id, p.state FROM run_dependencies d"
            " JOIN skill_runs r ON r.id = d.run_id JOIN skill_runs p ON p.id = d.parent_id"
            " WHERE r.state = ? AND p.state IN ('failed', 'cancelled')"
        )
        if not self.ledger.rows(query, (QUEUED,)):
            return []  # the common case: read only, no write transaction
        done: list[Recovered] = []
        with self.ledger.transaction() as db:
            while rows := db.execute(query, (QUEUED,)).fetchall():
                for run_id, parent, state in rows:
                    reason = f"its parent run {parent} {state}: it does not start (depends_on)"
                    cursor = db.execute(
                        "UPDATE skill_runs SET state = ?, error = ?, updated_at = ?,"
                        " finished_at = ? WHERE id = ? AND state = ?",
                        (FAILED, reason, now_iso(), now_iso(), run_id, QUEUED),
                    )
                    if cursor.rowcount:
                        done.append(Recovered(run_id, FAILED, reason))
        return done

    def parents(self, run_id: str) -> list[str]:
        rows = self.ledger.rows(
            "SELECT parent_id FROM run_dependencies WHERE run_id = ? ORDER BY parent_id",
            (run_id,),
        )
        return [row["parent_id"] for row in rows]

    def owners(self) -> list[str]:
        """Return the workers that hold a lease on a running run now."""
        rows = self.ledger.rows(
            "SELECT DISTINCT q.lease_owner FROM run_queue q JOIN skill_runs r ON r.id = q.run_id"
            " WHERE r.state = ? AND q.lease_owner IS NOT NULL",
            (RUNNING,),
        )
        return [row["lease_owner"] for row in rows]

    def entry(self, run_id: str) -> dict[str, Any] | None:
        """Return how a run is scheduled (None if it was never enqueued), as views show it."""
        rows = self.ledger.rows("SELECT * FROM run_queue WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        row = rows[0]
        return {
            "channel": row["channel"],
            "priority": row["priority"],
            "eta": when(row["eta"]),
            "tries": row["tries"],
            "max_retries": row["max_retries"],
            "lease_owner": row["lease_owner"],
            "lease_until": when(row["lease_until"]),
            "heartbeat_at": when(row["heartbeat_at"]),
            "last_error": row["last_error"],
            "depends_on": self.parents(run_id),
        }
