"""watchdog's inotify move pairing, without its half-second stall (the approval latency).

watchdog pairs a rename's IN_MOVED_FROM and IN_MOVED_TO through a DelayedQueue: a FROM waits
up to 0.5 s for its TO. The queue's reader, when a FROM is at its head, sleeps the whole
0.5 s, and does not wake when the TO arrives a microsecond later and takes the FROM out as
a pair. A person's move into Approved/ then reached vaultd half a second late, at random
(the p99 of `make bench`; watchdog issues #390 and #649 describe the same stall).

`WakingDelayedQueue` keeps the queue's contract (the same order, the same 0.5 s for a FROM
that stays unpaired) but waits on the queue's condition, which every `put` notifies, so the
pair is handed on as soon as it is made. `install()` makes watchdog's grouper use it; it is
idempotent and checked by tests/test_inotify_moves.py against the installed watchdog.
"""

from __future__ import annotations

import time
from typing import TypeVar

from watchdog.observers import inotify_move_event_grouper
from watchdog.utils.delayed_queue import DelayedQueue

T = TypeVar("T")


class WakingDelayedQueue(DelayedQueue[T]):
    """A DelayedQueue whose `get` wakes when the queue changes, not only when time is up."""

    def get(self) -> T | None:
        """Return the head once its delay (if any) is over, or None once closed; a head
        taken out meanwhile (a FROM paired with its TO) is not waited for."""
        with self._not_empty:
            while True:
                while not self._queue and not self._closed:
                    self._not_empty.wait()
                if self._closed:
                    return None
                head, inserted, delayed = self._queue[0]
                left = inserted + self.delay - time.monotonic() if delayed else 0.0
                if left <= 0:
                    self._queue.popleft()
                    return head
                self._not_empty.wait(left)  # a put (the pair) wakes this at once


def install() -> None:
    """Make watchdog's inotify move grouper build its queue as a WakingDelayedQueue."""
    inotify_move_event_grouper.DelayedQueue = WakingDelayedQueue  # type: ignore[misc]
