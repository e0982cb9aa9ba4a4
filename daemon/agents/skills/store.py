"""Skill runs and their traces, kept in the ledger's database.

A run moves through

    draft → queued → running → awaiting_approval → succeeded | failed | cancelled

and its trace has one step per tool call: the tool, its inputs (redacted), its output, its
duration and its error. A step that asked for a world-changing action holds the task file it
wrote and a token; the pipeline records that token as the task's origin, which is how a run
learns what became of its requests.

A run's end is written into the note of the `type: skill` task that asked for it (if one
did), and `skill_task_notes` remembers which state that note shows, so a write that a crash
or a person's edit prevented is caught up later (daemon/agents/skills/settle.py).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.core.ledger import APPROVED as TASK_APPROVED
from daemon.core.ledger import EXECUTING as TASK_EXECUTING
from daemon.core.ledger import PENDING as TASK_PENDING
from daemon.core.ledger import REJECTED as TASK_REJECTED
from daemon.core.ledger import Ledger
from daemon.core.timestamps import now_iso

DRAFT, QUEUED, RUNNING = "draft", "queued", "running"
AWAITING_APPROVAL = "awaiting_approval"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)

# Which state may follow which; anything else is a bug or a race, refused.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    DRAFT: (QUEUED, CANCELLED),
    QUEUED: (RUNNING, FAILED, CANCELLED),
    # running → queued: the queue tries again a run that failed before asking for anything.
    RUNNING: (AWAITING_APPROVAL, SUCCEEDED, FAILED, QUEUED),
    AWAITING_APPROVAL: (SUCCEEDED, FAILED, CANCELLED),
    FAILED: (QUEUED,),
    SUCCEEDED: (),
    CANCELLED: (),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS skill_runs (
    id            TEXT PRIMARY KEY,
    skill         TEXT NOT NULL,
    inputs        TEXT NOT NULL,
    state         TEXT NOT NULL,
    output        TEXT,
    error         TEXT,
    requested_by  TEXT,
    attempt       INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS skill_runs_skill ON skill_runs(skill, started_at);
CREATE TABLE IF NOT EXISTS skill_steps (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL REFERENCES skill_runs(id),
    attempt       INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    tool          TEXT NOT NULL,
    inputs        TEXT,
    output        TEXT,
    error         TEXT,
    state         TEXT NOT NULL,
    token         TEXT,
    task_file     TEXT,
    started_at    TEXT NOT NULL,
    duration_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS skill_steps_run ON skill_steps(run_id, attempt, seq);
CREATE TABLE IF NOT EXISTS skill_task_notes (
    run_id        TEXT PRIMARY KEY REFERENCES skill_runs(id),
    state         TEXT NOT NULL,
    noted_at      TEXT NOT NULL
);
"""

# A request's task states that cancelling its run withdraws (asked about, or approved and
# not yet executing). Failed and unknown stay for a person, but can no longer be retried.
WITHDRAWABLE = (TASK_PENDING, TASK_APPROVED)

# Step states: done (answered), requested (a task file waits for the pipeline), refused.
STEP_DONE, STEP_REQUESTED, STEP_REFUSED = "done", "requested", "refused"


class TransitionRefused(Exception):
    def __init__(self, run_id: str, current: str, wanted: str) -> None:
        super().__init__(f"run {run_id} is {current}; it cannot become {wanted}")
        self.current = current


@dataclass(frozen=True)
class Run:
    id: str
    skill: str
    inputs: Any
    state: str
    output: Any
    error: str | None
    requested_by: str | None
    attempt: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    # Set when the run was enqueued: no two unfinished runs share one (daemon/agents/queue).
    identity_key: str | None = None
    # The run's own completion webhook (daemon/agents/webhooks/), if it named one.
    webhook: str | None = None
    # The batch it was enqueued in (POST /api/v1/batches), if any.
    batch_id: str | None = None


@dataclass(frozen=True)
class TraceStep:
    id: int
    attempt: int
    seq: int
    tool: str
    inputs: Any
    output: Any
    error: str | None
    state: str
    token: str | None
    task_file: str | None
    started_at: str
    duration_ms: int | None


def origin_of(run_id: str, token: str) -> str:
    """Return what the pipeline records as the origin of a task file a run wrote."""
    return f"run:{run_id}:{token}"


def run_of(origin: str | None) -> str | None:
    """Given a task's origin, return the id of the run that wrote it; None if no run did."""
    if not origin or not origin.startswith("run:"):
        return None
    return origin.split(":")[1]


class RunStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        ledger.ensure_schema(SCHEMA)

    def create(self, skill: str, inputs: Any, *, requested_by: str | None) -> Run:
        run_id = f"run-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
        now = now_iso()
        with self.ledger.transaction() as db:
            db.execute(
                "INSERT INTO skill_runs (id, skill, inputs, state, requested_by, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, skill, _json(self.ledger.redact(inputs)), DRAFT, requested_by, now, now),
            )
        return self._must(run_id)

    def _must(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def get(self, run_id: str) -> Run | None:
        rows = self.ledger.rows("SELECT * FROM skill_runs WHERE id = ?", (run_id,))
        return as_run(rows[0]) if rows else None

    def listed(self, *, limit: int = 50, skill: str | None = None) -> list[Run]:
        query, args = "SELECT * FROM skill_runs", []
        if skill:
            query, args = query + " WHERE skill = ?", [skill]
        newest = " ORDER BY created_at DESC, rowid DESC LIMIT ?"  # one ms: as they were written
        return [as_run(row) for row in self.ledger.rows(query + newest, [*args, limit])]

    def move(
        self, run_id: str, state: str, *, expect: tuple[str, ...] | None = None, **fields: Any
    ) -> Run:
        """Change a run's state (and fields) if the state machine allows it; return the run.

        With `expect`, the run must be in one of those states when the change is made (in
        the same transaction): of two callers racing to start or finish a run, one wins.
        """
        with self.ledger.transaction() as db:
            self._move(db, run_id, state, expect, fields)
        return self._must(run_id)

    def _move(
        self,
        db: sqlite3.Connection,
        run_id: str,
        state: str,
        expect: tuple[str, ...] | None,
        fields: dict[str, Any],
    ) -> None:
        now = now_iso()
        row = db.execute("SELECT state FROM skill_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        current = row[0]
        if expect is not None and current not in expect:
            raise TransitionRefused(run_id, current, state)
        if state != current and state not in TRANSITIONS[current]:
            raise TransitionRefused(run_id, current, state)
        values: dict[str, Any] = {"state": state, "updated_at": now}
        if state == RUNNING:
            values["started_at"] = now
        if state in FINISHED:
            values["finished_at"] = now
        for name, value in fields.items():
            values[name] = _json(value) if name == "output" else value
        if "error" in values:
            values["error"] = self.ledger.redact(values["error"])
        assignments = ", ".join(f"{name} = ?" for name in values)
        db.execute(
            f"UPDATE skill_runs SET {assignments} WHERE id = ?",  # noqa: S608
            (*values.values(), run_id),
        )

    def cancel(
        self, run_id: str, *, error: str, withdrawal: str
    ) -> tuple[Run, list[dict[str, Any]]]:
        """Given a run, cancel it and withdraw its requests; return the run and its requests'
        tasks as they were. Raise TransitionRefused unless it is a draft, queued or waiting.

        One transaction: the tasks in WITHDRAWABLE states become rejected, with `withdrawal`
        as their error. The pipeline records a request as executing only through `claim`,
        which checks the run in a transaction of its own, so of a cancel and an execution
        that race, one comes first: a request is withdrawn here or found executing.
        """
        with self.ledger.transaction() as db:
            self._move(db, run_id, CANCELLED, (DRAFT, QUEUED, AWAITING_APPROVAL), {"error": error})
            tokens = db.execute(
                "SELECT token FROM skill_steps WHERE run_id = ? AND token IS NOT NULL", (run_id,)
            ).fetchall()
            origins = [origin_of(run_id, row[0]) for row in tokens]
            marks = ",".join("?" * len(origins))
            query = f"SELECT * FROM tasks WHERE origin IN ({marks}) ORDER BY created_at"  # noqa: S608
            tasks = [dict(row) for row in db.execute(query, origins)] if origins else []
            now = now_iso()
            for task in tasks:
                if task["state"] in WITHDRAWABLE:
                    db.execute(
                        "UPDATE tasks SET state = ?, approval = 'withdrawn', error = ?,"
                        " decided_at = ?, updated_at = ? WHERE id = ?",
                        (TASK_REJECTED, self.ledger.redact(withdrawal), now, now, task["id"]),
                    )
        return self._must(run_id), tasks

    def claim(self, task_id: str, run_id: str, file: str) -> bool:
        """Given an approved request of a run about to be executed, record its task as
        executing (at `file`) and return True; return False, recording nothing, if the run
        was cancelled. The check and the record are one transaction (see `cancel`)."""
        with self.ledger.transaction() as db:
            row = db.execute("SELECT state FROM skill_runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None and row[0] == CANCELLED:
                return False
            db.execute(
                "UPDATE tasks SET state = ?, file = ?, updated_at = ? WHERE id = ?",
                (TASK_EXECUTING, self.ledger.redact(file), now_iso(), task_id),
            )
        return True

    def set_output(self, run_id: str, output: Any) -> None:
        with self.ledger.transaction() as db:
            db.execute(
                "UPDATE skill_runs SET output = ?, updated_at = ? WHERE id = ?",
                (_json(output), now_iso(), run_id),
            )

    def noted(self, run_id: str, state: str) -> None:
        """Remember that the note of the task that asked for a run shows this state."""
        with self.ledger.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO skill_task_notes (run_id, state, noted_at)"
                " VALUES (?, ?, ?)",
                (run_id, state, now_iso()),
            )

    def unnoted(self) -> list[Run]:
        """Return the finished runs asked for by a task whose note does not show their end."""
        rows = self.ledger.rows(
            "SELECT r.* FROM skill_runs r LEFT JOIN skill_task_notes n ON n.run_id = r.id"
            " WHERE r.requested_by LIKE 'task:%' AND r.state IN (?, ?, ?)"
            " AND (n.state IS NULL OR n.state != r.state) ORDER BY r.finished_at",
            FINISHED,
        )
        return [as_run(row) for row in rows]

    def runs_requested_by(self, requested_by: str) -> list[Run]:
        rows = self.ledger.rows(
            "SELECT * FROM skill_runs WHERE requested_by = ? ORDER BY created_at", (requested_by,)
        )
        return [as_run(row) for row in rows]

    def started_since(self, skill: str, since: str) -> list[str]:
        """Return when runs of a skill started since a time, oldest first; a queued run
        not started yet counts as started when it was created (a burst of enqueues must
        not outrun the skill's rate limit)."""
        rows = self.ledger.rows(
            "SELECT COALESCE(started_at, created_at) AS at FROM skill_runs WHERE skill = ?"
            " AND (started_at >= ? OR (started_at IS NULL AND state = ?)) ORDER BY at",
            (skill, since, QUEUED),
        )
        return [row["at"] for row in rows]

    def add_step(
        self,
        run_id: str,
        attempt: int,
        seq: int,
        tool: str,
        inputs: Any,
        *,
        state: str,
        output: Any = None,
        error: str | None = None,
        duration_ms: int | None = None,
        token: str | None = None,
        task_file: str | None = None,
    ) -> None:
        with self.ledger.transaction(durable=token is not None) as db:
            db.execute(
                "INSERT INTO skill_steps (run_id, attempt, seq, tool, inputs, output, error,"
                " state, token, task_file, started_at, duration_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    attempt,
                    seq,
                    tool,
                    _json(self.ledger.redact(inputs)),
                    _json(self.ledger.redact(output)),
                    self.ledger.redact(error),
                    state,
                    token,
                    task_file,
                    now_iso(),
                    duration_ms,
                ),
            )

    def update_step(self, step_id: int, *, state: str, output: Any, error: str | None) -> None:
        with self.ledger.transaction() as db:
            db.execute(
                "UPDATE skill_steps SET state = ?, output = ?, error = ? WHERE id = ?",
                (state, _json(self.ledger.redact(output)), self.ledger.redact(error), step_id),
            )

    def steps(self, run_id: str) -> list[TraceStep]:
        rows = self.ledger.rows(
            "SELECT * FROM skill_steps WHERE run_id = ? ORDER BY attempt, seq", (run_id,)
        )
        return [_step(row) for row in rows]

    def step_at(self, run_id: str, attempt: int, seq: int) -> TraceStep | None:
        rows = self.ledger.rows(
            "SELECT * FROM skill_steps WHERE run_id = ? AND attempt = ? AND seq = ?",
            (run_id, attempt, seq),
        )
        return _step(rows[0]) if rows else None

    def task_of(self, run_id: str, token: str) -> dict[str, Any] | None:
        """Return the pipeline's task for a request a run made, if the pipeline has seen it."""
        rows = self.ledger.rows(
            "SELECT * FROM tasks WHERE origin = ? ORDER BY created_at DESC LIMIT 1",
            (origin_of(run_id, token),),
        )
        return rows[0] if rows else None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def as_run(row: dict[str, Any]) -> Run:
    row = dict(row)
    row["inputs"], row["output"] = _load(row["inputs"]), _load(row["output"])
    return Run(**row)


def _step(row: dict[str, Any]) -> TraceStep:
    row = dict(row)
    row.pop("run_id")
    row["inputs"], row["output"] = _load(row["inputs"]), _load(row["output"])
    return TraceStep(**row)
