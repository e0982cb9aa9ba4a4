"""The briefing's note: its figures rendered through `templates/ceo_briefing.md.j2` (or a
template of the same name in `config.briefing.templates_dir`), with the flat frontmatter
Dataview queries read.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import yaml

from daemon.core.timestamps import iso
from daemon.lifecycle.approval import resource_dir
from daemon.reports.briefing.dry_run import dataview_dry_run
from daemon.reports.briefing.figures import PLATFORMS, Figures
from daemon.reports.briefing.formats import duration, money, moneys

TEMPLATE = "ceo_briefing.md.j2"
# At most this many [[links]] are listed under one figure; the rest are counted.
MAX_LINKS = 25


def render_briefing(
    figures: Figures,
    *,
    late: bool,
    generated_at: datetime,
    templates_dir: Path | None = None,
    partial: bool = False,
) -> str:
    """Return the briefing's Markdown. Raise jinja2.UndefinedError if a value is missing."""
    values = asdict(figures)
    frontmatter = {
        "week": figures.week,
        "generated_at": iso(generated_at),
        "late": late,
        "partial": partial,
        **dataview_figures(figures),
    }
    dry = figures.dry_run
    text_of = {
        "week_label": f"{figures.start} to {figures.end}"
        + (f", counted from {figures.counted}" if figures.counted else ""),
        "late": late,
        "partial": partial,
        "generated_at": iso(generated_at),
        "frontmatter": yaml.safe_dump(frontmatter, sort_keys=False, allow_unicode=True),
        "money": {
            "invoiced_week": moneys(figures.invoiced_week, figures.currency),
            "paid_week": moneys(figures.paid_week, figures.currency),
            "invoiced_month": moneys(figures.invoiced_month, figures.currency),
            "paid_month": moneys(figures.paid_month, figures.currency),
            "dry_run_invoiced": moneys(dry.invoiced_week, figures.currency),
            "dry_run_paid": moneys(dry.paid_week, figures.currency),
            "target": money(figures.monthly_revenue_target, figures.currency)
            if figures.monthly_revenue_target is not None
            else None,
        },
        "percent": {
            "invoiced": _percent(figures.invoiced_month, figures),
            "paid": _percent(figures.paid_month, figures),
        },
        "median_approval": _minutes(figures.median_approval_minutes),
        "posts_total": sum(figures.posts.values()),
        "dry_run_posts_total": sum(dry.posts.values()),
        "max_links": MAX_LINKS,
        "chart": _chart(figures.actions_per_day),
    }
    return _environment(templates_dir).get_template(TEMPLATE).render(**values, **text_of)


def dataview_figures(figures: Figures) -> dict[str, Any]:
    """Return the figures a briefing's frontmatter carries, flat, for Dataview queries."""
    currency = figures.currency
    target = figures.monthly_revenue_target
    return {
        "currency": currency,
        "tasks_completed": figures.tasks_completed,
        **{f"posts_{p}": figures.posts.get(p, 0) for p in PLATFORMS},
        "invoices_created": figures.invoices_created,
        "invoiced_total": float(figures.invoiced_week.get(currency, 0)),
        "payments_registered": figures.payments_registered,
        "paid_total": float(figures.paid_week.get(currency, 0)),
        "code_changes_landed": figures.code_changes,
        "commits_landed": figures.commits_landed,
        "approvals_granted": figures.approvals_granted,
        "approvals_rejected": figures.approvals_rejected,
        "approvals_expired": figures.approvals_expired,
        "median_approval_minutes": figures.median_approval_minutes,
        "failures": figures.failures,
        "unknown_outcomes": figures.unknown_outcomes,
        "invoiced_month_to_date": float(figures.invoiced_month.get(currency, 0)),
        "paid_month_to_date": float(figures.paid_month.get(currency, 0)),
        "monthly_revenue_target": float(target) if target is not None else None,
        "revenue_source": "odoo" if figures.revenue_source.startswith("Odoo") else "ledger",
        "waiting_approvals": len(figures.waiting_approvals),
        "open_breakers": len(figures.open_breakers),
        "suggestions": len(figures.suggestions),
        **dataview_dry_run(figures.dry_run, currency),
    }


def _environment(templates_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(Path(templates_dir).expanduser()))
    loaders.append(jinja2.FileSystemLoader(resource_dir("templates")))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - Markdown, not HTML
    )


def _percent(totals: dict[str, Decimal], figures: Figures) -> str | None:
    target = figures.monthly_revenue_target
    if not target:
        return None
    return f"{totals.get(figures.currency, Decimal(0)) / target * 100:.0f}%"


def _minutes(minutes: float | None) -> str | None:
    if minutes is None:
        return None
    return duration(timedelta(minutes=minutes))


def _chart(per_day: dict[str, int]) -> str:
    """Return a mermaid xychart of actions per day (Mon … Sun)."""
    labels = [date.fromisoformat(day).strftime("%a %d") for day in per_day]
    counts = list(per_day.values())
    top = max([*counts, 1])
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta",
            '    title "Actions per day"',
            "    x-axis [" + ", ".join(f'"{label}"' for label in labels) + "]",
            f'    y-axis "Actions" 0 --> {top}',
            "    bar [" + ", ".join(str(count) for count in counts) + "]",
            "```",
        ]
    )
