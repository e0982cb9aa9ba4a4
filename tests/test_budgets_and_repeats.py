"""Policy that adds up, and repeats that cannot be disguised (issue 11, items 6 and 8).

Each test is an attack an agent can make by dropping task files, run through the real
pipeline on a real vault and ledger: many small payments that each stay under the
threshold, a burst of posts, a repeat disguised by invisible or look-alike characters, a
copy of a task whose outcome is unknown. Connector stand-ins say what Odoo knows and record
every call that reaches them.
"""

from __future__ import annotations

import shutil
import sqlite3
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, StandInService, files_in, move, note, parsed

from daemon.connectors.base import Undetermined
from daemon.core import ledger
from daemon.core.ledger_counts import Repeat, repeat_of
from daemon.core.models import Action, parse_action
from daemon.core.policy import Facts
from daemon.service.app import LEDGER_FILE, App, open_app

INVOICE = "INV/2026/0042"


class KnownToOdoo(StandInService):
    """An Odoo stand-in that knows every partner (recurring) and every invoice."""

    def facts(self, action: Action) -> Facts:
        return Facts(partner_known=True, invoice_known=True)


@pytest.fixture
def odoo(app: App) -> KnownToOdoo:
    service = KnownToOdoo("odoo")
    app.pipeline.connectors["odoo"] = service
    return service


@pytest.fixture
def social(app: App) -> dict[str, StandInService]:
    stand_ins = {name: StandInService(name) for name in ("facebook", "instagram", "twitter")}
    app.pipeline.connectors.update(stand_ins)
    return stand_ins


def drop(app: App, root: Path, name: str, meta: dict[str, Any]) -> Any:
    """Write a task note into Needs_Action/ and process it; return the outcome."""
    path = root / "Needs_Action" / name
    path.write_text(note(meta), encoding="utf-8")
    return app.pipeline.process(path)


def pay(app: App, root: Path, day: int, invoice: str = INVOICE, amount: str = "99.99") -> Any:
    """Drop a payment (each day of November a different one) and process it."""
    meta = {"type": "odoo_payment", "invoice": invoice, "amount": amount}
    return drop(
        app, root, f"pay-{invoice[-4:]}-{day:02d}.md", {**meta, "date": f"2026-11-{day:02d}"}
    )


def post(app: App, root: Path, name: str, text: str, platforms: list[str] | None = None) -> Any:
    meta = {"type": "social_post", "platforms": platforms or ["facebook"], "text": text}
    return drop(app, root, name, meta)


def approval(path: Path) -> dict[str, Any]:
    return dict(parsed(path).meta["approval"])


# -- budgets ----------------------------------------------------------------------------


def test_twenty_five_payments_of_99_99_against_one_invoice_stop_at_the_budget(
    app: App, vault_root: Path, odoo: KnownToOdoo
):
    outcomes = [pay(app, vault_root, day) for day in range(1, 26)]

    assert [o.status for o in outcomes] == ["done"] * 3 + ["pending_approval"] * 22
    assert len(odoo.calls) == 3
    fourth = approval(vault_root / "Pending_Approval" / "pay-0042-04.md")
    assert fourth["rule"] == "daily_partner_budget"
    assert fourth["reason"] == (
        "299.97 of 300.00 USD already auto-approved for invoice INV/2026/0042 in the last "
        "24 hours; 99.99 USD more is over it"
    )
    assert len(files_in(vault_root, "Pending_Approval")) == 22


def test_payments_against_many_invoices_stop_at_the_daily_budget(
    app: App, vault_root: Path, odoo: KnownToOdoo
):
    outcomes = [pay(app, vault_root, 1, invoice=f"INV/2026/{n:04d}") for n in range(1, 12)]

    assert [o.status for o in outcomes] == ["done"] * 10 + ["pending_approval"]
    last = approval(outcomes[-1].path)
    assert last["rule"] == "daily_budget"
    assert last["reason"].startswith("999.90 of 1,000.00 USD already auto-approved")


def test_a_payment_a_person_approved_does_not_use_the_auto_budget(
    app: App, vault_root: Path, odoo: KnownToOdoo
):
    for day in (1, 2, 3):
        pay(app, vault_root, day)
    pending = pay(app, vault_root, 4).path
    assert app.pipeline.process(move(vault_root, pending, "Approved")).status == "done"

    fifth = pay(app, vault_root, 5)

    assert fifth.status == "pending_approval"
    assert approval(fifth.path)["reason"].startswith("299.97 of 300.00 USD")
    assert len(odoo.calls) == 4


