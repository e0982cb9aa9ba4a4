"""What the ledger knows for the repeat rule and the auto-approval budgets.

Kept beside daemon/core/ledger.py, in the same SQLite database. One table of its own,
`payload_keys`, holds for each exact payload hash that the `tasks` table may hold what
cannot be got back from a hash: the normalised hash the repeat rule compares
(daemon/core/repeat_keys.py), the payees whose budgets it draws on and the platforms it posts
to. A row is written when vaultd gathers the facts for a decision, so it is there before
the task row that names the hash, and the next decision counts it.

Migration: a ledger written by an older vaultd lacks the table and the indexes the
queries here use; they are created on first use (CREATE ... IF NOT EXISTS; no column of
`tasks`, `runs` or `steps` changes, so their rows load as before). Tasks decided before
that have no keys: the repeat rule still finds them by their exact payload hash, and
within the budget window they count towards the overall money budget (amount and
currency are in `tasks`) but not towards a payee's or a platform's.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from daemon.core import ledger, ledger_budgets
from daemon.core.ledger import Ledger
from daemon.core.models import Action
from daemon.core.policy import AutoApproved
from daemon.core.repeat_keys import payees, platforms, repeat_hash
from daemon.core.timestamps import iso_ms, now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS payload_keys (
    payload_hash  TEXT PRIMARY KEY,
    repeat_hash   TEXT NOT NULL,
    payees        TEXT NOT NULL,
    platforms     TEXT NOT NULL,
    recorded_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payload_keys_repeat ON payload_keys(repeat_hash);
CREATE INDEX IF NOT EXISTS tasks_decided ON tasks(decided_at);
CREATE INDEX IF NOT EXISTS runs_payload ON runs(payload_hash);
CREATE INDEX IF NOT EXISTS steps_run ON steps(run_id);
CREATE INDEX IF NOT EXISTS tasks_auto_decided ON tasks(approval, decided_at, state, payload_hash);
"""

# The budgets' day: a rolling 24 hours back from now, whatever the time zone.
WINDOW = timedelta(hours=24)

# A task in one of these states may have reached its service (or is about to, or a person
# can send it there again by moving its note): it counts as executed for the repeat rule.
_RAN = (ledger.EXECUTED, ledger.DONE, ledger.EXECUTING, ledger.UNKNOWN)
# A step in one of these states made its call, or may have: the same, whatever the task's state.
_CALLED = (ledger.INTENT, ledger.SUCCEEDED, ledger.UNKNOWN, ledger.UNFINISHED)
# An auto-approved task in one of these states counts towards the budgets: everything but
# rejected (withdrawn, expired) and a request sent back to a person (no longer auto-approved).
# Failed counts: a person moving it back to Approved/ runs it without a new decision.
_COUNTED = (
    ledger.APPROVED,
    ledger.EXECUTING,
    ledger.EXECUTED,
    ledger.DONE,
    ledger.FAILED,
    ledger.UNKNOWN,
)

_migrated: weakref.WeakSet[Ledger] = weakref.WeakSet()


@dataclass(frozen=True)
class Repeat:
    """An earlier task that did (or may have done) the same action."""

    task_id: str
    # Its outcome is unknown, it is still running, or it ran only in part.
    unsure: bool


def migrate(book: Ledger) -> None:
    """Given a writable ledger, create this module's table and indexes if it has none."""
    if book not in _migrated:
        book.ensure_schema(SCHEMA)
        _migrated.add(book)


def remember(book: Ledger, action: Action) -> None:
    """Given a ledger and an action about to be decided, record its keys by payload hash."""
    migrate(book)
    with book.transaction() as db:
        db.execute(
            "INSERT OR IGNORE INTO payload_keys"
            " (payload_hash, repeat_hash, payees, platforms, recorded_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                action.payload_hash(),
                repeat_hash(action),
                json.dumps([key for key, _ in payees(action)]),
                json.dumps(platforms(action)),
                now_iso(),
            ),
        )


