"""The figures a briefing reads from the audit log (`Logs/`): one pass, oldest first,
streamed line by line and never loaded whole.

Lines within the window (week.Window: the month, and the week before the briefing's) are
parsed and every event counts. Older days count through their summaries (history.py, cached
in the state directory): they tell which invoices are still unpaid and when each platform was
last posted on. Dry-run actions count in `Figures.dry_run`
only (dry_run.py).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.core.audit import log_files, log_lines
from daemon.core.ledger import Ledger
from daemon.core.timestamps import parse_time
from daemon.reports.briefing.dry_run import is_dry_run
from daemon.reports.briefing.entries import (
    Invoice,
    add,
    as_dict,
    invoice_of_line,
    item_of,
    payment_amount,
    payment_refs,
    posted,
    read_invoice,
)
from daemon.reports.briefing.figures import ActionFigures, Figures, Item
from daemon.reports.briefing.formats import link, money
from daemon.reports.briefing.history import DaySummary, summary_of
from daemon.reports.briefing.suggestions import overdue_invoices, quiet_platforms, repeated_failures
from daemon.reports.briefing.week import Window


class LogScan:
    """One pass over the audit log, oldest first, filling in the log-based figures."""

    def __init__(
        self, figures: Figures, window: Window, ledger: Ledger, *, cache: Path | None = None
    ) -> None:
        self.f = figures
        self.ledger = ledger
        self.w = window
        self.cache = cache  # where the older days' summaries are kept (history.py)
        # Unpaid invoices with a due date, by every reference a payment may use.
        self.invoices: dict[str, tuple[tuple[str, ...], str | Invoice]] = {}
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
        return Item(link(task.file), item.label) if task and task.file else item

    def run(self, folder: Path) -> None:
        first_full = self.w.scan_start.astimezone(UTC).date() - timedelta(days=1)
        last = self.w.as_of.astimezone(UTC).date() + timedelta(days=1)
        for day, path in log_files(folder):
            if day > last:
                continue
            if day < first_full:
                self.merge(summary_of(path, self.cache))
                continue
            for line in log_lines(path):
                self.f.log_lines_read += 1
                self._full(line)
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

    # Days before the window: their summaries (history.py), replayed oldest first.
    def merge(self, day: DaySummary) -> None:
        self.f.log_lines_read += day.lines
        self._pay(day.paid)  # what the day paid of the invoices opened before it
        for refs, line in day.opened:
            self._open_invoice(tuple(refs), line)
        for platform, (stamp, file) in day.last_post.items():
            self.last_post[platform] = (str(stamp), file)

    def _open_invoice(self, refs: tuple[str, ...], source: str | Invoice) -> None:
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
        params = as_dict(entry.get("parameters"))
        result = as_dict(entry.get("result"))
        file = entry.get("file") if isinstance(entry.get("file"), str) else None
        if action == "social_post":
            for platform in posted(params, result):
                self.last_post[platform] = (str(entry["timestamp"]), file)
        elif action == "odoo_invoice":
            invoice = read_invoice(entry, params, result, file)
            if invoice.due is not None and invoice.payment_state not in ("paid", "in_payment"):
                self._open_invoice(invoice.refs, invoice)
        elif action == "odoo_payment":
            self._pay(payment_refs(params, result))

    def _money_month(self, entry: dict[str, Any]) -> None:
        params = as_dict(entry.get("parameters"))
        result = as_dict(entry.get("result"))
        if entry.get("action") == "odoo_invoice":
            invoice = read_invoice(entry, params, result, None)
            add(self.f.invoiced_month, invoice.currency, invoice.total)
        elif entry.get("action") == "odoo_payment":
            amount, currency = payment_amount(params, result, self.f.currency)
            add(self.f.paid_month, currency, amount)

    def _week_event(self, event: str, entry: dict[str, Any], when: datetime) -> None:
        f = self.f
        action = entry.get("action")
        params = as_dict(entry.get("parameters"))
        result = as_dict(entry.get("result"))
        item = item_of(entry)
        task_id = entry.get("task_id")
        dry = event == "executed" and is_dry_run(entry)
        if event in ("executed", "failed", "outcome_unknown") and not dry:
            # After the week before's briefing, on its Sunday night: counted on Monday.
            self.per_day[max(when.date(), self.w.week_start.date())] += 1
        if event == "executed":
            # A dry-run action goes into figures of its own, never into the live ones.
            into: ActionFigures = f.dry_run if dry else f
            into.tasks_completed += 1
            into.completed.append(item)
            if action == "social_post":
                for platform in posted(params, result):
                    into.posts[platform] = into.posts.get(platform, 0) + 1
                    into.post_links.setdefault(platform, []).append(item)
            elif action == "odoo_invoice":
                invoice = read_invoice(entry, params, result, None)
                into.invoices_created += 1
                add(into.invoiced_week, invoice.currency, invoice.total)
                into.invoices.append(
                    Item(item.link, f"{invoice.partner}, {money(invoice.total, invoice.currency)}")
                )
            elif action == "code_task":
                commits = result.get("commits")
                landed = len(commits) if isinstance(commits, list) else 0
                into.code_changes += 1
                into.commits_landed += landed
                target = result.get("target") or params.get("target") or "its target"
                into.code_links.append(Item(item.link, f"{target}, {landed} commit(s)"))
            elif action == "odoo_payment":
                amount, currency = payment_amount(params, result, f.currency)
                into.payments_registered += 1
                add(into.paid_week, currency, amount)
                into.payments.append(
                    Item(item.link, f"invoice {params.get('invoice')}, {money(amount, currency)}")
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
        f.suggestions += overdue_invoices(self._unpaid(), as_of_day, f.currency)
        f.suggestions += quiet_platforms(self.last_post, self.w.as_of, self.w.tz)
        f.suggestions += repeated_failures(self.failed_types, self.last_error)

    def _unpaid(self) -> list[Invoice]:
        """Return the invoices no payment was recorded for, each once (raw lines parsed now)."""
        sources = {id(source): source for _, source in self.invoices.values()}
        unpaid = []
        for source in sources.values():
            invoice = source if isinstance(source, Invoice) else invoice_of_line(source)
            if invoice is not None:
                unpaid.append(invoice)
        return unpaid
