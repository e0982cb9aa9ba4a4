"""The ledger's connection to its SQLite database: opening it (and its schema), one lock, and
the write transactions every ledger record is made in.

A durable transaction is fsynced (`synchronous=FULL`) before it returns: an INTENT is recorded
in one before the remote call it announces. Records made while a transaction is open join it
(one commit for the group, `transaction`). Other stores keep their tables in this database
too (`ensure_schema`, `transaction`, `rows`).

Opening is retried while the file is locked: SQLite answers some opens "database is locked"
without waiting for its busy timeout (a `journal_mode` change, another process's recovery
of the WAL), and a CLI command started beside a busy daemon must not fail for it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daemon.core.ledger_schema import SCHEMA, add_missing_columns

BUSY_SECONDS = 5.0  # how long one statement waits for a lock (SQLite's busy timeout)
OPEN_SECONDS = 30.0  # how long opening is retried while the file stays locked


class LedgerDatabase:
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
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(path, readonly=readonly)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # Whether a transaction is open on this connection (True: a durable one), and how
        # many records have joined it (`transaction` inside `transaction`: one commit).
        self._open_tx: bool | None = None
        self._savepoints = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._open_tx is not None:
                with self._joined(durable=durable):
                    yield self._db
                return
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            self._open_tx = durable
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Some errors (a full disk, an I/O error) end the transaction themselves:
                # then the error raised is theirs, not "no transaction is active".
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._open_tx = None
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def _joined(self, *, durable: bool) -> Iterator[None]:
        """Run a record inside the transaction this thread already has open, as a savepoint:
        it is committed with that transaction, or rolled back alone if it fails.

        A durable record joins only a durable transaction: what it promises to have on disk
        before it returns (an INTENT, before its call) would otherwise not be.
        """
        if durable and not self._open_tx:
            raise RuntimeError("a durable record cannot join a transaction that is not durable")
        if not self._db.in_transaction:
            # Ended by an error SQLite rolled it back for, which the caller caught: a
            # savepoint here would begin (and commit) a transaction of its own.
            raise RuntimeError("the transaction this record would join was rolled back")
        self._savepoints += 1
        name = f"joined_{self._savepoints}"
        self._db.execute(f"SAVEPOINT {name}")
        try:
            yield
            self._db.execute(f"RELEASE {name}")
        except BaseException:
            if self._db.in_transaction:  # not ended by the error itself
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
            raise
        finally:
            self._savepoints -= 1

    # -- for other stores that keep their tables in this database ---------------------

    def ensure_schema(self, script: str) -> None:
        """Create another module's tables (CREATE ... IF NOT EXISTS) in this database."""
        with self._lock:
            self._db.executescript(script)

    def add_text_columns(self, table: str, *columns: str) -> None:
        """Add to another module's table the TEXT columns a ledger written by an older vaultd
        lacks (columns are only ever added; `table` and `columns` are this code's names)."""
        with self._tx() as db:
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction (`durable`: fsynced before it returns).

        Records made inside it (and transactions opened inside it) are committed with it, in
        one commit: a group of writes that no remote call separates costs one. Raise
        RuntimeError for a durable record inside a transaction that is not durable.
        """
        with self._tx(durable=durable) as db:
            yield db

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """This connection, held alone: for a reader that keeps state per connection
        (daemon/core/ledger_budgets.py) and must see no other thread's write midway."""
        with self._lock:
            yield self._db

    def rows(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        """Run a read query and return its rows as dicts."""
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, args).fetchall()]

    def redact(self, value: Any) -> Any:
        return self._redact(value)

    def integrity_ok(self) -> bool:
        with self._lock:
            (result,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(result == "ok")


def _open(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Connect to the ledger at `path` (read-write: in WAL, with its schema), retrying for
    OPEN_SECONDS while SQLite answers that the file is locked."""
    deadline = time.monotonic() + OPEN_SECONDS
    while True:
        if readonly:
            db = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=BUSY_SECONDS, check_same_thread=False
            )
        else:
            db = sqlite3.connect(
                path, timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None
            )
        try:
            # A read first, retried here if locked. A connection that has not read the file
            # yet takes it for a rollback journal, and would ask for the lock that a change
            # to WAL needs.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if not readonly:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
                # Under the write lock: a process opening the same older ledger at the same
                # time has added the column by then, or waits until this one has.
                db.execute("BEGIN IMMEDIATE")
                add_missing_columns(db)
                db.execute("COMMIT")
            return db
        except sqlite3.OperationalError as error:
            db.close()
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def as_json(value: Any) -> str | None:
    """Given a value to store, return it as JSON text (None stays NULL)."""
    return None if value is None else json.dumps(value, sort_keys=True, default=str)
