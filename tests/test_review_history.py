"""Adversarial review of the briefing's per-day summaries (history.py): replaying a day's
summary must leave what reading its lines in full (LogScan._full) leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_briefing_history import invoice, payment, post, scan, state_of

from daemon.core.ledger import Ledger
from daemon.reports.briefing.history import summarize


def _both(tmp_path: Path, raw_lines: list[str]) -> tuple[Any, Any]:
    path = tmp_path / "logs" / "2026-01-01.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in raw_lines), encoding="utf-8")
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    try:
        full, summed = scan(ledger), scan(ledger)
        for line in raw_lines:
            full._full(line + "\n")
        summed.merge(summarize(path))
        return state_of(full), state_of(summed)
    finally:
        ledger.close()


def test_a_line_that_is_not_json_counts_in_neither(tmp_path: Path):
    """A line cut short (a crash mid-append, a disk full, a sync tool; or a line an agent that
    writes Logs/ left) is skipped by the full read; the summary's raw-text tests still
    counted the payment in it, so the invoice it names was no longer overdue."""
    opened = json.dumps(invoice(1, 0, due=True, settled=False, dry=False))
    paid = json.dumps(payment(2, 0, pays=1, by_id=False, dry=False))
    full, summed = _both(tmp_path, [opened, paid[:-1]])
    assert full[1] == [("INV/1", "1001", "t1")]  # still unpaid: the payment line is unreadable
    assert summed == full


def test_a_post_counts_for_the_platforms_its_result_answered(tmp_path: Path):
    """posted(): the platforms the result answers for, when it names any; the summary took
    every platform the parameters listed."""
    entry = post(1, 0, ["facebook", "twitter"], dry=False)
    del entry["result"]["twitter"]
    full, summed = _both(tmp_path, [json.dumps(entry)])
    assert list(full[0]) == ["facebook"]
    assert summed == full
