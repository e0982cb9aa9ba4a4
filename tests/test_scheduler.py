"""The scheduler: the weekly briefing exactly once, through sleep, restarts and two daemons."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import make_files, note, wait_for

from daemon.core.config import Config
from daemon.core.schedule_config import Schedule
from daemon.core.weeks import IsoWeek
from daemon.reports.briefing import write_briefing
from daemon.service.app import App, open_app
from daemon.service.runner import Runner
from daemon.service.scheduler import (
    Clockwork,
    last_briefing_time,
    next_runs,
    week_of_briefing,
)

BERLIN = ZoneInfo("Europe/Berlin")
# Sunday 2026-11-22 22:00 in Berlin is the briefing time of ISO week 2026-W47.
SUNDAY_22 = datetime(2026, 11, 22, 22, 0, tzinfo=BERLIN)
W47 = IsoWeek(2026, 47)


def at(when: datetime) -> datetime:
    return when.astimezone(UTC)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[schedule]\ntimezone = "Europe/Berlin"\n')
    return path


def start(vault_root: Path, state_dir: Path, config_file: Path, now: datetime) -> Clockwork:
    """Start a daemon's clockwork as if the time were `now`; stop it again at once."""
    app = open_app(vault_root, config_path=config_file, state_dir=state_dir)
    clockwork = Clockwork(app, write_briefing=write_briefing, now=lambda: at(now))
    clockwork.start()
    clockwork.stop()
    app.close()
    return clockwork


def briefings(vault_root: Path) -> list[str]:
    return sorted(p.name for p in (vault_root / "Briefings").iterdir())


def test_the_last_briefing_time_is_the_latest_sunday_evening_in_the_time_zone():
    schedule = Schedule(timezone="Europe/Berlin")
    assert last_briefing_time(schedule, at(SUNDAY_22)) == SUNDAY_22
    assert last_briefing_time(schedule, at(SUNDAY_22 + timedelta(hours=10))) == SUNDAY_22
    before = SUNDAY_22 - timedelta(minutes=1)
    assert last_briefing_time(schedule, at(before)) == SUNDAY_22 - timedelta(days=7)
    assert week_of_briefing(schedule, SUNDAY_22) == W47


def test_a_monday_briefing_reports_on_the_week_that_ended():
    schedule = Schedule(timezone="Europe/Berlin", briefing_day="mon", briefing_hour=7)
    monday = datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN)
    assert last_briefing_time(schedule, at(monday + timedelta(hours=1))) == monday
    assert week_of_briefing(schedule, monday) == W47


def test_a_briefing_missed_by_less_than_the_grace_is_written_once_and_not_late(
    vault_root: Path, state_dir: Path, config_file: Path
):
    start(vault_root, state_dir, config_file, SUNDAY_22 - timedelta(days=1))  # Saturday
    # The laptop slept through Sunday night; it wakes at 08:00 on Monday.
    start(vault_root, state_dir, config_file, SUNDAY_22 + timedelta(hours=10))
    start(vault_root, state_dir, config_file, SUNDAY_22 + timedelta(hours=11))  # restart

    assert briefings(vault_root) == ["2026-11-23_Monday_Briefing.md"]
    text = (vault_root / "Briefings/2026-11-23_Monday_Briefing.md").read_text()
    assert "late: false" in text
    assert "2026-W47" in text


def test_a_briefing_missed_past_the_grace_is_written_at_the_next_start_marked_late(
    vault_root: Path, state_dir: Path, config_file: Path
):
    start(vault_root, state_dir, config_file, SUNDAY_22 - timedelta(days=1))
    start(vault_root, state_dir, config_file, SUNDAY_22 + timedelta(hours=36))  # Tuesday
    start(vault_root, state_dir, config_file, SUNDAY_22 + timedelta(hours=37))
    start(vault_root, state_dir, config_file, SUNDAY_22 + timedelta(hours=38))

    assert briefings(vault_root) == ["2026-11-23_Monday_Briefing.md"]
    assert "late: true" in (vault_root / "Briefings/2026-11-23_Monday_Briefing.md").read_text()


def test_no_briefing_is_written_for_a_week_before_vaultd_first_ran(
    vault_root: Path, state_dir: Path, config_file: Path
):
    start(vault_root, state_dir, config_file, SUNDAY_22 + timedelta(days=3))  # first run ever
    assert briefings(vault_root) == []


def test_two_daemons_on_one_ledger_write_the_briefing_once(
    vault_root: Path, state_dir: Path, config_file: Path
):
    start(vault_root, state_dir, config_file, SUNDAY_22 - timedelta(days=1))
    apps = [open_app(vault_root, config_path=config_file, state_dir=state_dir) for _ in range(2)]
    monday = at(SUNDAY_22 + timedelta(hours=9))
    written: list[Path | None] = []
    barrier = threading.Barrier(2)

    def race(app: App) -> None:
        clockwork = Clockwork(app, write_briefing=write_briefing, now=lambda: monday)
        barrier.wait()
        written.append(clockwork.write_due_briefing())

    threads = [threading.Thread(target=race, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for app in apps:
        app.close()

    assert sorted(p is not None for p in written) == [False, True]
    assert briefings(vault_root) == ["2026-11-23_Monday_Briefing.md"]


def test_jobs_are_stored_once_each_and_status_shows_their_next_run_in_the_time_zone(
    vault_root: Path, state_dir: Path, config_file: Path
):
    now = SUNDAY_22 - timedelta(days=1)
    start(vault_root, state_dir, config_file, now)
    start(vault_root, state_dir, config_file, now)  # replace_existing: still one of each

    runs = dict(next_runs(state_dir, Schedule(timezone="Europe/Berlin")))
    assert set(runs) == {"weekly_briefing", "approval_expiry", "log_retention", "dashboard_refresh"}
    briefing = runs["weekly_briefing"]
    assert briefing is not None
    assert briefing.tzinfo == BERLIN
    assert (briefing.weekday(), briefing.hour, briefing.minute) == (6, 22, 0)


@pytest.fixture
def running(app: App) -> Iterator[Runner]:
    stop = threading.Event()
    config = Config.model_validate({"daemon": {"rescan_seconds": 3600}})
    runner = Runner(app.pipeline, config, stop=stop)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    yield runner
    stop.set()
    thread.join(5)


def test_the_expiry_job_moves_expired_requests_to_rejected(
    app: App, vault_root: Path, clock, running: Runner
):
    invoice = {
        "type": "odoo_invoice",
        "partner": "Acme",
        "lines": [{"product": "Consulting", "quantity": 2, "price_unit": 90}],
    }
    make_files(vault_root, {"Needs_Action/acme.md": note(invoice)})
    wait_for((vault_root / "Pending_Approval/acme.md").exists)
    clock.advance(hours=49)

    running.request_expiry()  # what the approval_expiry job does

    wait_for((vault_root / "Rejected/acme.md").exists)


def test_run_once_also_catches_up_a_missed_briefing(
    vault_root: Path, state_dir: Path, config_file: Path
):
    from daemon.cli.main import main

    start(vault_root, state_dir, config_file, datetime.now(UTC) - timedelta(days=8))
    args = ["run", "--vault", str(vault_root), "--state-dir", str(state_dir), "--once"]
    assert main([*args, "--config", str(config_file)]) == 0
    assert main([*args, "--config", str(config_file)]) == 0

    assert len(briefings(vault_root)) == 1
