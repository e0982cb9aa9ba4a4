"""The figures a briefing takes from the connectors of a live daemon: revenue from Odoo, when
the daemon runs live against it, and the live connectors that cannot be used.

Odoo is asked only here, and only when the daemon runs live; in dry-run, or if Odoo cannot
be read, the revenue figures stay those of vaultd's own records (log_scan.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.connectors.unavailable import Unavailable
from daemon.core.errors import ConnectorError
from daemon.core.weeks import IsoWeek
from daemon.reports.briefing.figures import SOURCE, Figures, Item

if TYPE_CHECKING:
    from daemon.lifecycle.app import App


def revenue_from_odoo(figures: Figures, app: App, week: IsoWeek) -> None:
    """Take revenue from Odoo when the daemon runs live against it; else keep the ledger's."""
    connector = app.pipeline.connectors.get("odoo")
    odoo = getattr(connector, "connector", connector)  # behind a circuit breaker, or not
    revenue = getattr(odoo, "revenue", None)
    if app.pipeline.dry_run or revenue is None:
        return
    end = week.sunday()
    try:
        invoiced_week, paid_week = revenue(week.monday(), end)
        invoiced_month, paid_month = revenue(end.replace(day=1), end)
    except ConnectorError as error:
        figures.revenue_source = f"{SOURCE}; Odoo could not be read ({error})"
        return
    figures.invoiced_week, figures.paid_week = invoiced_week, paid_week
    figures.invoiced_month, figures.paid_month = invoiced_month, paid_month
    figures.revenue_source = "Odoo for revenue (posted invoices, payments); the rest " + SOURCE


def unconfigured(app: App) -> list[Item]:
    """Return the live connectors that could not be used, and why (a bottleneck if live)."""
    return [
        Item(name, connector.reason)
        for name, connector in app.pipeline.connectors.items()
        if isinstance(connector, Unavailable)
    ]