def test_posts_over_the_daily_platform_budget_need_a_person(
    app: App, vault_root: Path, social: dict[str, StandInService]
):
    outcomes = [post(app, vault_root, f"p{n:02d}.md", f"Launch note {n}") for n in range(12)]

    assert [o.status for o in outcomes] == ["done"] * 10 + ["pending_approval"] * 2
    assert len(social["facebook"].calls) == 10
    last = approval(outcomes[-1].path)
    assert last["rule"] == "daily_platform_budget"
    assert last["reason"] == (
        "10 of 10 posts a day on facebook already auto-approved in the last 24 hours"
    )
    # Each platform has its own budget.
    assert post(app, vault_root, "x.md", "Launch note", ["twitter"]).status == "done"


def test_auto_approved_posts_still_waiting_to_run_count_towards_the_budget(
    app: App, vault_root: Path, social: dict[str, StandInService]
):
    tomorrow = "2099-01-01T09:00:00Z"
    meta = {"type": "social_post", "platforms": ["facebook"], "scheduled_for": tomorrow}
    waiting = [drop(app, vault_root, f"s{n}.md", {**meta, "text": f"Soon {n}"}) for n in range(10)]

    eleventh = drop(app, vault_root, "s10.md", {**meta, "text": "Soon 10"})

    assert {o.status for o in waiting} == {"scheduled"}
    assert social["facebook"].calls == []
    assert eleventh.status == "pending_approval"
    assert approval(eleventh.path)["rule"] == "daily_platform_budget"


def test_budgets_survive_a_restart(
    app: App, vault_root: Path, state_dir: Path, clock: Clock, odoo: KnownToOdoo
):
    for day in (1, 2, 3):
        assert pay(app, vault_root, day).status == "done"
    app.close()

    again = open_app(vault_root, state_dir=state_dir)
    try:
        again.pipeline.clock = clock
        again.pipeline.connectors["odoo"] = KnownToOdoo("odoo")

        assert pay(again, vault_root, 4).status == "pending_approval"
        assert approval(vault_root / "Pending_Approval" / "pay-0042-04.md")["rule"] == (
            "daily_partner_budget"
        )
        # A rolling 24 hours: a day later, the budget is free again.
        clock.advance(hours=24, seconds=1)
        assert pay(again, vault_root, 5).status == "done"
    finally:
        again.close()


# -- repeats ----------------------------------------------------------------------------


def test_a_task_whose_call_left_an_unfinished_draft_counts_as_having_run(app: App):
    """A draft invoice the call began (not posted) is a call made: the same invoice dropped
    again is a repeat, not a new invoice approved by policy beside the draft."""
    action = parse_action(
        {
            "type": "odoo_invoice",
            "partner": "Acme Corp",
            "lines": [{"product": "Consulting", "quantity": 1, "price_unit": 50}],
        }
    )
    book = app.ledger
    book.put_task(
        "20261201-aaaaaa",
        file="Approved/inv.md",
        state=ledger.APPROVED,
        payload_hash=action.payload_hash(),
    )
    run = book.start_run("20261201-aaaaaa", action.payload_hash(), dry_run=False)
    step = book.record_intent(run, "20261201-aaaaaa", "odoo", "vaultd:20261201-aaaaaa:odoo", {})
    book.finish_step(step, ledger.UNFINISHED, error="draft invoice 7, not posted")

    assert repeat_of(book, action) == Repeat("20261201-aaaaaa", unsure=True)


def assert_a_repeat_of_the_first(app: App, root: Path, first: str, second: str) -> None:
    """Post `first`, then `second` (a disguised copy): the copy waits for a person."""
    done = post(app, root, "first.md", first)
    assert done.status == "done"
    first_id = parsed(done.path).meta["id"]

    copy = post(app, root, "second.md", second)

    assert copy.status == "pending_approval"
    assert approval(copy.path)["rule"] == "repeat"
    assert f"already ran as task {first_id}" in approval(copy.path)["reason"]
    assert second != first  # byte for byte different: the exact hash differs too


