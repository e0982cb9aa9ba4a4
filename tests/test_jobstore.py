"""The SQLite job store: APScheduler's own contract, on the table its SQLAlchemy store uses."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from daemon.service.jobstore import TABLE, SqliteJobStore


def noop() -> None:
    """A job function the store can name by reference."""


def scheduler_on(path: Path) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(jobstores={"default": SqliteJobStore(path)}, timezone=UTC)
    scheduler.start(paused=True)
    return scheduler


def test_jobs_survive_a_restart_with_their_next_run_time(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = scheduler_on(path)
    when = datetime.now(UTC) + timedelta(hours=3)
    first.add_job(noop, DateTrigger(when), id="later")
    first.add_job(noop, IntervalTrigger(minutes=5), id="often")
    first.shutdown()

    second = scheduler_on(path)
    try:
        jobs = {job.id: job for job in second.get_jobs()}
        assert set(jobs) == {"later", "often"}
        assert jobs["later"].next_run_time == when
        assert [job.id for job in second.get_jobs()] == ["often", "later"]  # soonest first
    finally:
        second.shutdown()


def test_the_table_is_the_one_apschedulers_sqlalchemy_store_makes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    scheduler_on(path).shutdown()
    with sqlite3.connect(path) as db:
        info = db.execute(f"PRAGMA table_info({TABLE})").fetchall()
        columns = [(row[1], row[2], row[3], row[5]) for row in info]
        indexes = [row[1] for row in db.execute(f"PRAGMA index_list({TABLE})")]
    assert columns == [
        ("id", "VARCHAR(191)", 1, 1),
        ("next_run_time", "FLOAT", 0, 0),
        ("job_state", "BLOB", 1, 0),
    ]
    assert f"ix_{TABLE}_next_run_time" in indexes


def test_store_operations_keep_apschedulers_errors(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    scheduler = scheduler_on(tmp_path / "other.sqlite3")
    try:
        store.start(scheduler, "default")
        job = scheduler.add_job(noop, IntervalTrigger(minutes=1), id="a")
        store.add_job(job)
        with pytest.raises(ConflictingIdError):
            store.add_job(job)
        assert store.lookup_job("a") is not None
        assert store.lookup_job("missing") is None
        store.remove_job("a")
        with pytest.raises(JobLookupError):
            store.remove_job("a")
        with pytest.raises(JobLookupError):
            store.update_job(job)
        assert store.get_next_run_time() is None
    finally:
        store.shutdown()
        scheduler.shutdown()


def test_a_row_that_no_longer_loads_is_dropped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = scheduler_on(path)
    first.add_job(noop, IntervalTrigger(minutes=5), id="good")
    first.shutdown()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs VALUES ('bad', 1.0, x'00')")

    second = scheduler_on(path)
    try:
        assert [job.id for job in second.get_jobs()] == ["good"]
    finally:
        second.shutdown()
    with sqlite3.connect(path) as db:
        assert [row[0] for row in db.execute("SELECT id FROM apscheduler_jobs")] == ["good"]


def test_the_schedulers_thread_asking_after_shutdown_finds_nothing_due(tmp_path: Path) -> None:
    """APScheduler closes its job stores, then wakes its thread; a thread caught mid-loop asks
    once more. A closed store answers that nothing is due (it logged "not started" as a
    warning at every `vaultd run` stop), and names its file in any other error."""
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start(paused=True)
    scheduler.shutdown()
    assert store.get_due_jobs(datetime.now(UTC)) == []
    assert store.get_next_run_time() is None
    with pytest.raises(RuntimeError, match=r"jobs\.sqlite3 is not started"):
        store.get_all_jobs()
