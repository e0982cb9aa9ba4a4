"""The briefing's proactive suggestions, each from one rule and with its evidence.

- overdue_invoice: an executed invoice past its due date with no payment recorded for it
  (the `MAX_OVERDUE` most overdue one by one, the rest in one line);
- quiet_platform: a platform vaultd has posted on, but not in `QUIET_PLATFORM_DAYS` days;
- repeated_failures: an action type that failed (or whose outcome is unknown)
  `REPEATED_FAILURES` times in the week;
- partner_waiting: `PARTNER_WAITING` or more requests waiting for approval name one partner.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal

from daemon.reports.briefing.entries import Invoice, add, time_of
from daemon.reports.briefing.figures import PLATFORMS, Item, Suggestion
from daemon.reports.briefing.formats import link, money, moneys

QUIET_PLATFORM_DAYS = 7
REPEATED_FAILURES = 3
PARTNER_WAITING = 2
# The most overdue invoices are suggested one by one; the rest in one line.
MAX_OVERDUE = 10


def overdue_invoices(invoices: list[Invoice], as_of_day: date, currency: str) -> list[Suggestion]:
    """Given the unpaid invoices, the last day counted and the main currency, return the
    suggestions to chase those overdue, most overdue first."""
    overdue = [(i.due, i) for i in invoices if i.due is not None and i.due < as_of_day]
    ranked = sorted(overdue, key=lambda pair: (pair[0], pair[1].partner))
    suggestions = []
    for due, invoice in ranked[:MAX_OVERDUE]:
        days = (as_of_day - due).days
        name = invoice.refs[0] if invoice.refs else "an invoice"
        suggestions.append(
            Suggestion(
                rule="overdue_invoice",
                text=f"Chase {invoice.partner}: invoice {name} is {days} days overdue.",
                evidence=[
                    f"{money(invoice.total, invoice.currency)} due "
                    f"{due.isoformat()}, {days} days ago",
                    "no payment for it is recorded",
                ],
                links=[link(invoice.file)] if invoice.file else [],
            )
        )
    if len(ranked) > MAX_OVERDUE:
        rest = [invoice for _, invoice in ranked[MAX_OVERDUE:]]
        totals: dict[str, Decimal] = {}
        for invoice in rest:
            add(totals, invoice.currency, invoice.total)
        suggestions.append(
            Suggestion(
                rule="overdue_invoice",
                text=f"{len(rest)} more invoices are overdue and unpaid.",
                evidence=[f"{moneys(totals, currency)} in all, due {rest[-1].due} or earlier"],
                links=[link(invoice.file) for invoice in rest if invoice.file],
            )
        )
    return suggestions


def quiet_platforms(
    last_post: dict[str, tuple[str, str | None]], as_of: datetime, tz: tzinfo
) -> list[Suggestion]:
    """Given the last post per platform (its logged timestamp and note), return a suggestion
    for each platform used before but quiet for `QUIET_PLATFORM_DAYS` days up to `as_of`."""
    since = as_of - timedelta(days=QUIET_PLATFORM_DAYS)
    suggestions = []
    for platform in PLATFORMS:
        last = last_post.get(platform)
        when = time_of(last[0]) if last else None
        if last is None or when is None or when >= since:
            continue  # never used, or posted recently
        days = (as_of - when).days
        suggestions.append(
            Suggestion(
                rule="quiet_platform",
                text=f"Nothing was posted on {platform} in the last {QUIET_PLATFORM_DAYS} days.",
                evidence=[f"last post on {when.astimezone(tz).date()}, {days} days ago"],
                links=[link(last[1])] if last[1] else [],
            )
        )
    return suggestions


def repeated_failures(
    failed: dict[str, list[Item]], last_error: dict[str, str]
) -> list[Suggestion]:
    """Given the week's failed or unknown actions per action type and the last error of each,
    return a suggestion for each type that failed `REPEATED_FAILURES` times or more."""
    suggestions = []
    for kind, items in sorted(failed.items()):
        if len(items) >= REPEATED_FAILURES:
            evidence = [f"{len(items)} failed or unknown outcomes this week"]
            if kind in last_error:
                evidence.append(f"last error: {last_error[kind]}")
            suggestions.append(
                Suggestion(
                    rule="repeated_failures",
                    text=f"{kind} keeps failing: check its connector and credentials.",
                    evidence=evidence,
                    links=[item.link for item in items],
                )
            )
    return suggestions


def partners_waiting(waiting: dict[str, list[str]]) -> list[Suggestion]:
    """Given the links of the requests waiting for approval per partner, return a suggestion
    for each partner with `PARTNER_WAITING` or more."""
    return [
        Suggestion(
            rule="partner_waiting",
            text=f"{len(links)} tasks for {partner} are waiting for your approval.",
            evidence=[f"{len(links)} requests in Pending_Approval/ name {partner}"],
            links=links,
        )
        for partner, links in sorted(waiting.items())
        if len(links) >= PARTNER_WAITING
    ]
