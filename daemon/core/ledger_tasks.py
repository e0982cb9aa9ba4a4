"""The ledger's task table: every task vaultd has seen, where its file is, its state (see
ledger_states) and the payload hash a human approved.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.core.ledger_db import LedgerDatabase
from daemon.core.ledger_states import DONE, EXECUTED
from daemon.core.timestamps import now_iso


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


class TaskTable(LedgerDatabase):
    """The `tasks` table: one row per task, read and written one transaction a call."""

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
