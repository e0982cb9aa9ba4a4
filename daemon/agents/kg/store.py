"""The graph's SQLite index, in the state directory (never in the vault, which may be synced).

`files` is the cache: every file the last build saw, with its mtime, size and SHA-256, its
status (`indexed`, `failed`, `skipped`) and reason, and the facts read from it, so an
unchanged note is never read again. `nodes`, `edges` and `evidence` are derived from those
facts: whole, or for the notes whose content alone changed (incremental.py), the same rows
either way; `search` is the FTS5 full-text index of the notes, kept per file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon.core.config import state_dir_for
from daemon.core.errors import VaultdError

KG_FILE = "kg.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    facts TEXT
);
CREATE TABLE IF NOT EXISTS nodes (
    key TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    label TEXT NOT NULL,
    path TEXT
);
CREATE INDEX IF NOT EXISTS nodes_label ON nodes(label COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS nodes_path ON nodes(path);
CREATE TABLE IF NOT EXISTS edges (
    src TEXT NOT NULL,
    type TEXT NOT NULL,
    field TEXT NOT NULL,
    dst TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (src, type, field, dst)
);
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst);
CREATE TABLE IF NOT EXISTS evidence (
    subject TEXT NOT NULL,
    note_key TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    quote TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
-- A subject's rows in the order answers list them, every column in the index: a question
-- reads them in order from the index alone (daemon/agents/kg/rows.py).
DROP INDEX IF EXISTS evidence_subject;
CREATE TABLE IF NOT EXISTS notices (
    path TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (path, message)
);
-- Sources other than the vault (the ledger): what they stated at the last build.
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(
    path UNINDEXED, title, body, tokenize = 'unicode61 remove_diacritics 2'
);
"""
# Dropped and made again by a full derive (graph.py): one sort of every row, instead of
# 650,000 inserts each in its place in an index larger than the page cache.
EVIDENCE_INDEX = (
    "CREATE INDEX IF NOT EXISTS evidence_ordered ON evidence("
    "subject, path, line_start, line_end, detail, quote, note_key, sha256)"
)


class KgError(VaultdError):
    """The graph's index cannot be opened or asked what was asked. `status` is the HTTP
    status the REST API answers it with: 422 for a question it cannot answer as asked, 404
    for a reference that names no node, 503 while there is no index yet."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def kg_path(vault: Path, state_dir: str | Path | None = None) -> Path:
    """Return where a vault's graph lives: in its state directory (daemon/core/config.py)."""
    return state_dir_for(vault, state_dir) / KG_FILE


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open the index at `path`; create it (and its folder) if `create`. Raise KgError if it
    does not exist and `create` is false, or if it is of another schema version."""
    if not create and not path.exists():
        raise KgError(f"{path}: no knowledge graph yet; run `vaultd kg rebuild` first", status=503)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        # Read first: a connection that has not read the file yet asks for the lock a change
        # to WAL needs, and SQLite does not wait for that lock (daemon/core/ledger_db.py).
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise KgError(
                f"{path}: index of schema {version}, this vaultd reads {SCHEMA_VERSION}; "
                "delete the file and run `vaultd kg rebuild`"
            )
        if create:  # every statement is IF NOT EXISTS: a table added since is created
            db.executescript(_SCHEMA)
            db.execute(EVIDENCE_INDEX)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.DatabaseError as error:
        raise KgError(f"{path}: cannot open the knowledge graph ({error})") from None
    return db
