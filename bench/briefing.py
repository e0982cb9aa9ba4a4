"""Briefing generation over a year of heavy use: at least 1,000,000 audit log lines.

`build_vault` writes a year of daily log files (plain `Logs/YYYY-MM-DD.json`, as if
retention never ran) ending with the briefing's week: auto-approved posts, invoices and
payments that waited for approval, and failures. `measure` times `write_briefing` on it
twice (the first with no day summarized yet, the second as each later week's runs), then
runs it again under tracemalloc for the peak memory it allocates.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.core.vault import Vault
from daemon.core.weeks import IsoWeek
from daemon.reports.briefing import write_briefing
from daemon.service.app import open_app

WEEK = IsoWeek.parse("2026-W47")


def _line(event: str, action: str, file: str, **fields: object) -> str:
    entry = {
        "timestamp": "@TS@",
        "event": event,
        "action": action,
        "actor": "vaultd",
        "task_id": "@ID@",
        "file": file,
        "parameters": fields.pop("parameters", {}),
        "result": fields.pop("result", {}),
        "approval_status": fields.pop("approval_status", None),
        "duration_ms": 12,
        "error": fields.pop("error", None),
    }
    return json.dumps(entry) + "\n"


_POST = {
    "type": "social_post",
    "platforms": ["facebook", "twitter"],
    "kind": "post",
    "text": "Our winter opening hours: Monday to Saturday, 9 to 18. See you soon!",
    "content_hash": "sha256:" + "ab" * 32,
}
_INVOICE = {
    "type": "odoo_invoice",
    "partner": "Customer @P@",
    "lines": [{"product": "Consulting hour", "quantity": "2", "price_unit": "90"}],
    "currency": "USD",
    "due_date": "@DUE@",
    "content_hash": "sha256:" + "cd" * 32,
}
_PAYMENT = {
    "type": "odoo_payment",
    "invoice": "INV/@N@",
    "amount": "180",
    "content_hash": "sha256:" + "ef" * 32,
}
_POSTED = {
    "status": "done",
    "facebook": {"id": "123_456", "url": "https://facebook.com/123_456"},
    "twitter": {"id": "1790000000000000000"},
}
# One task's lines each; the cycle repeats through every day.
LIFECYCLES = [
    [
        _line("auto_approved", "social_post", "Approved/post-@ID@.md", parameters=_POST),
        _line("executed", "social_post", "Done/post-@ID@.md", parameters=_POST, result=_POSTED),
    ],
    [
        _line("approval_requested", "odoo_invoice", "Pending_Approval/inv-@ID@.md"),
        _line("approved", "odoo_invoice", "Approved/inv-@ID@.md", approval_status="approved"),
        _line(
            "executed",
            "odoo_invoice",
            "Done/inv-@ID@.md",
            parameters=_INVOICE,
            result={"status": "done", "odoo": {"number": "INV/@N@", "amount_total": 180.0}},
        ),
    ],
    [
        _line("approval_requested", "odoo_payment", "Pending_Approval/pay-@ID@.md"),
        _line("approved", "odoo_payment", "Approved/pay-@ID@.md", approval_status="approved"),
        _line("executed", "odoo_payment", "Done/pay-@ID@.md", parameters=_PAYMENT),
    ],
    [
        _line("auto_approved", "social_post", "Approved/post-@ID@.md", parameters=_POST),
        _line(
            "failed",
            "social_post",
            "Failed/post-@ID@.md",
            parameters=_POST,
            error="twitter: 503 Service Unavailable",
        ),
    ],
]


def build_vault(root: Path, lines: int, *, week: IsoWeek = WEEK, days: int = 364) -> Path:
    """Write a vault with `lines` log lines over `days` days ending on the week's Sunday."""
    vault = root / "vault"
    Vault(vault).ensure_folders()
    (vault / "Business_Goals.md").write_text(
        "---\nmonthly_revenue_target: 10000\ncurrency: USD\n---\n", encoding="utf-8"
    )
    per_day = -(-lines // days)
    first = datetime.combine(week.sunday(), datetime.min.time(), tzinfo=UTC) - timedelta(
        days=days - 1
    )
    written = task = 0
    for day in range(days):
        start = first + timedelta(days=day)
        stamp = start.strftime("%Y-%m-%dT%H:%M:%S")
        due = (start + timedelta(days=30)).date().isoformat()
        chunks: list[str] = []
        count = 0
        while count < per_day and written + count < lines:
            task += 1
            # One invoice in 125 is never paid: overdue invoices to suggest chasing.
            number = task - 1 if (task // len(LIFECYCLES)) % 125 else 0
            seconds = int(count * 86_000 / per_day)
            timestamp = f"{stamp[:11]}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:"
            timestamp += f"{seconds % 60:02d}.000Z"
            for template in LIFECYCLES[task % len(LIFECYCLES)]:
                chunks.append(
                    template.replace("@TS@", timestamp)
                    .replace("@ID@", f"{start:%Y%m%d}-{task:06x}")
                    .replace("@N@", str(number if "payment" in template else task))
                    .replace("@P@", str(task % 97))
                    .replace("@DUE@", due)
                )
                count += 1
        (vault / "Logs" / f"{start.date().isoformat()}.json").write_text(
            "".join(chunks), encoding="utf-8"
        )
        written += count
    return vault


def measure(root: Path, lines: int) -> tuple[int, float, float, float]:
    """Return (log lines written, seconds to write the first briefing, with no day of the
    log summarized yet; seconds to write it again, as every weekly briefing after the first
    runs, with the older days' summaries kept in the state directory; peak MB allocated)."""
    vault = build_vault(root, lines)
    written = sum(1 for path in (vault / "Logs").glob("*.json") for _ in path.open())
    app = open_app(vault, state_dir=root / "state")
    now = datetime.combine(WEEK.briefing_date(), datetime.min.time(), tzinfo=UTC)
    try:
        started = time.perf_counter()
        write_briefing(app, WEEK, now=now + timedelta(hours=8))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        write_briefing(app, WEEK, now=now + timedelta(hours=8))
        warm = time.perf_counter() - started
        tracemalloc.start()
        write_briefing(app, WEEK, now=now + timedelta(hours=8))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        app.close()
    return written, cold, warm, peak / 1e6
