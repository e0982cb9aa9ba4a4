"""The real run loop in a thread, with real watchdog: what a running vaultd does with files."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import files_in, make_files, note, wait_for

from daemon.core.config import Config, Timing
from daemon.lifecycle.context import utc_now
from daemon.service.app import App
from daemon.service.runner import Runner

POST = {"type": "social_post", "platforms": ["facebook"], "text": "Hello"}
REPLY = {**POST, "kind": "reply", "in_reply_to": "1_2", "text": "Thanks!"}
PROBE = "zz_ready_probe.md"


def audit_events(vault: Path) -> list[str]:
    return [line for path in sorted((vault / "Logs").glob("*.json")) for line in path.open()]


@contextmanager
def running(
    app: App,
    *,
    stability_ms: int = 50,
    quiet_ms: int | None = None,
    rescan_seconds: float = 3600,
    polling: bool = False,
) -> Iterator[Runner]:
    """Run `Runner.run_forever()` in a thread until the block ends, then stop it cleanly.

    The block starts once the runner is watching: a probe task dropped before the start is
    done, so the start-up scan has run, and the observer (started before it) is live. With
    the default hour-long rescan interval, anything later can only arrive by a file event.
    The probe is an hour old, so the start-up scan hands it out at once whatever the window.
    """
    quiet = {} if quiet_ms is None else {"quiet_ms": quiet_ms}
    timing = Timing(stability_ms=stability_ms, rescan_seconds=rescan_seconds, **quiet)
    config = Config(daemon=timing)
    runner = Runner(app.pipeline, config, polling=polling)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run_forever()
        except BaseException as error:
            errors.append(error)
            raise

    probe = {**POST, "text": "Is the runner up yet?"}  # unlike any test's task: no replay
    make_files(app.vault.root, {f"Needs_Action/{PROBE}": note(probe)})
    hour_ago = time.time() - 3600
    os.utime(app.vault.root / "Needs_Action" / PROBE, (hour_ago, hour_ago))
    thread = threading.Thread(target=run, name="vaultd-runner", daemon=True)
    thread.start()
    try:
        wait_for(lambda: PROBE in files_in(app.vault.root, "Done") or errors, timeout=10)
        assert not errors
        yield runner
    finally:
        runner.stop_event.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the runner did not stop"
    assert not errors


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def request_block(path: Path) -> str:
    """Return the approval request vaultd rendered into a note ("" if none)."""
    after_begin = read_or_empty(path).partition("<!-- vaultd:begin")[2]
    return after_begin.partition("<!-- vaultd:end")[0]


def done_without_probe(vault: Path) -> list[str]:
    return [name for name in files_in(vault, "Done") if name != PROBE]


def test_a_task_dropped_into_needs_action_is_processed(app: App, vault_root: Path):
    with running(app):
        make_files(vault_root, {"Needs_Action/post.md": note(POST)})
        wait_for(lambda: done_without_probe(vault_root) == ["post.md"], timeout=5)
        make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
        wait_for(lambda: files_in(vault_root, "Pending_Approval") == ["reply.md"], timeout=5)

    assert files_in(vault_root, "Needs_Action") == []


def test_a_request_a_person_moves_into_approved_is_executed(app: App, vault_root: Path):
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    with running(app):
        wait_for(lambda: files_in(vault_root, "Pending_Approval") == ["reply.md"], timeout=5)
        (vault_root / "Pending_Approval/reply.md").rename(vault_root / "Approved/reply.md")
        wait_for(lambda: done_without_probe(vault_root) == ["reply.md"], timeout=5)

    assert files_in(vault_root, "Approved") == []


def test_a_file_present_at_start_up_is_processed_by_the_start_up_scan(app: App, vault_root: Path):
    make_files(vault_root, {"Needs_Action/waiting.md": note(POST, "Written overnight.\n")})
    with running(app):
        wait_for(lambda: done_without_probe(vault_root) == ["waiting.md"], timeout=5)

    text = (vault_root / "Done/waiting.md").read_text(encoding="utf-8")
    assert text.endswith("---\nWritten overnight.\n")


def test_a_file_written_slowly_is_read_only_once_complete(app: App, vault_root: Path):
    pieces = ["---\ntype: social_", "post\nplatforms: [face", "book]\ntext: Hel", "lo\n---\n"]
    pieces += ["Body line one.\n", "Body line two.\n"]
    # Each piece lands well within the stability window, so the file never looks finished.
    with running(app, stability_ms=800):
        path = vault_root / "Needs_Action" / "slow.md"
        with path.open("w", encoding="utf-8") as handle:
            for piece in pieces:
                handle.write(piece)
                handle.flush()
                time.sleep(0.05)
        wait_for(lambda: done_without_probe(vault_root) == ["slow.md"], timeout=10)

    assert files_in(vault_root, "Rejected") == []
    assert not [line for line in audit_events(vault_root) if "rejected" in line]
    text = (vault_root / "Done/slow.md").read_text(encoding="utf-8")
    assert text.endswith("---\nBody line one.\nBody line two.\n")


def unwatch(runner: Runner) -> None:
    """Drop the runner's watch, so that events are lost as in a kernel overflow."""
    assert runner.watcher._observer is not None
    runner.watcher._observer.unschedule_all()


