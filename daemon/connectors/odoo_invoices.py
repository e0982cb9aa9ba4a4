"""Customer invoices in Odoo as vaultd makes them, and the reads around them.

An invoice is two writes: `create` makes a draft carrying vaultd's marker in `ref`, then
`action_post` posts it. A crash or a lost answer between the two leaves a draft, which the
next call finishes instead of making a second invoice — but only a draft that is what was
approved: `draft_differences` compares its partner, currency, dates, lines and untaxed
amount with the action, and any difference leaves it to a person. Also here: the values of
a new draft, the result vaultd records for an invoice, and the revenue the briefing reads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from daemon.connectors.odoo_names import SearchRead, find_partners, one_partner, product_id
from daemon.core.errors import PermanentError
from daemon.core.models import OdooInvoice

# The fields of a draft that `draft_differences` compares, and of its invoice lines.
DRAFT_FIELDS = ["state", "partner_id", "currency_id", "invoice_date", "invoice_date_due"]
DRAFT_FIELDS += ["amount_untaxed", "move_type", "ref"]
LINE_FIELDS = ["product_id", "quantity", "price_unit", "name", "display_type", "discount"]
# The lines an invoice form shows (Odoo 16+): products, sections and notes, never taxes.
INVOICE_LINE_TYPES = ["product", "line_section", "line_note"]
CENT = Decimal("0.01")


def name_of(many2one: Any) -> str:
    """Given a many2one value ([id, name] over RPC), return its display name ("" if unset)."""
    if isinstance(many2one, list | tuple) and len(many2one) == 2:
        return str(many2one[1])
    return "" if many2one in (None, False) else str(many2one)


def id_of(many2one: Any) -> int | None:
    """Given a many2one value ([id, name] or an id), return the id (None if unset)."""
    if isinstance(many2one, list | tuple) and many2one:
        return int(many2one[0])
    return int(many2one) if isinstance(many2one, int) and not isinstance(many2one, bool) else None


def invoice_values(search_read: SearchRead, action: OdooInvoice, marker: str) -> dict[str, Any]:
    """Given an invoice action and its marker, return the `account.move` values of its draft
    (`partner_id` None when the partner is to be created). Raise PermanentError if a partner
    id, the currency or a product is not in Odoo, or a name matches several; ConnectorError
    if Odoo cannot be read."""
    partners = find_partners(search_read, action.partner, action.partner_id)
    partner_id = one_partner(partners, action.partner)  # several: refused, never picked
    if partner_id is None and action.partner_id:
        raise PermanentError(f"Odoo has no partner with id {action.partner_id}")
    currency = search_read("res.currency", [["name", "=", action.currency]], ["name"])
    if not currency:
        raise PermanentError(f"Odoo has no active currency {action.currency}")
    lines = []
    for line in action.lines:
        values: dict[str, Any] = {
            "product_id": product_id(search_read, line.product),
            "quantity": float(line.quantity),
            "price_unit": float(line.price_unit),
        }
        if line.description:
            values["name"] = line.description
        lines.append([0, 0, values])
    move: dict[str, Any] = {
        "move_type": "out_invoice",
        "partner_id": partner_id,
        "currency_id": currency[0]["id"],
        "ref": marker,
        "invoice_line_ids": lines,
    }
    if action.invoice_date:
        move["invoice_date"] = action.invoice_date.isoformat()
    if action.due_date:
        move["invoice_date_due"] = action.due_date.isoformat()
    return move


def draft_differences(search_read: SearchRead, move_id: int, action: OdooInvoice) -> list[str]:
    """Given a draft invoice's id and the approved action, return how the draft differs from
    it (empty: it is exactly what was approved, and posting it is posting the approval).

    Compared: customer invoice and still a draft; the partner (the one the action names in
    Odoo now, as creating it would pick); the currency; the invoice and due dates the action
    gives; every line (product, quantity, unit price, description when given, no discount,
    no section or note), as many as approved; and the untaxed amount, to the cent. Raise
    PermanentError if the action's partner name matches several partners or a product is
    unknown; ConnectorError if Odoo cannot be read.
    """
    found = search_read("account.move", [["id", "=", move_id]], DRAFT_FIELDS)
    if not found:
        return [f"invoice id {move_id} is gone"]
    move, problems = found[0], []
    if move.get("move_type") != "out_invoice" or move.get("state") != "draft":
        problems.append(f"it is a {move.get('move_type')} in state {move.get('state')!r}")
    partner = one_partner(
        find_partners(search_read, action.partner, action.partner_id), action.partner
    )
    if partner is None or partner != id_of(move.get("partner_id")):
        wanted = f"#{partner}" if partner else "none in Odoo"
        problems.append(
            f"partner {name_of(move.get('partner_id'))!r} (#{id_of(move.get('partner_id'))}), "
            f"approved {action.partner or action.partner_id!r} ({wanted})"
        )
    if name_of(move.get("currency_id")) != action.currency:
        problems.append(f"currency {name_of(move.get('currency_id'))}, approved {action.currency}")
    for field, wanted_day in (("invoice_date", action.invoice_date), ("due date", action.due_date)):
        key = "invoice_date" if field == "invoice_date" else "invoice_date_due"
        if wanted_day and move.get(key) != wanted_day.isoformat():
            problems.append(f"{field} {move.get(key) or 'unset'}, approved {wanted_day}")
    domain = [["move_id", "=", move_id], ["display_type", "in", INVOICE_LINE_TYPES]]
    products = [product_id(search_read, line.product) for line in action.lines]
    lines = search_read("account.move.line", domain, LINE_FIELDS)
    problems += _line_differences(lines, action, products)
    approved = sum((line.quantity * line.price_unit for line in action.lines), Decimal(0))
    untaxed = _number(move.get("amount_untaxed"))
    if abs(untaxed - approved) >= CENT:
        problems.append(f"untaxed amount {untaxed}, approved {approved}")
    return problems


def _line_differences(
    lines: list[dict[str, Any]], action: OdooInvoice, products: list[int]
) -> list[str]:
    """Given a draft's invoice lines, the action and its lines' product ids, return what does
    not pair up: an approved line the draft lacks, or a line of the draft not approved."""
    left = list(lines)
    problems = []
    for number, (wanted, product) in enumerate(zip(action.lines, products, strict=True), 1):

        def same(line: dict[str, Any], wanted: Any = wanted, product: int = product) -> bool:
            return (
                line.get("display_type") in ("product", False)
                and id_of(line.get("product_id")) == product
                and _number(line.get("quantity")) == wanted.quantity
                and _number(line.get("price_unit")) == wanted.price_unit
                and not _number(line.get("discount"))
                and (not wanted.description or line.get("name") == wanted.description)
            )

        match = next((line for line in left if same(line)), None)
        if match is None:
            problems.append(
                f"no line {number} ({wanted.quantity} x {wanted.product} at {wanted.price_unit})"
            )
        else:
            left.remove(match)
    problems += [
        f"a line not approved ({name_of(line.get('product_id')) or line.get('name')!r}, "
        f"{line.get('quantity')} at {line.get('price_unit')})"
        for line in left
    ]
    return problems


def _number(value: Any) -> Decimal:
    """Given a number as Odoo sends it (False when unset), return it as a Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Decimal(0)
    return Decimal(str(value))


