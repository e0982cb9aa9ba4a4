"""The supervisor of `vaultd run`: real components broken for real, restarted or reported."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from conftest import files_in, make_files, note, wait_for

from daemon.core.config import Config, Timing
from daemon.reports.briefing import write_briefing
from daemon.reports.dashboard import Dashboard
from daemon.service.app import App
from daemon.service.runner import Runner
from daemon.service.scheduler import JOBS_FILE, Clockwork
from daemon.service.supervisor import Supervisor

POST = note({"type": "social_post", "platforms": ["facebook"], "text": "Still here"})


def test_a_dead_file_watcher_is_restarted_and_files_are_seen_again(app: App, vault_root: Path):
    stop = threading.Event()
    runner = Runner(app.pipeline, Config(daemon=Timing(stability_ms=50)), stop=stop)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    supervisor = Supervisor(app.vault, app.audit, [runner.watcher])
    try:
        wait_for(runner.watcher.healthy, timeout=5)
        runner.watcher.stop()  # the observer thread ends, as if it had crashed
        assert not runner.watcher.healthy()

        supervisor.check()

        assert runner.watcher.healthy()
        assert supervisor.health["file watcher"].restarts == 1
        make_files(vault_root, {"Needs_Action/after.md": POST})
        wait_for(lambda: files_in(vault_root, "Done") == ["after.md"], timeout=10)
        supervisor.check()  # healthy again: the count starts over
        assert supervisor.health["file watcher"].restarts == 0
    finally:
        stop.set()
        thread.join(timeout=10)
    events = [line for path in (vault_root / "Logs").glob("*.json") for line in path.open()]
    assert any('"component_restarted"' in line for line in events)


def test_a_scheduler_that_cannot_restart_is_given_up_after_three_tries_and_reported(
    app: App, vault_root: Path
):
    clockwork = Clockwork(app, write_briefing=write_briefing)
    clockwork.start()
    dashboard = Dashboard(app.vault, app.ledger, min_interval=0)
    supervisor = Supervisor(
        app.vault, app.audit, [clockwork], on_change=dashboard.changed, max_restarts=3
    )
    dashboard.alerts = supervisor.failed
    try:
        clockwork.stop()  # the scheduler is gone ...
        jobs = app.state_dir / JOBS_FILE
        jobs.unlink()
        jobs.mkdir()  # ... and its job store cannot be opened again

        for _ in range(3):
            supervisor.check()
            assert supervisor.failed() == []
        supervisor.check()

        assert supervisor.failed() == ["scheduler"]
        assert supervisor.health["scheduler"].restarts == 3
        assert supervisor.health["scheduler"].last_error
        alert = (vault_root / "Needs_Action" / "vaultd alert - scheduler.md").read_text()
        assert "type: alert" in alert
        assert "did not recover after 3 restarts" in alert
        text = (vault_root / "Dashboard.md").read_text()
        assert "vaultd's scheduler is down" in text
        supervisor.check()  # given up: not restarted again, not alerted twice
        assert files_in(vault_root, "Needs_Action") == ["vaultd alert - scheduler.md"]
    finally:
        shutil.rmtree(app.state_dir / JOBS_FILE, ignore_errors=True)
        clockwork.stop()

    # The pipeline leaves vaultd's alert where it is, and so does `vaultd check`.
    Runner(app.pipeline, app.config).run_once()
    assert files_in(vault_root, "Needs_Action") == ["vaultd alert - scheduler.md"]
    from daemon.cli.check import check_file

    assert check_file(vault_root / "Needs_Action" / "vaultd alert - scheduler.md") == []
