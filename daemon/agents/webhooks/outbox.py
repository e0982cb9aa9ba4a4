"""The webhook outbox: every delivery vaultd owes, kept in the ledger's database until it is
delivered, given up, or its URL is disabled.

A delivery is written in the same transaction as the state change it announces
(`enqueue_in`, inside the caller's transaction), so a crash can lose neither: a run that
reached its final state always has its deliveries waiting. Its `msg_id` (the Standard
Webhooks `webhook-id`) is derived from the event, its subject and the URL, so it is the same
on every attempt and even if the same event is written again after a crash; the UNIQUE
(event, subject, url) keeps it one row. A URL that answered `410 Gone` is disabled: no new
delivery is written for it, and those waiting are dropped.

    pending ─2xx──────────► delivered
            ─other answer─► pending (attempts + 1, next_at later)  ─max attempts─► failed
            ─410──────────► disabled
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from daemon.core.ledger_db import LedgerDatabase
from daemon.core.timestamps import now_iso

PENDING, DELIVERED, FAILED, DISABLED = "pending", "delivered", "failed", "disabled"

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id           INTEGER PRIMARY KEY,
    msg_id       TEXT NOT NULL UNIQUE,
    event        TEXT NOT NULL,
    subject      TEXT NOT NULL,
    url          TEXT NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      TEXT NOT NULL,
    last_status  INTEGER,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    finished_at  TEXT,
    UNIQUE (event, subject, url)
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox(state, next_at);
CREATE TABLE IF NOT EXISTS webhook_disabled (
    url          TEXT PRIMARY KEY,
    status       INTEGER NOT NULL,
    disabled_at  TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Delivery:
    """One delivery owed: what to send where, and how often it was tried."""

    id: int
    msg_id: str
    event: str
    subject: str
    url: str
    body: str
    attempts: int


def message_id(event: str, subject: str, url: str) -> str:
    """Given an event, what it is about and the URL, return its stable `webhook-id`."""
    digest = hashlib.sha256(f"{event}\n{subject}\n{url}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def body_text(body: dict[str, Any]) -> str:
    """Return a body as the JSON text sent (and signed): sorted keys, no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def enqueue_in(
    db: sqlite3.Connection, event: str, subject: str, body: dict[str, Any], urls: Iterable[str]
) -> int:
    """Given an open transaction of the ledger (with this module's schema), write one
    delivery of `event` about `subject` per URL not disabled; return how many are new."""
    text, now, added = body_text(body), now_iso(), 0
    for url in dict.fromkeys(urls):  # once per URL, in order
        if db.execute("SELECT 1 FROM webhook_disabled WHERE url = ?", (url,)).fetchone():
            continue
        cursor = db.execute(
            "INSERT OR IGNORE INTO webhook_outbox"
            " (msg_id, event, subject, url, body, state, next_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (message_id(event, subject, url), event, subject, url, text, PENDING, now, now),
        )
        added += cursor.rowcount
    return added


class Outbox:
    """The outbox of one ledger."""

    def __init__(self, ledger: LedgerDatabase) -> None:
        self.ledger = ledger
        ledger.ensure_schema(SCHEMA)

    def enqueue(self, event: str, subject: str, body: dict[str, Any], urls: Iterable[str]) -> int:
        """Write the deliveries of one event in a transaction of their own; return how many
        are new."""
        with self.ledger.transaction() as db:
            return enqueue_in(db, event, subject, body, urls)

    def due(self, now: str, limit: int = 20) -> list[Delivery]:
        """Return up to `limit` pending deliveries whose time has come, oldest first."""
        rows = self.ledger.rows(
            "SELECT id, msg_id, event, subject, url, body, attempts FROM webhook_outbox"
            " WHERE state = ? AND next_at <= ? ORDER BY next_at, id LIMIT ?",
            (PENDING, now, limit),
        )
        return [Delivery(**row) for row in rows]

    def next_due(self) -> str | None:
        """Return when the next pending delivery is due, or None if none is pending."""
        rows = self.ledger.rows(
            "SELECT MIN(next_at) AS at FROM webhook_outbox WHERE state = ?", (PENDING,)
        )
        return rows[0]["at"] if rows else None

    def delivered(self, delivery: Delivery, status: int) -> None:
        self._finish(delivery, DELIVERED, status, None)

    def give_up(self, delivery: Delivery, status: int | None, error: str) -> None:
        self._finish(delivery, FAILED, status, error)

    def retry(self, delivery: Delivery, status: int | None, error: str, at: str) -> None:
        """Record a failed attempt and when to try again."""
        with self.ledger.transaction() as db:
            db.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = ?,"
                " last_status = ?, last_error = ? WHERE id = ? AND state = ?",
                (at, status, error, delivery.id, PENDING),
            )

    def disable(self, delivery: Delivery, status: int) -> int:
        """Disable the delivery's URL (it answered 410 Gone); drop every delivery waiting
        for it. Return how many were dropped, this one included."""
        now = now_iso()
        with self.ledger.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO webhook_disabled (url, status, disabled_at)"
                " VALUES (?, ?, ?)",
                (delivery.url, status, now),
            )
            db.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1 WHERE id = ?", (delivery.id,)
            )
            cursor = db.execute(
                "UPDATE webhook_outbox SET state = ?, last_status = ?, finished_at = ?,"
                " last_error = ? WHERE url = ? AND state = ?",
                (DISABLED, status, now, f"the URL answered {status}", delivery.url, PENDING),
            )
            return int(cursor.rowcount)

    def counts(self) -> dict[str, int]:
        """Return how many deliveries are in each state (for `vaultd status`)."""
        rows = self.ledger.rows("SELECT state, COUNT(*) AS n FROM webhook_outbox GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    def _finish(
        self, delivery: Delivery, state: str, status: int | None, error: str | None
    ) -> None:
        with self.ledger.transaction() as db:
            db.execute(
                "UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, last_status = ?,"
                " last_error = ?, finished_at = ? WHERE id = ? AND state = ?",
                (state, status, error, now_iso(), delivery.id, PENDING),
            )
