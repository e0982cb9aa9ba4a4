"""The ledger: vaultd's durable memory, in SQLite outside the vault.

It knows every task vaultd has seen (its id, where its file is, the payload hash a human
approved), every execution run (queued → running → succeeded | failed | unknown) and every
step of a run (one remote call each). An INTENT is committed with `synchronous=FULL` before
the call, so after any crash vaultd knows which calls may have happened.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.core.timestamps import now_iso, parse_time

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id            TEXT PRIMARY KEY,
    type          TEXT,
    file          TEXT NOT NULL,
    state         TEXT NOT NULL,
    payload_hash  TEXT,
    approval      TEXT,
    rule          TEXT,
    reason        TEXT,
    amount        TEXT,
    currency      TEXT,
    expires_at    TEXT,
    decided_at    TEXT,
    error         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
CREATE INDEX IF NOT EXISTS tasks_file ON tasks(file);
CREATE INDEX IF NOT EXISTS tasks_payload ON tasks(payload_hash);
CREATE TABLE IF NOT EXISTS runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id       TEXT NOT NULL REFERENCES tasks(id),
    attempt       INTEGER NOT NULL,
    state         TEXT NOT NULL,
    payload_hash  TEXT NOT NULL,
    dry_run       INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    finished_at   TEXT,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS runs_task ON runs(task_id);
CREATE TABLE IF NOT EXISTS steps (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES runs(id),
    task_id       TEXT NOT NULL,
    target        TEXT NOT NULL,
    marker        TEXT NOT NULL,
    state         TEXT NOT NULL,
    request       TEXT,
    result        TEXT,
    error         TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    duration_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS steps_task ON steps(task_id, target);
CREATE TABLE IF NOT EXISTS breakers (
    name          TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    changed_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS briefings (
    week          TEXT PRIMARY KEY,
    claimed_at    TEXT NOT NULL,
    written_at    TEXT,
    path          TEXT,
    late          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS progress (
    marker        TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    recorded_at   TEXT NOT NULL,
    PRIMARY KEY (marker, key)
);
CREATE INDEX IF NOT EXISTS steps_state ON steps(state);
"""

# Task states. "executed" means the remote work is finished but the file is not yet in Done/.
PENDING = "pending_approval"
APPROVED = "approved"
EXECUTING = "executing"
EXECUTED = "executed"
DONE = "done"
FAILED = "failed"
UNKNOWN = "unknown"
REJECTED = "rejected"

# Run and step states. A deferred call was refused for now (rate limit, quota) without
# being done, so it is safe to make again later.
QUEUED, RUNNING, SUCCEEDED = "queued", "running", "succeeded"
INTENT, ABSENT, DEFERRED = "intent", "absent", "deferred"


@dataclass(frozen=True)
class Task:
    id: str
    type: str | None
    file: str
    state: str
    payload_hash: str | None
    approval: str | None
    rule: str | None
    reason: str | None
    amount: str | None
    currency: str | None
    expires_at: str | None
    decided_at: str | None
    error: str | None
    created_at: str
    updated_at: str
    origin: str | None = None


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


class Ledger:
    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        redact: Callable[[Any], Any] | None = None,
    ) -> None:
        self.path = path
        # Requests, results and errors pass through `redact` before they are stored.
        self._redact: Callable[[Any], Any] = redact or (lambda value: value)
        if readonly:
            uri = f"file:{path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    def _add_missing_columns(self) -> None:
        """Bring a ledger written by an older vaultd up to date (columns only ever added)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        if "origin" not in have:
            # Where a task file came from, when vaultd wrote it: "run:<run id>:<step token>".
            self._db.execute("ALTER TABLE tasks ADD COLUMN origin TEXT")

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    # -- for other stores that keep their tables in this database ---------------------

    def ensure_schema(self, script: str) -> None:
        """Create another module's tables (CREATE ... IF NOT EXISTS) in this database."""
        with self._lock:
            self._db.executescript(script)

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction (`durable`: fsynced before it returns)."""
        with self._tx(durable=durable) as db:
            yield db

    def rows(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        """Run a read query and return its rows as dicts."""
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, args).fetchall()]

    def redact(self, value: Any) -> Any:
        return self._redact(value)

    # -- tasks -------------------------------------------------------------------------

    def new_task_id(self) -> str:
        """Return a fresh, short, human-typable task id such as 20261122-3fa9c1."""
        day = datetime.now(UTC).strftime("%Y%m%d")
        while True:
            candidate = f"{day}-{secrets.token_hex(3)}"
            if self.task(candidate) is None:
                return candidate

    def task(self, task_id: str) -> Task | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return Task(**dict(row)) if row else None

    def find_tasks(self, id_prefix: str) -> list[Task]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM tasks WHERE id LIKE ? ORDER BY id", (id_prefix + "%",)
            ).fetchall()
        return [Task(**dict(row)) for row in rows]

    def tasks(self, *states: str) -> list[Task]:
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM tasks WHERE state IN ({marks}) ORDER BY created_at",  # noqa: S608
                states,
            ).fetchall()
        return [Task(**dict(row)) for row in rows]

    def tasks_at(self, file: str, *states: str) -> list[Task]:
        """Return the tasks in these states whose file is at this path, oldest first."""
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM tasks WHERE file = ? AND state IN ({marks})"  # noqa: S608
                " ORDER BY created_at",
                (file, *states),
            ).fetchall()
        return [Task(**dict(row)) for row in rows]

    def put_task(self, task_id: str, **fields: Any) -> None:
        """Create the task or update the given fields of it."""
        fields = {name: self._redact(value) for name, value in fields.items()}
        fields["updated_at"] = now_iso()
        with self._tx() as db:
            exists = db.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if exists:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                db.execute(
                    f"UPDATE tasks SET {assignments} WHERE id = ?",  # noqa: S608
                    (*fields.values(), task_id),
                )
            else:
                fields.setdefault("created_at", fields["updated_at"])
                names = ", ".join(["id", *fields])
                marks = ", ".join("?" * (len(fields) + 1))
                db.execute(
                    f"INSERT INTO tasks ({names}) VALUES ({marks})",  # noqa: S608
                    (task_id, *fields.values()),
                )

    def executed_hashes(self, payload_hash: str) -> list[Task]:
        """Return finished tasks with this payload, to recognise a replayed Done file."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM tasks WHERE payload_hash = ? AND state IN (?, ?)",
                (payload_hash, EXECUTED, DONE),
            ).fetchall()
        return [Task(**dict(row)) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall()
        return dict(rows)

    # -- runs and steps ----------------------------------------------------------------

    def start_run(self, task_id: str, payload_hash: str, *, dry_run: bool) -> int:
        """Create a queued run for a task and return its id."""
        with self._tx() as db:
            (attempts,) = db.execute(
                "SELECT COUNT(*) FROM runs WHERE task_id = ?", (task_id,)
            ).fetchone()
            cursor = db.execute(
                "INSERT INTO runs (task_id, attempt, state, payload_hash, dry_run, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (task_id, attempts + 1, QUEUED, payload_hash, int(dry_run), now_iso()),
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
                (run_id, task_id, target, marker, INTENT, _json(self._redact(request)), now_iso()),
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
                    _json(self._redact(result)),
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
                (marker, key, _json(self._redact(value)), now_iso()),
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

    def integrity_ok(self) -> bool:
        with self._lock:
            (result,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(result == "ok")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


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
