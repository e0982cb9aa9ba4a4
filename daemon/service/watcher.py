"""Turning file events into files that are ready to read.

Events are only hints (design §3). Every hinted path waits in `StableQueue` until its size,
mtime, inode and content hash have held still for the stability window; then it is handed
out, once. A
start-up scan, a periodic rescan and a rescan after an inotify overflow catch whatever the
events missed.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.core.vault import ACTIVE_FOLDERS, Signature, Vault, is_ignored

log = logging.getLogger(__name__)

# Files larger than this are refused unread by the pipeline; hashing them would be waste.
HASH_LIMIT = 4 * 1024 * 1024

Fingerprint = tuple[Signature | None, str | None]


def fingerprint(path: Path) -> Fingerprint:
    """Return what must hold still before a file is read: its signature and content hash.

    The hash catches a rewrite that keeps size and mtime, which happens on filesystems with
    coarse timestamps (network drives, FAT). Symlinks are never followed: they get no hash.
    """
    signature = Signature.of(path)
    if signature is None or signature.size > HASH_LIMIT:
        return signature, None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return signature, None
    with os.fdopen(fd, "rb") as handle:
        digest = hashlib.blake2b(handle.read(HASH_LIMIT + 1), digest_size=16).hexdigest()
    return signature, digest


class StableQueue:
    """Paths waiting to become stable, then ready to process, each at most once in line."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._lock = threading.Condition()
        # path -> (signature when last seen, monotonic time it was last seen changing)
        self._settling: OrderedDict[Path, tuple[Fingerprint, float]] = OrderedDict()
        self._deferred: list[tuple[float, str]] = []

    def hint(self, path: Path, *, settled_since: float | None = None) -> None:
        """Note that a path may have changed. `settled_since` (monotonic) skips the wait."""
        with self._lock:
            previous = self._settling.get(path)
        if previous and previous[0][0] == Signature.of(path):
            # Already waiting, nothing new: keep its place in line. A new file sends three
            # events; hashing it once is enough, and a rewrite that keeps size and mtime is
            # still caught by the hash taken when it leaves the line.
            return
        signature = fingerprint(path)
        with self._lock:
            self._settling.pop(path, None)
            if settled_since is None:
                self._settling[path] = (signature, time.monotonic())
            else:
                self._settling[path] = (signature, settled_since)
                self._settling.move_to_end(path, last=False)
            self._lock.notify()

    def defer(self, path: Path, until: datetime) -> None:
        """Hand the path out again at a wall-clock time (a scheduled post, say)."""
        delay = max(0.0, (until - datetime.now(UTC)).total_seconds())
        due = time.monotonic() + delay
        with self._lock:
            # Every rescan sees a scheduled file again: keep one entry per path and time.
            if any(name == str(path) and abs(at - due) < 1 for at, name in self._deferred):
                return
            heapq.heappush(self._deferred, (due, str(path)))
            self._lock.notify()

    def __len__(self) -> int:
        with self._lock:
            return len(self._settling)

    def next_ready(self, timeout: float) -> Path | None:
        """Return a path that has been stable for the window, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                while self._deferred and self._deferred[0][0] <= now:
                    _, name = heapq.heappop(self._deferred)
                    self._settling[Path(name)] = (fingerprint(Path(name)), now - self.window)
                ready = self._pop_stable(now)
                if ready is not None:
                    return ready
                wait = deadline - now
                if wait <= 0:
                    return None
                self._lock.wait(min(wait, self._next_check(now)))

    def _pop_stable(self, now: float) -> Path | None:
        # Only the head of the line is looked at: a burst of thousands stays linear.
        while self._settling:
            path, (signature, changed_at) = next(iter(self._settling.items()))
            if now - changed_at < self.window:
                # Entries are in order of last change: the rest are younger still.
                return None
            current = fingerprint(path)
            del self._settling[path]
            if current == signature:
                return path
            if current[0] is not None:  # still there, but changed: wait again
                self._settling[path] = (current, now)
        return None

    def _next_check(self, now: float) -> float:
        waits = [0.5]
        if self._settling:
            _, changed_at = next(iter(self._settling.values()))
            waits.append(max(0.01, changed_at + self.window - now))
        if self._deferred:
            waits.append(max(0.01, self._deferred[0][0] - now))
        return min(waits)


class _Hints(FileSystemEventHandler):
    def __init__(self, vault: Vault, queue: StableQueue) -> None:
        self.vault = vault
        self.queue = queue

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(str(raw))
            if not is_ignored(path.name) and self.vault.folder_of(path) in ACTIVE_FOLDERS:
                self.queue.hint(path)


class _OverflowAlarm(logging.Handler):
    """watchdog reports a kernel queue overflow only as a log record: listen for it."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.flag = flag

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.flag.set()


class Watcher:
    """Watches the active folders and feeds a StableQueue; scans on demand."""

    name = "file watcher"

    def __init__(self, vault: Vault, queue: StableQueue, *, polling: bool = False) -> None:
        self.vault = vault
        self.queue = queue
        self.overflowed = threading.Event()
        self.polling = polling
        # Made at start: an inotify observer holds a kernel instance (128 per user by
        # default) from the moment it exists.
        self._observer: BaseObserver | None = None
        self._alarm = _OverflowAlarm(self.overflowed)

    def _new_observer(self) -> BaseObserver:
        return PollingObserver(timeout=1) if self.polling else Observer()

    def healthy(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def restart(self) -> None:
        """Start a fresh observer (a stopped one cannot start again), then rescan."""
        self.stop()
        self.vault.ensure_folders()
        self.start()
        self.scan()  # events may have been missed meanwhile

    def start(self) -> None:
        """Watch the vault root, recursively: one kernel watcher for the whole vault, and a
        pipeline folder that a sync tool deletes and recreates is watched again at once.
        Events outside the active folders are dropped by `_Hints`."""
        handler = _Hints(self.vault, self.queue)
        self._observer = self._new_observer()
        self._observer.schedule(handler, str(self.vault.root), recursive=True)
        logging.getLogger("watchdog.observers").addHandler(self._alarm)
        self._observer.start()

    def stop(self) -> None:
        logging.getLogger("watchdog.observers").removeHandler(self._alarm)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    def scan(self) -> int:
        """Hint every file in the active folders, oldest first; return how many.

        Files older than the window skip the wait. Each of them goes to the front of the
        line (`hint(settled_since=...)`), so they are hinted newest first and the oldest
        ends up first: a backlog is worked through in the order it was written.
        """
        settled = time.monotonic() - self.queue.window
        cutoff = time.time() - self.queue.window
        found = []
        for folder in ACTIVE_FOLDERS:
            for path in self.vault.files(folder):
                signature = Signature.of(path)
                found.append((signature.mtime_ns if signature else 0, path))
        found.sort(key=lambda item: item[0])
        young = [path for mtime_ns, path in found if mtime_ns / 1e9 >= cutoff]
        old = [path for mtime_ns, path in found if mtime_ns / 1e9 < cutoff]
        for path in reversed(old):
            self.queue.hint(path, settled_since=settled)
        for path in young:
            self.queue.hint(path)
        return len(found)
