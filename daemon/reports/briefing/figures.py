"""The figures of one week's briefing, as the template reads them.

`ActionFigures` is what a week's executed actions add up to: tasks completed, posts, invoices,
payments and code changes landed, with the notes behind each number. `Figures` holds them
for the live actions, beside everything else the briefing reports; its `dry_run` holds the
same figures for the dry-run actions, kept apart (dry_run.py says which those are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

PLATFORMS = ("facebook", "instagram", "twitter")
SOURCE = "vaultd's ledger and audit log (Odoo was not queried)"


@dataclass
class Item:
    """One note behind a number: a link target (vault path without .md) and what it is."""

    link: str
    label: str = ""


@dataclass
class Suggestion:
    rule: str
    text: str
    evidence: list[str]
    links: list[str]


@dataclass
class ActionFigures:
    """A week's executed actions: how many, how much, and the notes behind them."""

    tasks_completed: int = 0
    completed: list[Item] = field(default_factory=list)
    posts: dict[str, int] = field(default_factory=dict)
    post_links: dict[str, list[Item]] = field(default_factory=dict)
    invoices_created: int = 0
    invoiced_week: dict[str, Decimal] = field(default_factory=dict)
    invoices: list[Item] = field(default_factory=list)
    payments_registered: int = 0
    paid_week: dict[str, Decimal] = field(default_factory=dict)
    payments: list[Item] = field(default_factory=list)
    code_changes: int = 0  # code tasks landed on their target branch
    commits_landed: int = 0
    code_links: list[Item] = field(default_factory=list)


@dataclass(kw_only=True)
class Figures(ActionFigures):
    """Every figure of a week's briefing; the inherited ones count live actions only."""

    week: str
    start: str  # Monday, local date
    end: str  # Sunday, local date
    timezone: str
    as_of: str
    currency: str
    # The span counted, local ("Sun 2026-11-15 22:00"), when it is not Monday to Monday.
    counted: str = ""
    approvals_granted: int = 0
    auto_approved: int = 0
    approvals_rejected: int = 0
    approvals_expired: int = 0
    approval_links: dict[str, list[Item]] = field(default_factory=dict)
    median_approval_minutes: float | None = None
    failures: int = 0
    unknown_outcomes: int = 0
    failure_links: list[Item] = field(default_factory=list)
    unknown_links: list[Item] = field(default_factory=list)
    invoiced_month: dict[str, Decimal] = field(default_factory=dict)
    paid_month: dict[str, Decimal] = field(default_factory=dict)
    monthly_revenue_target: Decimal | None = None
    target_source: str = ""
    revenue_source: str = SOURCE
    waiting_approvals: list[Item] = field(default_factory=list)
    failed_items: list[Item] = field(default_factory=list)
    open_breakers: list[Item] = field(default_factory=list)
    # Live connectors that cannot be used (missing settings); empty in dry-run.
    unconfigured: list[Item] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    plans_in_progress: list[Item] = field(default_factory=list)
    plans_completed: list[Item] = field(default_factory=list)
    actions_per_day: dict[str, int] = field(default_factory=dict)
    log_lines_read: int = 0
    # The same figures for the week's dry-run actions: nothing was sent for them.
    dry_run: ActionFigures = field(default_factory=ActionFigures)
