"""Turning file events into files that are ready to read.

Events are only hints (design §3). Every hinted path waits in `StableQueue` until its size,
mtime, inode and content hash have held still long enough; then it is handed out, once.
How long is what the last event says. With inotify, a rename into a pipeline folder is
complete (a rename is atomic), so it is handed out at once; a file closed after writing
after `quiet_ms`; a write with no close yet after the full stability window, as is anything
the polling observer (`--polling`, network drives) or a scan reports: they see no closes.
Whatever the wait, the file is fingerprinted again as it leaves the line, and a file changed
meanwhile waits the full window again. The content hash that binds an approval to what a
person saw (design §3) is checked on what is then read, so a change a wait could not see is
still never executed. A start-up scan, a periodic rescan and a rescan after an inotify
overflow catch whatever the events missed.
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
from typing import TYPE_CHECKING, Literal, cast

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.core.vault import ACTIVE_FOLDERS, Signature, Vault, is_ignored
from daemon.service import inotify_moves

if TYPE_CHECKING:
    from watchdog.observers.inotify import InotifyObserver

log = logging.getLogger(__name__)
# watchdog's native observer is inotify's (on Linux): the only one that reports closes.
INOTIFY = getattr(Observer, "__name__", "") == "InotifyObserver"

# Files larger than this are refused unread by the pipeline; hashing them would be waste.
HASH_LIMIT = 4 * 1024 * 1024

Fingerprint = tuple[Signature | None, str | None]

# What a hint says happened to a path. "renamed": it was renamed into the folder, complete
# (a rename is atomic); "closed": a writer closed it; "written": a write with no close seen
# yet; "found": a scan found it (it waits as a write, but a scan never restarts a wait).
Change = Literal["renamed", "closed", "written", "found"]
# The lines a path waits in: ready at once, after `quiet` seconds, after the full window.
Line = Literal["at_once", "quiet", "stable"]
LINES: tuple[Line, ...] = ("at_once", "quiet", "stable")
LINE_OF_CHANGE: dict[Change, Line] = {
    "renamed": "at_once",
    "closed": "quiet",
    "written": "stable",
    "found": "stable",
}
# watchdog's event types that may mean new content (opened, closed_no_write and deleted
# never do), and the change each one hints.
CHANGE_OF_EVENT: dict[str, Change] = {
    "moved": "renamed",
    "closed": "closed",
    "created": "written",
    "modified": "written",
    "attrib": "written",
}


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
    """Paths waiting to become stable, then ready to process, each at most once in line.

    How long a path must hold still depends on what was last seen happen to it (`Change`):
    a rename into the folder is ready at once, a file closed after writing after `quiet`
    seconds, anything else (a write with no close yet, a file found by a scan) after the
    full `window`. Each wait has its own line, in order of last change.
    """

    def __init__(self, window_seconds: float, quiet_seconds: float | None = None) -> None:
        self.window = window_seconds
        self.quiet = window_seconds if quiet_seconds is None else quiet_seconds
        self._lock = threading.Condition()
        # line -> path -> (fingerprint when last seen, monotonic time it was last seen changing)
        self._lines: dict[Line, OrderedDict[Path, tuple[Fingerprint, float]]] = {
            line: OrderedDict() for line in LINES
        }
        self._line_of: dict[Path, Line] = {}
        self._deferred: list[tuple[float, str]] = []

    def hint(
        self, path: Path, change: Change = "found", *, settled_since: float | None = None
    ) -> None:
        """Note that a path may have changed, and how. `settled_since` (monotonic) skips the
        wait: the scan found the file untouched for longer than the window."""
        line = LINE_OF_CHANGE[change]
        with self._lock:
            previous = self._get(path)
        if (
            previous
            and previous[1][0][0] == Signature.of(path)
            and (change == "found" or (change == "written" and previous[0] == "stable"))
        ):
            # Already waiting, nothing new: keep its place in line. A new file sends three
            # events; hashing it once is enough, and a rewrite that keeps size and mtime is
            # still caught by the hash taken when it leaves the line. A write after a close
            # or a rename is never "nothing new": its data may be half-way in (the file may
            # have been hashed after the write began), so it waits the full window again.
            return
        signature = fingerprint(path)
        with self._lock:
            self._put(path, line, signature, settled_since)
            if settled_since is not None:
                self._lines[line].move_to_end(path, last=False)
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
            return len(self._line_of)

    def wait_of(self, path: Path) -> float | None:
        """Given a path, return how long it must hold still before it is handed out (in
        seconds, from its last change), or None if it is not in line."""
        with self._lock:
            line = self._line_of.get(path)
            return None if line is None else self._wait(line)

    def next_ready(self, timeout: float) -> Path | None:
        """Return a path that has held still long enough, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                while self._deferred and self._deferred[0][0] <= now:
                    _, name = heapq.heappop(self._deferred)
                    self._put(Path(name), "at_once", fingerprint(Path(name)), now)
                ready = self._pop_stable(now)
                if ready is not None:
                    return ready
                wait = deadline - now
                if wait <= 0:
                    return None
                self._lock.wait(min(wait, self._next_check(now)))

    # -- the lines (called with the lock held) --------------------------------------------

    def _wait(self, line: Line) -> float:
        if line == "at_once":
            return 0.0
        if line == "quiet":
            return min(self.quiet, self.window)  # `--once` sets the window to 0
        return self.window

    def _get(self, path: Path) -> tuple[Line, tuple[Fingerprint, float]] | None:
        line = self._line_of.get(path)
        return None if line is None else (line, self._lines[line][path])

    def _put(self, path: Path, line: Line, signature: Fingerprint, at: float | None) -> None:
        """Put the path at the back of a line (at: when it changed; None: now)."""
        old = self._line_of.pop(path, None)
        if old is not None:
            del self._lines[old][path]
        self._lines[line][path] = (signature, time.monotonic() if at is None else at)
        self._line_of[path] = line

    def _heads(self) -> list[tuple[float, Line]]:
        """Return, for each line, when its head is due; soonest first."""
        heads = []
        for line, entries in self._lines.items():
            if entries:
                _, changed_at = next(iter(entries.values()))
                heads.append((changed_at + self._wait(line), line))
        return sorted(heads)

    def _pop_stable(self, now: float) -> Path | None:
        # Only the heads of the lines are looked at: a burst of thousands stays linear.
        while (heads := self._heads()) and heads[0][0] <= now:
            line = heads[0][1]
            path, (signature, _) = self._lines[line].popitem(last=False)
            del self._line_of[path]
            current = fingerprint(path)
            if current == signature:
                return path
            if current[0] is not None:
                # Still there, but changed since it was last seen, and no event said how
                # yet: as a write with no close, it waits the full window.
                self._put(path, "stable", current, now)
        # Entries are in order of last change: the rest of each line is younger still.
        return None

    def _next_check(self, now: float) -> float:
        waits = [0.5]
        heads = self._heads()
        if heads:
            waits.append(max(0.001, heads[0][0] - now))
        if self._deferred:
            waits.append(max(0.01, self._deferred[0][0] - now))
        return min(waits)


