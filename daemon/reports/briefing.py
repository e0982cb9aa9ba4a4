"""The Monday Morning CEO Briefing: one note per ISO week, in `Briefings/`.

Every figure is computed by `briefing_figures` from vaultd's own records: the audit log
(`Logs/`, streamed line by line, never loaded whole), the ledger (what is waiting or failed
now, circuit breakers) and the vault (`Business_Goals.md`, `Plans/`). `write_briefing`
renders them through `templates/ceo_briefing.md.j2` (or a template of the same name in
`config.briefing.templates_dir`) and writes the note atomically. The scheduled job and
`vaultd briefing` both call `write_briefing`; neither Odoo nor any other service is asked.

Weeks, months and days are counted in the configured time zone; the log's timestamps are UTC.
Log-based figures are "as of" the end of the week (or now, if the week is not over), so a
briefing written again later says the same about its week. Dry-run actions are counted
apart (`briefing_dry_run`), never as revenue, invoices, payments or posts; a briefing
written before its week is over (`briefing_week`) is marked partial.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from daemon.connectors.unavailable import Unavailable
from daemon.core import ledger as ledger_states
from daemon.core import notes
from daemon.core.audit import log_files, log_lines
from daemon.core.errors import ConnectorError, NoteError
from daemon.core.ledger import Ledger
from daemon.core.schedule_config import zone
from daemon.core.timestamps import iso, parse_time
from daemon.core.vault import BRIEFINGS, LOGS, PLANS, Vault
from daemon.core.weeks import IsoWeek, briefing_path
from daemon.lifecycle.approval import resource_dir
from daemon.reports.briefing_dry_run import (
    DryRunFigures,
    Item,
    dataview_dry_run,
    is_dry_run,
    line_is_dry_run,
)
from daemon.reports.briefing_week import week_ends_at

if TYPE_CHECKING:
    from daemon.lifecycle.app import App

TEMPLATE = "ceo_briefing.md.j2"
GOALS = "Business_Goals.md"
PLATFORMS = ("facebook", "instagram", "twitter")
# Rules of the bottlenecks and suggestions.
WAITING_TOO_LONG = timedelta(hours=24)
QUIET_PLATFORM_DAYS = 7
REPEATED_FAILURES = 3
PARTNER_WAITING = 2
# The most overdue invoices are suggested one by one; the rest in one line.
MAX_OVERDUE = 10
# At most this many [[links]] are listed under one figure; the rest are counted.
MAX_LINKS = 25
SOURCE = "vaultd's ledger and audit log (Odoo was not queried)"

# Cheap tests on raw log lines older than the briefing's window, so that a year of logs is
# read without parsing every line: only executed invoices, payments and posts matter there.
_EXECUTED = re.compile(r'"event":\s*"executed"')
_ACTION = re.compile(r'"action":\s*"([a-z_]+)"')
_TIMESTAMP = re.compile(r'"timestamp":\s*"([^"]+)"')
_FILE = re.compile(r'"file":\s*"((?:[^"\\]|\\.)*)"')
_PLATFORM_LIST = re.compile(r'"platforms":\s*\[([^\]]*)\]')
log = logging.getLogger(__name__)
_WORD = re.compile(r'"([a-z]+)"')
_DUE_DATE = re.compile(r'"due_date":\s*"')
_SETTLED = re.compile(r'"payment_state":\s*"(?:paid|in_payment)"')
_TASK_ID = re.compile(r'"task_id":\s*"([^"\\]+)"')
# References a payment may name its invoice by: its number, its Odoo id.
_REF = re.compile(r'"(?:invoice|number|invoice_id)":\s*("(?:[^"\\]|\\.)*"|\d+)')


# -- figures --------------------------------------------------------------------------------


@dataclass
class Suggestion:
    rule: str
    text: str
    evidence: list[str]
    links: list[str]


@dataclass
class Figures:
    week: str
    start: str  # Monday, local date
    end: str  # Sunday, local date
    timezone: str
    as_of: str
    currency: str
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
    dry_run: DryRunFigures = field(default_factory=DryRunFigures)


@dataclass
class _Invoice:
    task_id: str | None
    file: str | None
    partner: str
    refs: tuple[str, ...]
    total: Decimal
    currency: str
    due: date | None
    payment_state: str | None


@dataclass
class _Window:
    tz: tzinfo
    week_start: datetime  # Monday 00:00 local
    week_end: datetime  # the next Monday 00:00 local
    month_start: datetime
    scan_start: datetime  # the earliest time parsed in full
    as_of: datetime

    def in_week(self, when: datetime) -> bool:
        return self.week_start <= when < self.week_end


def briefing_figures(
    vault: Vault,
    ledger: Ledger,
    week: IsoWeek,
    *,
    tz: tzinfo,
    now: datetime,
) -> Figures:
    """Return every figure of a week's briefing, from the log, the ledger and the vault."""
    window = _window(week, tz, now)
    goals, target_source = _goals(vault)
    currency = str(goals.get("currency") or "USD")
    figures = Figures(
        week=str(week),
        start=week.monday().isoformat(),
        end=week.sunday().isoformat(),
        timezone=str(tz),
        as_of=iso(window.as_of),
        currency=currency,
        target_source=target_source,
        monthly_revenue_target=_decimal(goals.get("monthly_revenue_target")),
    )
    _LogScan(figures, window, ledger).run(vault.folder(LOGS))
    _current_state(figures, vault, ledger, now)
    _plans(figures, vault, window)
    return figures


