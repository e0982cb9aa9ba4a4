"""Issue 12, item 3: an Odoo draft vaultd made and did not post is posted — if it is what
was approved.

Against the loopback Odoo: a crash between `create` and `action_post` (the `mid-call` crash
point) leaves a draft carrying the task's marker; lookup calls it Unfinished, and the next
call checks it against the approved action and posts it, once. A draft that differs in any
way (partner, currency, dates, a line, an amount), that a person cancelled, or that shares
its marker with another invoice is never posted by vaultd. An invoice already posted is
never posted again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from standins.odoo import FakeOdoo, StandInServer, running_odoo

from daemon.connectors import odoo_live
from daemon.connectors.base import Absent, Found, ScratchMemory, Undetermined, Unfinished
from daemon.connectors.odoo_live import OdooConnector, connect
from daemon.core import failpoints
from daemon.core.errors import PermanentError
from daemon.core.models import OdooInvoice, parse_action
from daemon.core.settings import Settings

MARKER = "vaultd:20261122-draft:odoo"
PAY_MARKER = "vaultd:20261122-pay:odoo"


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


@pytest.fixture
def make(server: StandInServer, protocol: str) -> Callable[[], OdooConnector]:
    memory = ScratchMemory()  # the ledger's progress table outlives a crash: so does this

    def build() -> OdooConnector:
        values = {
            "ODOO_URL": server.url,
            "ODOO_DB": "acme",
            "ODOO_USERNAME": "admin",
            "ODOO_PASSWORD": "secret",
            "ODOO_PROTOCOL": protocol,
        }
        connector = connect(Settings(values), memory)
        connector.read_wait = 0.01
        return connector

    return build


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    yield
    failpoints.disarm()


def invoice(partner: str = "Acme Corp", **extra: Any) -> OdooInvoice:
    action = parse_action(
        {
            "type": "odoo_invoice",
            "partner": partner,
            "lines": [
                {"product": "CONS", "quantity": 2, "price_unit": "75.50"},
                {"product": "Support Plan", "quantity": 1, "price_unit": 49, "description": "Nov"},
            ],
            "invoice_date": "2026-11-22",
            "due_date": "2026-12-22",
            **extra,
        }
    )
    assert isinstance(action, OdooInvoice)
    return action


def crash_after_the_draft(connector: OdooConnector, action: OdooInvoice) -> dict[str, Any]:
    """Run the call until the `mid-call` crash point kills it; return the draft it left."""
    failpoints.arm(["mid-call"])
    with pytest.raises(failpoints.Crashed):
        connector.execute(action, marker=MARKER, dry_run=False)
    failpoints.disarm()
    (draft,) = connector.transport.call(
        "account.move", "search_read", params={"domain": [["ref", "=", MARKER]], "fields": []}
    )
    assert draft["state"] == "draft"
    return dict(draft)


def test_a_draft_left_by_a_crash_is_unfinished_and_the_next_call_posts_it_once(
    make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    draft = crash_after_the_draft(make(), invoice())
    restarted = make()

    answer = restarted.lookup(MARKER)
    assert isinstance(answer, Unfinished)
    assert f"draft invoice id {draft['id']}" in answer.reason

    result = restarted.execute(invoice(), marker=MARKER, dry_run=False)

    assert result["invoice_id"] == draft["id"]
    assert result["number"] == "INV/2026/00001"
    assert result["state"] == "posted"
    assert result["partner_created"] is False
    assert odoo.calls["account.move.create"] == 1
    assert odoo.calls["account.move.action_post"] == 1
    assert [m["state"] for m in odoo.table("account.move")] == ["posted"]
    assert restarted.lookup(MARKER) == Found(
        {k: v for k, v in result.items() if k != "partner_created"}
    )


def test_a_partner_vaultd_created_before_the_crash_is_recorded_as_created(
    make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    crash_after_the_draft(make(), invoice("Blue Cafe"))

    result = make().execute(invoice("Blue Cafe"), marker=MARKER, dry_run=False)

    assert result["partner_created"] is True
    assert result["partner"] == "Blue Cafe"
    assert [p["name"] for p in odoo.table("res.partner")].count("Blue Cafe") == 1
    assert odoo.calls["account.move.action_post"] == 1


def _other_partner(odoo: FakeOdoo, draft: dict[str, Any]) -> None:
    other = odoo._insert("res.partner", {"name": "Mallory Ltd"})
    odoo.records["account.move"][draft["id"]]["partner_id"] = other


def _currency(odoo: FakeOdoo, draft: dict[str, Any]) -> None:
    (eur,) = odoo.execute("res.currency", "search", [[["name", "=", "EUR"]]], {})
    odoo.records["account.move"][draft["id"]]["currency_id"] = eur


def _line(index: int = 0, **change: Any) -> Callable[[FakeOdoo, dict[str, Any]], None]:
    def edit(odoo: FakeOdoo, draft: dict[str, Any]) -> None:
        odoo.records["account.move.line"][draft["invoice_line_ids"][index]].update(change)

    return edit


def _extra_line(odoo: FakeOdoo, draft: dict[str, Any]) -> None:
    line = dict(odoo.records["account.move.line"][draft["invoice_line_ids"][1]])
    odoo.records["account.move"][draft["id"]]["invoice_line_ids"].append(
        odoo._insert("account.move.line", line)
    )


def _no_line(odoo: FakeOdoo, draft: dict[str, Any]) -> None:
    del odoo.records["account.move.line"][draft["invoice_line_ids"][1]]


def _move(**change: Any) -> Callable[[FakeOdoo, dict[str, Any]], None]:
    def edit(odoo: FakeOdoo, draft: dict[str, Any]) -> None:
        odoo.records["account.move"][draft["id"]].update(change)

    return edit


EDITS = {
    "partner": (_other_partner, "partner 'Mallory Ltd'"),
    "currency": (_currency, "currency EUR, approved USD"),
    "price": (_line(price_unit=7550.0), "no line 1"),
    "quantity": (_line(quantity=20.0), "no line 1"),
    "product": (_line(product_id=105), "no line 1"),  # Support Plan, not Consulting
    "discount": (_line(discount=10.0), "no line 1"),
    "description": (_line(1, name="Dec"), "no line 2"),
    "nothing": (_move(), None),  # the control case: unchanged, so posted
    "a line more": (_extra_line, "a line not approved"),
    "a line less": (_no_line, "no line 2"),
    "invoice date": (_move(invoice_date="2026-01-01"), "invoice_date 2026-01-01"),
    "due date": (_move(invoice_date_due="2027-01-01"), "due date 2027-01-01"),
    "amount": (_move(amount_untaxed=1.0), "untaxed amount 1.0, approved 200"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_draft_that_is_not_what_was_approved_is_never_posted(
    edit: str, make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    change, problem = EDITS[edit]
    draft = crash_after_the_draft(make(), invoice())
    change(odoo, draft)

    if problem is None:
        assert make().execute(invoice(), marker=MARKER, dry_run=False)["state"] == "posted"
        return
    with pytest.raises(PermanentError) as refused:
        make().execute(invoice(), marker=MARKER, dry_run=False)

    message = str(refused.value)
    assert f"draft invoice id {draft['id']}" in message
    assert "not what was approved" in message and problem in message
    assert "Delete the draft in Odoo" in message
    assert odoo.calls["account.move.action_post"] == 0
    assert odoo.records["account.move"][draft["id"]]["state"] == "draft"
    assert odoo.calls["account.move.create"] == 1  # and no second invoice either


def test_a_draft_of_an_earlier_version_of_the_task_is_not_posted_for_a_later_one(
    make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    crash_after_the_draft(make(), invoice())
    changed = invoice(lines=[{"product": "CONS", "quantity": 2, "price_unit": "80"}])

    with pytest.raises(PermanentError, match="not what was approved"):
        make().execute(changed, marker=MARKER, dry_run=False)
    assert odoo.calls["account.move.action_post"] == 0


def test_an_invoice_already_posted_is_never_posted_again(
    make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    connector = make()
    first = connector.execute(invoice(), marker=MARKER, dry_run=False)

    again = connector.execute(invoice(), marker=MARKER, dry_run=False)

    assert again["invoice_id"] == first["invoice_id"]
    assert again["found_by"] == "marker"
    assert odoo.calls["account.move.create"] == 1
    assert odoo.calls["account.move.action_post"] == 1


def test_a_draft_a_person_posts_meanwhile_is_taken_as_done_not_posted_twice(
    make: Callable[[], OdooConnector], odoo: FakeOdoo, monkeypatch: pytest.MonkeyPatch
):
    draft = crash_after_the_draft(make(), invoice())
    checked = odoo_live.draft_differences

    def then_a_person_posts(*args: Any) -> list[str]:
        problems = checked(*args)  # the draft is what was approved...
        odoo.execute("account.move", "action_post", [[draft["id"]]], {})  # ...and posted now
        return problems

    monkeypatch.setattr(odoo_live, "draft_differences", then_a_person_posts)
    result = make().execute(invoice(), marker=MARKER, dry_run=False)

    assert result["state"] == "posted"
    assert result["found_by"] == "marker"
    assert result["invoice_id"] == draft["id"]
    assert odoo.sequence["INV"] == 1  # posted once, by the person: vaultd's post was refused


def test_an_invoice_a_person_cancelled_is_left_to_a_person(
    make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    draft = crash_after_the_draft(make(), invoice())
    odoo.records["account.move"][draft["id"]]["state"] = "cancel"
    connector = make()

    answer = connector.lookup(MARKER)
    assert isinstance(answer, Undetermined)
    assert answer.lasting
    assert "'cancel'" in answer.reason
    with pytest.raises(PermanentError, match="leaves it to a person"):
        connector.execute(invoice(), marker=MARKER, dry_run=False)
    assert odoo.calls["account.move.action_post"] == 0


def test_two_invoices_with_one_marker_are_left_to_a_person(
    make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    draft = crash_after_the_draft(make(), invoice())
    twin = dict(odoo.records["account.move"][draft["id"]])
    odoo._insert("account.move", twin)
    connector = make()

    answer = connector.lookup(MARKER)
    assert isinstance(answer, Undetermined)
    assert answer.lasting
    assert "2 invoices" in answer.reason
    with pytest.raises(PermanentError, match="posts none of them"):
        connector.execute(invoice(), marker=MARKER, dry_run=False)
    assert odoo.calls["account.move.action_post"] == 0


def test_a_payment_interrupted_between_the_wizard_and_its_run_is_made_once(
    make: Callable[[], OdooConnector], odoo: FakeOdoo
):
    connector = make()
    number = connector.execute(invoice(), marker=MARKER, dry_run=False)["number"]
    pay = parse_action({"type": "odoo_payment", "invoice": number, "amount": "50"})
    failpoints.arm(["mid-call"])
    with pytest.raises(failpoints.Crashed):
        connector.execute(pay, marker=PAY_MARKER, dry_run=False)
    failpoints.disarm()

    assert make().lookup(PAY_MARKER) == Absent()  # a wizard is no payment
    result = make().execute(pay, marker=PAY_MARKER, dry_run=False)

    assert result["amount"] == 50.0
    assert len(odoo.table("account.payment")) == 1
    assert odoo.calls["account.payment.register.action_create_payments"] == 1
