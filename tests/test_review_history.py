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


def test_a_day_file_replaced_with_the_same_size_and_mtime_is_read_again(tmp_path: Path):
    """The summary was keyed on size and mtime only: a file replaced by one of the same size
    with its mtime set back (a sync tool, a restore, `cp -p`, or anyone with os.utime) kept
    the old day's figures for good. Its inode or ctime changed; those are in the key now."""
    import os

    from daemon.reports.briefing.history import summary_of

    logs, cache = tmp_path / "logs", tmp_path / "cache"
    logs.mkdir()
    path = logs / "2026-01-01.json"
    unpaid = json.dumps(invoice(1, 0, due=True, settled=False, dry=False))
    path.write_text(unpaid + "\n", encoding="utf-8")
    assert summary_of(path, cache).opened
    info = path.stat()
    other = logs / "new.tmp"
    other.write_text(unpaid.replace('"INV/1"', '"INV/9"') + "\n", encoding="utf-8")
    os.utime(other, ns=(info.st_atime_ns, info.st_mtime_ns))
    other.replace(path)
    assert path.stat().st_size == info.st_size and path.stat().st_mtime_ns == info.st_mtime_ns
    assert summary_of(path, cache).opened[0][0][0] == "INV/9"