def test_an_inotify_overflow_triggers_a_rescan_that_finds_what_the_events_missed(
    app: App, vault_root: Path
):
    with running(app) as runner:
        # Events are lost, as they are in a kernel overflow: the watch is gone meanwhile.
        unwatch(runner)
        make_files(vault_root, {"Needs_Action/missed.md": note(POST)})
        time.sleep(0.5)  # ten stability windows: long enough for an event, had there been one
        assert files_in(vault_root, "Needs_Action") == ["missed.md"], "test needs a lost event"

        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        wait_for(lambda: done_without_probe(vault_root) == ["missed.md"], timeout=5)
        assert not runner.watcher.overflowed.is_set()

    assert any("rescan_after_overflow" in line for line in audit_events(vault_root))


def test_the_periodic_rescan_finds_what_the_events_missed(app: App, vault_root: Path):
    with running(app, rescan_seconds=0.3) as runner:
        unwatch(runner)
        make_files(vault_root, {"Needs_Action/missed.md": note(POST)})
        wait_for(lambda: done_without_probe(vault_root) == ["missed.md"], timeout=5)


def test_a_pipeline_folder_a_sync_tool_deletes_and_recreates_is_watched_again_at_once(
    app: App, vault_root: Path
):
    with running(app, rescan_seconds=3600):
        approved = vault_root / "Approved"
        approved.rename(vault_root / "Approved.old")
        approved.mkdir()
        make_files(vault_root, {"Approved/forged.md": note(POST)})
        # Not by a rescan (an hour away): by the events of the new folder.
        wait_for(lambda: "forged.md" in files_in(vault_root, "Pending_Approval"), timeout=2)


IGNORED = [
    ".hidden.md",
    "draft.md.tmp",
    "notes.md~",
    "~lock.md",
    "post.sync-conflict-20261122-083015-ABCDEFG.md",
    "post (conflicted copy 2026-11-22).md",
    "post (Conflict).md",
]


def test_ignored_names_and_sync_conflict_copies_are_never_touched(app: App, vault_root: Path):
    before = {f"{folder}/{name}": note(POST) for folder in ("Needs_Action",) for name in IGNORED}
    later = {f"Approved/{name}": note(POST) for name in IGNORED}
    make_files(vault_root, before)
    with running(app, rescan_seconds=0.2):
        make_files(vault_root, later)
        make_files(vault_root, {"Needs_Action/after.md": note(POST)})
        wait_for(lambda: done_without_probe(vault_root) == ["after.md"], timeout=5)
        # Let a few periodic rescans pass over the ignored files too.
        time.sleep(0.6)

    for relative, text in {**before, **later}.items():
        path = vault_root / relative
        assert path.read_text(encoding="utf-8") == text, relative
    assert sorted(files_in(vault_root, "Needs_Action")) == sorted(
        n for n in IGNORED if not n.startswith(".")
    )
    log = "".join(audit_events(vault_root))
    for name in IGNORED:
        assert name not in log


