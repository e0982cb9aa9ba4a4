"""Dashboard.md: the vault's live status page, rendered from `templates/dashboard.md.j2`.

It is written at the vault root (never inside a pipeline folder, so vaultd never mistakes it
for a task), atomically, and at most once per `daemon.dashboard_seconds`: a burst of changes
leads to one write now and one more when the interval has passed. `close()` always writes
a final version. Only the vault's executor writes it (`may_write`, the lease's check): a
daemon that lost the lease to another machine leaves the page to that one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.core.ledger import Ledger
from daemon.core.vault import Vault
from daemon.lifecycle.approval import render_template
from daemon.reports.status import RecentItem, Snapshot, build_snapshot, show_time

log = logging.getLogger(__name__)

DASHBOARD = "Dashboard.md"


def render_dashboard(snapshot: Snapshot) -> str:
    """Return the Markdown of Dashboard.md for a snapshot."""
    return render_template(
        "dashboard.md.j2",
        generated_at=show_time(snapshot.generated_at),
        counts=snapshot.counts,
        pending=[
            {
                **asdict(item),
                "link": _link(item.file),
                "error": _flat(item.error),
                "expires_at": item.expires_at and show_time(item.expires_at, seconds=False),
            }
            for item in snapshot.pending
        ],
        problems=[
            {**asdict(item), "link": _link(item.file), "error": _flat(item.error)}
            for item in snapshot.problems
        ],
        alerts=snapshot.alerts,
        runs=snapshot.runs,
        queue=snapshot.queue,
        executor=_executor_line(snapshot.executor),
        pending_more=snapshot.pending_more,
        problems_more=snapshot.problems_more,
        sync_conflicts=snapshot.sync_conflicts,
        breakers=snapshot.breakers,
        recent=[_recent_line(item) for item in reversed(snapshot.recent)],
    )


class Dashboard:
    """Keeps Dashboard.md up to date for one vault; `changed` is the Runner's on_change."""

    def __init__(
        self,
        vault: Vault,
        ledger: Ledger | None,
        *,
        min_interval: float,
        clock: Callable[[], datetime] | None = None,
        alerts: Callable[[], list[str]] = list,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.vault = vault
        # Whether this daemon is still the vault's executor (ExecutorLease.holds).
        self.may_write = may_write
        # The parts of the daemon vaultd gave up on (see daemon/service/supervisor.py).
        self.alerts = alerts
        # Brings what the dashboard shows up to date before each write (skill runs).
        self.before_write: Callable[[], object] = lambda: None
        self.ledger = ledger
        self.min_interval = min_interval
        self.clock = clock or (lambda: datetime.now(UTC))
        self.path = vault.root / DASHBOARD
        self.writes = 0
        self._lock = threading.Lock()
        self._last: float | None = None
        self._timer: threading.Timer | None = None
        self._closed = False

    def changed(self) -> None:
        """Note that something changed: write now, or once the interval has passed."""
        with self._lock:
            if self._closed or self._timer is not None:
                return  # a write is already scheduled; it will show this change too
            now = time.monotonic()
            if self._last is None or now - self._last >= self.min_interval:
                self._write_logged()
                return
            delay = self._last + self.min_interval - now
            self._timer = threading.Timer(delay, self._deferred)
            self._timer.daemon = True
            self._timer.start()

    def write(self) -> Path:
        """Write Dashboard.md now, whatever the throttle says; return its path."""
        with self._lock:
            self._cancel()
            self._write()
        return self.path

    def close(self) -> None:
        """Write the final version and stop: later changes are not written."""
        with self._lock:
            self._cancel()
            if not self._closed:
                self._write_logged()
            self._closed = True

    def _deferred(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._write_logged()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _write_logged(self) -> None:
        # The dashboard is a convenience: failing to write it must never stop the daemon.
        try:
            self._write()
        except Exception:
            log.exception("%s: could not be written", self.path)

    def _write(self) -> None:
        # The throttle counts attempts: a dashboard that cannot be written must not be
        # rebuilt after every file.
        self._last = time.monotonic()
        if not self.may_write():
            return
        self.before_write()
        snapshot = build_snapshot(self.vault, self.ledger, now=self.clock())
        snapshot.alerts = self.alerts()
        text = render_dashboard(snapshot)
        self.vault.write(self.path, text)
        self.writes += 1


def _executor_line(lease: dict[str, Any] | None) -> str | None:
    """Return "host (pid N, dry-run), heartbeat T" for the lease, or None if there is none."""
    if not lease:
        return None
    if lease.get("problem"):
        return f"unknown: the lease cannot be read ({lease['problem']})"
    details = ", ".join(
        filter(None, [f"pid {lease['pid']}" if lease.get("pid") else None, lease.get("mode")])
    )
    heartbeat = f", heartbeat {show_time(lease['heartbeat'])}" if lease.get("heartbeat") else ""
    # The lease is a file in the vault: what it says stays on one line of the page.
    return _flat(f"{lease.get('host') or lease.get('machine_id')} ({details}){heartbeat}")


def _link(relative: str) -> str:
    """Return the Obsidian link target of a vault file: its path without ".md"."""
    return relative.removesuffix(".md") if relative.lower().endswith(".md") else relative


def _flat(text: str | None) -> str | None:
    """Return text on one line, so it cannot break the Markdown list it is shown in."""
    return " ".join(text.split()) if text else text


def _recent_line(item: RecentItem) -> str:
    parts = [show_time(item.timestamp), f"**{item.event}**"]
    if item.action:
        parts.append(item.action)
    if item.task_id:
        parts.append(f"`{item.task_id}`")
    if item.file:
        parts.append(f"`{item.file}`")
    if item.error:
        parts.append(_flat(item.error) or "")
    return " · ".join(parts)
