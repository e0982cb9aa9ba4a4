"""The figures a briefing reads from the vault and from the ledger as they are now.

From the vault: the monthly revenue target in `Business_Goals.md`, and the project status in
`Plans/` (each plan's frontmatter `status`). From the ledger, with the notes it points to:
what is waiting for approval too long, what failed or has an unknown outcome, the circuit
breakers that are not closed, and the partners with several requests waiting.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.core import ledger as ledger_states
from daemon.core import notes
from daemon.core.errors import NoteError
from daemon.core.ledger import Ledger
from daemon.core.timestamps import parse_time
from daemon.core.vault import PLANS, Vault
from daemon.reports.briefing.figures import Figures, Item
from daemon.reports.briefing.formats import duration, link, money
from daemon.reports.briefing.suggestions import partners_waiting
from daemon.reports.briefing.week import Window

GOALS = "Business_Goals.md"
WAITING_TOO_LONG = timedelta(hours=24)


def current_state(figures: Figures, vault: Vault, ledger: Ledger, now: datetime) -> None:
    """Fill in what is waiting, failed or broken now, from the ledger and the notes."""
    by_partner: dict[str, list[str]] = defaultdict(list)
    for task in ledger.tasks(ledger_states.PENDING):
        try:
            waited = now - parse_time(task.created_at)
        except ValueError:
            continue
        note = link(task.file)
        partner = _partner_of(vault.root / task.file)
        if partner:
            by_partner[partner].append(note)
        if waited > WAITING_TOO_LONG:
            label = f"{task.type or 'task'}, waiting {duration(waited)}"
            if task.amount:
                label += f", {money(Decimal(task.amount), task.currency or '')}"
            figures.waiting_approvals.append(Item(note, label))
    for task in ledger.tasks(ledger_states.FAILED, ledger_states.UNKNOWN):
        state = "outcome unknown" if task.state == ledger_states.UNKNOWN else "failed"
        error = " ".join((task.error or "").split())
        figures.failed_items.append(Item(link(task.file), f"{state}: {error}".rstrip(": ")))
    for breaker in ledger.breakers():
        if breaker["state"] != "closed":
            figures.open_breakers.append(
                Item(
                    str(breaker["name"]),
                    f"{breaker['state']} since {breaker['changed_at']}, "
                    f"{breaker['failures']} failures",
                )
            )
    figures.suggestions += partners_waiting(by_partner)


def plans(figures: Figures, vault: Vault, window: Window) -> None:
    """Fill in the plans in progress, and those completed in the window's week."""
    folder = vault.folder(PLANS)
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.md")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        meta = _meta(path)
        status = str(meta.get("status") or "").strip().lower().replace(" ", "_").replace("-", "_")
        note = link(vault.relative(path))
        title = str(meta.get("title") or path.stem)
        if status in ("in_progress", "active", "doing", "started"):
            figures.plans_in_progress.append(Item(note, title))
        elif status in ("completed", "done", "complete", "finished"):
            finished = _completed_on(meta, path, window.tz)
            if window.week_start.date() <= finished < window.week_end.date():
                figures.plans_completed.append(Item(note, title))


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


def goals(vault: Vault) -> tuple[dict[str, Any], str]:
    """Given a vault, return the frontmatter of its goals note and where its target comes from."""
    path = vault.root / GOALS
    if not path.exists():
        return {}, f"no {GOALS} in the vault"
    meta = _meta(path)
    if "monthly_revenue_target" not in meta:
        return meta, f"{GOALS} has no monthly_revenue_target in its frontmatter"
    return meta, f"monthly_revenue_target in [[{GOALS[:-3]}]]"
