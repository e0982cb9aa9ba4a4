"""The live Odoo connector: customer invoices and their payments, each made at most once.

The vaultd marker goes into the invoice's `ref` and the payment's memo (the wizard's
`communication`), so `lookup(marker)` finds a call whose answer was lost. Reads are retried
on transient errors; writes (create, action_post, action_create_payments) never are, and a
write whose answer was lost raises OutcomeUnknown (the calls: daemon/connectors/odoo_calls.py).
Before writing, `execute` looks for an object that already carries the marker, so no path
leads to a second invoice or payment.

An invoice is created as a draft, then posted. A draft left between the two (a crash, a lost
answer) is Unfinished to `lookup`, and `execute` posts it — after checking it is exactly what
was approved (daemon/connectors/odoo_invoices.py); one that differs, or that a person
cancelled, is left to a person. Posting an invoice already posted is never sent again: it is
found, and a post refused because the invoice was posted meanwhile is taken as done.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from daemon.connectors import odoo_invoices
from daemon.connectors.base import Absent, Found, Health, Lookup, Memory, Undetermined, Unfinished
from daemon.connectors.odoo import odoo_request
from daemon.connectors.odoo_calls import READ_WAIT, OdooCalls
from daemon.connectors.odoo_invoices import draft_differences, id_of, invoice_result, invoice_values
from daemon.connectors.odoo_invoices import name_of as _name
from daemon.connectors.odoo_names import candidates, find_partners, journal_id, listed, same_name
from daemon.connectors.odoo_transport import Transport, transport_for
from daemon.core import failpoints
from daemon.core.errors import (
    ConnectorError,
    NotConfigured,
    OutcomeUnknown,
    PermanentError,
)
from daemon.core.models import Action, OdooInvoice, OdooPayment
from daemon.core.policy import Facts
from daemon.core.settings import Settings

PROTOCOLS = ("xmlrpc", "json2")
INVOICE_FIELDS = ["name", "state", "amount_total", "amount_residual", "payment_state"]
INVOICE_FIELDS += ["partner_id", "currency_id", "ref", "move_type"]
PAYMENT_FIELDS = ["name", "amount", "state", "date", "reconciled_invoice_ids"]


def connect(settings: Settings, memory: Memory) -> OdooConnector:
    """Return the live Odoo connector; raise NotConfigured naming what is missing."""
    protocol = (settings.get("ODOO_PROTOCOL") or "xmlrpc").lower()
    if protocol not in PROTOCOLS:
        raise NotConfigured(f"ODOO_PROTOCOL is {protocol!r}; expected xmlrpc or json2")
    needed = ["ODOO_URL", "ODOO_DB", "ODOO_PASSWORD"]
    if protocol == "xmlrpc":
        needed.insert(2, "ODOO_USERNAME")
    settings.require(*needed)
    url, database = str(settings.get("ODOO_URL")), str(settings.get("ODOO_DB"))
    username = settings.get("ODOO_USERNAME") or ""
    transport = transport_for(
        protocol,
        url,
        database,
        username,
        str(settings.get("ODOO_PASSWORD")),
        call_timeout=settings.call_timeout(),
    )
    return OdooConnector(transport, url=url, database=database, username=username, memory=memory)


class OdooConnector(OdooCalls):
    name = "odoo"

    def __init__(
        self,
        transport: Transport,
        *,
        url: str,
        database: str,
        username: str,
        memory: Memory | None = None,
        read_wait: float = READ_WAIT,
    ) -> None:
        super().__init__(
            transport, url=url, database=database, username=username, read_wait=read_wait
        )
        self.memory = memory
        self._memo_field: str | None = None

    # -- the Connector interface ------------------------------------------------------------

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        request = odoo_request(action, marker)
        request.update(url=self.url, database=self.database, protocol=self.transport.protocol)
        return request

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        if dry_run:
            raise ConnectorError("the live Odoo connector does not do dry runs")
        if isinstance(action, OdooInvoice):
            return self._invoice(action, marker)
        if isinstance(action, OdooPayment):
            return self._payment(action, marker)
        raise PermanentError(f"the Odoo connector cannot send {type(action).__name__}")

    def lookup(self, marker: str) -> Lookup:
        """Given a marker, return Found (a posted invoice or a payment carries it), Unfinished
        (a draft invoice does: `execute` posts it if it is what was approved), Absent, or
        Undetermined (Odoo cannot be read; lasting when a person's change is in the way)."""
        try:
            moves = self._find_invoices_by_marker(marker)
            if len(moves) > 1:
                return Undetermined(
                    f"Odoo holds {len(moves)} invoices for {marker} ({listed(moves)}): a person "
                    "decides which one stands",
                    lasting=True,
                )
            if moves:
                move = moves[0]
                where = f"invoice id {move['id']} for {marker} ({self.invoice_url(move['id'])})"
                if move["state"] == "posted":
                    return Found(self._invoice_result(move, marker))
                if move["state"] == "draft":
                    return Unfinished(f"Odoo holds draft {where}, not posted yet")
                return Undetermined(
                    f"Odoo holds {where} in state {move['state']!r}, not posted: a person "
                    "changed it, so a person decides",
                    lasting=True,
                )
            payments = self._find_payments_by_marker(marker)
            if payments:
                return Found(self._payment_result(payments, marker))
            return Absent()
        except ConnectorError as error:
            return Undetermined(f"Odoo could not be asked about {marker}: {error}")

    def check(self) -> Health:
        try:
            version = self._retry(self.transport.version)
            uid = self._retry(self.transport.authenticate)
        except ConnectorError as error:
            return Health(False, str(error))
        server = version.get("server_version", "(version unknown)")
        user = self.username or f"uid {uid}"
        detail = f"Odoo {server} at {self.url}, db {self.database}, user {user}"
        return Health(True, f"{detail} ({self.transport.protocol})", {"uid": uid})

    def facts(self, action: Action) -> Facts:
        try:
            if isinstance(action, OdooInvoice):
                partners = find_partners(self.search_read, action.partner, action.partner_id)
                several = candidates(partners) if len(partners) > 1 else ()
                return Facts(partner_known=bool(partners), partner_candidates=several)
            if isinstance(action, OdooPayment):
                return Facts(invoice_known=bool(self._find_invoices(action.invoice)))
        except ConnectorError:
            pass  # None: "could not be checked", so the policy asks a human
        return Facts()

    # -- invoices -----------------------------------------------------------------------------

    def _invoice(self, action: OdooInvoice, marker: str) -> dict[str, Any]:
        """Given an invoice action, return the posted invoice carrying its marker: made as a
        draft and posted, or an earlier draft of this call posted once it proves to be what
        was approved. Raise PermanentError if Odoo refuses, or the draft differs (it stays for
        a person); OutcomeUnknown if an answer to a write was lost."""
        existing = self._find_invoices_by_marker(marker)
        memo = self.memory.recall(marker) if self.memory is not None else {}
        if len(existing) > 1:
            raise PermanentError(
                f"Odoo holds {len(existing)} invoices for {marker} ({listed(existing)}): "
                "vaultd posts none of them; a person decides which one stands"
            )
        if existing:  # an earlier attempt got this far: never create a second invoice
            move_id = int(existing[0]["id"])
            partner_created = memo.get("odoo_partner_created") == id_of(existing[0]["partner_id"])
            if existing[0]["state"] == "posted":
                return {**self._invoice_result(existing[0], marker), "found_by": "marker"}
            if existing[0]["state"] != "draft":
                raise PermanentError(
                    f"Odoo holds invoice id {move_id} for {marker} in state "
                    f"{existing[0]['state']!r}: vaultd leaves it to a person "
                    f"({self.invoice_url(move_id)})"
                )
            problems = draft_differences(self.search_read, move_id, action)
            if problems:
                raise PermanentError(
                    f"Odoo holds draft invoice id {move_id} for {marker}, but it is not what "
                    f"was approved ({'; '.join(problems)}), so vaultd did not post it. Delete "
                    f"the draft in Odoo ({self.invoice_url(move_id)}) to have it made again, "
                    "or post it there yourself to have it recorded; then move this note to "
                    "Approved/"
                )
        else:
            values = invoice_values(self.search_read, action, marker)
            partner_created = values["partner_id"] is None
            if partner_created:
                values["partner_id"] = self._create("res.partner", {"name": action.partner})
                if self.memory is not None:
                    self.memory.remember(marker, "odoo_partner_created", values["partner_id"])
            move_id = self._create("account.move", values)
            if self.memory is not None:
                self.memory.remember(marker, "odoo_invoice_id", move_id)
            failpoints.hit("mid-call", marker)
        result = self._post(move_id, marker)
        result["partner_created"] = partner_created
        return result

    def _post(self, move_id: int, marker: str) -> dict[str, Any]:
        """Given a draft invoice, post it and return its result. A post Odoo refuses because
        the invoice is posted already (by a person, meanwhile) is a no-op: its result is
        returned. Raise PermanentError if Odoo refuses otherwise (the draft stays)."""
        try:
            self._write("account.move", "action_post", ids=[move_id])
        except PermanentError as error:
            try:
                move = self._read_invoice(move_id)
            except ConnectorError:
                move = {"state": None}
            if move["state"] == "posted":
                return {**self._invoice_result(move, marker), "found_by": "marker"}
            raise PermanentError(
                f"{error} (draft invoice id {move_id} is left in Odoo: {self.invoice_url(move_id)})"
            ) from None
        move = self._after_write(lambda: self._read_invoice(move_id), "the invoice was posted")
        return self._invoice_result(move, marker)

    def _find_invoices_by_marker(self, marker: str) -> list[dict[str, Any]]:
        domain = [["ref", "=", marker], ["move_type", "=", "out_invoice"]]
        return self.search_read("account.move", domain, INVOICE_FIELDS)

    def _read_invoice(self, move_id: int) -> dict[str, Any]:
        found = self.search_read("account.move", [["id", "=", move_id]], INVOICE_FIELDS)
        if not found:
            raise PermanentError(f"Odoo has no invoice with id {move_id}")
        return found[0]

    def _invoice_result(self, move: dict[str, Any], marker: str) -> dict[str, Any]:
        return invoice_result(move, marker, self.invoice_url(int(move["id"])))

    # -- payments -----------------------------------------------------------------------------

    def _payment(self, action: OdooPayment, marker: str) -> dict[str, Any]:
        existing = self._find_payments_by_marker(marker)
        if existing:  # an earlier attempt paid: never pay twice
            return self._payment_result(existing, marker)
        invoices = self._find_invoices(action.invoice)
        if not invoices:
            raise PermanentError(f"Odoo has no posted customer invoice {action.invoice}")
        if len(invoices) > 1:  # never pay one of them silently
            raise PermanentError(
                f"Odoo has {len(invoices)} posted customer invoices {action.invoice} "
                f"({listed(invoices)}); give the invoice's id instead"
            )
        invoice = invoices[0]
        if action.partner and not same_name(_name(invoice.get("partner_id")), action.partner):
            raise PermanentError(
                f"invoice {invoice['name']} is to {_name(invoice.get('partner_id'))!r}, "
                f"not {action.partner!r}"
            )
        wizard: dict[str, Any] = {"amount": float(action.amount), "communication": marker}
        if action.date:
            wizard["payment_date"] = action.date.isoformat()
        if action.journal:
            wizard["journal_id"] = journal_id(self.search_read, action.journal)
        context = {"active_model": "account.move", "active_ids": [invoice["id"]]}
        wizard_id = self._create("account.payment.register", wizard, context=context)
        failpoints.hit("mid-call", marker)
        self._write(
            "account.payment.register", "action_create_payments", ids=[wizard_id], context=context
        )
        payments = self._after_write(
            lambda: self._find_payments_by_marker(marker), "the payment was registered"
        )
        if not payments:
            raise OutcomeUnknown(f"Odoo registered the payment but no payment carries {marker}")
        return self._payment_result(payments, marker)

    def _find_invoices(self, invoice: str | int) -> list[dict[str, Any]]:
        """Given an invoice's id or number (exact: `=`), return the posted customer invoices
        carrying it. Raise ConnectorError if Odoo cannot be read."""
        key = ["id", "=", invoice] if isinstance(invoice, int) else ["name", "=", invoice]
        domain = [key, ["move_type", "=", "out_invoice"], ["state", "=", "posted"]]
        return self.search_read("account.move", domain, INVOICE_FIELDS)

    def _memo(self) -> str:
        """The payment field the wizard's `communication` lands in: `memo` (Odoo 18+) or `ref`."""
        if self._memo_field is None:
            major = 19
            if self.transport.protocol == "xmlrpc":
                info = self._retry(self.transport.version).get("server_version_info") or [19]
                major = int(info[0]) if str(info[0]).isdigit() else 19
            self._memo_field = "memo" if major >= 18 else "ref"
        return self._memo_field

    def _find_payments_by_marker(self, marker: str) -> list[dict[str, Any]]:
        return self.search_read("account.payment", [[self._memo(), "=", marker]], PAYMENT_FIELDS)

    def _payment_result(self, payments: list[dict[str, Any]], marker: str) -> dict[str, Any]:
        invoice_ids = sorted({i for p in payments for i in p.get("reconciled_invoice_ids") or []})
        invoices = (
            self.search_read("account.move", [["id", "in", invoice_ids]], INVOICE_FIELDS)
            if invoice_ids
            else []
        )
        return {
            "payment_ids": [p["id"] for p in payments],
            "payments": [p["name"] for p in payments],
            "amount": sum(float(p["amount"]) for p in payments),
            "state": payments[0]["state"],
            "invoices": [
                {
                    "invoice_id": i["id"],
                    "number": i["name"],
                    "payment_state": i["payment_state"],
                    "amount_residual": i["amount_residual"],
                    "url": self.invoice_url(int(i["id"])),
                }
                for i in invoices
            ],
            "marker": marker,
        }

    # -- calls --------------------------------------------------------------------------------

    def revenue(self, start: date, end: date) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """Return (invoiced, paid) per currency between two days (odoo_invoices.revenue)."""
        return odoo_invoices.revenue(self.search_read, start, end)