class _LogScan:
    """One pass over the audit log, oldest first, filling in the log-based figures."""

    def __init__(self, figures: Figures, window: _Window, ledger: Ledger) -> None:
        self.f = figures
        self.ledger = ledger
        self.w = window
        # Unpaid invoices with a due date, by every reference a payment may use.
        self.invoices: dict[str, tuple[tuple[str, ...], str | _Invoice]] = {}
        self.paid_refs: set[str] = set()
        # The last post per platform: its timestamp as logged, and its note.
        self.last_post: dict[str, tuple[str, str | None]] = {}
        self.requested: dict[str, datetime] = {}
        self.approval_minutes: list[float] = []
        self.failed_types: dict[str, list[Item]] = defaultdict(list)
        self.last_error: dict[str, str] = {}
        days = [self.w.week_start.date() + timedelta(days=n) for n in range(7)]
        self.per_day: Counter[date] = Counter(dict.fromkeys(days, 0))

    def _current(self, item: Item, task_id: Any) -> Item:
        """Link a decision to where its note is now (it moved on after the decision)."""
        task = self.ledger.task(task_id) if isinstance(task_id, str) else None
        return Item(_link(task.file), item.label) if task and task.file else item

    def run(self, folder: Path) -> None:
        first_full = self.w.scan_start.astimezone(UTC).date() - timedelta(days=1)
        last = self.w.as_of.astimezone(UTC).date() + timedelta(days=1)
        for day, path in log_files(folder):
            if day > last:
                continue
            full = day >= first_full
            for line in log_lines(path):
                self.f.log_lines_read += 1
                if full:
                    self._full(line)
                elif _EXECUTED.search(line):
                    self._history(line)
        self._finish()

    # Lines within the window: parsed, every event counts.
    def _full(self, line: str) -> None:
        try:
            entry = json.loads(line)
            when = parse_time(str(entry["timestamp"])).astimezone(self.w.tz)
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(entry, dict) or when >= self.w.as_of:
            return
        event = entry.get("event")
        if event == "executed":
            self._track_executed(entry)
        if when < self.w.scan_start:
            return
        task_id = entry.get("task_id")
        if event == "approval_requested" and isinstance(task_id, str):
            self.requested[task_id] = when
        if event == "executed" and self.w.month_start <= when and not is_dry_run(entry):
            self._money_month(entry)
        if self.w.in_week(when):
            self._week_event(str(event), entry, when)

    # Lines before the window: only executed invoices, payments and posts, read cheaply.
    # Invoices are kept as their raw line until the end: most are paid and never parsed.
    def _history(self, line: str) -> None:
        if '"executed"' not in line or not _EXECUTED.search(line):
            return
        action = _ACTION.search(line)
        if action is None:
            return
        kind = action.group(1)
        if kind not in ("social_post", "odoo_invoice", "odoo_payment") or line_is_dry_run(line):
            return
        if kind == "social_post":
            stamp, listed = _TIMESTAMP.search(line), _PLATFORM_LIST.search(line)
            if stamp is None or listed is None:
                return
            found = _FILE.search(line)
            file = json.loads(f'"{found.group(1)}"') if found else None
            for platform in _WORD.findall(listed.group(1)):
                self.last_post[platform] = (stamp.group(1), file)
        elif kind == "odoo_invoice":
            if not _DUE_DATE.search(line) or _SETTLED.search(line):
                return
            task = _TASK_ID.search(line)
            refs = [_scalar(m) for m in _REF.findall(line)] + ([task.group(1)] if task else [])
            self._open_invoice(tuple(dict.fromkeys(refs)), line)
        elif kind == "odoo_payment":
            self._pay([_scalar(m) for m in _REF.findall(line)])

    def _open_invoice(self, refs: tuple[str, ...], source: str | _Invoice) -> None:
        if not any(ref in self.paid_refs for ref in refs):
            for ref in refs:
                self.invoices[ref] = (refs, source)

    def _pay(self, refs: list[str]) -> None:
        for ref in refs:
            self.paid_refs.add(ref)
            paid = self.invoices.pop(ref, None)
            if paid is not None:
                for other in paid[0]:
                    self.invoices.pop(other, None)

    def _track_executed(self, entry: dict[str, Any]) -> None:
        if is_dry_run(entry):
            return  # nothing was posted, invoiced or paid
        action = entry.get("action")
        params = _dict(entry.get("parameters"))
        result = _dict(entry.get("result"))
        file = entry.get("file") if isinstance(entry.get("file"), str) else None
        if action == "social_post":
            for platform in _posted(params, result):
                self.last_post[platform] = (str(entry["timestamp"]), file)
        elif action == "odoo_invoice":
            invoice = _invoice(entry, params, result, file)
            if invoice.due is not None and invoice.payment_state not in ("paid", "in_payment"):
                self._open_invoice(invoice.refs, invoice)
        elif action == "odoo_payment":
            self._pay(_payment_refs(params, result))

    def _money_month(self, entry: dict[str, Any]) -> None:
        params = _dict(entry.get("parameters"))
        result = _dict(entry.get("result"))
        if entry.get("action") == "odoo_invoice":
            invoice = _invoice(entry, params, result, None)
            _add(self.f.invoiced_month, invoice.currency, invoice.total)
        elif entry.get("action") == "odoo_payment":
            amount, currency = _payment_amount(params, result, self.f.currency)
            _add(self.f.paid_month, currency, amount)

    def _week_event(self, event: str, entry: dict[str, Any], when: datetime) -> None:
        f = self.f
        action = entry.get("action")
        params = _dict(entry.get("parameters"))
        result = _dict(entry.get("result"))
        item = _item(entry)
        task_id = entry.get("task_id")
        dry = event == "executed" and is_dry_run(entry)
        if event in ("executed", "failed", "outcome_unknown") and not dry:
            self.per_day[when.date()] += 1
        if event == "executed":
            # A dry-run action goes into figures of its own, never into the live ones.
            into: Figures | DryRunFigures = f.dry_run if dry else f
            into.tasks_completed += 1
            into.completed.append(item)
            if action == "social_post":
                for platform in _posted(params, result):
                    into.posts[platform] = into.posts.get(platform, 0) + 1
                    into.post_links.setdefault(platform, []).append(item)
            elif action == "odoo_invoice":
                invoice = _invoice(entry, params, result, None)
                into.invoices_created += 1
                _add(into.invoiced_week, invoice.currency, invoice.total)
                into.invoices.append(
                    Item(item.link, f"{invoice.partner}, {_money(invoice.total, invoice.currency)}")
                )
            elif action == "odoo_payment":
                amount, currency = _payment_amount(params, result, f.currency)
                into.payments_registered += 1
                _add(into.paid_week, currency, amount)
                into.payments.append(
                    Item(item.link, f"invoice {params.get('invoice')}, {_money(amount, currency)}")
                )
        elif event == "approved":
            f.approvals_granted += 1
            f.approval_links.setdefault("granted", []).append(self._current(item, task_id))
            requested = self.requested.get(task_id) if isinstance(task_id, str) else None
            if requested is not None:
                self.approval_minutes.append((when - requested).total_seconds() / 60)
        elif event == "auto_approved":
            f.auto_approved += 1
        elif event == "rejected":
            f.approvals_rejected += 1
            f.approval_links.setdefault("rejected", []).append(self._current(item, task_id))
        elif event == "expired":
            f.approvals_expired += 1
            f.approval_links.setdefault("expired", []).append(self._current(item, task_id))
        elif event in ("failed", "outcome_unknown"):
            if event == "failed":
                f.failures += 1
                f.failure_links.append(item)
            else:
                f.unknown_outcomes += 1
                f.unknown_links.append(item)
            kind = str(action or "unknown action")
            self.failed_types[kind].append(item)
            if entry.get("error"):
                self.last_error[kind] = " ".join(str(entry["error"]).split())

    def _finish(self) -> None:
        f = self.f
        if self.approval_minutes:
            f.median_approval_minutes = round(statistics.median(self.approval_minutes), 1)
        f.actions_per_day = {day.isoformat(): count for day, count in sorted(self.per_day.items())}
        # The last day the figures cover: Sunday once the week is over.
        as_of_day = (self.w.as_of - timedelta(microseconds=1)).date()
        overdue: dict[int, tuple[date, _Invoice]] = {}
        for _, source in self.invoices.values():
            invoice = source if isinstance(source, _Invoice) else _invoice_of_line(source)
            if invoice is not None and invoice.due is not None and invoice.due < as_of_day:
                overdue[id(source)] = (invoice.due, invoice)
        ranked = sorted(overdue.values(), key=lambda pair: (pair[0], pair[1].partner))
        for due, invoice in ranked[:MAX_OVERDUE]:
            days = (as_of_day - due).days
            name = invoice.refs[0] if invoice.refs else "an invoice"
            f.suggestions.append(
                Suggestion(
                    rule="overdue_invoice",
                    text=f"Chase {invoice.partner}: invoice {name} is {days} days overdue.",
                    evidence=[
                        f"{_money(invoice.total, invoice.currency)} due "
                        f"{due.isoformat()}, {days} days ago",
                        "no payment for it is recorded",
                    ],
                    links=[_link(invoice.file)] if invoice.file else [],
                )
            )
        if len(ranked) > MAX_OVERDUE:
            rest = [invoice for _, invoice in ranked[MAX_OVERDUE:]]
            totals: dict[str, Decimal] = {}
            for invoice in rest:
                _add(totals, invoice.currency, invoice.total)
            f.suggestions.append(
                Suggestion(
                    rule="overdue_invoice",
                    text=f"{len(rest)} more invoices are overdue and unpaid.",
                    evidence=[
                        f"{_moneys(totals, f.currency)} in all, due {rest[-1].due} or earlier"
                    ],
                    links=[_link(invoice.file) for invoice in rest if invoice.file],
                )
            )
        since = self.w.as_of - timedelta(days=QUIET_PLATFORM_DAYS)
        for platform in PLATFORMS:
            last = self.last_post.get(platform)
            when = _time(last[0]) if last else None
            if last is None or when is None or when >= since:
                continue  # never used, or posted recently
            days = (self.w.as_of - when).days
            f.suggestions.append(
                Suggestion(
                    rule="quiet_platform",
                    text=f"Nothing was posted on {platform} in the last "
                    f"{QUIET_PLATFORM_DAYS} days.",
                    evidence=[f"last post on {when.astimezone(self.w.tz).date()}, {days} days ago"],
                    links=[_link(last[1])] if last[1] else [],
                )
            )
        for kind, items in sorted(self.failed_types.items()):
            if len(items) >= REPEATED_FAILURES:
                evidence = [f"{len(items)} failed or unknown outcomes this week"]
                if kind in self.last_error:
                    evidence.append(f"last error: {self.last_error[kind]}")
                f.suggestions.append(
                    Suggestion(
                        rule="repeated_failures",
                        text=f"{kind} keeps failing: check its connector and credentials.",
                        evidence=evidence,
                        links=[item.link for item in items],
                    )
                )


