"""What the CEO briefing counts as dry-run, and the figures it keeps apart for it.

A dry-run action was executed by vaultd with connectors that record what they would send
and send nothing. Its audit `executed` entry says so in one of two ways: a top-level
`result.dry_run: true`, or a per-target answer such as `result.odoo.dry_run: true` or
`result.facebook.dry_run: true`. `result.status` is not read: its values are vaultd's to
change. The briefing counts dry-run actions apart, in `Figures.dry_run`, never as revenue,
invoices created, payments registered or posts per platform.
"""

from __future__ import annotations

import json
import re
from typing import Any

from daemon.reports.briefing.figures import ActionFigures

# A raw log line that may be dry-run: only such lines are parsed to find out.
_DRY_RUN = re.compile(r'"dry_run":\s*true')


def is_dry_run(entry: dict[str, Any]) -> bool:
    """Given an audit log entry, return whether its result says nothing was sent."""
    result = entry.get("result")
    if not isinstance(result, dict):
        return False
    if result.get("dry_run") is True:
        return True
    return any(
        isinstance(answer, dict) and answer.get("dry_run") is True for answer in result.values()
    )


def line_is_dry_run(line: str) -> bool:
    """Given a raw audit log line, return whether it is a dry-run entry.

    The line is parsed only if it names `dry_run: true` at all: most lines are not.
    """
    if not _DRY_RUN.search(line):
        return False
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(entry, dict) and is_dry_run(entry)


def dataview_dry_run(dry: ActionFigures, currency: str) -> dict[str, Any]:
    """Given a week's dry-run figures, return the flat frontmatter keys that carry them."""
    return {
        "dry_run_tasks": dry.tasks_completed,
        "dry_run_posts": sum(dry.posts.values()),
        "dry_run_invoices": dry.invoices_created,
        "dry_run_invoiced_total": float(dry.invoiced_week.get(currency, 0)),
        "dry_run_payments": dry.payments_registered,
        "dry_run_paid_total": float(dry.paid_week.get(currency, 0)),
    }
