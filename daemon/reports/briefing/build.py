"""A week's briefing put together: its figures from every source, then its note in
`Briefings/`, written atomically.

The scheduled job and `vaultd briefing` both call `write_briefing`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.core.ledger import Ledger
from daemon.core.schedule_config import zone
from daemon.core.timestamps import iso
from daemon.core.vault import BRIEFINGS, LOGS, Vault
from daemon.core.weeks import IsoWeek, briefing_path
from daemon.reports.briefing import history
from daemon.reports.briefing.entries import decimal
from daemon.reports.briefing.figures import Figures
from daemon.reports.briefing.log_scan import LogScan
from daemon.reports.briefing.odoo_figures import revenue_from_odoo, unconfigured
from daemon.reports.briefing.render import render_briefing
from daemon.reports.briefing.vault_figures import current_state, goals, plans
from daemon.reports.briefing.week import briefing_span, week_ends_at, window

if TYPE_CHECKING:
    from daemon.lifecycle.app import App


def briefing_figures(
    vault: Vault,
    ledger: Ledger,
    week: IsoWeek,
    *,
    tz: tzinfo,
    now: datetime,
    span: tuple[datetime, datetime] | None = None,
) -> Figures:
    """Return every figure of a week's briefing, from the log, the ledger and the vault:
    for the ISO week, or for `span` (week.briefing_span)."""
    counted = window(week, tz, now, span=span)
    goal, target_source = goals(vault)
    currency = str(goal.get("currency") or "USD")
    figures = Figures(
        week=str(week),
        start=week.monday().isoformat(),
        end=week.sunday().isoformat(),
        timezone=str(tz),
        as_of=iso(counted.as_of),
        counted=_span_label(counted.counted_from, counted.week_end, week, tz),
        currency=currency,
        target_source=target_source,
        monthly_revenue_target=decimal(goal.get("monthly_revenue_target")),
    )
    cache = ledger.path.parent / history.FOLDER  # the state directory
    LogScan(figures, counted, ledger, cache=cache).run(vault.folder(LOGS))
    current_state(figures, vault, ledger, now)
    plans(figures, vault, counted)
    return figures


def _span_label(start: datetime, end: datetime, week: IsoWeek, tz: tzinfo) -> str:
    """Say what a briefing counted, when that is not its ISO week from Monday to Monday."""
    monday = datetime.combine(week.monday(), datetime.min.time(), tz)
    if (start, end) == (monday, monday + timedelta(days=7)):
        return ""
    return f"{start:%a %Y-%m-%d %H:%M} to {end:%a %Y-%m-%d %H:%M}"


def write_briefing(
    app: App,
    week: IsoWeek,
    *,
    late: bool = False,
    partial: bool | None = None,
    now: datetime | None = None,
) -> Path:
    """Write (or rewrite) vaultd's briefing of a week into Briefings/; return its path.

    `partial` None marks it partial if the week is not over for its briefing at `now`.
    """
    now = now or datetime.now(UTC)
    tz = zone(app.config.schedule.timezone)
    if partial is None:
        partial = now < week_ends_at(app.config.schedule, week)
    span = briefing_span(app.config.schedule, week)
    figures = briefing_figures(app.vault, app.ledger, week, tz=tz, now=now, span=span)
    revenue_from_odoo(figures, app, week)
    figures.unconfigured = unconfigured(app)
    text = render_briefing(
        figures,
        late=late,
        partial=partial,
        generated_at=now,
        templates_dir=app.config.briefing.templates_dir,
    )
    folder = app.vault.folder(BRIEFINGS)
    folder.mkdir(parents=True, exist_ok=True)
    path = briefing_path(folder, week)
    app.vault.write(path, text)
    return path
