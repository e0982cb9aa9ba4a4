"""The daemon: reconcile, scan, then process stable files one at a time until told to stop.

    vaultd run = reconcile crashed intents → scan every active folder → watch → loop:
                 next stable file → pipeline.process → dashboard (throttled)
                 every rescan interval (or after an overflow): scan again, expire requests

SIGTERM and SIGINT set a flag; the file being processed is finished first.

With an executor lease (daemon/core/lease.py), the runner reconciles, expires or touches a file
only while the lease names this daemon: it checks before each of them, and stops at once
when another machine took the lease.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from daemon.core.config import Config
from daemon.core.lease import ExecutorLease
from daemon.core.vault import ACTIVE_FOLDERS, Signature
from daemon.lifecycle.pipeline import Outcome, Pipeline
from daemon.service.watcher import StableQueue, Watcher

log = logging.getLogger(__name__)
# The longest wait between two tries of a file whose processing keeps failing.
RETRY_MAX_S = 600.0


def stop_on_signals(stop: threading.Event) -> None:
    """Given an event, set it on SIGTERM or SIGINT (the file being processed is finished)."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping after the current file", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


class Runner:
    def __init__(
        self,
        pipeline: Pipeline,
        config: Config,
        *,
        polling: bool = False,
        on_change: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
        lease: ExecutorLease | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.lease = lease
        self.config = config
        self.queue = StableQueue(
            config.daemon.stability_ms / 1000, quiet_seconds=config.daemon.quiet_ms / 1000
        )
        self.watcher = Watcher(pipeline.vault, self.queue, polling=polling)
        self.stop_event = stop or threading.Event()
        self.on_change = on_change or (lambda: None)
        self.processed = 0
        # Set by the scheduler's expiry job; the worker expires requests on its next turn,
        # so files are only ever touched by this one thread.
        self._expire_now = threading.Event()
        # Files whose last processing changed nothing, by the signature they had then.
        self._settled: dict[Path, Signature | None] = {}
        # Folders named like notes (`x.md/`), each reported once.
        self._reported_folders: set[Path] = set()
        # Files whose processing failed: how many times in a row, and when to try again.
        self._failures: dict[Path, int] = {}
        self._retry_due: dict[Path, float] = {}

    def request_expiry(self) -> None:
        """Ask the worker to move expired approval requests to Rejected/ (thread-safe)."""
        self._expire_now.set()

    def install_signal_handlers(self) -> None:
        stop_on_signals(self.stop_event)

    def executing(self) -> bool:
        """Return whether this daemon may touch the vault's files now: it has no lease, or
        the lease still names it (one stat while the lease is unchanged)."""
        return self.lease is None or self.lease.holds()

    def _lost(self) -> bool:
        return self.lease is not None and self.lease.lost.is_set()

    def start(self) -> None:
        """Reconcile interrupted calls, then queue everything already in the vault."""
        if not self.executing():
            return
        settled = self.pipeline.reconcile()
        if settled:
            log.info("reconciled %d interrupted call(s)", len(settled))
        self.pipeline.expire_due()

    def run_once(self) -> int:
        """Process every file already in the vault, and what that leads to; then return."""
        self.start()
        self.queue.window = 0
        self._scan()
        while not self.stop_event.is_set() and not self._lost():
            path = self.queue.next_ready(timeout=0)
            if path is None:
                break
            self._handle(path)
        self.on_change()
        return self.processed

    def run_forever(self) -> None:
        self.start()
        self.watcher.start()
        log.info("watching for file events")
        try:
            self._loop()
        finally:
            self.watcher.stop()
            self.on_change()

    def _loop(self) -> None:
        rescan_every = self.config.daemon.rescan_seconds
        next_scan = 0.0
        while not self.stop_event.is_set():
            if not self.executing():
                if self._lost():
                    return
                self.stop_event.wait(1.0)  # the lease could not be checked: look again
                continue
            now = time.monotonic()
            if now >= next_scan or self.watcher.overflowed.is_set():
                if self.watcher.overflowed.is_set():
                    log.warning("file events were lost (inotify overflow): rescanning")
                    self.pipeline.audit.write(
                        "rescan_after_overflow", action=None, task_id=None, file=None
                    )
                    self.watcher.overflowed.clear()
                self._scan()
                for outcome in self.pipeline.expire_due():
                    self._after(outcome)
                next_scan = now + rescan_every
            if self._expire_now.is_set():
                self._expire_now.clear()
                for outcome in self.pipeline.expire_due():
                    self._after(outcome)
            path = self.queue.next_ready(timeout=min(0.5, max(0.0, next_scan - now)))
            if path is not None:
                self._handle(path)

    def _handle(self, path: Path) -> None:
        if not self.executing():
            return  # found again by a later scan, if the lease names this daemon again
        due = self._retry_due.get(path)
        if due is not None and time.monotonic() < due:
            return  # failed before: only its backoff brings it back, not every event
        if due is None and path in self._settled and self._settled[path] == Signature.of(path):
            return
        try:
            outcome = self.pipeline.process(path)
        except Exception:  # noqa: BLE001 - logged with its traceback by _failed
            self._failed(path)
            return
        self._failures.pop(path, None)
        self._retry_due.pop(path, None)
        if outcome.status not in ("unchanged", "ignored"):
            vault = self.pipeline.vault
            where = vault.relative(outcome.path) if outcome.path else "-"
            log.info("%s: %s → %s", vault.relative(path), outcome.status, where)
        self._after(outcome)

    def _scan(self) -> None:
        """Queue everything in the active folders; report each folder named like a note."""
        self.watcher.scan()
        vault = self.pipeline.vault
        for folder in ACTIVE_FOLDERS:
            try:
                entries = list(os.scandir(vault.folder(folder)))
            except OSError:
                continue
            for entry in entries:
                path = Path(entry.path)
                odd = entry.name.lower().endswith(".md") and entry.is_dir(follow_symlinks=False)
                if not odd or path in self._reported_folders:
                    continue
                self._reported_folders.add(path)
                log.warning("%s is a folder, not a note: vaultd leaves it alone", entry.name)
                self.pipeline.audit.write(
                    "not_a_note",
                    action=None,
                    task_id=None,
                    file=vault.relative(path),
                    error="a folder named like a note; vaultd leaves it alone",
                )

    def _failed(self, path: Path) -> None:
        """One file's failure (a folder vaultd cannot write, say) must not stop the daemon,
        nor flood the log: it is reported once, then again at each retry, 1 s, 2 s, 4 s …
        up to RETRY_MAX_S apart, while it stays where it is."""
        failures = self._failures.get(path, 0) + 1
        self._failures[path] = failures
        delay = min(RETRY_MAX_S, 2.0 ** (failures - 1))
        self._retry_due[path] = time.monotonic() + delay
        self.queue.defer(path, datetime.now(UTC) + timedelta(seconds=delay))
        log.exception(
            "%s: unexpected error (failure %d in a row); next try in %.0f s",
            path.name,
            failures,
            delay,
        )
        self.pipeline.audit.write(
            "internal_error",
            action=None,
            task_id=None,
            file=self.pipeline.vault.relative(path),
            result={"failures": failures, "retry_in_s": delay},
            error="unexpected error while processing; see the daemon's output",
        )

    def _after(self, outcome: Outcome) -> None:
        self.processed += 1
        if outcome.path is not None:
            signature = Signature.of(outcome.path)
            if outcome.status in ("unchanged", "ignored", "unreadable", "invalid"):
                self._settled[outcome.path] = signature
            else:
                self._settled.pop(outcome.path, None)
            if outcome.retry_at is not None:
                self._settled.pop(outcome.path, None)
                self.queue.defer(outcome.path, outcome.retry_at)
        if outcome.status not in ("unchanged", "ignored"):
            self.on_change()
