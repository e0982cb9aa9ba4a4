"""What is going on in a vault, in one snapshot: used by `vaultd status` and Dashboard.md.

The folders are the truth a person sees, so the snapshot starts from the files: how many
notes each pipeline folder holds, which requests wait in `Pending_Approval/`, what landed in
`Failed/`. The ledger (if vaultd has run on this vault) adds what the files do not say, such
as since when a request has waited; the audit log gives the recent actions.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from daemon.core import ledger as ledger_states
from daemon.core.audit import last_entries
from daemon.core.lease import read_lease
from daemon.core.ledger import Ledger, Task
from daemon.core.request_versions import reference
from daemon.core.taskfile import Unreadable, read_task_file
from daemon.core.timestamps import iso, parse_time
from daemon.core.vault import FAILED, LOGS, PENDING, PIPELINE_FOLDERS, Vault, is_sync_conflict

RECENT = 10
# Requests and problems listed one by one (the oldest first); the rest are counted. Reading
# every note of a 20,000-file burst each time the dashboard refreshes would stall the daemon.
LISTED = 50


@dataclass(frozen=True)
class PendingItem:
    """One approval request waiting for a person."""

    id: str | None
    file: str
    type: str | None
    age_seconds: int
    age: str
    rule: str | None
    reason: str | None
    amount: str | None
    expires_at: str | None
    expires_in: str | None
    status: str | None
    error: str | None
    # `ID@version`: what a person approves (`vaultd approve ID@version`).
    ref: str | None = None


@dataclass(frozen=True)
class ProblemItem:
    """One task that failed, or whose outcome is unknown: a person decides what next."""

    id: str | None
    file: str
    type: str | None
    state: str
    error: str | None


@dataclass(frozen=True)
class RecentItem:
    timestamp: str
    event: str
    action: str | None
    task_id: str | None
    file: str | None
    error: str | None


@dataclass
class Snapshot:
    vault: str
    generated_at: str
    ledger: str | None
    ledger_note: str | None
    counts: dict[str, int]
    pending: list[PendingItem] = field(default_factory=list)
    problems: list[ProblemItem] = field(default_factory=list)
    # How many more requests and problems there are than `pending` and `problems` list.
    pending_more: int = 0
    problems_more: int = 0
    recent: list[RecentItem] = field(default_factory=list)
    sync_conflicts: list[str] = field(default_factory=list)
    # Circuit breakers of the live connectors that are not closed: name, state, since.
    breakers: list[dict[str, Any]] = field(default_factory=list)
    # The scheduler's jobs and their next run times (filled in by `vaultd status`).
    jobs: list[dict[str, Any]] = field(default_factory=list)
    # Parts of the running daemon that failed for good (filled in by the daemon).
    alerts: list[str] = field(default_factory=list)
    # Skill runs: those waiting for approval, then the latest others.
    runs: list[dict[str, Any]] = field(default_factory=list)
    # The run queue, by channel: how many runs are queued and running.
    queue: dict[str, dict[str, int]] = field(default_factory=dict)
    # Completion webhooks: deliveries by state (pending, delivered, failed, disabled).
    webhooks: dict[str, int] = field(default_factory=dict)
    # The daemon on this state directory: {"running": bool, pid, since, mode, host}
    # (filled in by `vaultd status`, which reads the daemon's lock).
    daemon: dict[str, Any] | None = None
    # When no daemon runs: the next briefing time the config gives, in its time zone.
    next_briefing: str | None = None
    # The vault's executor lease (daemon/core/lease.py) as it reads, None if it has none;
    # `vaultd status` adds "this_machine": whether it names this state directory's machine.
    executor: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def open_ledger_readonly(path: Path) -> tuple[Ledger | None, str | None]:
    """Open an existing ledger read-only; return (ledger, None) or (None, why it is absent)."""
    if not path.is_file():
        return None, f"vaultd has not run on this vault yet (no ledger at {path})"
    try:
        opened = Ledger(path, readonly=True)
        opened.counts()
    except sqlite3.Error as error:
        return None, f"{path}: the ledger cannot be read ({error})"
    return opened, None


def build_snapshot(
    vault: Vault,
    ledger: Ledger | None,
    *,
    now: datetime | None = None,
    recent: int = RECENT,
    listed: int = LISTED,
    ledger_note: str | None = None,
) -> Snapshot:
    """Given a vault and its ledger (None if it has none), return what is going on in it.

    Only the `listed` oldest requests and problems are read and listed; the rest are counted.
    """
    now = now or datetime.now(UTC)
    snapshot = Snapshot(
        vault=str(vault.root),
        generated_at=iso(now),
        ledger=str(ledger.path) if ledger else None,
        ledger_note=ledger_note,
        counts={},
    )
    for folder in PIPELINE_FOLDERS:
        files = vault.files(folder)
        conflicts = [path for path in files if is_sync_conflict(path.name)]
        snapshot.sync_conflicts += [vault.relative(path) for path in conflicts]
        snapshot.counts[folder] = len(files) - len(conflicts)
    # A file may move away while it is being looked at (the daemon is running): skip it.
    waiting = [path for path in vault.files(PENDING) if not is_sync_conflict(path.name)]
    pending = [_pending(vault, path, ledger, now) for path in waiting[:listed]]
    snapshot.pending = sorted(filter(None, pending), key=lambda item: -item.age_seconds)
    snapshot.pending_more = max(0, len(waiting) - listed)
    failed = [
        path
        for path in vault.files(FAILED)
        if not is_sync_conflict(path.name) and path.suffix.lower() == ".md"
    ]
    snapshot.problems = list(filter(None, (_problem(vault, p, ledger) for p in failed[:listed])))
    snapshot.problems_more = max(0, len(failed) - listed)
    snapshot.recent = [_recent(entry) for entry in last_entries(vault.folder(LOGS), recent)]
    snapshot.breakers = _open_breakers(ledger)
    snapshot.runs = _skill_runs(ledger)
    snapshot.queue = _queue(ledger)
    snapshot.webhooks = _webhooks(ledger)
    lease = read_lease(vault.root)
    snapshot.executor = lease.to_json() if lease else None
    return snapshot


def _skill_runs(ledger: Ledger | None, latest: int = 5) -> list[dict[str, Any]]:
    """Return the runs waiting for approval and the `latest` other runs."""
    if ledger is None:
        return []
    columns = "id, skill, state, error, created_at"
    try:
        waiting = ledger.rows(
            f"SELECT {columns} FROM skill_runs WHERE state = 'awaiting_approval'"  # noqa: S608
            " ORDER BY created_at"
        )
        others = ledger.rows(
            f"SELECT {columns} FROM skill_runs WHERE state != 'awaiting_approval'"  # noqa: S608
            " ORDER BY created_at DESC LIMIT ?",
            (latest,),
        )
    except sqlite3.OperationalError:  # a ledger from before skill runs
        return []
    return waiting + others


def _queue(ledger: Ledger | None) -> dict[str, dict[str, int]]:
    """Return, by channel, how many runs are queued and running."""
    if ledger is None:
        return {}
    try:
        rows = ledger.rows(
            "SELECT q.channel, r.state, COUNT(*) AS n FROM run_queue q"
            " JOIN skill_runs r ON r.id = q.run_id WHERE r.state IN ('queued', 'running')"
            " GROUP BY q.channel, r.state ORDER BY q.channel"
        )
    except sqlite3.OperationalError:  # a ledger from before the queue
        return {}
    queue: dict[str, dict[str, int]] = {}
    for row in rows:
        queue.setdefault(row["channel"], {"queued": 0, "running": 0})[row["state"]] = row["n"]
    return queue


def _webhooks(ledger: Ledger | None) -> dict[str, int]:
    """Return the webhook deliveries by state (daemon/agents/webhooks/outbox.py)."""
    if ledger is None:
        return {}
    try:
        rows = ledger.rows("SELECT state, COUNT(*) AS n FROM webhook_outbox GROUP BY state")
    except sqlite3.OperationalError:  # a ledger from before webhooks
        return {}
    return {row["state"]: int(row["n"]) for row in rows}


def _open_breakers(ledger: Ledger | None) -> list[dict[str, Any]]:
    if ledger is None:
        return []
    try:
        return [b for b in ledger.breakers() if b["state"] != "closed"]
    except sqlite3.OperationalError:  # a ledger from before breakers were recorded
        return []


def show_time(timestamp: str, *, seconds: bool = True) -> str:
    """Return an ISO UTC timestamp as a person reads it: "2026-11-22 03:41:07 UTC"."""
    text = timestamp.replace("T", " ").removesuffix("Z").split(".")[0].removesuffix("+00:00")
    return (text if seconds else text[:16]) + " UTC"


def human_age(seconds: float) -> str:
    """Return a duration the way a person says it: "45s", "12m", "3h 12m", "2d 4h"."""
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def _read_meta(path: Path) -> tuple[dict[str, Any], str | None] | None:
    """Return (frontmatter, None), or ({}, why it cannot be read), or None if it is gone."""
    try:
        return read_task_file(path).note.meta, None
    except Unreadable as problem:
        if not os.path.lexists(path):
            return None
        return {}, f"{path.name} {problem}"


def _read_listed(
    path: Path, ledger: Ledger | None
) -> tuple[dict[str, Any], str | None, str | None, Task | None] | None:
    """Return (frontmatter, why it cannot be read, task id, ledger task), or None if gone."""
    read = _read_meta(path)
    if read is None:
        return None
    meta, error = read
    task_id = meta.get("id") if isinstance(meta.get("id"), str) else None
    return meta, error, task_id, _task(ledger, task_id)


def _pending(vault: Vault, path: Path, ledger: Ledger | None, now: datetime) -> PendingItem | None:
    listed = _read_listed(path, ledger)
    if listed is None:
        return None
    meta, error, task_id, task = listed
    approval: dict[str, Any] = meta["approval"] if isinstance(meta.get("approval"), dict) else {}
    since = _parse_time(task.created_at) if task else None
    if since is None:
        try:
            since = datetime.fromtimestamp(path.lstat().st_mtime, UTC)
        except FileNotFoundError:
            return None
    age = (now - since).total_seconds()
    expires_at = _text(approval.get("expires_at")) or (task.expires_at if task else None)
    expires = _parse_time(expires_at) if expires_at else None
    if expires is None:
        expires_in = None
    elif expires <= now:
        expires_in = "expired"
    else:
        expires_in = f"in {human_age((expires - now).total_seconds())}"
    amount = _money(task.amount, task.currency) if task and task.amount else None
    return PendingItem(
        id=task_id,
        file=vault.relative(path),
        type=_text(meta.get("type")) or (task.type if task else None),
        age_seconds=int(age),
        age=human_age(age),
        rule=_text(approval.get("rule")) or (task.rule if task else None),
        reason=_text(approval.get("reason")) or (task.reason if task else None),
        amount=amount,
        expires_at=expires_at,
        expires_in=expires_in,
        status=_text(meta.get("status")),
        error=error or _text(meta.get("error")),
        ref=reference(task.id, task.payload_hash) if task and task.payload_hash else None,
    )


def _problem(vault: Vault, path: Path, ledger: Ledger | None) -> ProblemItem | None:
    listed = _read_listed(path, ledger)
    if listed is None:
        return None
    meta, error, task_id, task = listed
    state = _text(meta.get("status")) or "failed"
    if task and task.state in (ledger_states.FAILED, ledger_states.UNKNOWN):
        state = "outcome_unknown" if task.state == ledger_states.UNKNOWN else "failed"
    return ProblemItem(
        id=task_id,
        file=vault.relative(path),
        type=_text(meta.get("type")) or (task.type if task else None),
        state=state,
        error=error or _text(meta.get("error")) or (task.error if task else None),
    )


def _recent(entry: dict[str, Any]) -> RecentItem:
    return RecentItem(
        timestamp=str(entry.get("timestamp", "")),
        event=str(entry.get("event", "")),
        action=_text(entry.get("action")),
        task_id=_text(entry.get("task_id")),
        file=_text(entry.get("file")),
        error=_text(entry.get("error")),
    )


def _task(ledger: Ledger | None, task_id: str | None) -> Task | None:
    if ledger is None or task_id is None:
        return None
    try:
        return ledger.task(task_id)
    except sqlite3.Error:
        return None


def _money(amount: str, currency: str | None) -> str:
    try:
        shown = f"{Decimal(amount):,.2f}"
    except InvalidOperation:
        shown = amount
    return f"{shown} {currency}" if currency else shown


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _parse_time(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None
