"""The Odoo calls an invoice or a payment becomes (XML-RPC `execute_kw` form).

The vaultd marker goes into the invoice's `ref` and the payment's memo, so a call whose
answer was lost can be found again (design §3). A name is searched for as that very name
(`odoo_names.name_is`: `=ilike` with `%`, `_` and `\\` escaped), never as a pattern.
"""

from __future__ import annotations

import os
from typing import Any

from daemon.connectors.odoo_names import name_is
from daemon.core.models import Action, OdooInvoice, OdooPayment


def odoo_request(action: Action, marker: str) -> dict[str, Any]:
    database = os.environ.get("ODOO_DB") or "<ODOO_DB>"
    url = os.environ.get("ODOO_URL") or "<ODOO_URL>"
    if isinstance(action, OdooInvoice):
        partner: Any = action.partner_id or {"search": name_is("name", action.partner or "")}
        values: dict[str, Any] = {
            "move_type": "out_invoice",
            "partner_id": partner,
            "currency_id": {"search": ["name", "=", action.currency]},
            "ref": marker,
            "invoice_line_ids": [
                [
                    0,
                    0,
                    {
                        "product_id": {"search": ["name|default_code", "=", line.product]},
                        "quantity": str(line.quantity),
                        "price_unit": str(line.price_unit),
                        **({"name": line.description} if line.description else {}),
                    },
                ]
                for line in action.lines
            ],
        }
        if action.invoice_date:
            values["invoice_date"] = action.invoice_date.isoformat()
        if action.due_date:
            values["invoice_date_due"] = action.due_date.isoformat()
        return {
            "url": url,
            "database": database,
            "calls": [
                {"model": "account.move", "method": "create", "args": [[values]]},
                {"model": "account.move", "method": "action_post", "args": [["<new id>"]]},
            ],
        }
    if isinstance(action, OdooPayment):
        invoice: Any = (
            action.invoice
            if isinstance(action.invoice, int)
            else {"search": ["name", "=", action.invoice]}
        )
        wizard: dict[str, Any] = {"amount": str(action.amount), "communication": marker}
        if action.date:
            wizard["payment_date"] = action.date.isoformat()
        if action.journal:
            wizard["journal_id"] = {"search": name_is("name", action.journal)}
        context = {"active_model": "account.move", "active_ids": [invoice]}
        return {
            "url": url,
            "database": database,
            "calls": [
                {
                    "model": "account.payment.register",
                    "method": "create",
                    "args": [wizard],
                    "kwargs": {"context": context},
                },
                {
                    "model": "account.payment.register",
                    "method": "action_create_payments",
                    "args": [["<wizard id>"]],
                },
            ],
        }
    raise TypeError(f"the Odoo connector cannot send {type(action).__name__}")


def odoo_location() -> str:
    """Return where Odoo actions go, for approval requests: "database at url"."""
    database = os.environ.get("ODOO_DB")
    url = os.environ.get("ODOO_URL")
    if not (database and url):
        return "Odoo (not configured: ODOO_URL / ODOO_DB unset)"
    return f"Odoo database `{database}` at {url}"
