"""When vaultd runs live against Odoo, the briefing's revenue comes from Odoo, and says so."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from standins.odoo import FakeOdoo, running_odoo

from daemon.core.weeks import IsoWeek
from daemon.reports.briefing import write_briefing
from daemon.service.app import open_app

W47 = IsoWeek(2026, 47)
SETTINGS = (
    "FACEBOOK_PAGE_ID",
    "FACEBOOK_PAGE_TOKEN",
    "INSTAGRAM_ACCOUNT_ID",
    "TWITTER_API_KEY",
    "TWITTER_API_SECRET",
    "TWITTER_ACCESS_TOKEN",
    "TWITTER_ACCESS_SECRET",
)


def test_live_revenue_is_read_from_odoo_and_missing_connectors_are_bottlenecks(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    odoo = FakeOdoo()
    usd = odoo._search("res.currency", [["name", "=", "USD"]])[0]
    invoice = odoo._insert(
        "account.move",
        {
            "name": "INV/2026/00007",
            "move_type": "out_invoice",
            "state": "posted",
            "amount_total": 1200.0,
            "amount_residual": 0.0,
            "currency_id": usd,
            "invoice_date": "2026-11-18",
        },
    )
    odoo._insert(
        "account.move",
        {
            "name": "INV/2026/00003",
            "move_type": "out_invoice",
            "state": "posted",
            "amount_total": 300.0,
            "amount_residual": 300.0,
            "currency_id": usd,
            "invoice_date": "2026-11-04",
        },
    )
    odoo._insert(
        "account.payment",
        {
            "name": "PBNK1/2026/00001",
            "amount": 1200.0,
            "date": "2026-11-19",
            "reconciled_invoice_ids": [invoice],
        },
    )
    with running_odoo(odoo) as server:
        for name, value in {
            "ODOO_URL": server.url,
            "ODOO_DB": "acme",
            "ODOO_USERNAME": "admin",
            "ODOO_PASSWORD": "secret",
        }.items():
            monkeypatch.setenv(name, value)
        app = open_app(vault_root, state_dir=state_dir, dry_run=False)
        path = write_briefing(app, W47, now=datetime(2026, 11, 23, 6, tzinfo=UTC))
        app.close()

    text = path.read_text()
    assert "revenue_source: odoo" in text
    assert "invoiced_total: 1200.0" in text
    assert "paid_total: 1200.0" in text
    assert "invoiced_month_to_date: 1500.0" in text
    assert "Connector **facebook** cannot be used: missing FACEBOOK_PAGE_ID" in text
    assert "Connector **odoo**" not in text


def test_an_approval_links_to_where_its_note_is_now(app, vault_root: Path):
    from conftest import make_files, move, note

    invoice = {
        "type": "odoo_invoice",
        "partner": "Acme",
        "lines": [{"product": "Consulting", "quantity": 2, "price_unit": 90}],
    }
    make_files(vault_root, {"Needs_Action/acme.md": note(invoice)})
    app.pipeline.process(vault_root / "Needs_Action/acme.md")
    approved = move(vault_root, vault_root / "Pending_Approval/acme.md", "Approved")
    assert app.pipeline.process(approved).status == "done"

    now = datetime.now(UTC)
    text = write_briefing(app, IsoWeek.of(now.date()), now=now).read_text()

    assert "Approvals granted: [[Done/acme]]" in text