def test_a_scheduled_post_waits_in_approved_and_runs_at_its_time(app: App, vault_root: Path):
    app.pipeline.clock = utc_now  # the real clock: the queue defers by wall-clock time
    when = datetime.now(UTC) + timedelta(seconds=1)
    post = {**POST, "scheduled_for": when.isoformat().replace("+00:00", "Z")}
    with running(app):
        make_files(vault_root, {"Needs_Action/later.md": note(post)})
        scheduled = vault_root / "Approved/later.md"
        wait_for(lambda: "status: scheduled" in read_or_empty(scheduled), timeout=5)
        wait_for(lambda: done_without_probe(vault_root) == ["later.md"], timeout=10)

    assert datetime.now(UTC) >= when


def test_the_stop_event_stops_the_runner_promptly(app: App):
    with running(app) as runner:
        stopping = time.monotonic()
    assert runner.stop_event.is_set()
    assert time.monotonic() - stopping < 3


def test_run_once_processes_everything_there_and_what_it_leads_to(app: App, vault_root: Path):
    make_files(
        vault_root,
        {"Needs_Action/post.md": note(POST), "Needs_Action/reply.md": note(REPLY)},
    )
    runner = Runner(app.pipeline, Config())

    assert runner.run_once() == 2

    assert files_in(vault_root, "Done") == ["post.md"]
    assert files_in(vault_root, "Pending_Approval") == ["reply.md"]
    assert files_in(vault_root, "Needs_Action") == []


def test_the_polling_observer_also_delivers_moved_files(app: App, vault_root: Path):
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    with running(app, polling=True):
        wait_for(lambda: files_in(vault_root, "Pending_Approval") == ["reply.md"], timeout=5)
        (vault_root / "Pending_Approval/reply.md").rename(vault_root / "Approved/reply.md")
        wait_for(lambda: done_without_probe(vault_root) == ["reply.md"], timeout=10)


def test_an_edit_to_a_pending_request_is_re_rendered_once_and_the_edit_is_what_runs(
    app: App, vault_root: Path
):
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    pending = vault_root / "Pending_Approval/reply.md"
    with running(app):
        wait_for(pending.exists, timeout=5)
        # A person fixes a typo in Obsidian, which rewrites the file in place.
        front, end, rest = pending.read_text().partition("\n---\n")
        pending.write_text(front.replace("Thanks!", "Thank you!") + end + rest)
        wait_for(lambda: "Thank you!" in request_block(pending), timeout=5)
        pending.rename(vault_root / "Approved/reply.md")
        wait_for(lambda: done_without_probe(vault_root) == ["reply.md"], timeout=5)

    sent = [json.loads(line) for line in (app.state_dir / "dry_run_outbox.jsonl").open()]
    assert [r["request"]["params"]["message"] for r in sent[1:]] == ["Thank you!"]
    requests = [line for line in audit_events(vault_root) if '"approval_requested"' in line]
    assert len(requests) == 2, "one request, one re-render: vaultd's own writes cause no loop"


def test_start_up_records_a_last_move_that_a_crash_kept_from_the_ledger(app: App, vault_root: Path):
    """A kill between moving a note to Done/ (or Failed/) and recording it (found by the
    random kill -9 test): the next start finds the note by its id and records where it is."""
    from daemon.core import ledger as states
    from daemon.core.notes import parse

    def post(text: str) -> str:
        return note({"type": "social_post", "platforms": ["facebook"], "text": text})

    make_files(
        vault_root, {"Needs_Action/done.md": post("Hi"), "Needs_Action/failed.md": post("Ho")}
    )
    Runner(app.pipeline, app.config).run_once()
    assert files_in(vault_root, "Done") == ["done.md", "failed.md"]
    # As a kill right after each note's last move leaves them: the ledger not yet told,
    # for one run that succeeded and one that failed.
    (vault_root / "Done/failed.md").rename(vault_root / "Failed/failed.md")
    done_id = parse((vault_root / "Done/done.md").read_text()).meta["id"]
    failed_id = parse((vault_root / "Failed/failed.md").read_text()).meta["id"]
    app.ledger.put_task(done_id, state=states.EXECUTED, file="Approved/done.md")
    app.ledger.put_task(failed_id, state=states.FAILED, file="Approved/failed.md")

    Runner(app.pipeline, app.config).run_once()

    done, failed = app.ledger.task(done_id), app.ledger.task(failed_id)
    assert done is not None and (done.state, done.file) == (states.DONE, "Done/done.md")
    assert failed is not None and (failed.state, failed.file) == (states.FAILED, "Failed/failed.md")
    assert files_in(vault_root, "Done") == ["done.md"]
    assert files_in(vault_root, "Failed") == ["failed.md"]