def invoice_result(move: dict[str, Any], marker: str, url: str) -> dict[str, Any]:
    """Given an invoice as read (INVOICE_FIELDS), its marker and its web address, return the
    result vaultd records for it."""
    return {
        "invoice_id": move["id"],
        "number": move["name"],
        "amount_total": move["amount_total"],
        "currency": name_of(move.get("currency_id")),
        "partner": name_of(move.get("partner_id")),
        "state": move["state"],
        "payment_state": move.get("payment_state"),
        "url": url,
        "marker": marker,
    }


def revenue(
    search_read: Callable[..., list[dict[str, Any]]], start: date, end: date
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Given a reader and two days, return (invoiced, paid) per currency, as Odoo books them.

    Invoiced: posted customer invoices dated in the range. Paid: customer payments dated in
    the range, in the currency of the invoice they settle. Raise ConnectorError if Odoo
    cannot be read.
    """
    invoiced: dict[str, Decimal] = {}
    paid: dict[str, Decimal] = {}
    moves = search_read(
        "account.move",
        [
            ["move_type", "=", "out_invoice"],
            ["state", "=", "posted"],
            ["invoice_date", ">=", start.isoformat()],
            ["invoice_date", "<=", end.isoformat()],
        ],
        ["amount_total", "currency_id"],
    )
    for move in moves:
        currency = name_of(move.get("currency_id")) or "USD"
        invoiced[currency] = invoiced.get(currency, Decimal(0)) + Decimal(
            str(move.get("amount_total") or 0)
        )
    payments = search_read(
        "account.payment",
        [["date", ">=", start.isoformat()], ["date", "<=", end.isoformat()]],
        ["amount", "reconciled_invoice_ids"],
    )
    for payment in payments:
        settled = payment.get("reconciled_invoice_ids") or []
        currency = "USD"
        if settled:
            (invoice,) = search_read(
                "account.move", [["id", "=", settled[0]]], ["currency_id"]
            ) or [{}]
            currency = name_of(invoice.get("currency_id")) or currency
        paid[currency] = paid.get(currency, Decimal(0)) + Decimal(str(payment.get("amount") or 0))
    return invoiced, paid
