"""What the briefing needs from the audit log's days before its window, one summary per day
file, kept in the state directory so a day is read once, not every week.

A year of logs is a million lines; the week's briefing reads only its own window in full.
From every older day it needs three things: the last post per platform, the invoices opened
that day and not paid within it, and the references paid that day. A day's summary holds
exactly these, in the order the lines had, so replaying the summaries oldest first
(`LogScan.merge`) gives what reading every line would (log_scan.py).

A summary is cached in `<state>/briefing_history/<file name>.json` with the file's size,
mtime, inode and ctime; a file that changed since (the day was still being written,
retention archived it, a copy replaced it) is read again. A cache that cannot be read or
written is only slower: the lines are read. The lines are tested cheaply as raw text, and
only executed invoices, payments and posts are parsed; an invoice is kept as its raw line,
parsed again at the end only if still unpaid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from daemon.core.audit import log_files, log_lines
from daemon.core.timestamps import parse_time
from daemon.reports.briefing.dry_run import is_dry_run
from daemon.reports.briefing.entries import as_dict, payment_refs, posted, read_invoice

FOLDER = "briefing_history"
VERSION = 2  # of what a summary holds; a summary of another version is made again
# A briefing reads its month and the week before in full: days older than this, never.
READ_IN_FULL_DAYS = 40

_EXECUTED = re.compile(r'"event":\s*"executed"')
_ACTION = re.compile(r'"action":\s*"([a-z_]+)"')
_KINDS = ("social_post", "odoo_invoice", "odoo_payment")


@dataclass
class DaySummary:
    """One day file's part of the history, in its lines' order."""

    lines: int = 0
    # platform -> [timestamp as logged, the note's file or None]: the day's last post on it
    last_post: dict[str, list[str | None]] = field(default_factory=dict)
    # [[refs...], raw line] of the invoices opened that day and not paid within it
    opened: list[list[Any]] = field(default_factory=list)
    paid: list[str] = field(default_factory=list)  # every reference paid that day


def summarize(path: Path) -> DaySummary:
    """Read one day file's lines into its summary.

    A line is tested as raw text first; one that may be an executed post, invoice or payment
    is parsed and read as LogScan._full reads it (a line that is not JSON or has no readable
    timestamp counts in neither; a post counts for the platforms its result answered)."""
    summary = DaySummary()
    invoices: dict[str, tuple[tuple[str, ...], str]] = {}
    paid: dict[str, None] = {}
    for line in log_lines(path):
        summary.lines += 1
        if '"executed"' not in line or not _EXECUTED.search(line):
            continue
        action = _ACTION.search(line)
        if (action.group(1) if action else None) not in _KINDS:
            continue
        entry = _entry(line)
        if entry is None or entry.get("event") != "executed" or is_dry_run(entry):
            continue
        kind = entry.get("action")
        params, result = as_dict(entry.get("parameters")), as_dict(entry.get("result"))
        file = entry.get("file") if isinstance(entry.get("file"), str) else None
        if kind == "social_post":
            for platform in posted(params, result):
                summary.last_post[platform] = [str(entry["timestamp"]), file]
        elif kind == "odoo_invoice":
            invoice = read_invoice(entry, params, result, file)
            if invoice.due is None or invoice.payment_state in ("paid", "in_payment"):
                continue
            if not any(ref in paid for ref in invoice.refs):
                for ref in invoice.refs:
                    invoices[ref] = (invoice.refs, line)
        elif kind == "odoo_payment":
            for ref in payment_refs(params, result):
                paid[ref] = None
                gone = invoices.pop(ref, None)
                for other in gone[0] if gone else ():
                    invoices.pop(other, None)
    sources = {id(source): source for source in invoices.values()}
    summary.opened = [[list(refs), line] for refs, line in sources.values()]
    summary.paid = list(paid)
    return summary


def _entry(line: str) -> dict[str, Any] | None:
    """The entry of a line as LogScan._full takes it: a JSON object with a timestamp."""
    try:
        entry = json.loads(line)
        parse_time(str(entry["timestamp"]))
    except (ValueError, KeyError, TypeError):
        return None
    return entry if isinstance(entry, dict) else None


def summary_of(path: Path, cache: Path | None) -> DaySummary:
    """The summary of a day file: from `cache` (a folder) if it holds one for the file as it
    is now, else read and, if `cache` is given, stored there."""
    return _summary(path, cache)[0]


def _summary(path: Path, cache: Path | None) -> tuple[DaySummary, bool]:
    """summary_of, and whether the day file was read now (not found in `cache`)."""
    try:
        info = path.stat()
    except OSError:
        return summarize(path), True  # gone since it was listed: what can be read counts
    key = _key(info)
    where = cache / f"{path.name}.json" if cache is not None else None
    if where is not None:
        cached = _load(where, key)
        if cached is not None:
            return cached, False
    summary = summarize(path)
    if where is not None:
        _store(where, key, summary)
    return summary, True


def keep_summaries(logs: Path, cache: Path, *, before: date) -> int:
    """Summarize every day file of `logs` older than `before` that `cache` has no summary of
    yet (the daily log job does, so that the Sunday briefing finds them); return how many."""
    made = 0
    for _, path in (entry for entry in log_files(logs) if entry[0] < before):
        with contextlib.suppress(OSError):
            made += _summary(path, cache)[1]
    return made


def _key(info: os.stat_result) -> list[int]:
    """What a summary is checked against: the file as it is now. Size and mtime can both be
    kept by a file that replaced it (`cp -p`, a sync tool, os.utime); its inode and ctime
    cannot."""
    return [VERSION, info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]


def _load(where: Path, key: list[int]) -> DaySummary | None:
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        return DaySummary(
            lines=int(data["lines"]),
            last_post={str(k): list(v) for k, v in data["last_post"].items()},
            opened=[[list(refs), str(line)] for refs, line in data["opened"]],
            paid=[str(ref) for ref in data["paid"]],
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # none yet, or damaged: read the day again


def _store(where: Path, key: list[int], summary: DaySummary) -> None:
    """Write the summary atomically (temp file, rename); a failure only costs speed."""
    with contextlib.suppress(OSError):
        where.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=where.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"key": key, **asdict(summary)}, handle)
            Path(temp).replace(where)
        except OSError:
            with contextlib.suppress(OSError):
                Path(temp).unlink()