def _current_state(figures: Figures, vault: Vault, ledger: Ledger, now: datetime) -> None:
    """Fill in what is waiting, failed or broken now, from the ledger and the notes."""
    by_partner: dict[str, list[str]] = defaultdict(list)
    for task in ledger.tasks(ledger_states.PENDING):
        try:
            waited = now - parse_time(task.created_at)
        except ValueError:
            continue
        link = _link(task.file)
        partner = _partner_of(vault.root / task.file)
        if partner:
            by_partner[partner].append(link)
        if waited > WAITING_TOO_LONG:
            label = f"{task.type or 'task'}, waiting {_duration(waited)}"
            if task.amount:
                label += f", {_money(Decimal(task.amount), task.currency or '')}"
            figures.waiting_approvals.append(Item(link, label))
    for task in ledger.tasks(ledger_states.FAILED, ledger_states.UNKNOWN):
        state = "outcome unknown" if task.state == ledger_states.UNKNOWN else "failed"
        error = " ".join((task.error or "").split())
        figures.failed_items.append(Item(_link(task.file), f"{state}: {error}".rstrip(": ")))
    for breaker in ledger.breakers():
        if breaker["state"] != "closed":
            figures.open_breakers.append(
                Item(
                    str(breaker["name"]),
                    f"{breaker['state']} since {breaker['changed_at']}, "
                    f"{breaker['failures']} failures",
                )
            )
    for partner, links in sorted(by_partner.items()):
        if len(links) >= PARTNER_WAITING:
            figures.suggestions.append(
                Suggestion(
                    rule="partner_waiting",
                    text=f"{len(links)} tasks for {partner} are waiting for your approval.",
                    evidence=[f"{len(links)} requests in Pending_Approval/ name {partner}"],
                    links=links,
                )
            )