def test_a_folder_vaultd_cannot_write_is_reported_once_then_with_backoff_not_flooded(
    app: App, vault_root: Path
):
    with running(app, stability_ms=20):
        done = vault_root / "Done"
        done.rename(vault_root / "Done.old")
        done.write_text("a file where the folder should be\n")  # even root cannot move into it
        make_files(vault_root, {"Needs_Action/post.md": note(POST)})
        time.sleep(3.5)
    failures: dict[str, list[int]] = {}
    for line in audit_events(vault_root):
        entry = json.loads(line)
        if entry["event"] == "internal_error":
            failures.setdefault(entry["file"], []).append(entry["result"]["failures"])
    # Per file, failures at 0 s, then 1 s and 2 s apart: at most three in 3.5 s, not one
    # per event or stability window (over a hundred before).
    assert "Approved/post.md" in failures, failures
    for counts in failures.values():
        assert counts == list(range(1, len(counts) + 1)) and len(counts) <= 3, failures
    assert files_in(vault_root, "Approved") == ["post.md"]  # still there, for the next try


def test_a_folder_named_like_a_note_is_reported_once_and_left_alone(app: App, vault_root: Path):
    (vault_root / "Needs_Action/odd.md").mkdir()
    with running(app, rescan_seconds=0.2):
        time.sleep(1.2)  # several rescans
    reports = [json.loads(e) for e in audit_events(vault_root) if '"not_a_note"' in e]
    assert [r["file"] for r in reports] == ["Needs_Action/odd.md"]
    assert (vault_root / "Needs_Action/odd.md").is_dir()


# -- a rename and a close say the file is complete: no stability window ----------------------
# These runners wait a minute before reading a file no event said was complete: whatever
# they read within a test did not wait the window.

PATIENT_MS = 60_000


def sent_messages(app: App) -> list[str]:
    outbox = app.state_dir / "dry_run_outbox.jsonl"
    if not outbox.exists():
        return []
    return [json.loads(line)["request"]["params"].get("message", "") for line in outbox.open()]


def test_a_request_moved_into_approved_is_executed_without_waiting_the_stability_window(
    app: App, vault_root: Path
):
    with running(app, stability_ms=PATIENT_MS):
        # Dropped and closed: read after the quiet time, not the minute.
        make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
        wait_for(lambda: files_in(vault_root, "Pending_Approval") == ["reply.md"], timeout=5)
        (vault_root / "Pending_Approval/reply.md").rename(vault_root / "Approved/reply.md")
        wait_for(lambda: done_without_probe(vault_root) == ["reply.md"], timeout=5)

    assert sent_messages(app)[-1:] == ["Thanks!"]


