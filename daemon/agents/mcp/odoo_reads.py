"""Reading Odoo for agents: partners, recent customer invoices, unpaid ones.

The same transports (XML-RPC or JSON-2) and settings as the live connector, and reads only:
every call here is the live connector's `search_read`, retried on transient errors with
backoff and jitter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from daemon.connectors import odoo_live
from daemon.connectors.base import ScratchMemory
from daemon.core.settings import Settings

T = TypeVar("T")

PARTNER_FIELDS = ["name", "email", "is_company"]
INVOICE_FIELDS = ["name", "partner_id", "invoice_date", "invoice_date_due", "state"]
INVOICE_FIELDS += ["payment_state", "amount_total", "amount_residual", "currency_id", "ref"]
UNPAID_STATES = ["not_paid", "partial"]


class OdooReads:
    def __init__(self, connector: odoo_live.OdooConnector) -> None:
        self.connector = connector

    @classmethod
    def from_settings(cls, settings: Settings) -> OdooReads:
        """Raise NotConfigured naming the missing settings, as the live connector does."""
        return cls(odoo_live.connect(settings, ScratchMemory()))

    def partners(self, name: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Return the partners whose name contains `name` (any case)."""
        found = self._search_read("res.partner", [["name", "ilike", name]], PARTNER_FIELDS, limit)
        return [
            {
                "id": p["id"],
                "name": p.get("name") or "",
                "email": p.get("email") or None,
                "is_company": bool(p.get("is_company")),
            }
            for p in found
        ]

    def invoices(
        self,
        *,
        partner: str | None = None,
        state: str | None = None,
        payment_states: list[str] | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Return customer invoices, the newest first, filtered by partner name and state."""
        domain: list[Any] = [["move_type", "=", "out_invoice"]]
        if partner:
            ids = [p["id"] for p in self.partners(partner, limit=200)]
            if not ids:
                return []
            domain.append(["partner_id", "in", ids])
        if state:
            domain.append(["state", "=", state])
        if payment_states:
            domain.append(["payment_state", "in", payment_states])
        moves = self._search_read("account.move", domain, INVOICE_FIELDS, limit)
        moves.sort(key=lambda m: (str(m.get("invoice_date") or ""), int(m["id"])), reverse=True)
        return [self._invoice(move) for move in moves[:limit]]

    def unpaid_invoices(self, *, partner: str | None = None, limit: int = 50) -> dict[str, Any]:
        """Return posted customer invoices not (fully) paid, and what is due per currency."""
        found = self.invoices(
            partner=partner, state="posted", payment_states=UNPAID_STATES, limit=limit
        )
        today = datetime.now(UTC).date().isoformat()
        due: dict[str, float] = {}
        for invoice in found:
            invoice["overdue"] = bool(invoice["due_date"]) and invoice["due_date"] < today
            currency = invoice["currency"] or "?"
            due[currency] = round(due.get(currency, 0.0) + float(invoice["amount_due"] or 0), 2)
        return {"invoices": found, "total_due": due}

    def _invoice(self, move: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": move["id"],
            "number": move.get("name") or None,
            "partner": _name(move.get("partner_id")),
            "date": move.get("invoice_date") or None,
            "due_date": move.get("invoice_date_due") or None,
            "state": move.get("state"),
            "payment_state": move.get("payment_state") or None,
            "amount_total": move.get("amount_total"),
            "amount_due": move.get("amount_residual"),
            "currency": _name(move.get("currency_id")) or None,
            "reference": move.get("ref") or None,
            "url": self.connector.invoice_url(int(move["id"])),
        }

    def _search_read(
        self, model: str, domain: list[Any], fields: list[str], limit: int
    ) -> list[dict[str, Any]]:
        return self.connector.search_read(model, domain, fields, limit=limit, order="id desc")


def _name(many2one: Any) -> str:
    """The display name of a many2one value ([id, name] over RPC)."""
    if isinstance(many2one, list | tuple) and len(many2one) == 2:
        return str(many2one[1])
    return ""