def _plans(figures: Figures, vault: Vault, window: _Window) -> None:
    folder = vault.folder(PLANS)
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.md")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        meta = _meta(path)
        status = str(meta.get("status") or "").strip().lower().replace(" ", "_").replace("-", "_")
        link = _link(vault.relative(path))
        title = str(meta.get("title") or path.stem)
        if status in ("in_progress", "active", "doing", "started"):
            figures.plans_in_progress.append(Item(link, title))
        elif status in ("completed", "done", "complete", "finished"):
            finished = _completed_on(meta, path, window.tz)
            if window.week_start.date() <= finished < window.week_end.date():
                figures.plans_completed.append(Item(link, title))


# -- writing --------------------------------------------------------------------------------


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
    figures = briefing_figures(app.vault, app.ledger, week, tz=tz, now=now)
    _revenue_from_odoo(figures, app, week)
    figures.unconfigured = _unconfigured(app)
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


def _revenue_from_odoo(figures: Figures, app: App, week: IsoWeek) -> None:
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


def _unconfigured(app: App) -> list[Item]:
    """Return the live connectors that could not be used, and why (a bottleneck if live)."""
    return [
        Item(name, connector.reason)
        for name, connector in app.pipeline.connectors.items()
        if isinstance(connector, Unavailable)
    ]


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
        "week_label": f"{figures.start} to {figures.end}",
        "late": late,
        "partial": partial,
        "generated_at": iso(generated_at),
        "frontmatter": yaml.safe_dump(frontmatter, sort_keys=False, allow_unicode=True),
        "money": {
            "invoiced_week": _moneys(figures.invoiced_week, figures.currency),
            "paid_week": _moneys(figures.paid_week, figures.currency),
            "invoiced_month": _moneys(figures.invoiced_month, figures.currency),
            "paid_month": _moneys(figures.paid_month, figures.currency),
            "dry_run_invoiced": _moneys(dry.invoiced_week, figures.currency),
            "dry_run_paid": _moneys(dry.paid_week, figures.currency),
            "target": _money(figures.monthly_revenue_target, figures.currency)
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


def last_completed_week(now: datetime, tz: tzinfo) -> IsoWeek:
    """Return the most recent ISO week that has ended, in a time zone."""
    return IsoWeek.of(now.astimezone(tz).date()).previous()


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


# -- helpers ----------------------------------------------------------------------------------


def _window(week: IsoWeek, tz: tzinfo, now: datetime) -> _Window:
    def local(day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=tz)

    week_start = local(week.monday())
    week_end = local(week.briefing_date())
    month_start = local(week.sunday().replace(day=1))
    as_of = min(now.astimezone(tz), week_end)
    # The week before is read in full too: approvals requested then and decided this week.
    scan_start = min(month_start, week_start - timedelta(days=7))
    return _Window(tz, week_start, week_end, month_start, scan_start, as_of)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _add(totals: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    totals[currency] = totals.get(currency, Decimal(0)) + amount


def _posted(params: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Return the platforms an executed post went to."""
    listed = params.get("platforms")
    platforms = [p for p in listed if isinstance(p, str)] if isinstance(listed, list) else []
    answered = [p for p in platforms if p in result]
    return answered or platforms


def _invoice(
    entry: dict[str, Any], params: dict[str, Any], result: dict[str, Any], file: str | None
) -> _Invoice:
    odoo = _dict(result.get("odoo"))
    total = _decimal(odoo.get("amount_total"))
    if total is None:
        total = Decimal(0)
        for raw in params.get("lines") or []:
            line = _dict(raw)
            quantity = _decimal(line.get("quantity")) or Decimal(0)
            total += quantity * (_decimal(line.get("price_unit")) or Decimal(0))
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
    return _Invoice(
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


def _scalar(raw: str) -> str:
    """Return a JSON string or number, as matched in a raw line, as text."""
    return str(json.loads(raw))


def _time(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


def _invoice_of_line(line: str) -> _Invoice | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(entry, dict):
        return None
    file = entry.get("file") if isinstance(entry.get("file"), str) else None
    return _invoice(entry, _dict(entry.get("parameters")), _dict(entry.get("result")), file)


def _payment_refs(params: dict[str, Any], result: dict[str, Any]) -> list[str]:
    refs = [str(params["invoice"])] if params.get("invoice") is not None else []
    for raw in _dict(result.get("odoo")).get("invoices") or []:
        invoice = _dict(raw)
        refs += [str(invoice[key]) for key in ("number", "invoice_id") if invoice.get(key)]
    return refs


def _payment_amount(
    params: dict[str, Any], result: dict[str, Any], currency: str
) -> tuple[Decimal, str]:
    amount = _decimal(params.get("amount"))
    if amount is None:
        amount = _decimal(_dict(result.get("odoo")).get("amount")) or Decimal(0)
    return amount, str(params.get("currency") or currency)


def _item(entry: dict[str, Any]) -> Item:
    file = entry.get("file")
    label = str(entry.get("action") or entry.get("event") or "")
    return Item(_link(file) if isinstance(file, str) else str(entry.get("task_id") or "?"), label)


def _link(relative: str | None) -> str:
    """Return the Obsidian link target of a vault file: its path without ".md"."""
    text = relative or ""
    return text[:-3] if text.lower().endswith(".md") else text


def _meta(path: Path) -> dict[str, Any]:
    try:
        return notes.parse(path.read_text(encoding="utf-8", errors="replace")).meta
    except (OSError, NoteError):
        return {}


def _partner_of(path: Path) -> str | None:
    meta = _meta(path)
    partner = meta.get("partner")
    return str(partner) if partner else None


def _completed_on(meta: dict[str, Any], path: Path, tz: tzinfo) -> date:
    for key in ("completed", "completed_at", "completed_on", "done"):
        value = meta.get(key)
        if isinstance(value, datetime):
            return value.astimezone(tz).date() if value.tzinfo else value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return parse_time(value).astimezone(tz).date()
            except ValueError:
                pass
    return datetime.fromtimestamp(path.stat().st_mtime, tz).date()


def _goals(vault: Vault) -> tuple[dict[str, Any], str]:
    path = vault.root / GOALS
    if not path.exists():
        return {}, f"no {GOALS} in the vault"
    meta = _meta(path)
    if "monthly_revenue_target" not in meta:
        return meta, f"{GOALS} has no monthly_revenue_target in its frontmatter"
    return meta, f"monthly_revenue_target in [[{GOALS[:-3]}]]"


def _money(amount: Decimal | None, currency: str) -> str:
    if amount is None:
        return "—"
    return f"{amount:,.2f} {currency}".strip()


def _moneys(totals: dict[str, Decimal], currency: str) -> str:
    """Return totals as "1,250.00 USD", other currencies after the main one."""
    parts = [_money(totals.get(currency, Decimal(0)), currency)]
    parts += [
        _money(amount, other) for other, amount in sorted(totals.items()) if other != currency
    ]
    return " + ".join(parts)


def _percent(totals: dict[str, Decimal], figures: Figures) -> str | None:
    target = figures.monthly_revenue_target
    if not target:
        return None
    return f"{totals.get(figures.currency, Decimal(0)) / target * 100:.0f}%"


def _minutes(minutes: float | None) -> str | None:
    if minutes is None:
        return None
    return _duration(timedelta(minutes=minutes))


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


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
