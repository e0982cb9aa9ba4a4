"""The queue as a person sees it: `vaultd runs list` filtered by state, channel and skill,
and the queue by channel in `vaultd status` and Dashboard.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_queue import BOOM, ECHO, make_skill

from daemon.agents.queue.service import RunQueue
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.service import open_runs
from daemon.cli.main import main
from daemon.service.app import App, open_app


def vaultd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_runs_list_filters_by_state_channel_and_skill_and_status_shows_the_queue(
    vault_root: Path, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    skills = tmp_path / "skills"
    make_skill(skills, "echo", ECHO)
    make_skill(skills, "boom", BOOM)
    make_skill(skills, "books", ECHO, channel="odoo")
    config = tmp_path / "vaultd.toml"
    config.write_text(
        f'[skills]\ndirs = ["{skills}"]\n[queue]\nmax_retries = 0\n'
        "[queue.channels]\ndefault = 2\nodoo = 1\n"
    )
    app = open_app(vault_root, config_path=config, state_dir=state_dir)
    try:
        runs = open_runs(app)
        queue = RunQueue(runs, app.config.queue)
        failing = queue.enqueue("boom", {}, requested_by="t").run.id
        Workers(runs, app.config.queue).drain()
        waiting = queue.enqueue("echo", {"n": 1}, requested_by="t").run.id
        booked = queue.enqueue("books", {}, requested_by="t").run.id
        draft = runs.create("echo", {"n": 2}, requested_by="t").run.id
    finally:
        app.close()
    where = ("--vault", str(vault_root), "--state-dir", str(state_dir), "--config", str(config))

    def listed(*filters: str) -> list[str]:
        code, out = vaultd(capsys, "runs", "list", *filters, *where)
        assert code == 0, out
        return [line.split()[0] for line in out.splitlines() if line.startswith("run-")]

    assert listed("--state", "failed") == [failing]
    assert sorted(listed("--state", "queued")) == sorted([waiting, booked])
    assert listed("--channel", "odoo") == [booked]
    assert listed("--skill", "echo") == [draft, waiting]
    assert listed("--skill", "echo", "--state", "draft") == [draft]
    code, out = vaultd(capsys, "runs", "list", "--skill", "nothing", *where)
    assert (code, out.strip()) == (0, "no runs like that")

    code, out = vaultd(capsys, "status", *where)
    assert code == 0, out
    assert (
        "Run queue:\n  default      0 running, 1 queued\n  odoo         0 running, 1 queued" in out
    )
    assert f"  {failing}  boom  failed: RuntimeError: boom" in out


def test_dashboard_shows_the_queue_by_channel_above_the_runs(app: App):
    from daemon.reports.dashboard import render_dashboard
    from daemon.reports.status import build_snapshot

    runs = open_runs(app)
    queued = RunQueue(runs, app.config.queue).enqueue("generate-briefing", {}, requested_by="t")

    text = render_dashboard(build_snapshot(app.vault, app.ledger))

    section = text[text.index("## Skill runs") : text.index("## Recent actions")]
    assert section.splitlines()[2:4] == [
        "- queue `default`: 0 running, 1 queued",
        f"- `{queued.run.id}` generate-briefing — **queued**",
    ]