def repeat_of(book: Ledger, action: Action) -> Repeat | None:
    """Given a ledger and an action, return the earlier task that ran the same action.

    Same means the same normalised payload (or, for tasks older than this table, the same
    exact one). Ran means done, executing, outcome unknown, or any call of it made or
    perhaps made; a task that is done is named before one that is unsure. None if none did.
    """
    migrate(book)
    hashes = [action.payload_hash()] + [
        row["payload_hash"]
        for row in book.rows(
            "SELECT payload_hash FROM payload_keys WHERE repeat_hash = ?", (repeat_hash(action),)
        )
    ]
    marks = ",".join("?" * len(hashes))
    # `+s.state`: SQLite would otherwise walk every step in a called state (all of them, in
    # a burst) instead of the few runs of these hashes (runs_payload, then steps_run).
    rows = book.rows(
        f"SELECT id, state, created_at FROM tasks WHERE payload_hash IN ({marks})"  # noqa: S608
        f" AND state IN ({','.join('?' * len(_RAN))})"
        " UNION SELECT t.id, t.state, t.created_at FROM steps s"
        " JOIN runs r ON r.id = s.run_id JOIN tasks t ON t.id = s.task_id"
        f" WHERE r.payload_hash IN ({marks}) AND +s.state IN ({','.join('?' * len(_CALLED))})",
        [*hashes, *_RAN, *hashes, *_CALLED],
    )
    if not rows:
        return None
    settled = (ledger.EXECUTED, ledger.DONE)
    first = min(rows, key=lambda row: (row["state"] not in settled, row["created_at"]))
    return Repeat(first["id"], first["state"] not in settled)


def auto_approved_since(book: Ledger, since: datetime) -> AutoApproved:
    """Given a writable ledger and a time, return what auto-approval let through since then.

    Counted by when each task was decided: money by currency and by (currency, payee),
    posts by platform, over the tasks in the `_COUNTED` states. Kept as running totals
    (daemon/core/ledger_budgets.py), so a decision costs what changed since the last one.
    """
    migrate(book)
    start = iso_ms(since)
    return ledger_budgets.totals(
        book,
        start,
        window=lambda db: db.execute(_WINDOW, [*_COUNTED, start]).fetchall(),
        changed=lambda db: db.execute(_CHANGED, _COUNTED).fetchall(),
        read=_shares,
    )


_FROM = " FROM tasks t LEFT JOIN payload_keys k ON k.payload_hash = t.payload_hash"
_COUNTED_IN = f"t.approval = 'auto_approved' AND +t.state IN ({','.join('?' * len(_COUNTED))})"
# Every counted task of the window, read from tasks_auto_decided (`+t.state`: not from
# every task in a counted state).
_WINDOW = f"SELECT {ledger_budgets.COLUMNS}{_FROM} WHERE {_COUNTED_IN} AND t.decided_at >= ?"
# The counted tasks among those changed since the last decision, found from them (CROSS
# JOIN: SQLite would otherwise walk every auto-approved task looking for them).
_CHANGED = (
    f"SELECT {ledger_budgets.COLUMNS} FROM budget_changed c CROSS JOIN tasks t ON t.id = c.id"  # noqa: S608
    f" LEFT JOIN payload_keys k ON k.payload_hash = t.payload_hash WHERE {_COUNTED_IN}"
)


def _shares(rows: Iterable[Mapping[str, Any]]) -> dict[str, ledger_budgets.Share]:
    """Given counted task rows (`ledger_budgets.COLUMNS`), return each task's share."""
    shares = {}
    for row in rows:
        amount, currency = _decimal(row["amount"]), row["currency"]
        money = None
        if amount is not None and currency:
            money = (str(currency), amount, tuple(_list(row["payees"])))
        shares[str(row["id"])] = ledger_budgets.Share(
            str(row["decided_at"] or ""), tuple(_list(row["platforms"])), money
        )
    return shares


def _list(text: Any) -> list[str]:
    return [str(item) for item in json.loads(text)] if text else []


def _decimal(text: Any) -> Decimal | None:
    try:
        return Decimal(str(text)) if text is not None else None
    except InvalidOperation:
        return None
