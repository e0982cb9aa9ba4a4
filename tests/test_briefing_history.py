"""The briefing's summaries of older log days (daemon/reports/briefing/history.py): replayed
oldest first, cold or from the cache, they leave what reading every executed entry does (the
last post per platform and the invoices still unpaid); a changed or damaged cache is read
again, never trusted."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.cli.main import _retain_logs
from daemon.core.ledger import Ledger
from daemon.core.vault import Vault
from daemon.core.weeks import IsoWeek
from daemon.reports.briefing.figures import Figures
from daemon.reports.briefing.history import (
    FOLDER,
    READ_IN_FULL_DAYS,
    keep_summaries,
    summarize,
    summary_of,
)
from daemon.reports.briefing.log_scan import LogScan
from daemon.reports.briefing.week import window
from daemon.service.app import open_app

WEEK = IsoWeek.parse("2026-W47")
NIGHTLY = os.environ.get("VAULTD_NIGHTLY") == "1"


def entry(kind: str, n: int, day: int, **extra: Any) -> dict[str, Any]:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day, seconds=n)
    base = {"timestamp": when.isoformat().replace("+00:00", "Z"), "event": "executed",
            "actor": "vaultd", "task_id": f"t{n}", "duration_ms": 3}  # fmt: skip
    return {**base, **extra, "action": kind}


def post(n: int, day: int, platforms: list[str], dry: bool) -> dict[str, Any]:
    result = {p: {"id": str(n), **({"dry_run": True} if dry else {})} for p in platforms}
    params = {"type": "social_post", "platforms": platforms, "text": f"post {n}"}
    return entry("social_post", n, day, file=f"Done/post-{n}.md", parameters=params,
                 result={"status": "done", **result})  # fmt: skip


def invoice(n: int, day: int, due: bool, settled: bool, dry: bool) -> dict[str, Any]:
    params = {"type": "odoo_invoice", "partner": f"P{n % 3}", "currency": "USD",
              "lines": [{"product": "x", "quantity": "1", "price_unit": "10"}],
              **({"due_date": "2026-02-01"} if due else {})}  # fmt: skip
    odoo = {"number": f"INV/{n}", "invoice_id": 1000 + n, "amount_total": 10.0,
            **({"payment_state": "paid"} if settled else {}),
            **({"dry_run": True} if dry else {})}  # fmt: skip
    return entry("odoo_invoice", n, day, file=f"Done/inv-{n}.md", parameters=params,
                 result={"status": "done", "odoo": odoo})  # fmt: skip


def payment(n: int, day: int, pays: int, by_id: bool, dry: bool) -> dict[str, Any]:
    params = {"type": "odoo_payment", "invoice": f"INV/{pays}", "amount": "10"}
    odoo: dict[str, Any] = {"invoices": [{"invoice_id": 1000 + pays}]} if by_id else {}
    if dry:
        odoo["dry_run"] = True
    return entry("odoo_payment", n, day, parameters=params, result={"status": "done", "odoo": odoo})


@st.composite
def histories(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    days: list[list[dict[str, Any]]] = []
    n = 0
    for day in range(draw(st.integers(1, 5))):
        lines = []
        for _ in range(draw(st.integers(0, 8))):
            n += 1
            kind = draw(st.sampled_from(["post", "invoice", "payment", "other"]))
            dry = draw(st.booleans()) and draw(st.booleans())
            if kind == "post":
                platforms = draw(st.lists(st.sampled_from(["facebook", "twitter"]), min_size=1,
                                          max_size=2, unique=True))  # fmt: skip
                lines.append(post(n, day, platforms, dry))
            elif kind == "invoice":
                lines.append(invoice(n, day, draw(st.booleans()), draw(st.booleans()), dry))
            elif kind == "payment":
                pays = draw(st.integers(1, n + 2))  # an earlier invoice, or one not yet made
                lines.append(payment(n, day, pays, draw(st.booleans()), dry))
            else:
                lines.append({**entry("social_post", n, day), "event": "approval_requested"})
        days.append(lines)
    return days


def write_logs(folder: Path, days: list[list[dict[str, Any]]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for day, lines in enumerate(days):
        path = folder / f"{(datetime(2026, 1, 1) + timedelta(days=day)).date()}.json"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        paths.append(path)
    return paths


def scan(ledger: Ledger) -> LogScan:
    figures = Figures(week=str(WEEK), start="", end="", timezone="UTC", as_of="", currency="USD",
                      target_source="", monthly_revenue_target=None)  # fmt: skip
    return LogScan(figures, window(WEEK, UTC, datetime(2026, 11, 30, tzinfo=UTC)), ledger)


def state_of(found: LogScan) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    return dict(found.last_post), sorted(invoice.refs for invoice in found._unpaid())


@settings(max_examples=400 if NIGHTLY else 60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(days=histories())
def test_summaries_replayed_leave_what_reading_every_executed_entry_does(
    tmp_path: Path, days: list[list[dict[str, Any]]]
):
    folder = tmp_path / "logs"
    for old in folder.glob("*.json"):
        old.unlink()
    paths = write_logs(folder, days)
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    try:
        read = scan(ledger)  # the oracle: every executed entry parsed, in order
        for lines in days:
            for line in lines:
                if line["event"] == "executed":
                    read._track_executed(json.loads(json.dumps(line)))
        cache = tmp_path / "state" / FOLDER
        for old in cache.glob("*.json"):
            old.unlink()
        cold, warm, uncached = scan(ledger), scan(ledger), scan(ledger)
        for path in paths:
            cold.merge(summary_of(path, cache))
        for path in paths:
            warm.merge(summary_of(path, cache))
            uncached.merge(summarize(path))
        assert state_of(cold) == state_of(warm) == state_of(uncached) == state_of(read)
    finally:
        ledger.close()


def test_a_day_file_that_changed_or_a_damaged_summary_is_read_again(tmp_path: Path):
    (path,) = write_logs(tmp_path / "logs", [[post(1, 0, ["facebook"], False)]])
    cache = tmp_path / FOLDER
    assert summary_of(path, cache).last_post == {"facebook": [post(1, 0, [], False)["timestamp"],
                                                               "Done/post-1.md"]}  # fmt: skip
    stored = cache / f"{path.name}.json"
    assert stored.exists()
    with path.open("a", encoding="utf-8") as more:  # the day was still being written
        more.write(json.dumps(post(2, 0, ["twitter"], False)) + "\n")
    assert set(summary_of(path, cache).last_post) == {"facebook", "twitter"}

    # A summary that claims the file's key but holds garbage is not trusted: read again.
    data = json.loads(stored.read_text(encoding="utf-8"))
    stored.write_text(json.dumps({"key": data["key"], "lines": "x"}), encoding="utf-8")
    assert set(summary_of(path, cache).last_post) == {"facebook", "twitter"}
    stored.write_text("\x00 not json", encoding="utf-8")
    assert summary_of(path, cache).lines == 2


def test_a_cache_that_cannot_be_written_only_costs_speed(tmp_path: Path):
    (path,) = write_logs(tmp_path / "logs", [[post(1, 0, ["facebook"], False)]])
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("", encoding="utf-8")
    assert summary_of(path, blocked / FOLDER).lines == 1


def test_the_daily_log_job_summarizes_the_days_a_briefing_reads_only_in_summary(tmp_path: Path):
    vault = tmp_path / "vault"
    Vault(vault).ensure_folders()
    days = [[post(n, n, ["facebook"], False)] for n in range(50)]
    paths = write_logs(vault / "Logs", days)
    app = open_app(vault, state_dir=tmp_path / "state")
    try:
        today = datetime(2026, 1, 1).date() + timedelta(days=50)
        _retain_logs(app, today)
        cache = tmp_path / "state" / FOLDER
        summarized = sorted(p.name.removesuffix(".json") for p in cache.glob("*.json"))
        assert summarized == [p.name for p in paths[: 50 - READ_IN_FULL_DAYS]]
        before = today - timedelta(days=READ_IN_FULL_DAYS)
        assert keep_summaries(vault / "Logs", cache, before=before) == 0  # all there already
        with paths[0].open("a", encoding="utf-8") as more:
            more.write(json.dumps(post(99, 0, ["twitter"], False)) + "\n")
        assert keep_summaries(vault / "Logs", cache, before=before) == 1  # that day again
    finally:
        app.close()
