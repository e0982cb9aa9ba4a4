"""The ledger: tasks, runs with a state machine, and durable intents."""

import sqlite3
import threading
from pathlib import Path

import pytest

from daemon.core import ledger, ledger_db
from daemon.core.ledger import Ledger


def test_ledger_uses_wal_and_creates_its_folder(tmp_path: Path):
    book = Ledger(tmp_path / "deep/state/ledger.sqlite3")
    (mode,) = sqlite3.connect(book.path).execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"
    assert book.integrity_ok()


def test_task_ids_are_short_dated_and_unique(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    ids = {book.new_task_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(task_id) == 15 and task_id[8] == "-" for task_id in ids)


def test_put_task_creates_then_updates_only_given_fields(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    book.put_task("t1", type="social_post", file="Needs_Action/a.md", state=ledger.PENDING)
    book.put_task("t1", state=ledger.APPROVED)
    task = book.task("t1")
    assert task is not None
    assert (task.type, task.file, task.state) == ("social_post", "Needs_Action/a.md", "approved")
    assert book.find_tasks("t") == [task]
    assert book.counts() == {"approved": 1}


def test_an_intent_survives_a_crash_and_is_reported_as_open(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    book.put_task("t1", file="Approved/a.md", state=ledger.EXECUTING)
    run = book.start_run("t1", "sha256:x", dry_run=True)
    book.set_run(run, ledger.RUNNING)
    book.record_intent(run, "t1", "facebook", "vaultd:t1:facebook", {"message": "hi"})
    # No close, no finish: another connection (a restarted daemon) must see the intent.
    reopened = Ledger(tmp_path / "l.db")
    (step,) = reopened.open_intents()
    assert (step.task_id, step.target, step.marker) == ("t1", "facebook", "vaultd:t1:facebook")
    assert step.request == {"message": "hi"}


def test_runs_count_attempts_and_record_their_end_state(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    book.put_task("t1", file="Approved/a.md", state=ledger.EXECUTING)
    first = book.start_run("t1", "sha256:x", dry_run=True)
    book.set_run(first, ledger.FAILED, "facebook: boom")
    second = book.start_run("t1", "sha256:x", dry_run=True)
    book.set_run(second, ledger.SUCCEEDED)
    runs = book.runs("t1")
    assert [(r["attempt"], r["state"], r["error"]) for r in runs] == [
        (1, "failed", "facebook: boom"),
        (2, "succeeded", None),
    ]
    assert all(r["finished_at"] for r in runs)


def test_finished_steps_keep_result_and_duration(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    run = book.start_run("t1", "sha256:x", dry_run=True)
    step = book.record_intent(run, "t1", "odoo", "vaultd:t1:odoo", None)
    book.finish_step(step, ledger.SUCCEEDED, result={"id": 7}, duration_ms=12)
    (done,) = book.steps("t1")
    assert (done.state, done.result, done.duration_ms) == ("succeeded", {"id": 7}, 12)
    assert book.open_intents() == []


def test_readonly_ledger_reads_what_the_daemon_wrote(tmp_path: Path):
    Ledger(tmp_path / "l.db").put_task("t1", file="Done/a.md", state=ledger.DONE)
    reader = Ledger(tmp_path / "l.db", readonly=True)
    task = reader.task("t1")
    assert task is not None
    assert task.state == "done"


def test_connector_progress_is_remembered_durably_per_marker(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    book.remember("vaultd:t1:instagram", "container_id", "17890")
    book.remember("vaultd:t1:instagram", "container_id", "17891")
    book.remember("vaultd:t1:instagram", "created", {"at": "now"})
    reopened = Ledger(tmp_path / "l.db")
    assert reopened.recall("vaultd:t1:instagram") == {
        "container_id": "17891",
        "created": {"at": "now"},
    }
    assert reopened.recall("vaultd:t2:instagram") == {}


def _hold_exclusively(path: Path) -> sqlite3.Connection:
    """A connection that keeps the whole ledger file locked until it is closed."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("COMMIT")
    return holder


def test_opening_waits_out_a_lock_longer_than_one_busy_timeout(tmp_path: Path, monkeypatch):
    # SQLite answers some opens "database is locked" without its busy timeout; a CLI
    # command started beside a busy daemon retries instead of failing.
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    holder = _hold_exclusively(path)
    monkeypatch.setattr(ledger_db, "BUSY_SECONDS", 0.05)
    monkeypatch.setattr(ledger_db, "OPEN_SECONDS", 10.0)
    release = threading.Timer(0.4, holder.close)
    release.start()
    try:
        opened = Ledger(path)
    finally:
        release.join()
    assert opened.rows("SELECT count(*) AS n FROM tasks") == [{"n": 0}]
    opened.close()


def test_opening_gives_up_with_sqlites_error_when_the_lock_stays(tmp_path: Path, monkeypatch):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    holder = _hold_exclusively(path)
    monkeypatch.setattr(ledger_db, "BUSY_SECONDS", 0.05)
    monkeypatch.setattr(ledger_db, "OPEN_SECONDS", 0.3)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            Ledger(path)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            Ledger(path, readonly=True)
    finally:
        holder.close()
