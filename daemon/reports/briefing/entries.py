"""What one audit log entry says to the briefing: the invoice, payment or post it records,
its amounts, and the note it links to.

Entries are read as logged by any vaultd version: a value of the wrong type reads as missing,
never as an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from daemon.core.timestamps import parse_time
from daemon.reports.briefing.figures import Item
from daemon.reports.briefing.formats import link


@dataclass
class Invoice:
    """An executed invoice as the log records it."""

    task_id: str | None
    file: str | None
    partner: str
    refs: tuple[str, ...]
    total: Decimal
    currency: str
    due: date | None
    payment_state: str | None


def as_dict(value: Any) -> dict[str, Any]:
    """Given a logged value, return it if it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def decimal(value: Any) -> Decimal | None:
    """Given a logged amount, return it as a Decimal; None if it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def add(totals: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    """Add an amount to the totals per currency."""
    totals[currency] = totals.get(currency, Decimal(0)) + amount


def posted(params: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Return the platforms an executed post went to."""
    listed = params.get("platforms")
    platforms = [p for p in listed if isinstance(p, str)] if isinstance(listed, list) else []
    answered = [p for p in platforms if p in result]
    return answered or platforms


def read_invoice(
    entry: dict[str, Any], params: dict[str, Any], result: dict[str, Any], file: str | None
) -> Invoice:
    """Given an executed invoice's entry, its parameters and result, return the invoice."""
    odoo = as_dict(result.get("odoo"))
    total = decimal(odoo.get("amount_total"))
    if total is None:
        total = Decimal(0)
        for raw in params.get("lines") or []:
            line = as_dict(raw)
            quantity = decimal(line.get("quantity")) or Decimal(0)
            total += quantity * (decimal(line.get("price_unit")) or Decimal(0))
    refs = [str(odoo[key]) for key in ("number", "invoice_id") if odoo.get(key)]
    if isinstance(entry.get("task_id"), str):
        refs.append(entry["task_id"])
    due: date | None = None
    if params.get("due_date"):
        try:
            due = date.fromisoformat(str(params["due_date"]))
        except ValueError:
            due = None
    partner = odoo.get("partner") or params.get("partner") or params.get("partner_id")
    return Invoice(
        task_id=entry.get("task_id") if isinstance(entry.get("task_id"), str) else None,
        file=file,
        partner=str(partner or "unknown partner"),
        refs=tuple(dict.fromkeys(refs)),
        total=total,
        currency=str(odoo.get("currency") or params.get("currency") or "USD"),
        due=due,
        payment_state=odoo.get("payment_state")
        if isinstance(odoo.get("payment_state"), str)
        else None,
    )


def invoice_of_line(line: str) -> Invoice | None:
    """Given a raw log line of an executed invoice, return the invoice; None if unreadable."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(entry, dict):
        return None
    file = entry.get("file") if isinstance(entry.get("file"), str) else None
    return read_invoice(entry, as_dict(entry.get("parameters")), as_dict(entry.get("result")), file)


def payment_refs(params: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Return every reference of the invoices an executed payment paid."""
    refs = [str(params["invoice"])] if params.get("invoice") is not None else []
    for raw in as_dict(result.get("odoo")).get("invoices") or []:
        paid = as_dict(raw)
        refs += [str(paid[key]) for key in ("number", "invoice_id") if paid.get(key)]
    return refs


def payment_amount(
    params: dict[str, Any], result: dict[str, Any], currency: str
) -> tuple[Decimal, str]:
    """Return an executed payment's amount and currency (`currency` if it names none)."""
    amount = decimal(params.get("amount"))
    if amount is None:
        amount = decimal(as_dict(result.get("odoo")).get("amount")) or Decimal(0)
    return amount, str(params.get("currency") or currency)


def item_of(entry: dict[str, Any]) -> Item:
    """Return the note an entry links to (its task id if it names no file), labelled."""
    file = entry.get("file")
    label = str(entry.get("action") or entry.get("event") or "")
    return Item(link(file) if isinstance(file, str) else str(entry.get("task_id") or "?"), label)


def scalar(raw: str) -> str:
    """Return a JSON string or number, as matched in a raw line, as text."""
    return str(json.loads(raw))


def time_of(text: str) -> datetime | None:
    """Given a logged timestamp, return it as a time; None if it is not one."""
    try:
        return parse_time(text)
    except ValueError:
        return None
