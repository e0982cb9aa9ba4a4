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


# -- how long each change waits -------------------------------------------------------------


def test_a_renamed_path_is_ready_at_once_whatever_the_window(tmp_path: Path):
    path = tmp_path / "approved.md"
    path.write_text("complete", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=30)

    queue.hint(path, "renamed")

    assert queue.wait_of(path) == 0
    assert queue.next_ready(timeout=0) == path


def test_a_closed_path_waits_its_quiet_time_not_the_window(tmp_path: Path):
    path = tmp_path / "written.md"
    path.write_text("complete", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=0.5)
    queue.hint(path, "written")
    assert queue.wait_of(path) == 60

    queue.hint(path, "closed")

    assert queue.wait_of(path) == 0.5
    assert queue.next_ready(timeout=0) is None, "not before its quiet time"
    assert queue.next_ready(timeout=10) == path


def test_a_write_with_no_close_waits_the_full_window(tmp_path: Path):
    path = tmp_path / "open.md"
    path.write_text("half", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=0)

    queue.hint(path, "written")

    assert queue.wait_of(path) == 60
    assert queue.next_ready(timeout=0.2) is None


def test_a_write_after_the_close_waits_the_full_window_again(tmp_path: Path):
    # An editor that writes, closes, and writes again: the second write may be half-way in.
    path = tmp_path / "note.md"
    path.write_text("first half", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=0)
    queue.hint(path, "closed")

    with path.open("a", encoding="utf-8") as handle:
        handle.write(" and the second half")
    queue.hint(path, "written")

    assert queue.wait_of(path) == 60
    assert queue.next_ready(timeout=0) is None


def test_a_write_after_the_close_is_not_mistaken_for_nothing_new_when_its_bytes_were_seen(
    tmp_path: Path,
):
    # The close was fingerprinted after the next write had begun: the write's own event
    # then finds the same signature. It must still restart the full wait, not keep the
    # short one: the writer may not be done.
    path = tmp_path / "note.md"
    path.write_text("first half and the start of the next wri", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=0)
    queue.hint(path, "closed")

    queue.hint(path, "written")

    assert queue.wait_of(path) == 60
    assert queue.next_ready(timeout=0) is None


def test_a_write_after_a_rename_waits_the_full_window(tmp_path: Path):
    path = tmp_path / "approved.md"
    path.write_text("as approved", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=0)
    queue.hint(path, "renamed")

    queue.hint(path, "written")

    assert queue.wait_of(path) == 60
    assert queue.next_ready(timeout=0) is None


def test_a_renamed_file_changed_before_it_is_handed_out_waits_the_full_window(tmp_path: Path):
    # Rewritten in place right after its rename, before the write's event arrived.
    path = tmp_path / "approved.md"
    path.write_text("as approved", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=0)
    queue.hint(path, "renamed")

    path.write_text("swapped after the rename", encoding="utf-8")

    assert queue.next_ready(timeout=0) is None
    assert queue.wait_of(path) == 60


def test_a_scan_neither_shortens_nor_restarts_a_wait(tmp_path: Path):
    writing, renamed = tmp_path / "writing.md", tmp_path / "renamed.md"
    writing.write_text("half", encoding="utf-8")
    renamed.write_text("complete", encoding="utf-8")
    queue = StableQueue(60, quiet_seconds=0)
    queue.hint(writing, "written")
    queue.hint(renamed, "renamed")

    queue.hint(writing)  # what a rescan does
    queue.hint(renamed)

    assert queue.wait_of(writing) == 60
    assert queue.wait_of(renamed) == 0
    assert queue.next_ready(timeout=0) == renamed
    assert queue.next_ready(timeout=0) is None


def test_with_no_window_a_closed_file_waits_no_quiet_time_either(tmp_path: Path):
    # `vaultd run --once` sets the window to 0: nothing is left waiting.
    path = tmp_path / "note.md"
    path.write_text("x", encoding="utf-8")
    queue = StableQueue(0.3, quiet_seconds=0.05)
    queue.window = 0

    queue.hint(path, "closed")

    assert queue.next_ready(timeout=0) == path


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