def test_a_zero_width_space_does_not_disguise_a_repeat(
    app: App, vault_root: Path, social: dict[str, StandInService]
):
    assert_a_repeat_of_the_first(app, vault_root, "Big sale today", "Big\u200b sale today")
    assert len(social["facebook"].calls) == 1


def test_nfd_text_does_not_disguise_a_repeat(
    app: App, vault_root: Path, social: dict[str, StandInService]
):
    text = "Grüße aus Köln"
    nfd = unicodedata.normalize("NFD", text)
    assert_a_repeat_of_the_first(app, vault_root, unicodedata.normalize("NFC", text), nfd)
    assert len(social["facebook"].calls) == 1


def test_a_non_breaking_space_does_not_disguise_a_repeat(
    app: App, vault_root: Path, social: dict[str, StandInService]
):
    assert_a_repeat_of_the_first(app, vault_root, "Big sale today", "Big\u00a0sale today")
    assert len(social["facebook"].calls) == 1


def test_an_amount_written_differently_does_not_disguise_a_repeat(
    app: App, vault_root: Path, odoo: KnownToOdoo
):
    meta = {"type": "odoo_payment", "invoice": INVOICE, "date": "2026-11-01"}
    assert drop(app, vault_root, "a.md", {**meta, "amount": "50.5"}).status == "done"

    copy = drop(app, vault_root, "b.md", {**meta, "amount": "50.50"})

    assert copy.status == "pending_approval"
    assert approval(copy.path)["rule"] == "repeat"


def test_a_redropped_task_whose_outcome_is_unknown_asks_a_person(
    app: App, vault_root: Path, social: dict[str, StandInService], odoo: KnownToOdoo
):
    social["instagram"].lost = 1
    social["instagram"].lookup_answer = Undetermined("the search API is down")
    odoo.lost = 1
    odoo.lookup_answer = Undetermined("Odoo does not answer")
    image = "https://example.com/launch.png"
    tasks = {
        "ig.md": {"type": "social_post", "platforms": ["instagram"], "text": "Launch",
                  "image_url": image},
        "inv.md": {"type": "odoo_invoice", "partner": "Acme", "recurring": True,
                   "lines": [{"product": "Hours", "quantity": 1, "price_unit": 50}]},
    }  # fmt: skip
    for name, meta in tasks.items():
        assert drop(app, vault_root, name, meta).status == "outcome_unknown"
        failed = parsed(vault_root / "Failed" / name)
        first_id = failed.meta["id"]

        # The agent drops the task again, as a copy of the Failed/ note.
        shutil.copyfile(vault_root / "Failed" / name, vault_root / "Needs_Action" / name)
        copy = app.pipeline.process(vault_root / "Needs_Action" / name)

        assert copy.status == "pending_approval"
        shown = approval(vault_root / "Pending_Approval" / name)
        assert shown["rule"] == "repeat"
        assert f"may already have run as task {first_id}" in shown["reason"]
        assert "outcome is unknown" in shown["reason"]
        # And the Failed/ note said so.
        assert "a new copy of this task asks a person first" in failed.meta["error"]
    assert len(social["instagram"].calls) == 1
    assert len(odoo.calls) == 1


def test_a_copy_of_a_partly_failed_post_asks_a_person(
    app: App, vault_root: Path, social: dict[str, StandInService]
):
    social["twitter"].fail = 1
    meta = {"type": "social_post", "platforms": ["facebook", "twitter"], "text": "Launch"}
    assert drop(app, vault_root, "both.md", meta).status == "failed"

    copy = drop(app, vault_root, "again.md", meta)

    assert copy.status == "pending_approval"
    assert approval(copy.path)["rule"] == "repeat"
    assert len(social["facebook"].calls) == 1


# -- a ledger written by the previous version -------------------------------------------


