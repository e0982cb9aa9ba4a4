"""The inotify move pairing hands a rename on at once (service.inotify_moves)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from watchdog.events import FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import inotify_move_event_grouper

from daemon.service import inotify_moves, watcher
from daemon.service.inotify_moves import WakingDelayedQueue

DELAY = 0.5


def test_a_delayed_head_taken_out_meanwhile_is_not_waited_for():
    queue: WakingDelayedQueue[str] = WakingDelayedQueue(DELAY)
    queue.put("moved-from", delay=True)
    got: list[tuple[str | None, float]] = []

    def read() -> None:
        start = time.monotonic()
        got.append((queue.get(), time.monotonic() - start))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.05)  # the reader now waits on the delayed head
    queue.remove(lambda item: item == "moved-from")  # paired with its TO ...
    queue.put("moved-pair")  # ... and put back as one event
    reader.join(timeout=5)
    [(item, waited)] = got
    assert item == "moved-pair"
    assert waited < DELAY / 2, f"waited {waited:.3f} s for a head that was gone"


def test_an_unpaired_from_still_waits_its_delay_and_order_is_kept():
    queue: WakingDelayedQueue[str] = WakingDelayedQueue(0.2)
    start = time.monotonic()
    queue.put("from", delay=True)
    queue.put("later")
    assert queue.get() == "from"
    assert time.monotonic() - start >= 0.2
    assert queue.get() == "later"


def test_close_ends_a_waiting_get():
    queue: WakingDelayedQueue[str] = WakingDelayedQueue(DELAY)
    got: list[str | None] = ["unset"]
    reader = threading.Thread(target=lambda: got.__setitem__(0, queue.get()))
    reader.start()
    time.sleep(0.05)
    queue.close()
    reader.join(timeout=5)
    assert got == [None]


@pytest.mark.skipif(not watcher.INOTIFY, reason="inotify only")
def test_the_installed_watchdog_pairs_a_rename_without_the_half_second(tmp_path: Path):
    from watchdog.observers.inotify import InotifyObserver

    inotify_moves.install()
    assert inotify_move_event_grouper.DelayedQueue is WakingDelayedQueue
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    moved = threading.Event()
    latencies: list[float] = []

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if isinstance(event, FileMovedEvent):
                moved.set()

    observer = InotifyObserver(generate_full_events=True)
    observer.schedule(Handler(), str(tmp_path), recursive=True)
    observer.start()
    try:
        time.sleep(0.1)
        for i in range(20):
            note = tmp_path / "a" / f"{i}.md"
            note.write_text("x", encoding="utf-8")
            time.sleep(0.02)
            moved.clear()
            start = time.monotonic()
            note.rename(tmp_path / "b" / note.name)
            assert moved.wait(5), "no move event"
            latencies.append(time.monotonic() - start)
    finally:
        observer.stop()
        observer.join()
    # Without the waking queue, a reader that caught the FROM first slept the whole 0.5 s.
    assert max(latencies) < DELAY / 2, [round(t, 3) for t in latencies]
