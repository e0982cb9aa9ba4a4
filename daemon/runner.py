"""The daemon: reconcile, scan, then process stable files one at a time until told to stop.

    vaultd run = reconcile crashed intents → scan every active folder → watch → loop:
                 next stable file → pipeline.process → dashboard (throttled)
                 every rescan interval (or after an overflow): scan again, expire requests

SIGTERM and SIGINT set a flag; the file being processed is finished first.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from daemon.config import Config
from daemon.pipeline import Outcome, Pipeline
from daemon.vault import Signature
from daemon.watcher import StableQueue, Watcher

log = logging.getLogger(__name__)


class Runner:
    def __init__(
        self,
        pipeline: Pipeline,
        config: Config,
        *,
        polling: bool = False,
        on_change: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.queue = StableQueue(config.daemon.stability_ms / 1000)
        self.watcher = Watcher(pipeline.vault, self.queue, polling=polling)
        self.stop_event = stop or threading.Event()
        self.on_change = on_change or (lambda: None)
        self.processed = 0
        # Set by the scheduler's expiry job; the worker expires requests on its next turn,
        # so files are only ever touched by this one thread.
        self._expire_now = threading.Event()
        # Files whose last processing changed nothing, by the signature they had then.
        self._settled: dict[Path, Signature | None] = {}

    def request_expiry(self) -> None:
        """Ask the worker to move expired approval requests to Rejected/ (thread-safe)."""
        self._expire_now.set()

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping after the current file", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def start(self) -> None:
        """Reconcile interrupted calls, then queue everything already in the vault."""
        settled = self.pipeline.reconcile()
        if settled:
            log.info("reconciled %d interrupted call(s)", len(settled))
        self.pipeline.expire_due()

    def run_once(self) -> int:
        """Process every file already in the vault, and what that leads to; then return."""
        self.start()
        self.queue.window = 0
        self.watcher.scan()
        while not self.stop_event.is_set():
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
            now = time.monotonic()
            if now >= next_scan or self.watcher.overflowed.is_set():
                if self.watcher.overflowed.is_set():
                    log.warning("file events were lost (inotify overflow): rescanning")
                    self.pipeline.audit.write(
                        "rescan_after_overflow", action=None, task_id=None, file=None
                    )
                    self.watcher.overflowed.clear()
                self.watcher.scan()
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
        if path in self._settled and self._settled[path] == Signature.of(path):
            return
        try:
            outcome = self.pipeline.process(path)
        except Exception:
            # One file's failure must not stop the daemon; it stays where it is and is
            # tried again at the next rescan.
            log.exception("%s: unexpected error; will retry at the next rescan", path.name)
            self.pipeline.audit.write(
                "internal_error",
                action=None,
                task_id=None,
                file=str(path.name),
                error="unexpected error while processing; see the daemon's output",
            )
            return
        if outcome.status not in ("unchanged", "ignored"):
            vault = self.pipeline.vault
            where = vault.relative(outcome.path) if outcome.path else "-"
            log.info("%s: %s → %s", vault.relative(path), outcome.status, where)
        self._after(outcome)

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