def test_a_note_written_in_place_in_approved_is_not_read_before_it_is_closed(
    app: App, vault_root: Path
):
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    Runner(app.pipeline, app.config).run_once()
    pending = vault_root / "Pending_Approval/reply.md"
    request = pending.read_text(encoding="utf-8")
    pending.unlink()
    approved = vault_root / "Approved/reply.md"
    with running(app, stability_ms=PATIENT_MS, quiet_ms=50):
        # A person pastes the request into a new note in Approved/, and the editor saves it
        # in two writes: what is there before the close is not the request.
        with approved.open("w", encoding="utf-8") as handle:
            handle.write(request[: len(request) // 2])
            handle.flush()
            time.sleep(0.5)  # ten quiet times
            assert files_in(vault_root, "Approved") == ["reply.md"], "read while open"
            handle.write(request[len(request) // 2 :])
        wait_for(lambda: done_without_probe(vault_root) == ["reply.md"], timeout=5)

    assert files_in(vault_root, "Rejected") == []
    assert files_in(vault_root, "Pending_Approval") == []
    assert sent_messages(app) == ["Is the runner up yet?", "Thanks!"]


def test_an_editor_that_writes_closes_and_writes_again_is_read_only_once_complete(
    app: App, vault_root: Path
):
    text = note(POST, "Body line one.\nBody line two.\n")
    cut = text.index("text:")  # the first save has no closing `---`: not a task yet
    path = vault_root / "Needs_Action" / "twice.md"
    with running(app, stability_ms=PATIENT_MS, quiet_ms=1000):
        path.write_text(text[:cut], encoding="utf-8")
        with path.open("a", encoding="utf-8") as handle:  # within the quiet time
            handle.write(text[cut:])
        wait_for(lambda: done_without_probe(vault_root) == ["twice.md"], timeout=10)

    assert files_in(vault_root, "Rejected") == []
    assert (
        (vault_root / "Done/twice.md").read_text().endswith("---\nBody line one.\nBody line two.\n")
    )


def test_a_sync_tool_that_writes_a_temp_file_and_renames_it_in_is_processed_at_once(
    app: App, vault_root: Path
):
    temp = vault_root / "Needs_Action" / ".syncthing.synced.md.tmp"
    text = note(POST, "Synced from the laptop.\n")
    with running(app, stability_ms=PATIENT_MS):
        with temp.open("w", encoding="utf-8") as handle:
            handle.write(text[:20])
            handle.flush()
            time.sleep(0.3)
            handle.write(text[20:])
        temp.rename(vault_root / "Needs_Action" / "synced.md")
        wait_for(lambda: done_without_probe(vault_root) == ["synced.md"], timeout=5)

    assert (vault_root / "Done/synced.md").read_text().endswith("---\nSynced from the laptop.\n")
    assert ".syncthing" not in "".join(audit_events(vault_root))


def test_a_forged_note_renamed_into_approved_from_outside_is_read_at_once_and_not_executed(
    app: App, vault_root: Path, tmp_path: Path
):
    forged = tmp_path / "forged.md"
    forged.write_text(note({**REPLY, "text": "Send the money"}), encoding="utf-8")
    with running(app, stability_ms=PATIENT_MS):
        forged.rename(vault_root / "Approved/forged.md")
        wait_for(lambda: "forged.md" in files_in(vault_root, "Pending_Approval"), timeout=5)

    assert "Send the money" not in sent_messages(app)
    assert done_without_probe(vault_root) == []


def test_a_request_swapped_right_after_its_rename_into_approved_never_runs_the_swap(
    app: App, vault_root: Path
):
    # Rename, then rewrite in place at once: whichever version vaultd reads, only the one
    # a person saw may run, and the swap never does.
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    Runner(app.pipeline, app.config).run_once()
    pending, approved = vault_root / "Pending_Approval/reply.md", vault_root / "Approved/reply.md"
    swapped = pending.read_text(encoding="utf-8").replace("Thanks!", "Send the money")
    with running(app, stability_ms=300):
        pending.rename(approved)
        approved.write_text(swapped, encoding="utf-8")
        wait_for(lambda: files_in(vault_root, "Approved") == [], timeout=10)
        time.sleep(0.6)  # two windows: anything still in line is handled

    assert "Send the money" not in sent_messages(app)
    assert sent_messages(app).count("Thanks!") <= 1


def test_with_polling_a_rename_into_approved_still_waits_the_stability_window(
    app: App, vault_root: Path
):
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    Runner(app.pipeline, app.config).run_once()
    pending, approved = vault_root / "Pending_Approval/reply.md", vault_root / "Approved/reply.md"
    hour_ago = time.time() - 3600
    os.utime(pending, (hour_ago, hour_ago))  # settled before the start: no wait at start-up
    with running(app, stability_ms=PATIENT_MS, polling=True) as runner:
        pending.rename(approved)
        wait_for(lambda: runner.queue.wait_of(approved) is not None, timeout=5)
        assert runner.queue.wait_of(approved) == PATIENT_MS / 1000
        assert files_in(vault_root, "Approved") == ["reply.md"]
