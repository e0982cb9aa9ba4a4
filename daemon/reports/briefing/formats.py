"""How the briefing writes money, durations and links to notes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal


def link(relative: str | None) -> str:
    """Return the Obsidian link target of a vault file: its path without ".md"."""
    text = relative or ""
    return text[:-3] if text.lower().endswith(".md") else text


def money(amount: Decimal | None, currency: str) -> str:
    """Given an amount and its currency, return it as "1,250.00 USD" ("—" for None)."""
    if amount is None:
        return "—"
    return f"{amount:,.2f} {currency}".strip()


def moneys(totals: dict[str, Decimal], currency: str) -> str:
    """Return totals as "1,250.00 USD", other currencies after the main one."""
    parts = [money(totals.get(currency, Decimal(0)), currency)]
    parts += [money(amount, other) for other, amount in sorted(totals.items()) if other != currency]
    return " + ".join(parts)


def duration(span: timedelta) -> str:
    """Given a span of time, return it in days and hours, hours and minutes, or minutes."""
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