# -- what each event says, with the real observers --------------------------------------------


@pytest.fixture
def patient(request: pytest.FixtureRequest, vault_root: Path) -> Iterator[StableQueue]:
    """A started Watcher feeding a queue whose window is a minute: whatever it hands out
    within a test did not wait the window. Parametrize indirectly with True to poll."""
    queue = StableQueue(60, quiet_seconds=0.05)
    watcher = Watcher(Vault(vault_root), queue, polling=getattr(request, "param", False))
    watcher.start()
    yield queue
    watcher.stop()


def test_a_note_renamed_into_approved_is_handed_out_without_the_window(
    patient: StableQueue, vault_root: Path
):
    source = vault_root / "Pending_Approval" / "request.md"
    source.write_text(TASK, encoding="utf-8")
    target = vault_root / "Approved" / "request.md"

    source.rename(target)

    assert wait_for(lambda: patient.wait_of(target) is not None, timeout=5)
    assert wait_for(lambda: patient.next_ready(timeout=0.2), timeout=5) == target


def test_a_note_renamed_in_from_outside_the_vault_is_handed_out_without_the_window(
    patient: StableQueue, vault_root: Path, tmp_path: Path
):
    outside = tmp_path / "drafts"
    outside.mkdir()
    source = outside / "request.md"
    source.write_text(TASK, encoding="utf-8")
    target = vault_root / "Approved" / "request.md"
    assert source.stat().st_dev == vault_root.stat().st_dev, "test needs one filesystem"

    source.rename(target)

    assert wait_for(lambda: patient.next_ready(timeout=0.2), timeout=5) == target


def test_a_note_written_in_place_is_handed_out_only_after_it_is_closed(
    patient: StableQueue, vault_root: Path
):
    path = vault_root / "Approved" / "request.md"
    half = len(TASK) // 2
    with path.open("w", encoding="utf-8") as handle:
        handle.write(TASK[:half])
        handle.flush()
        wait_for(lambda: patient.wait_of(path) is not None, timeout=5)
        assert patient.wait_of(path) == 60, "open for writing: the full window"
        assert patient.next_ready(timeout=0.3) is None
        handle.write(TASK[half:])

    assert wait_for(lambda: patient.next_ready(timeout=0.2), timeout=5) == path
    assert path.read_text(encoding="utf-8") == TASK


def test_a_sync_tool_temp_file_is_never_hinted_and_its_rename_is_handed_out_at_once(
    patient: StableQueue, vault_root: Path
):
    # Syncthing, Dropbox and Obsidian's own safe writes: write a hidden temp file, rename it.
    temp = vault_root / "Approved" / ".syncthing.request.md.tmp"
    target = vault_root / "Approved" / "request.md"
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(TASK[:10])
        handle.flush()
        time.sleep(0.2)
        handle.write(TASK[10:])
    assert patient.wait_of(temp) is None

    temp.rename(target)

    assert wait_for(lambda: patient.next_ready(timeout=0.2), timeout=5) == target
    assert len(patient) == 0


@pytest.mark.parametrize("patient", [True], ids=["polling"], indirect=True)
def test_with_polling_a_rename_and_a_close_wait_the_full_window(
    patient: StableQueue, vault_root: Path
):
    # The polling observer sees no closes, and on a network drive a rename is no promise.
    source = vault_root / "Pending_Approval" / "request.md"
    source.write_text(TASK, encoding="utf-8")
    renamed = vault_root / "Approved" / "request.md"
    written = vault_root / "Approved" / "written.md"

    source.rename(renamed)
    written.write_text(TASK, encoding="utf-8")

    wait_for(lambda: None not in (patient.wait_of(renamed), patient.wait_of(written)), timeout=5)
    assert patient.wait_of(renamed) == 60
    assert patient.wait_of(written) == 60
    assert patient.next_ready(timeout=0.3) is None
