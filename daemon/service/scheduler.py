"""vaultd's sense of time (design §5): APScheduler 3, its jobs in SQLite outside the vault.

    weekly_briefing   cron, default Sunday 22:00 in the configured time zone, coalesced,
                      misfire grace 12 h: the Monday Morning CEO Briefing
    approval_expiry   every few minutes: expired requests move to Rejected/
    log_retention     daily: old daily logs are gzipped into Logs/archive/
    dashboard_refresh every few minutes: Dashboard.md, so its ages move on

Job functions are module-level and take only the state directory as argument, as a
persistent job store requires; they find the running daemon's parts in `_RUNNING`.

The briefing is written exactly once per ISO week. Before writing, the week is claimed in
the ledger (one row per week), so restarts, clock changes and a second daemon cannot write
it twice. APScheduler alone cannot promise the catch-up: re-adding a stored job recomputes
its next run from now, so a run missed while the daemon was down is simply skipped. vaultd
therefore looks for a missed briefing itself, at start-up and with each dashboard refresh,
and writes it, marked late when the grace window had passed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.core.schedule_config import DAYS, Schedule
from daemon.core.timestamps import iso, parse_time
from daemon.reports.briefing.week import week_of_briefing
from daemon.service.app import App

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.sqlite3"
RETENTION_AT = time(3, 30)  # daily log retention, in the configured time zone

Clock = Callable[[], datetime]
WriteBriefing = Callable[..., Path]
_RUNNING: dict[str, Clockwork] = {}


def last_briefing_time(schedule: Schedule, now: datetime) -> datetime:
    """Return the latest scheduled briefing time at or before `now`, in the time zone."""
    tz = schedule.zone()
    local = now.astimezone(tz)
    back = (local.weekday() - DAYS.index(schedule.briefing_day)) % 7
    day = local.date() - timedelta(days=back)
    when = _at(day, schedule, tz)
    return when if when <= local else _at(day - timedelta(days=7), schedule, tz)


def next_briefing_time(schedule: Schedule, now: datetime) -> datetime:
    """Return the first scheduled briefing time after `now`, in the time zone."""
    last = last_briefing_time(schedule, now)
    return _at(last.date() + timedelta(days=7), schedule, schedule.zone())


def _at(day: date, schedule: Schedule, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(schedule.briefing_hour, schedule.briefing_minute), tz)


@dataclass
class Clockwork:
    """The scheduler of one running daemon, and what its jobs act on."""

    app: App
    write_briefing: WriteBriefing
    on_expire: Callable[[], None] = lambda: None
    on_dashboard: Callable[[], None] = lambda: None
    apply_retention: Callable[[App, date], object] | None = None
    now: Clock = field(default=lambda: datetime.now(UTC))
    scheduler: BackgroundScheduler | None = None

    name = "scheduler"

    @property
    def key(self) -> str:
        return str(self.app.state_dir)

    def healthy(self) -> bool:
        thread = getattr(self.scheduler, "_thread", None)
        return bool(self.scheduler and self.scheduler.running and thread and thread.is_alive())

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def schedule(self) -> Schedule:
        return self.app.config.schedule

    def start(self) -> None:
        """Add (or replace) the jobs in the job store, start them, and catch up."""
        # APScheduler is imported here, by the one command that schedules (`vaultd run`):
        # its import scans every installed package's entry points, a tenth of a second
        # that `run --once`, `status` and `approve` do not need (they read the job store
        # with sqlite3, and settle() needs no scheduler).
        from apscheduler.schedulers.background import BackgroundScheduler  # noqa: PLC0415
        from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415
        from apscheduler.triggers.interval import IntervalTrigger  # noqa: PLC0415

        from daemon.service.jobstore import SqliteJobStore  # noqa: PLC0415

        tz = self.schedule.zone()
        store = SqliteJobStore(self.app.state_dir / JOBS_FILE)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": store},
            timezone=tz,
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        _RUNNING[self.key] = self
        schedule = self.schedule
        self.scheduler.add_job(
            briefing_job,
            CronTrigger(
                day_of_week=schedule.briefing_day,
                hour=schedule.briefing_hour,
                minute=schedule.briefing_minute,
                timezone=tz,
            ),
            args=[self.key],
            id="weekly_briefing",
            name="the Monday Morning CEO Briefing",
            replace_existing=True,
            misfire_grace_time=int(schedule.misfire_grace_hours * 3600),
        )
        self.scheduler.add_job(
            expiry_job,
            IntervalTrigger(minutes=schedule.expiry_minutes, timezone=tz),
            args=[self.key],
            id="approval_expiry",
            name="approval expiry",
            replace_existing=True,
        )
        self.scheduler.add_job(
            retention_job,
            CronTrigger(hour=RETENTION_AT.hour, minute=RETENTION_AT.minute, timezone=tz),
            args=[self.key],
            id="log_retention",
            name="log retention",
            replace_existing=True,
        )
        self.scheduler.add_job(
            dashboard_job,
            IntervalTrigger(minutes=schedule.dashboard_minutes, timezone=tz),
            args=[self.key],
            id="dashboard_refresh",
            name="Dashboard.md refresh",
            replace_existing=True,
        )
        self.scheduler.start()
        self.settle()

    def settle(self) -> Path | None:
        """What every start does, `run --once` included: note that vaultd runs, catch up."""
        self.app.ledger.set_meta_once("first_started_at", iso(self.now()))
        return self.catch_up()

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        _RUNNING.pop(self.key, None)

    def catch_up(self) -> Path | None:
        """Write the last briefing if its time passed without it, since vaultd first ran."""
        first = parse_time(self.app.ledger.meta("first_started_at") or iso(self.now()))
        if last_briefing_time(self.schedule, self.now()) < first:
            return None  # vaultd did not exist yet when that briefing was due
        return self.write_due_briefing()

    def write_due_briefing(self) -> Path | None:
        """Write the briefing of the latest scheduled time, once; return its path if we did."""
        now = self.now()
        scheduled = last_briefing_time(self.schedule, now)
        week = week_of_briefing(self.schedule, scheduled)
        if not self.app.ledger.claim_briefing(str(week)):
            return None
        late = now - scheduled > timedelta(hours=self.schedule.misfire_grace_hours)
        # The scheduled briefing is its week's regular one, never partial (briefing.week).
        path = self.write_briefing(self.app, week, late=late, partial=False)
        relative = self.app.vault.relative(path)
        self.app.ledger.briefing_written(str(week), relative, late=late)
        self.app.audit.write(
            "briefing_written",
            action=None,
            task_id=None,
            file=relative,
            result={"week": str(week), "late": late, "scheduled": iso(scheduled)},
        )
        log.info("wrote the briefing for %s%s: %s", week, " (late)" if late else "", relative)
        return path


# -- the jobs (module-level, as the persistent job store requires) ------------------------


def _running(key: str) -> Clockwork | None:
    clockwork = _RUNNING.get(key)
    if clockwork is None:
        log.warning("a scheduled job ran for %s, which is not running here", key)
    return clockwork


def briefing_job(key: str) -> None:
    if clockwork := _running(key):
        clockwork.write_due_briefing()


def expiry_job(key: str) -> None:
    if clockwork := _running(key):
        clockwork.on_expire()


def retention_job(key: str) -> None:
    if (clockwork := _running(key)) and clockwork.apply_retention is not None:
        today = clockwork.now().astimezone(clockwork.schedule.zone()).date()
        clockwork.apply_retention(clockwork.app, today)


def dashboard_job(key: str) -> None:
    if clockwork := _running(key):
        clockwork.catch_up()
        clockwork.on_dashboard()


# -- for `vaultd status` ------------------------------------------------------------------


def next_runs(state_dir: Path, schedule: Schedule) -> list[tuple[str, datetime | None]]:
    """Return each stored job and its next run time in the configured time zone.

    Read straight from the job store, so `vaultd status` works while the daemon runs.
    """
    path = state_dir / JOBS_FILE
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT id, next_run_time FROM apscheduler_jobs ORDER BY next_run_time"
            ).fetchall()
    except sqlite3.Error:
        return []
    tz = schedule.zone()
    return [
        (str(job), datetime.fromtimestamp(when, UTC).astimezone(tz) if when else None)
        for job, when in rows
    ]