class _Hints(FileSystemEventHandler):
    """Turn watchdog's events into hints. With `closes` (inotify), a rename into a folder
    and a close after writing say the file is complete; without (polling, or a platform
    whose events may merge), every event is only a write."""

    def __init__(self, vault: Vault, queue: StableQueue, *, closes: bool = False) -> None:
        self.vault = vault
        self.queue = queue
        self.closes = closes

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        change = CHANGE_OF_EVENT.get(event.event_type)
        if change is None:
            return
        if not self.closes:
            change = "written"
        # A move's source is gone: only where it landed is news (a move in from outside
        # the vault has no source, one out of it no destination).
        raw = os.fsdecode(event.dest_path if event.event_type == "moved" else event.src_path)
        if not raw:
            return
        path = Path(raw)
        if not is_ignored(path.name) and self.vault.folder_of(path) in ACTIVE_FOLDERS:
            self.queue.hint(path, change)


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
        # Only inotify reports closes and renames as they happen; elsewhere every event
        # waits the full window.
        self.closes = not polling and INOTIFY
        # Made at start: an inotify observer holds a kernel instance (128 per user by
        # default) from the moment it exists.
        self._observer: BaseObserver | None = None
        self._alarm = _OverflowAlarm(self.overflowed)

    def _new_observer(self) -> BaseObserver:
        if self.polling:
            return PollingObserver(timeout=1)
        if self.closes:
            inotify = cast("type[InotifyObserver]", Observer)
            inotify_moves.install()  # a rename is handed on when paired, not 0.5 s later
            # Full events: a rename in from outside the vault is a rename too, not a creation.
            return inotify(generate_full_events=True)
        return Observer()

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
        handler = _Hints(self.vault, self.queue, closes=self.closes)
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
