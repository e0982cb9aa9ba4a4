"""The Monday Morning CEO Briefing: one note per ISO week, in `Briefings/`.

Every figure is computed by `briefing_figures` from vaultd's own records: the audit log
(`Logs/`, streamed line by line, never loaded whole), the ledger (what is waiting or failed
now, circuit breakers) and the vault (`Business_Goals.md`, `Plans/`). `write_briefing`
renders them through `templates/ceo_briefing.md.j2` (or a template of the same name in
`config.briefing.templates_dir`) and writes the note atomically. The scheduled job and
`vaultd briefing` both call `write_briefing`; Odoo is asked only for revenue, and only when
the daemon runs live against it.

Weeks, months and days are counted in the configured time zone; the log's timestamps are UTC.
Log-based figures are "as of" the end of the week (or now, if the week is not over), so a
briefing written again later says the same about its week. Dry-run actions are counted
apart (`dry_run`), never as revenue, invoices, payments or posts; a briefing written before
its week is over (`week`) is marked partial.

One module per part: `figures` (what a briefing reports), `log_scan` (from the audit log,
reading each entry through `entries`), `vault_figures` (from the vault and the ledger now),
`odoo_figures` (from the live connectors), `suggestions` (the rules and their evidence),
`render` (the template and the frontmatter), `week` (which week, and when it is over) and
`build` (all of it put together). The names here are the ones other modules use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.core.schedule_config import zone
    from daemon.reports.briefing.build import briefing_figures, write_briefing
    from daemon.reports.briefing.figures import ActionFigures, Figures, Item, Suggestion
    from daemon.reports.briefing.render import dataview_figures, render_briefing
    from daemon.reports.briefing.week import last_completed_week, week_ends_at, week_of_briefing

# Where each name lives. They are imported on first use (PEP 562): `vaultd run` needs only
# `week` at start-up, and the rest (jinja2, the figures) cost it a tenth of a second.
_HOME = {
    "zone": "daemon.core.schedule_config",
    "briefing_figures": "daemon.reports.briefing.build",
    "write_briefing": "daemon.reports.briefing.build",
    "ActionFigures": "daemon.reports.briefing.figures",
    "Figures": "daemon.reports.briefing.figures",
    "Item": "daemon.reports.briefing.figures",
    "Suggestion": "daemon.reports.briefing.figures",
    "dataview_figures": "daemon.reports.briefing.render",
    "render_briefing": "daemon.reports.briefing.render",
    "last_completed_week": "daemon.reports.briefing.week",
    "week_ends_at": "daemon.reports.briefing.week",
    "week_of_briefing": "daemon.reports.briefing.week",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


__all__ = [
    "ActionFigures",
    "Figures",
    "Item",
    "Suggestion",
    "briefing_figures",
    "dataview_figures",
    "last_completed_week",
    "render_briefing",
    "week_ends_at",
    "week_of_briefing",
    "write_briefing",
    "zone",
]
