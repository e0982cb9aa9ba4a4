"""StableQueue and Watcher: file events become files that are ready to read, each once."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import note, wait_for

from daemon.core.vault import Vault
from daemon.service.watcher import StableQueue, Watcher, fingerprint

TASK = note({"type": "social_post", "platforms": ["facebook"], "text": "Hi"})
IGNORED_NAMES = [
    ".hidden.md",
    "draft.md.tmp",
    "notes.md~",
    "~lock.md",
    ".notes.md.swp",
    "download.md.part",
]


def drain(queue: StableQueue, timeout: float) -> list[Path]:
    """Return every path the queue hands out within `timeout` seconds of quiet."""
    out = []
    while (path := queue.next_ready(timeout=timeout)) is not None:
        out.append(path)
    return out


# -- StableQueue ---------------------------------------------------------------------------


def test_a_hinted_file_is_handed_out_only_after_the_stability_window(tmp_path: Path):
    path = tmp_path / "task.md"
    path.write_text("a", encoding="utf-8")
    queue = StableQueue(0.2)

    started = time.monotonic()
    queue.hint(path)

    assert queue.next_ready(timeout=0) is None
    assert queue.next_ready(timeout=5) == path
    assert time.monotonic() - started >= 0.2


def test_a_file_that_keeps_changing_is_not_handed_out_until_it_holds_still(tmp_path: Path):
    path = tmp_path / "task.md"
    path.write_text("a", encoding="utf-8")
    queue = StableQueue(0.2)
    queue.hint(path)
    # Changes nobody told the queue about (no event): it notices them when it looks again.
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        last_write = time.monotonic()
        with path.open("a", encoding="utf-8") as handle:
            handle.write("more ")
        assert queue.next_ready(timeout=0.05) is None

    assert queue.next_ready(timeout=5) == path
    assert time.monotonic() - last_write >= 0.2
    assert queue.next_ready(timeout=0.3) is None, "handed out once"


def test_a_path_hinted_many_times_is_in_line_once(tmp_path: Path):
    path = tmp_path / "task.md"
    path.write_text("a", encoding="utf-8")
    queue = StableQueue(0.05)

    for _ in range(5):
        queue.hint(path)

    assert len(queue) == 1
    assert drain(queue, timeout=0.3) == [path]


def test_paths_come_out_in_the_order_they_settled(tmp_path: Path):
    paths = [tmp_path / f"{n}.md" for n in range(3)]
    for path in paths:
        path.write_text("x", encoding="utf-8")
    queue = StableQueue(0.05)
    for path in paths:
        queue.hint(path)
    paths[0].write_text("changed", encoding="utf-8")
    queue.hint(paths[0])  # changed again: back of the line

    assert drain(queue, timeout=0.3) == [paths[1], paths[2], paths[0]]


def test_a_path_stable_since_before_the_window_skips_the_wait(tmp_path: Path):
    path = tmp_path / "old.md"
    path.write_text("x", encoding="utf-8")
    queue = StableQueue(60)

    queue.hint(path, settled_since=time.monotonic() - 60)

    assert queue.next_ready(timeout=0) == path


def test_a_deferred_path_comes_back_at_its_time_and_not_before(tmp_path: Path):
    path = tmp_path / "scheduled.md"
    path.write_text("x", encoding="utf-8")
    queue = StableQueue(0.05)

    started = time.monotonic()
    queue.defer(path, datetime.now(UTC) + timedelta(seconds=0.4))

    assert queue.next_ready(timeout=0.1) is None
    assert queue.next_ready(timeout=5) == path
    assert time.monotonic() - started >= 0.4 - 0.02
    assert queue.next_ready(timeout=0.2) is None


def test_a_deferred_time_in_the_past_comes_back_at_once(tmp_path: Path):
    path = tmp_path / "late.md"
    path.write_text("x", encoding="utf-8")
    queue = StableQueue(10)

    queue.defer(path, datetime.now(UTC) - timedelta(hours=1))

    assert queue.next_ready(timeout=1) == path


def test_an_empty_queue_waits_no_longer_than_its_timeout():
    queue = StableQueue(0.3)
    started = time.monotonic()
    assert queue.next_ready(timeout=0.1) is None
    assert time.monotonic() - started < 2


# -- Watcher -------------------------------------------------------------------------------


@pytest.fixture
def watching(request: pytest.FixtureRequest, vault_root: Path) -> Iterator[StableQueue]:
    """A started Watcher feeding a queue; parametrize indirectly with True to poll."""
    queue = StableQueue(0.05)
    watcher = Watcher(Vault(vault_root), queue, polling=getattr(request, "param", False))
    watcher.start()
    yield queue
    watcher.stop()


@pytest.mark.parametrize("watching", [False, True], ids=["inotify", "polling"], indirect=True)
def test_a_file_created_in_an_active_folder_is_hinted(watching: StableQueue, vault_root: Path):
    path = vault_root / "Needs_Action" / "task.md"
    path.write_text(TASK, encoding="utf-8")

    assert watching.next_ready(timeout=5) == path


@pytest.mark.parametrize("watching", [False, True], ids=["inotify", "polling"], indirect=True)
def test_a_file_moved_into_approved_is_hinted_under_its_new_name(
    watching: StableQueue, vault_root: Path
):
    source = vault_root / "Pending_Approval" / "request.md"
    source.write_text(TASK, encoding="utf-8")
    wait_for(lambda: watching.next_ready(timeout=0.2) == source, timeout=5)

    target = vault_root / "Approved" / "request.md"
    source.rename(target)

    handed_out = wait_for(lambda: watching.next_ready(timeout=0.2), timeout=5)
    if handed_out == source:  # the old name is a hint too; it is simply gone
        handed_out = watching.next_ready(timeout=5)
    assert handed_out == target


def test_files_outside_the_active_folders_are_not_hinted(watching: StableQueue, vault_root: Path):
    (vault_root / "Done" / "finished.md").write_text(TASK, encoding="utf-8")
    (vault_root / "Logs" / "2026-01-01.json").write_text("{}\n", encoding="utf-8")
    (vault_root / "Dashboard.md").write_text("# Dashboard\n", encoding="utf-8")
    (vault_root / "Plans" / "plan.md").write_text("# Plan\n", encoding="utf-8")
    sentinel = vault_root / "Needs_Action" / "sentinel.md"
    sentinel.write_text(TASK, encoding="utf-8")

    assert wait_for(lambda: watching.next_ready(timeout=0.2), timeout=5) == sentinel
    assert drain(watching, timeout=0.3) == []


def test_ignored_names_are_never_hinted(watching: StableQueue, vault_root: Path):
    for folder in ("Needs_Action", "Approved"):
        for name in IGNORED_NAMES:
            (vault_root / folder / name).write_text(TASK, encoding="utf-8")
    sentinel = vault_root / "Needs_Action" / "sentinel.md"
    sentinel.write_text(TASK, encoding="utf-8")

    assert wait_for(lambda: watching.next_ready(timeout=0.2), timeout=5) == sentinel
    assert drain(watching, timeout=0.3) == []


def test_scan_hints_every_candidate_file_and_skips_ignored_ones(vault_root: Path):
    queue = StableQueue(0.05)
    watcher = Watcher(Vault(vault_root), queue)
    wanted = [
        vault_root / "Needs_Action" / "a.md",
        vault_root / "Pending_Approval" / "b.md",
        vault_root / "Approved" / "c.md",
        vault_root / "Rejected" / "d.md",
        vault_root / "Failed" / "e.md",
    ]
    for path in wanted:
        path.write_text(TASK, encoding="utf-8")
    for name in IGNORED_NAMES:
        (vault_root / "Needs_Action" / name).write_text(TASK, encoding="utf-8")
    (vault_root / "Done" / "f.md").write_text(TASK, encoding="utf-8")

    assert watcher.scan() == len(wanted)
    assert sorted(drain(queue, timeout=0.3)) == sorted(wanted)


def test_scan_hands_out_files_older_than_the_window_at_once(vault_root: Path):
    path = vault_root / "Needs_Action" / "old.md"
    path.write_text(TASK, encoding="utf-8")
    queue = StableQueue(0.5)
    watcher = Watcher(Vault(vault_root), queue)
    wait_for(lambda: time.time() - path.stat().st_mtime > 0.6, timeout=5)

    watcher.scan()

    assert queue.next_ready(timeout=0) == path


def test_a_backlog_found_at_start_up_is_handed_out_oldest_first_across_folders(
    vault_root: Path,
):
    # Names sort one way, folders another, and the times a third: only the times count.
    written = {
        "Needs_Action/a.md": 5,
        "Approved/b.md": 1,
        "Needs_Action/c.md": 3,
        "Pending_Approval/d.md": 2,
        "Needs_Action/e.md": 4,
    }
    hour_ago = time.time() - 3600
    for relative, minute in written.items():
        path = vault_root / relative
        path.write_text(TASK, encoding="utf-8")
        os.utime(path, (hour_ago + minute * 60, hour_ago + minute * 60))
    queue = StableQueue(0.5)
    Watcher(Vault(vault_root), queue).scan()

    handed_out = [queue.next_ready(timeout=0) for _ in written]

    oldest_first = sorted(written, key=written.__getitem__)
    assert [p.relative_to(vault_root).as_posix() for p in handed_out if p] == oldest_first


def test_the_inotify_overflow_warning_raises_the_overflow_flag(vault_root: Path):
    watcher = Watcher(Vault(vault_root), StableQueue(0.05))
    watcher.start()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning("unrelated warning")
        assert not watcher.overflowed.is_set()
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert watcher.overflowed.is_set()
    finally:
        watcher.stop()
    # Once stopped, the watcher no longer listens.
    watcher.overflowed.clear()
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    assert not watcher.overflowed.is_set()


def test_a_rewrite_that_keeps_size_and_mtime_is_still_seen_as_a_change(tmp_path: Path):
    # Network drives and FAT keep coarse mtimes: only the content hash tells the versions apart.
    path = tmp_path / "note.md"
    path.write_text("version A")
    stamp = path.stat().st_mtime_ns
    first = fingerprint(path)
    path.write_text("version B")
    os.utime(path, ns=(stamp, stamp))
    second = fingerprint(path)
    assert first[0] == second[0]
    assert first != second


def test_a_symlink_is_fingerprinted_without_reading_its_target(tmp_path: Path):
    target = tmp_path / "target.md"
    target.write_text("secret")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    signature, digest = fingerprint(link)
    assert signature is not None
    assert digest is None
