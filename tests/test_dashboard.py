"""Dashboard.md: what it shows, where and how it is written, and how often."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    VAULTD,
    drop_posts_to_broken_services,
    files_in,
    make_files,
    note,
    wait_for,
)

from daemon.cli.main import main
from daemon.cli.status import format_status
from daemon.core.errors import ConnectorError, OutcomeUnknown
from daemon.core.vault import PIPELINE_FOLDERS
from daemon.reports.dashboard import Dashboard, render_dashboard
from daemon.reports.status import build_snapshot, human_age
from daemon.service.app import App

REPLY = {
    "type": "social_post",
    "platforms": ["facebook"],
    "kind": "reply",
    "in_reply_to": "1_2",
    "text": "Thanks!",
}


def dashboard_of(root: Path) -> str:
    return (root / "Dashboard.md").read_text(encoding="utf-8")


def test_run_once_writes_counts_pending_links_with_age_and_rule_and_recent_actions(
    tmp_path: Path,
):
    vault = tmp_path / "vault"
    main(["init", str(vault)])
    assert main(["run", "--vault", str(vault), "--once", "--state-dir", str(tmp_path / "s")]) == 0

    text = dashboard_of(vault)
    assert "| Pending_Approval | 3 |" in text
    assert "| Done | 1 |" in text
    assert "| Needs_Action | 0 |" in text
    assert "## Waiting for approval (3)" in text
    assert re.search(
        r"- \[\[Pending_Approval/invoice_acme_december\]\] `\d{8}-[0-9a-f]{6}@[0-9a-f]{12}` "
        r"— odoo_invoice, 970.00 USD, waiting ",
        text,
    )
    assert "[[Pending_Approval/reply_to_customer]]" in text
    assert "[[Pending_Approval/payment_blue_cafe]]" in text
    assert "rule `amount_threshold`: 970.00 USD is at or over the 100.00 USD threshold" in text
    assert "  - expires 20" in text
    assert "Nothing has failed." in text
    recent = text.split("## Recent actions", 1)[1]
    assert "**executed** · social_post" in recent
    # Newest first.
    assert recent.index("**executed**") < recent.index("**auto_approved**")


def test_dashboard_lists_failures_and_unknown_outcomes_with_their_error(app: App, vault_root: Path):
    drop_posts_to_broken_services(
        app,
        vault_root,
        facebook=ConnectorError("page token\nexpired"),
        twitter=OutcomeUnknown("timed out"),
    )

    Dashboard(app.vault, app.ledger, min_interval=60).write()
    text = dashboard_of(vault_root)
    assert "## Failed or outcome unknown (2)" in text
    fb = next(line for line in text.splitlines() if line.startswith("- [[Failed/fb]]"))
    assert "**failed**" in fb and "facebook: page token expired" in fb  # one line, always
    x = next(line for line in text.splitlines() if line.startswith("- [[Failed/x]]"))
    assert "**outcome unknown**" in x and "twitter: timed out" in x


def test_dashboard_of_an_empty_vault_says_nothing_waits_and_nothing_failed(
    vault_root: Path, tmp_path: Path
):
    from daemon.core.vault import Vault

    text = render_dashboard(build_snapshot(Vault(vault_root), None))
    assert "Nothing is waiting for you." in text
    assert "Nothing has failed." in text
    assert "No actions recorded yet." in text


def test_a_long_queue_lists_the_oldest_requests_and_failures_and_counts_the_rest(
    vault_root: Path,
):
    from daemon.core.vault import Vault

    for n in range(7):
        make_files(vault_root, {f"Pending_Approval/request {n}.md": note(REPLY)})
        make_files(vault_root, {f"Failed/failed {n}.md": note(REPLY)})
        stamp = 1_700_000_000 + n  # request 0 is the oldest
        for folder, name in (("Pending_Approval", "request"), ("Failed", "failed")):
            os.utime(vault_root / folder / f"{name} {n}.md", (stamp, stamp))

    snapshot = build_snapshot(Vault(vault_root), None, listed=5)
    text = render_dashboard(snapshot)

    assert "## Waiting for approval (7)" in text
    assert [f"[[Pending_Approval/request {n}]]" in text for n in range(7)] == [True] * 5 + [
        False
    ] * 2
    assert "- … and 2 more in `Pending_Approval/`" in text
    assert "## Failed or outcome unknown (7)" in text
    assert "- … and 2 more in `Failed/`" in text
    status = format_status(snapshot)
    assert "Waiting for approval: 7" in status
    assert "  … and 2 more in Pending_Approval/" in status
    assert "Failed or outcome unknown: 7" in status
    assert "  … and 2 more in Failed/" in status


def test_a_note_dropped_into_Pending_Approval_by_hand_is_shown_as_not_yet_processed(
    app: App, vault_root: Path
):
    make_files(vault_root, {"Pending_Approval/by hand.md": note(REPLY)})
    Dashboard(app.vault, app.ledger, min_interval=0).write()
    text = dashboard_of(vault_root)
    assert "- [[Pending_Approval/by hand]] — social_post, waiting " in text
    assert "not yet processed by vaultd" in text


def test_dashboard_is_written_at_the_vault_root_atomically_and_never_in_pipeline_folders(
    app: App, vault_root: Path
):
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    app.pipeline.process(vault_root / "Needs_Action/reply.md")
    dashboard = Dashboard(app.vault, app.ledger, min_interval=0)
    for _ in range(3):
        dashboard.changed()
    assert dashboard.writes == 3
    assert sorted(p.name for p in vault_root.iterdir() if p.is_file()) == ["Dashboard.md"]
    for folder in PIPELINE_FOLDERS:
        assert not any("Dashboard" in path.name for path in (vault_root / folder).iterdir())
    assert not list(vault_root.rglob(".vaultd-*"))


def test_a_burst_of_changes_writes_once_now_and_once_after_the_interval(app: App, vault_root: Path):
    dashboard = Dashboard(app.vault, app.ledger, min_interval=0.3)
    dashboard.changed()
    assert dashboard.writes == 1
    make_files(vault_root, {"Pending_Approval/late.md": note(REPLY)})
    for _ in range(20):
        dashboard.changed()
    assert dashboard.writes == 1, "throttled: no second write inside the interval"
    wait_for(lambda: dashboard.writes == 2, timeout=3)
    assert "[[Pending_Approval/late]]" in dashboard_of(vault_root)
    time.sleep(0.4)
    assert dashboard.writes == 2, "no change since: no further write"
    dashboard.close()


def test_close_always_writes_a_final_version_even_inside_the_interval(app: App, vault_root: Path):
    dashboard = Dashboard(app.vault, app.ledger, min_interval=3600)
    dashboard.changed()
    make_files(vault_root, {"Pending_Approval/last.md": note(REPLY)})
    dashboard.changed()
    assert "[[Pending_Approval/last]]" not in dashboard_of(vault_root)
    dashboard.close()
    assert dashboard.writes == 2
    assert "[[Pending_Approval/last]]" in dashboard_of(vault_root)
    dashboard.changed()
    assert dashboard.writes == 2, "nothing is written after close"


def test_a_dashboard_that_cannot_be_written_never_stops_the_daemon(
    app: App, vault_root: Path, caplog: pytest.LogCaptureFixture
):
    (vault_root / "Dashboard.md").mkdir()  # a folder in the way: the write must fail
    dashboard = Dashboard(app.vault, app.ledger, min_interval=0)
    dashboard.changed()
    dashboard.close()
    assert dashboard.writes == 0
    assert "could not be written" in caplog.text
    assert not list(vault_root.glob(".vaultd-*"))


def test_the_running_daemon_rewrites_the_dashboard_after_a_change_and_on_stop(tmp_path: Path):
    vault = tmp_path / "vault"
    main(["init", str(vault)])
    config = tmp_path / "config.toml"
    config.write_text("[daemon]\nstability_ms = 20\ndashboard_seconds = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    command = [*VAULTD, "run", "--vault", str(vault), "--config", str(config)]
    daemon = subprocess.Popen(
        [*command, "--state-dir", str(tmp_path / "s")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "| Pending_Approval | 3 |" in dashboard_of(vault))
        make_files(vault, {"Needs_Action/thanks.md": note(REPLY)})
        wait_for(lambda: "[[Pending_Approval/thanks]]" in dashboard_of(vault))
        (vault / "Dashboard.md").write_text("stale\n")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0, daemon.stderr.read() if daemon.stderr else ""
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if daemon.stderr:
            daemon.stderr.close()
    assert "| Pending_Approval | 4 |" in dashboard_of(vault), "a final write on stop"
    assert files_in(vault, "Pending_Approval") == [
        "invoice_acme_december.md",
        "payment_blue_cafe.md",
        "reply_to_customer.md",
        "thanks.md",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45, "45s"), (60, "1m"), (11_520, "3h 12m"), (190_800, "2d 5h")],
)
def test_ages_read_the_way_a_person_says_them(seconds: int, shown: str):
    assert human_age(seconds) == shown


def test_the_last_log_entries_are_read_from_the_ends_of_the_newest_days_only(tmp_path: Path):
    import json as json_

    from daemon.core.audit import last_entries, last_lines

    logs = tmp_path / "Logs"
    logs.mkdir()
    older = [json_.dumps({"event": f"old_{n}"}) for n in range(5)]
    newer = [json_.dumps({"event": f"new_{n}", "pad": "x" * (n % 150)}) for n in range(1000)]
    (logs / "2026-11-20.json").write_text("\n".join(older) + "\n")
    (logs / "2026-11-21.json").write_text("\n".join(newer) + "\n{torn line")

    assert [e["event"] for e in last_entries(logs, 3)] == ["new_997", "new_998", "new_999"]
    both = last_entries(logs, 1003)
    assert [e["event"] for e in both[:4]] == ["old_2", "old_3", "old_4", "new_0"]
    assert len(both) == 1003
    # Small blocks: lines cut by a block boundary are never returned in part.
    assert last_lines(logs / "2026-11-21.json", 50, block=97) == [
        line.encode() for line in [*newer[-49:], "{torn line"]
    ]


def test_skill_runs_are_listed_waiting_ones_first(app: App, vault_root: Path):
    from daemon.agents.skills.service import open_runs

    runs = open_runs(app)
    done = runs.create("generate-briefing", {}, requested_by="t", execute=True).run
    waiting = runs.create("post-social-media", {"text": "Hi"}, requested_by="t", execute=True).run

    text = render_dashboard(build_snapshot(app.vault, app.ledger))

    section = text[text.index("## Skill runs") : text.index("## Recent actions")]
    assert section.splitlines()[2:4] == [
        f"- `{waiting.id}` post-social-media — **awaiting approval**",
        f"- `{done.id}` generate-briefing — **succeeded**",
    ]
