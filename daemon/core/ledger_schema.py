"""The ledger's tables in SQLite, and how a ledger written by an older vaultd is brought up
to date: columns are only ever added, never changed or dropped.
"""

from __future__ import annotations

import sqlite3

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


def add_missing_columns(db: sqlite3.Connection) -> None:
    """Given a ledger's connection, add the columns an older vaultd did not write."""
    have = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    if "origin" not in have:
        # Where a task file came from, when vaultd wrote it: "run:<run id>:<step token>".
        db.execute("ALTER TABLE tasks ADD COLUMN origin TEXT")
