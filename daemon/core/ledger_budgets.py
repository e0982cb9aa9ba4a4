"""Running totals of what auto-approval let through in the budget window.

Every decision needs the window's auto-approved money (by currency and by payee) and posts
(by platform): `ledger_counts.auto_approved_since`. Counted by a query over the window, a
decision cost O(tasks decided in the window), so a burst of n posts cost O(n²): 2.75 ms of
every file's time at 2,000 files. Here the totals are kept per ledger connection and
brought up to date from the rows that changed since the last decision:

- this connection's own writes are collected by TEMP triggers into a TEMP table of changed
  task ids (TEMP triggers see only this connection, and a rolled-back transaction takes
  its rows with it);
- a commit by any other connection (`vaultd approve` in another process, another ledger
  object) changes `PRAGMA data_version`: the totals are then rebuilt from the window;
- a task whose decision fell out of the window is taken off, in time order.

The totals are exact (money as Decimal), and tests/test_ledger_budgets.py holds them equal to
the query over the window after every kind of write.
"""

from __future__ import annotations

import heapq
import sqlite3
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from daemon.core.ledger import Ledger
from daemon.core.policy import AutoApproved

# One statement each: executescript() would commit a transaction the caller has open.
TRIGGERS = (
    "CREATE TEMP TABLE IF NOT EXISTS budget_changed (id TEXT PRIMARY KEY)",
    "CREATE TEMP TRIGGER IF NOT EXISTS budget_task_inserted AFTER INSERT ON main.tasks"
    " BEGIN INSERT OR IGNORE INTO budget_changed (id) VALUES (NEW.id); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS budget_task_updated AFTER UPDATE ON main.tasks BEGIN"
    " INSERT OR IGNORE INTO budget_changed (id) VALUES (OLD.id);"
    " INSERT OR IGNORE INTO budget_changed (id) VALUES (NEW.id); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS budget_task_deleted AFTER DELETE ON main.tasks"
    " BEGIN INSERT OR IGNORE INTO budget_changed (id) VALUES (OLD.id); END",
    # Keys recorded after a task (a ledger older than them) change what that task counts.
    "CREATE TEMP TRIGGER IF NOT EXISTS budget_keys_inserted AFTER INSERT ON main.payload_keys"
    " BEGIN INSERT OR IGNORE INTO budget_changed (id)"
    " SELECT id FROM main.tasks WHERE payload_hash = NEW.payload_hash; END",
)

# The columns a task's share of the totals is read from (the caller's FROM and WHERE).
COLUMNS = "t.id, t.decided_at, t.amount, t.currency, k.payees, k.platforms"


@dataclass(frozen=True)
class Share:
    """One counted task's part of the totals."""

    decided_at: str
    platforms: tuple[str, ...]
    # (currency, amount, payee keys), or None for a task without an amount.
    money: tuple[str, Decimal, tuple[str, ...]] | None


# Given rows with `COLUMNS` (and the counting filter applied), return {task id: share}.
ReadShares = Callable[[Iterable[Mapping[str, Any]]], dict[str, Share]]


@dataclass
class _Totals:
    since: str
    version: int
    shares: dict[str, Share] = field(default_factory=dict)
    # (decided_at, task id), oldest first; an item whose share has changed since is skipped.
    expiry: list[tuple[str, str]] = field(default_factory=list)
    posts: Counter[str] = field(default_factory=Counter)
    money: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    money_n: Counter[str] = field(default_factory=Counter)
    by_payee: defaultdict[tuple[str, str], Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )
    by_payee_n: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, task_id: str, share: Share) -> None:
        self.shares[task_id] = share
        heapq.heappush(self.expiry, (share.decided_at, task_id))
        self._count(share, +1)

    def drop(self, task_id: str) -> None:
        share = self.shares.pop(task_id, None)
        if share is not None:
            self._count(share, -1)

    def expire(self, since: str) -> None:
        self.since = since
        while self.expiry and self.expiry[0][0] < since:
            decided_at, task_id = heapq.heappop(self.expiry)
            share = self.shares.get(task_id)
            if share is not None and share.decided_at == decided_at:
                self.drop(task_id)

    def answer(self) -> AutoApproved:
        return AutoApproved(
            {c: total for c, total in self.money.items() if self.money_n[c]},
            {key: total for key, total in self.by_payee.items() if self.by_payee_n[key]},
            {platform: n for platform, n in self.posts.items() if n},
        )

    def _count(self, share: Share, sign: int) -> None:
        for platform in share.platforms:
            self.posts[platform] += sign
        if share.money is None:
            return
        currency, amount, payees = share.money
        self.money[currency] += sign * amount
        self.money_n[currency] += sign
        for payee in payees:
            self.by_payee[(currency, payee)] += sign * amount
            self.by_payee_n[(currency, payee)] += sign


_totals: weakref.WeakKeyDictionary[Ledger, _Totals] = weakref.WeakKeyDictionary()


def totals(
    book: Ledger,
    since: str,
    *,
    window: Callable[[sqlite3.Connection], list[Mapping[str, Any]]],
    changed: Callable[[sqlite3.Connection], list[Mapping[str, Any]]],
    read: ReadShares,
) -> AutoApproved:
    """Given a writable ledger and the window's start (as `decided_at` holds it), return
    the window's totals. `window` reads every counted row of the window, `changed` the
    counted rows among the ids in `budget_changed`; both with `COLUMNS`.
    """
    with book.connection() as db:
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        kept = _totals.get(book)
        if kept is None or kept.version != version or since < kept.since:
            for statement in TRIGGERS:
                db.execute(statement)
            db.execute("DELETE FROM budget_changed")
            kept = _totals[book] = _Totals(since, version)
            for task_id, share in read(window(db)).items():
                kept.add(task_id, share)
        else:
            ids = [row[0] for row in db.execute("SELECT id FROM budget_changed")]
            if ids:
                counted = read(changed(db))
                db.execute("DELETE FROM budget_changed")
                for task_id in ids:
                    kept.drop(task_id)
                    now = counted.get(task_id)
                    if now is not None and now.decided_at >= since:
                        kept.add(task_id, now)
        kept.expire(since)
        return kept.answer()
