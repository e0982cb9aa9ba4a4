"""The audit trail: `Logs/YYYY-MM-DD.json`, one JSON object per line, secrets redacted.

The fields follow the seed's log schema (timestamp in UTC, action, actor, parameters with a
content hash, result, approval_status, duration_ms, error), plus `event`, `task_id` and
`file` so every line can be traced to one task file.

On every entry with an outcome, `result.status` is the seed's `success` or `error`, so
`jq 'select(.result.status == "error")'` finds every failure, outcome unknown and rejection;
vaultd's finer state is `result.outcome` (`done`, `failed`, `outcome_unknown`, `rejected` …).

Each line is handed to the kernel whole, in one append, before `write` returns: a kill -9
right after cannot lose it (a power cut can: the log is not fsynced, the ledger is what
must survive one). The day's file stays open between lines; it is opened again when the
day changes or when the file at that name is no longer the one held open (deleted, moved).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import threading
import weakref
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, quote_plus

from daemon.core.settings import Settings
from daemon.core.timestamps import now_iso

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|authori[sz]ation|credential", re.I)
REDACTED = "[redacted]"


class Redactor:
    """Removes secrets: values under secret-looking keys, and any known secret value."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        if secrets is None:
            secrets = Settings(dict(os.environ)).secrets()
        # As written, and as a URL or a form encodes it. Longest first, so a secret that
        # contains another is removed whole.
        forms = {form for secret in secrets for form in _encodings(secret) if form}
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (REDACTED if _SECRET_KEY.search(str(k)) and v else self(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
        return value


def _encodings(secret: str) -> tuple[str, ...]:
    return (secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "\\/"))


# event -> (seed status, vaultd's outcome) for the events that end something.
OUTCOMES: dict[str, tuple[str, str]] = {
    "executed": ("success", "done"),
    "auto_approved": ("success", "approved"),
    "approved": ("success", "approved"),
    "approval_requested": ("success", "pending_approval"),
    "run_succeeded": ("success", "succeeded"),
    "briefing_written": ("success", "written"),
    "logs_archived": ("success", "archived"),
    "webhook_delivered": ("success", "delivered"),
    "failed": ("error", "failed"),
    "outcome_unknown": ("error", "outcome_unknown"),
    "rejected": ("error", "rejected"),
    "rejected_invalid": ("error", "invalid"),
    "rejected_unreadable": ("error", "unreadable"),
    "request_unreadable": ("error", "unreadable"),
    "replay_refused": ("error", "rejected"),
    "expired": ("error", "expired"),
    "request_invalid": ("error", "invalid"),
    "approval_refused": ("error", "approval_refused"),
    "vanished": ("error", "vanished"),
    "run_failed": ("error", "failed"),
    "run_cancelled": ("error", "cancelled"),
    "component_failed": ("error", "failed"),
    "internal_error": ("error", "internal_error"),
    "webhook_retrying": ("error", "retrying"),
    "webhook_failed": ("error", "failed"),
    "webhook_disabled": ("error", "disabled"),
}
# What a marker lookup at reconciliation showed, as an outcome.
LOOKUP_OUTCOMES = {
    "found": ("success", "found"),
    "absent": ("success", "absent"),
    "undetermined": ("error", "outcome_unknown"),
    # A draft the call began (not posted): settled, the next call of the target finishes it.
    "unfinished": ("success", "unfinished"),
}


def with_outcome(event: str, result: dict[str, Any]) -> dict[str, Any]:
    """Given an event and its result, return the result with the seed's `status` and
    vaultd's `outcome`.

    A caller's own `status` (vaultd's state, such as `done` or `waiting`) becomes the
    outcome. An event that ends nothing keeps its result as it is, without `status`.
    """
    known = OUTCOMES.get(event)
    if event == "reconciled":
        known = LOOKUP_OUTCOMES.get(str(result.get("lookup")))
    own = result.get("status")
    if known is None:
        if own is None:
            return result
        return {**{k: v for k, v in result.items() if k != "status"}, "outcome": own}
    status, outcome = known
    return {**result, "status": status, "outcome": own or outcome}


class AuditLog:
    def __init__(self, folder: Path, redact: Redactor | None = None) -> None:
        self.folder = folder
        self.redact = redact or Redactor()
        self._lock = threading.Lock()
        self._day = _DayFile()
        # An AuditLog nobody closes still gives its file back when it is dropped.
        self._finalizer = weakref.finalize(self, self._day.close)

    def close(self) -> None:
        """Close the day's file; the next `write` opens it again."""
        with self._lock:
            self._day.close()

    def write(
        self,
        event: str,
        *,
        action: str | None,
        task_id: str | None,
        file: str | None,
        actor: str = "vaultd",
        parameters: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        approval_status: str | None = None,
        duration_ms: int | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Append one entry to today's log (UTC) and return it as written."""
        entry = self.redact(
            {
                "timestamp": now_iso(),
                "event": event,
                "action": action,
                "actor": actor,
                "task_id": task_id,
                "file": file,
                "parameters": parameters or {},
                "result": with_outcome(event, result or {}),
                "approval_status": approval_status,
                "duration_ms": duration_ms,
                "error": error,
            }
        )
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        path = self.folder / f"{entry['timestamp'][:10]}.json"
        with self._lock:
            self._day.append(path, line.encode("utf-8"))
        return entry


class _DayFile:
    """The day's log held open for appends: one `write` per line, O_APPEND, so lines from
    other vaultd processes appending to the same file never interleave inside a line.
    """

    def __init__(self) -> None:
        self.path: Path | None = None
        self.fd: int | None = None
        self.identity: tuple[int, int] = (0, 0)

    def append(self, path: Path, data: bytes) -> None:
        """Given the day's path and one encoded line, append the line to the file that is
        at that path now (created, with its folder, if missing). Raise OSError as `open`
        and `write` do.
        """
        fd = self.fd
        if fd is None or path != self.path or not self._still_there(path):
            fd = self._open(path)
        view = memoryview(data)
        while view:  # a regular file takes the whole line at once; a full disk raises
            view = view[os.write(fd, view) :]

    def _still_there(self, path: Path) -> bool:
        try:
            info = path.stat()
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.identity

    def _open(self, path: Path) -> int:
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        info = os.fstat(fd)
        self.path, self.fd, self.identity = path, fd, (info.st_dev, info.st_ino)
        return fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.path, self.fd = None, None


def read_entries(folder: Path, since: date | None = None) -> Iterator[dict[str, Any]]:
    """Yield log entries oldest first, from the daily files on or after `since`.

    The days archived by retention (`archive/YYYY-MM-DD.json.gz`) are read too (see
    `log_files`), streamed, never loaded whole. A line that is not valid JSON (a torn write,
    a hand edit) is skipped, not fatal, and so is the rest of a truncated or corrupt archive.
    """
    for day, path in log_files(folder):
        if since and day < since:
            continue
        for line in log_lines(path):
            entry = _entry(line)
            if entry is not None:
                yield entry


def last_entries(folder: Path, limit: int) -> list[dict[str, Any]]:
    """Return the last `limit` entries of the live daily logs, oldest first.

    Only the ends of the newest files are read: the dashboard asks every few seconds during
    a burst, and a day's log can hold hundreds of thousands of lines.
    """
    days = sorted(_log_files(folder, DAILY_NAME).items(), reverse=True)
    entries: list[dict[str, Any]] = []
    for _day, path in days:
        need = limit - len(entries)
        if need <= 0:
            break
        asked = need
        while True:  # ask for more lines while torn or foreign ones stand in the way
            lines = last_lines(path, asked)
            found = [entry for entry in map(_entry, lines) if entry is not None]
            if len(found) >= need or len(lines) < asked:
                break
            asked *= 2
        entries = found[-need:] + entries
    return entries[-limit:] if limit else []


def last_lines(path: Path, count: int, block: int = 64 * 1024) -> list[bytes]:
    """Return up to `count` last complete lines of a file, reading it from the end."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            start, data = end, b""
            while start > 0 and data.count(b"\n") <= count:
                start = max(0, start - block)
                handle.seek(start)
                data = handle.read(end - start)
    except OSError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first piece may be the end of a longer line
    return [line for line in lines if line.strip()][-count:]


def _entry(line: str | bytes) -> dict[str, Any] | None:
    """Return a log line's entry, or None for a line that is not one (torn, hand-edited)."""
    try:
        entry = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


# Daily files are Logs/YYYY-MM-DD.json; retention moves old ones to Logs/archive/*.json.gz.
ARCHIVE_FOLDER = "archive"
DAILY_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.json$")
ARCHIVED_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.json\.gz$")


def log_files(folder: Path) -> list[tuple[date, Path]]:
    """Return (day, file) for every daily log, archived days included, oldest first.

    When a day has both (an archive retention has not yet verified), the live file is
    returned: it is the original.
    """
    days = _log_files(folder / ARCHIVE_FOLDER, ARCHIVED_NAME)
    days.update(_log_files(folder, DAILY_NAME))
    return sorted(days.items())


def log_lines(path: Path) -> Iterator[str]:
    """Yield the lines of a daily log, live or gzipped.

    A file gone since it was listed, or a truncated or corrupt archive, yields what could be
    read: the other days still count.
    """
    try:
        with _open_text(path) as handle:
            yield from handle
    except (OSError, EOFError, zlib.error) as error:
        log.warning("%s cannot be read to the end (%s)", path.name, error)


def log_day(path: Path, pattern: re.Pattern[str]) -> date | None:
    """Return the day a log file is named for, or None when the name is not one of ours."""
    match = pattern.match(path.name)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def _log_files(folder: Path, pattern: re.Pattern[str]) -> dict[date, Path]:
    try:
        paths = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {day: path for path in paths if (day := log_day(path, pattern)) is not None}


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def parse_since(text: str) -> date:
    """Given "2026-11-20", "today" or "7d", return the date it means."""
    today = datetime.now(UTC).date()
    if text == "today":
        return today
    if text.endswith("d") and text[:-1].isdigit():
        return date.fromordinal(today.toordinal() - int(text[:-1]))
    return date.fromisoformat(text)
