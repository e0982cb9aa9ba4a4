"""APScheduler's job store in the state directory's `jobs.sqlite3`, on the standard sqlite3.

The table is the one APScheduler's own SQLAlchemyJobStore creates (`apscheduler_jobs`: `id`,
`next_run_time` as a UTC timestamp, `job_state` as a pickle), so a state directory written by
either reads with the other, and `vaultd status` reads the next run times straight from it.
It exists because SQLAlchemy took a third of a second to import on every `vaultd run`, for a
table of four rows.
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.util import datetime_to_utc_timestamp, utc_timestamp_to_datetime

TABLE = "apscheduler_jobs"


class SqliteJobStore(BaseJobStore):
    """Jobs kept in one SQLite file; every change is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS apscheduler_jobs ("
                " id VARCHAR(191) NOT NULL PRIMARY KEY,"
                " next_run_time FLOAT,"
                " job_state BLOB NOT NULL)"
            )
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS ix_apscheduler_jobs_next_run_time"
                " ON apscheduler_jobs (next_run_time)"
            )

    def shutdown(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- reading ---------------------------------------------------------------------------

    def lookup_job(self, job_id: str) -> Job | None:
        rows = self._rows("SELECT id, job_state FROM apscheduler_jobs WHERE id = ?", (job_id,))
        jobs = self._reconstitute(rows)
        return jobs[0] if jobs else None

    def get_due_jobs(self, now: datetime) -> list[Job]:
        if self._db is None:
            # Shut down: APScheduler's thread, caught mid-loop by the scheduler's shutdown,
            # asks once more as it stops. Nothing is due in a store that is closed.
            return []
        rows = self._rows(
            "SELECT id, job_state FROM apscheduler_jobs WHERE next_run_time <= ?"
            " ORDER BY next_run_time",
            (datetime_to_utc_timestamp(now),),
        )
        return self._reconstitute(rows)

    def get_next_run_time(self) -> datetime | None:
        if self._db is None:
            return None  # shut down (see get_due_jobs)
        rows = self._rows(
            "SELECT next_run_time FROM apscheduler_jobs WHERE next_run_time IS NOT NULL"
            " ORDER BY next_run_time LIMIT 1"
        )
        return utc_timestamp_to_datetime(rows[0][0]) if rows else None

    def get_all_jobs(self) -> list[Job]:
        jobs = self._reconstitute(
            self._rows("SELECT id, job_state FROM apscheduler_jobs ORDER BY next_run_time")
        )
        self._fix_paused_jobs_sorting(jobs)
        return jobs

    # -- writing ---------------------------------------------------------------------------

    def add_job(self, job: Job) -> None:
        try:
            self._change(
                "INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES (?, ?, ?)",
                (job.id, datetime_to_utc_timestamp(job.next_run_time), self._state(job)),
            )
        except sqlite3.IntegrityError:
            raise ConflictingIdError(job.id) from None

    def update_job(self, job: Job) -> None:
        changed = self._change(
            "UPDATE apscheduler_jobs SET next_run_time = ?, job_state = ? WHERE id = ?",
            (datetime_to_utc_timestamp(job.next_run_time), self._state(job), job.id),
        )
        if not changed:
            raise JobLookupError(job.id)

    def remove_job(self, job_id: str) -> None:
        if not self._change("DELETE FROM apscheduler_jobs WHERE id = ?", (job_id,)):
            raise JobLookupError(job_id)

    def remove_all_jobs(self) -> None:
        self._change("DELETE FROM apscheduler_jobs")

    # -- the parts -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the job store {self.path} is not started")
        return self._db

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def _change(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._connection().execute(sql, params).rowcount

    @staticmethod
    def _state(job: Job) -> bytes:
        return pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL)

    def _reconstitute(self, rows: list[tuple[Any, ...]]) -> list[Job]:
        """Given (id, pickled state) rows, return their jobs; drop the rows that do not load."""
        jobs: list[Job] = []
        broken: list[str] = []
        for job_id, blob in rows:
            try:
                # The state directory is vaultd's own, outside the vault (APScheduler pickles too).
                state = pickle.loads(blob)  # noqa: S301
                state["jobstore"] = self
                job = Job.__new__(Job)
                job.__setstate__(state)
                job._scheduler = self._scheduler
                job._jobstore_alias = self._alias
                jobs.append(job)
            except Exception:
                self._logger.exception("job %r could not be restored: removed", job_id)
                broken.append(job_id)
        for job_id in broken:
            self._change("DELETE FROM apscheduler_jobs WHERE id = ?", (job_id,))
        return jobs

    def __repr__(self) -> str:
        return f"<SqliteJobStore {self.path}>"