def test_a_ledger_from_the_previous_version_is_migrated_and_its_tasks_still_count(
    vault_root: Path, tmp_path: Path, clock: Clock
):
    """The previous vaultd's ledger has no payload_keys table: it is added on first use,
    an exact repeat of an old task is still caught, and old auto-approved money counts
    towards the overall daily budget."""
    state = tmp_path / "old-state"
    state.mkdir()
    first = open_app(vault_root, state_dir=state)  # the schema the previous version wrote
    first.close()
    db = sqlite3.connect(state / LEDGER_FILE)
    assert "payload_keys" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    post_meta = {"type": "social_post", "platforms": ["facebook"], "text": "Old news"}
    old_hash = parse_action(post_meta).payload_hash()
    now = clock().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rows = [("old-post", "social_post", old_hash, "scheduled_post", None, None)] + [
        (f"old-pay-{n}", "odoo_payment", f"sha256:{n:064x}", "small_payment", "99.99", "USD")
        for n in range(10)
    ]
    for task_id, kind, payload_hash, rule, amount, currency in rows:
        db.execute(
            "INSERT INTO tasks (id, type, file, state, payload_hash, approval, rule, amount,"
            " currency, decided_at, created_at, updated_at)"
            " VALUES (?, ?, ?, 'done', ?, 'auto_approved', ?, ?, ?, ?, ?, ?)",
            (task_id, kind, f"Done/{task_id}.md", payload_hash, rule, amount, currency, *[now] * 3),
        )
    db.commit()
    db.close()

    app = open_app(vault_root, state_dir=state)
    try:
        app.pipeline.clock = clock
        app.pipeline.connectors["odoo"] = KnownToOdoo("odoo")

        repeat = drop(app, vault_root, "old.md", post_meta)
        payment = pay(app, vault_root, 1, invoice="INV/2026/9999")

        assert repeat.status == "pending_approval"
        assert approval(repeat.path)["rule"] == "repeat"
        assert "old-post" in approval(repeat.path)["reason"]
        assert payment.status == "pending_approval"
        assert approval(payment.path)["rule"] == "daily_budget"
        columns = {row["name"] for row in app.ledger.rows("PRAGMA table_info(payload_keys)")}
        assert columns == {"payload_hash", "repeat_hash", "payees", "platforms", "recorded_at"}
        indexes = {row["name"] for row in app.ledger.rows("PRAGMA index_list(tasks)")}
        assert "tasks_decided" in indexes
        old = app.ledger.task("old-pay-0")
        assert old is not None and old.state == ledger.DONE
    finally:
        app.close()
    # Opening the migrated ledger again changes nothing.
    reopened = open_app(vault_root, state_dir=state)
    try:
        assert reopened.ledger.task("old-post") is not None
        assert reopened.ledger.integrity_ok()
    finally:
        reopened.close()


def test_the_budget_counts_from_sql_are_those_of_every_row_read_one_by_one(
    app: App, vault_root: Path, odoo: KnownToOdoo, social: dict[str, StandInService]
):
    """The counts SQLite groups (posts by platform list, money over rows with an amount) are
    what reading every auto-approved task one by one gives, as vaultd did before."""
    import json
    from collections import Counter, defaultdict
    from datetime import timedelta
    from decimal import Decimal

    from daemon.core import ledger_counts

    post(app, vault_root, "one.md", "One", ["facebook"])
    post(app, vault_root, "two.md", "Two", ["facebook", "twitter"])
    post(app, vault_root, "three.md", "Three", ["twitter", "facebook"])
    for day in (1, 2):
        pay(app, vault_root, day, amount="12.34")
    pay(app, vault_root, 3, invoice="INV/2026/0007", amount="0.66")
    since = app.pipeline.clock() - timedelta(hours=24)

    counted = ledger_counts.auto_approved_since(app.ledger, since)

    money: defaultdict[str, Decimal] = defaultdict(Decimal)
    by_payee: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    posts: Counter[str] = Counter()
    rows = app.ledger.rows(
        "SELECT t.amount, t.currency, k.payees, k.platforms, t.state FROM tasks t"
        " LEFT JOIN payload_keys k ON k.payload_hash = t.payload_hash"
        " WHERE t.approval = 'auto_approved'"
    )
    assert len(rows) == 6
    for row in rows:
        assert row["state"] == ledger.DONE
        posts.update(json.loads(row["platforms"]))
        if row["amount"] is not None:
            money[row["currency"]] += Decimal(row["amount"])
            for key in json.loads(row["payees"]):
                by_payee[(row["currency"], key)] += Decimal(row["amount"])
    assert counted.posts == dict(posts) == {"facebook": 3, "twitter": 2}
    assert counted.money == dict(money) == {"USD": Decimal("25.34")}
    assert counted.by_payee == dict(by_payee)
    assert by_payee
