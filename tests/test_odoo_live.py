"""The live Odoo connector against a loopback Odoo, over XML-RPC and JSON-2."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from standins.odoo import FakeOdoo, StandInServer, running_odoo

from daemon.connectors.base import Absent, Found, ScratchMemory, Undetermined, Unfinished
from daemon.connectors.odoo_live import OdooConnector, connect
from daemon.core.errors import (
    AuthError,
    NotConfigured,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)
from daemon.core.models import OdooInvoice, OdooPayment, parse_action
from daemon.core.settings import Settings

MARKER = "vaultd:20261122-inv-acme:odoo"
PAY_MARKER = "vaultd:20261122-pay-acme:odoo"

Connect = Callable[..., OdooConnector]


@pytest.fixture(params=["xmlrpc", "json2"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def odoo() -> FakeOdoo:
    return FakeOdoo()


@pytest.fixture
def server(odoo: FakeOdoo) -> Iterator[StandInServer]:
    with running_odoo(odoo) as served:
        yield served


def settings(url: str, protocol: str, credential: str = "secret") -> Settings:
    return Settings(
        {
            "ODOO_URL": url,
            "ODOO_DB": "acme",
            "ODOO_USERNAME": "admin",
            "ODOO_PASSWORD": credential,
            "ODOO_PROTOCOL": protocol,
        }
    )


@pytest.fixture
def make(server: StandInServer, protocol: str) -> Connect:
    def build(credential: str = "secret") -> OdooConnector:
        connector = connect(settings(server.url, protocol, credential), ScratchMemory())
        connector.read_wait = 0.01  # keep the retry backoff short in tests
        return connector

    return build


def invoice(partner: str = "Acme Corp", product: str = "CONS", **extra: Any) -> OdooInvoice:
    action = parse_action(
        {
            "type": "odoo_invoice",
            "partner": partner,
            "lines": [
                {"product": product, "quantity": 2, "price_unit": "75.50"},
                {"product": "support plan", "quantity": 1, "price_unit": 49, "description": "Nov"},
            ],
            "invoice_date": "2026-11-22",
            "due_date": "2026-12-22",
            **extra,
        }
    )
    assert isinstance(action, OdooInvoice)
    return action


def payment(number: str, amount: str = "200", **extra: Any) -> OdooPayment:
    action = parse_action(
        {"type": "odoo_payment", "invoice": number, "amount": amount, "journal": "Bank", **extra}
    )
    assert isinstance(action, OdooPayment)
    return action


def test_an_invoice_is_created_posted_and_linked(make: Connect, odoo: FakeOdoo, server):
    result = make().execute(invoice(), marker=MARKER, dry_run=False)

    assert result["number"] == "INV/2026/00001"
    assert result["amount_total"] == 200.0
    assert result["state"] == "posted"
    assert result["partner"] == "Acme Corp"
    assert result["currency"] == "USD"
    assert result["partner_created"] is False
    move_id = result["invoice_id"]
    assert result["url"] == f"{server.url}/web#id={move_id}&model=account.move&view_type=form"
    [move] = odoo.table("account.move")
    assert move["ref"] == MARKER
    assert move["move_type"] == "out_invoice"
    assert move["invoice_date_due"] == "2026-12-22"
    products = {p["default_code"]: p["id"] for p in odoo.table("product.product")}
    lines = odoo.lines(move["id"])
    assert [line["id"] for line in lines] == move["invoice_line_ids"]
    assert [line["product_id"] for line in lines] == [products["CONS"], products["SUP"]]
    assert lines[1]["name"] == "Nov"
    assert move["amount_untaxed"] == move["amount_total"] == 200.0
    assert odoo.calls["account.move.create"] == 1
    assert odoo.calls["account.move.action_post"] == 1


def test_an_unknown_partner_is_created_once_as_part_of_the_invoice(make: Connect, odoo: FakeOdoo):
    result = make().execute(invoice("Blue Cafe"), marker=MARKER, dry_run=False)

    assert result["partner_created"] is True
    assert result["partner"] == "Blue Cafe"
    assert [p["name"] for p in odoo.table("res.partner")] == ["Acme Corp", "Blue Cafe"]
    assert odoo.calls["res.partner.create"] == 1


def test_a_partner_id_must_exist(make: Connect, odoo: FakeOdoo):
    action = invoice()
    by_id = action.model_copy(update={"partner": None, "partner_id": 999})
    with pytest.raises(PermanentError, match="no partner with id 999"):
        make().execute(by_id, marker=MARKER, dry_run=False)
    assert odoo.calls["res.partner.create"] == 0


def test_a_payment_is_registered_against_the_invoice(make: Connect, odoo: FakeOdoo):
    connector = make()
    number = connector.execute(invoice(), marker=MARKER, dry_run=False)["number"]

    result = connector.execute(payment(number, "200"), marker=PAY_MARKER, dry_run=False)

    [paid] = odoo.table("account.payment")
    assert result["payment_ids"] == [paid["id"]]
    assert result["amount"] == 200.0
    assert paid["memo"] == PAY_MARKER
    assert paid["journal_id"] == odoo.table("account.journal")[0]["id"]
    assert result["invoices"][0]["number"] == number
    assert result["invoices"][0]["payment_state"] == "paid"
    assert connector.lookup(PAY_MARKER) == Found(result)
    # Asked again (a retry after a lost answer): it finds the payment and pays nothing more.
    assert connector.execute(payment(number), marker=PAY_MARKER, dry_run=False) == result
    assert odoo.calls["account.payment.register.action_create_payments"] == 1


def test_a_payment_to_an_unknown_or_unposted_invoice_is_refused(make: Connect, odoo: FakeOdoo):
    with pytest.raises(PermanentError, match="no posted customer invoice INV/2026/09999"):
        make().execute(payment("INV/2026/09999"), marker=PAY_MARKER, dry_run=False)
    assert odoo.calls["account.payment.register.create"] == 0


def test_bad_credentials_are_an_auth_error_and_nothing_is_created(make: Connect, odoo: FakeOdoo):
    connector = make(credential="wrong")

    health = connector.check()
    with pytest.raises(AuthError):
        connector.execute(invoice(), marker=MARKER, dry_run=False)

    assert not health.ok
    assert "refused" in health.detail or "Invalid apikey" in health.detail
    assert odoo.table("account.move") == []


def test_an_unknown_product_is_a_permanent_error(make: Connect, odoo: FakeOdoo):
    with pytest.raises(PermanentError, match="no product named or coded 'NOPE'"):
        make().execute(invoice(product="NOPE"), marker=MARKER, dry_run=False)
    assert odoo.table("account.move") == []


def test_odoo_validation_errors_carry_odoo_s_message(make: Connect, odoo: FakeOdoo):
    message = "Incompatible companies on records: 'INV' belongs to company 'B'"
    odoo.faults["account.move.create"] = ("ValidationError", message)

    with pytest.raises(PermanentError) as raised:
        make().execute(invoice(), marker=MARKER, dry_run=False)

    assert message in str(raised.value)
    assert odoo.table("account.move") == []


def test_an_odoo_crash_is_permanent_and_shows_the_last_traceback_line(
    make: Connect, odoo: FakeOdoo
):
    odoo.faults["account.move.action_post"] = ("AppError", "ZeroDivisionError: division by zero")

    with pytest.raises(PermanentError, match=r"division by zero.*draft invoice id"):
        make().execute(invoice(), marker=MARKER, dry_run=False)


def test_a_5xx_on_a_read_is_retried_then_succeeds(make: Connect, odoo: FakeOdoo):
    odoo.http_errors = [503, 502]

    result = make().execute(invoice(), marker=MARKER, dry_run=False)

    assert result["number"] == "INV/2026/00001"
    assert odoo.http_errors == []
    assert odoo.calls["account.move.create"] == 1


def test_a_5xx_on_a_write_is_never_retried(make: Connect, odoo: FakeOdoo):
    odoo.http_error_on["account.move.create"] = 503

    with pytest.raises(TransientError):
        make().execute(invoice(), marker=MARKER, dry_run=False)

    assert odoo.http_error_on == {}
    assert odoo.calls["account.move.create"] == 0  # refused, and not sent a second time


def test_a_gateway_timeout_on_a_write_makes_the_outcome_unknown(make: Connect, odoo: FakeOdoo):
    odoo.http_error_on["account.move.action_post"] = 504

    with pytest.raises(OutcomeUnknown, match="504"):
        make().execute(invoice(), marker=MARKER, dry_run=False)

    assert odoo.calls["account.move.action_post"] == 0


def test_a_read_that_keeps_failing_leaves_facts_unknown(make: Connect, odoo: FakeOdoo):
    odoo.http_errors = [503] * 3
    assert make().facts(invoice()).partner_known is None
    assert odoo.http_errors == []  # three attempts, then it gave up


def test_a_lost_answer_to_the_post_is_found_by_lookup_not_sent_again(make: Connect, odoo: FakeOdoo):
    odoo.drop_after = "account.move.action_post"
    connector = make()

    with pytest.raises(OutcomeUnknown, match="may have been done"):
        connector.execute(invoice(), marker=MARKER, dry_run=False)
    found = connector.lookup(MARKER)

    assert isinstance(found, Found)
    assert found.result["number"] == "INV/2026/00001"
    assert found.result["state"] == "posted"
    assert odoo.calls["account.move.create"] == 1
    assert odoo.calls["account.move.action_post"] == 1


def test_a_lost_answer_to_the_create_leaves_a_draft_that_is_reused(make: Connect, odoo: FakeOdoo):
    odoo.drop_after = "account.move.create"
    connector = make()

    with pytest.raises(OutcomeUnknown):
        connector.execute(invoice(), marker=MARKER, dry_run=False)
    answer = connector.lookup(MARKER)
    # A draft is not a done invoice, but one the next call finishes (lookup never writes)...
    assert isinstance(answer, Unfinished)
    assert "draft invoice id" in answer.reason and "not posted yet" in answer.reason
    assert odoo.calls["account.move.action_post"] == 0
    # ...and when the call is made again, the draft is posted rather than a second one made.
    result = connector.execute(invoice(), marker=MARKER, dry_run=False)
    assert result["state"] == "posted"
    assert result["number"] == "INV/2026/00001"
    assert odoo.calls["account.move.create"] == 1
    assert odoo.calls["account.move.action_post"] == 1
    assert len(odoo.table("account.move")) == 1


def test_a_lost_answer_to_the_payment_is_found_by_lookup(make: Connect, odoo: FakeOdoo):
    connector = make()
    number = connector.execute(invoice(), marker=MARKER, dry_run=False)["number"]
    odoo.drop_after = "account.payment.register.action_create_payments"

    with pytest.raises(OutcomeUnknown):
        connector.execute(payment(number, "50"), marker=PAY_MARKER, dry_run=False)
    found = connector.lookup(PAY_MARKER)

    assert isinstance(found, Found)
    assert found.result["invoices"][0]["payment_state"] == "partial"
    assert len(odoo.table("account.payment")) == 1


def test_lookup_is_absent_for_an_unknown_marker_and_undetermined_when_odoo_is_down(
    make: Connect, server: StandInServer
):
    connector = make()
    assert connector.lookup("vaultd:nothing:odoo") == Absent()
    server.shutdown()
    server.server_close()
    answer = connector.lookup("vaultd:nothing:odoo")
    assert isinstance(answer, Undetermined)
    assert "could not be asked" in answer.reason
    assert answer.lasting is False  # Odoo may answer a later lookup


def test_check_reports_version_database_and_user(make: Connect, server: StandInServer):
    health = make().check()
    assert health.ok, health.detail
    assert health.detail.startswith(f"Odoo 18.0 at {server.url}, db acme, user admin")


def test_facts_know_partners_and_invoices(make: Connect, odoo: FakeOdoo):
    connector = make()
    assert connector.facts(invoice("acme corp")).partner_known is True
    assert connector.facts(invoice("Nobody Ltd")).partner_known is False
    number = connector.execute(invoice(), marker=MARKER, dry_run=False)["number"]
    assert connector.facts(payment(number)).invoice_known is True
    assert connector.facts(payment("INV/2026/00042")).invoice_known is False


def test_missing_settings_are_named():
    with pytest.raises(NotConfigured, match="missing ODOO_URL, ODOO_DB, ODOO_USERNAME"):
        connect(Settings({"ODOO_PASSWORD": "x"}), ScratchMemory())
    with pytest.raises(NotConfigured, match="ODOO_PROTOCOL"):
        connect(Settings({"ODOO_PROTOCOL": "soap"}), ScratchMemory())


def test_odoo_17_payments_are_found_by_ref():
    with running_odoo(FakeOdoo(version="17.0")) as served:
        connector = connect(settings(served.url, "xmlrpc"), ScratchMemory())
        number = connector.execute(invoice(), marker=MARKER, dry_run=False)["number"]
        result = connector.execute(payment(number), marker=PAY_MARKER, dry_run=False)
        assert served.odoo.table("account.payment")[0]["ref"] == PAY_MARKER
        assert connector.lookup(PAY_MARKER) == Found(result)


def test_describe_is_the_dry_run_request_with_the_connection(make: Connect, server):
    request = make().describe(invoice(), marker=MARKER)
    assert request["url"] == server.url
    assert request["calls"][0]["args"][0][0]["ref"] == MARKER
    assert Decimal(request["calls"][0]["args"][0][0]["invoice_line_ids"][0][2]["quantity"]) == 2
