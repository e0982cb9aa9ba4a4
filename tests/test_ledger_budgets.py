"""The auto-approval budgets' running totals (daemon/core/ledger_budgets.py) against the
plain count over the window, after every kind of write a ledger sees.

The totals are what stands between a burst of small payments and the daily budget: if they
ever count less than the window holds, auto-approval lets through more than the policy
allows. So each step of a random sequence of writes compares them with a query that counts
the window from scratch, as vaultd did before the totals: writes by this connection and by
another, rolled-back transactions, state and approval changes, keys recorded late, a task
deleted, the window sliding forward and a clock set back.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.core import ledger, ledger_counts
from daemon.core.ledger import Ledger
from daemon.core.policy import AutoApproved

START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STATES = [
    ledger.PENDING,
    ledger.APPROVED,
    ledger.EXECUTING,
    ledger.EXECUTED,
    ledger.DONE,
    ledger.FAILED,
    ledger.UNKNOWN,
    ledger.REJECTED,
]
COUNTED = (
    ledger.APPROVED,
    ledger.EXECUTING,
    ledger.EXECUTED,
    ledger.DONE,
    ledger.FAILED,
    ledger.UNKNOWN,
)


def stamp(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def counted_from_scratch(path: Path, since: datetime) -> AutoApproved:
    """Count the window with a fresh connection and one query, as vaultd did before."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT t.amount, t.currency, k.payees, k.platforms FROM tasks t"  # noqa: S608
            " LEFT JOIN payload_keys k ON k.payload_hash = t.payload_hash"
            " WHERE t.approval = 'auto_approved' AND t.decided_at >= ?"
            f" AND t.state IN ({','.join('?' * len(COUNTED))})",
            [stamp(since), *COUNTED],
        ).fetchall()
    finally:
        db.close()
    money: defaultdict[str, Decimal] = defaultdict(Decimal)
    by_payee: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    posts: Counter[str] = Counter()
    for amount, currency, payees, platforms in rows:
        for platform in json.loads(platforms) if platforms else []:
            posts[platform] += 1
        if amount is None or not currency:
            continue
        money[currency] += Decimal(amount)
        for payee in json.loads(payees) if payees else []:
            by_payee[(currency, payee)] += Decimal(amount)
    return AutoApproved(dict(money), dict(by_payee), dict(posts))


class World:
    """A ledger, a second connection to it, and the writes a random sequence makes."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path = path
        self.book = Ledger(path)
        ledger_counts.migrate(self.book)
        self.other = sqlite3.connect(path, isolation_level=None)
        self.rng = rng
        self.now = START
        self.ids: list[str] = []

    def close(self) -> None:
        self.other.close()
        self.book.close()

    def keys(self, payload: str, *, via_other: bool = False) -> None:
        r = self.rng
        row = (
            payload,
            "sha256:r" + payload,
            json.dumps(r.sample(["partner:acme", "partner:globex", "id:7"], r.randint(0, 2))),
            json.dumps(sorted(r.sample(["facebook", "instagram", "twitter"], r.randint(0, 3)))),
            stamp(self.now),
        )
        sql = "INSERT OR IGNORE INTO payload_keys VALUES (?, ?, ?, ?, ?)"
        if via_other:
            self.other.execute(sql, row)
        else:
            with self.book.transaction() as db:
                db.execute(sql, row)

    def new_task(self) -> None:
        r = self.rng
        self.made = getattr(self, "made", 0) + 1
        task_id = f"t{self.made}"
        payload = f"sha256:p{r.randint(0, 40)}"  # some tasks share a payload
        if r.random() < 0.8:  # most have keys; older ledgers' tasks have none
            self.keys(payload)
        money = {}
        if r.random() < 0.6:
            money = {"amount": f"{r.randint(0, 9999)}.{r.randint(0, 99):02d}"}
            money["currency"] = r.choice(["USD", "EUR", ""])
        self.book.put_task(
            task_id,
            type="odoo_payment",
            file=f"Approved/{task_id}.md",
            state=r.choice(STATES),
            payload_hash=payload,
            approval=r.choice(["auto_approved", "auto_approved", "human_approved"]),
            decided_at=stamp(self.now - timedelta(minutes=r.randint(0, 30 * 60))),
            **money,
        )
        self.ids.append(task_id)

    def step(self) -> str:
        r = self.rng
        kind = r.choice(
            ["new", "new", "new", "state", "approval", "other", "rollback", "late_keys",
             "delete", "slide", "clock_back"]
        )  # fmt: skip
        if kind == "new" or not self.ids:
            self.new_task()
        elif kind == "state":
            self.book.put_task(r.choice(self.ids), state=r.choice(STATES))
        elif kind == "approval":
            self.book.put_task(r.choice(self.ids), approval=r.choice(["auto_approved", "sent"]))
        elif kind == "other":  # another process: `vaultd approve`, `vaultd reject`
            self.other.execute(
                "UPDATE tasks SET state = ?, decided_at = ? WHERE id = ?",
                (r.choice(STATES), stamp(self.now), r.choice(self.ids)),
            )
        elif kind == "rollback":
            with pytest.raises(RuntimeError), self.book.transaction() as db:
                db.execute("UPDATE tasks SET state = ? WHERE id = ?", (ledger.DONE, self.ids[-1]))
                raise RuntimeError("a write that fails midway")
        elif kind == "late_keys":
            self.keys(f"sha256:p{r.randint(0, 40)}", via_other=r.random() < 0.5)
        elif kind == "delete":
            gone = self.ids.pop(r.randrange(len(self.ids)))
            self.other.execute("DELETE FROM tasks WHERE id = ?", (gone,))
        elif kind == "slide":
            self.now += timedelta(minutes=r.randint(1, 240))
        else:
            self.now -= timedelta(minutes=r.randint(1, 120))
        return kind


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_running_totals_always_equal_the_window_counted_from_scratch(
    tmp_path: Path, seed: int
) -> None:
    world = World(tmp_path / "ledger.sqlite3", random.Random(seed))
    try:
        for number in range(300):
            kind = world.step()
            since = world.now - ledger_counts.WINDOW
            kept = ledger_counts.auto_approved_since(world.book, since)
            assert kept == counted_from_scratch(world.path, since), (seed, number, kind)
    finally:
        world.close()


def test_a_burst_of_decisions_reads_only_what_changed(tmp_path: Path) -> None:
    """The point of the totals: after the first decision, each one reads the tasks changed
    since the last, not the window."""
    book = Ledger(tmp_path / "ledger.sqlite3")
    ledger_counts.migrate(book)
    since = START - ledger_counts.WINDOW
    for number in range(200):
        book.put_task(
            f"t{number}",
            file="x.md",
            state=ledger.APPROVED,
            approval="auto_approved",
            decided_at=stamp(START),
            amount="1",
            currency="USD",
        )
    assert ledger_counts.auto_approved_since(book, since).money == {"USD": Decimal(200)}
    read: list[str] = []
    with book.connection() as db:
        db.set_trace_callback(read.append)
    try:
        book.put_task("t200", file="x.md", state=ledger.DONE, approval="auto_approved",
                      decided_at=stamp(START), amount="1", currency="USD")  # fmt: skip
        read.clear()
        assert ledger_counts.auto_approved_since(book, since).money == {"USD": Decimal(201)}
    finally:
        with book.connection() as db:
            db.set_trace_callback(None)
    window_reads = [sql for sql in read if "decided_at >= ?" in sql]
    assert window_reads == [], "the window was read again although only one task changed"
    book.close()
