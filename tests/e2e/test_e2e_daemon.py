"""The real `vaultd` on a fresh vault, as a new user meets it: init, run, approve by moving."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import files_in, make_files, move, note, outbox, read_tree, wait_for
from e2e_support import (
    TEMPLATE,
    Daemon,
    audit_events,
    meta,
    ok,
    split_note,
    vaultd,
)

pytestmark = pytest.mark.e2e

POST = "winter_promotion_post.md"
INVOICE = "invoice_acme_december.md"
PAYMENT = "payment_blue_cafe.md"
REPLY = "reply_to_customer.md"


def template_note(name: str) -> str:
    return (TEMPLATE / "Needs_Action" / name).read_text(encoding="utf-8")


def assert_user_text_intact(text: str, name: str) -> None:
    """The user's frontmatter lines come first, untouched, and the body is byte for byte."""
    original_meta, original_body = split_note(template_note(name))
    stamped_meta, body = split_note(text)
    assert body == original_body, name
    assert stamped_meta.startswith(original_meta), name


def demo_vault(tmp_path: Path) -> tuple[Path, Path]:
    vault, state = tmp_path / "vault", tmp_path / "state"
    ok(vaultd("init", vault))
    ok(vaultd("run", "--vault", vault, "--once", "--state-dir", state))
    return vault, state


def test_init_then_run_once_turns_the_template_into_the_demo_flow(tmp_path: Path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    init = ok(vaultd("init", vault))
    assert "7 note(s) created" in init.stdout

    ok(vaultd("run", "--vault", vault, "--once", "--state-dir", state))

    tree = read_tree(vault)
    assert sorted(tree) == [
        ".vaultd/executor.json",  # the executor lease: this machine executes on the vault
        "Business_Goals.md",
        "Company_Handbook.md",
        "Dashboard.md",
        f"Done/{POST}",
        f"Pending_Approval/{INVOICE}",
        f"Pending_Approval/{PAYMENT}",
        f"Pending_Approval/{REPLY}",
    ]
    for name in ("Business_Goals.md", "Company_Handbook.md"):
        assert tree[name] == (TEMPLATE / name).read_text(encoding="utf-8")

    done = tree[f"Done/{POST}"]
    assert_user_text_intact(done, POST)
    stamps = meta(done)
    assert stamps["status"] == "done"
    assert stamps["approval"]["by"] == "policy"
    assert stamps["approval"]["rule"] == "scheduled_post"
    assert stamps["result"]["dry_run"] is True
    assert set(stamps["result"]) == {"dry_run", "facebook", "twitter", "estimated_cost_usd"}
    assert stamps["result"]["estimated_cost_usd"] == "0.20"  # X bills a post with a link

    for name in (INVOICE, PAYMENT, REPLY):
        text = tree[f"Pending_Approval/{name}"]
        assert_user_text_intact(text, name)
        stamps = meta(text)
        assert stamps["status"] == "pending_approval", name
        assert stamps["approval"]["payload_hash"].startswith("sha256:"), name
        approve = (
            rf"run `\S*vaultd approve --vault \S+ (--state-dir \S+ )?{stamps['id']}@[0-9a-f]{{12}}`"
        )
        assert re.search(approve, text), name
        assert "result" not in stamps, name

    # The remote side saw exactly the scheduled post, once per platform.
    post_id = meta(done)["id"]
    assert sorted(r["marker"] for r in outbox(state)) == [
        f"vaultd:{post_id}:facebook",
        f"vaultd:{post_id}:twitter",
    ]
    # The state lives outside the vault, and the audit log inside it.
    assert (state / "ledger.sqlite3").exists()
    assert not list(vault.rglob("*.sqlite3*"))
    assert {e["event"] for e in audit_events(vault)} >= {
        "auto_approved",
        "executed",
        "approval_requested",
    }


def test_run_once_again_changes_nothing(tmp_path: Path):
    vault, state = demo_vault(tmp_path)
    # The lease's pid and heartbeat are the new run's; the machine it names stays.
    skip = ("Logs", "Dashboard.md", ".vaultd")
    before = read_tree(vault, skip=skip)
    machine = json.loads((vault / ".vaultd/executor.json").read_text())["machine_id"]

    ok(vaultd("run", "--vault", vault, "--once", "--state-dir", state))

    assert read_tree(vault, skip=skip) == before
    assert json.loads((vault / ".vaultd/executor.json").read_text())["machine_id"] == machine
    assert len(outbox(state)) == 2


def test_init_never_overwrites_an_existing_note(tmp_path: Path):
    vault = tmp_path / "vault"
    (vault / "Needs_Action").mkdir(parents=True)
    mine = vault / "Needs_Action" / REPLY
    mine.write_text("my own words\n", encoding="utf-8")
    (vault / "Company_Handbook.md").write_text("# Our rules\n", encoding="utf-8")

    result = ok(vaultd("init", vault))

    assert "2 existing note(s) left untouched" in result.stdout
    assert mine.read_text(encoding="utf-8") == "my own words\n"
    assert (vault / "Company_Handbook.md").read_text(encoding="utf-8") == "# Our rules\n"
    assert (vault / "Needs_Action" / INVOICE).exists()


def test_running_daemon_executes_what_a_person_approves_and_stops_cleanly_on_sigterm(
    tmp_path: Path, record_property: pytest.RecordProperty
):
    vault, state = demo_vault(tmp_path)
    # A task that is already waiting when the daemon starts: the start-up scan finds it.
    (vault / "Needs_Action" / "early.md").write_text(
        note({"type": "social_post", "platforms": ["twitter"], "text": "Early bird"}),
        encoding="utf-8",
    )
    daemon = Daemon(vault, state)
    try:
        wait_for(lambda: "early.md" in files_in(vault, "Done"), timeout=15)
        assert daemon.alive(), daemon.output()

        # A person approves the reply the way Obsidian does it: a rename.
        started = time.monotonic()
        move(vault, vault / "Pending_Approval" / REPLY, "Approved")
        wait_for(lambda: REPLY in files_in(vault, "Done"), timeout=5)
        latency = time.monotonic() - started
        record_property("approve_to_done_seconds", round(latency, 3))
        print(f"approve → Done latency: {latency * 1000:.0f} ms")

        # An agent drops a new task while the daemon runs.
        (vault / "Needs_Action" / "late.md").write_text(
            note({"type": "social_post", "platforms": ["facebook"], "text": "Late news"}),
            encoding="utf-8",
        )
        wait_for(lambda: "late.md" in files_in(vault, "Done"), timeout=5)
        # ... and one that needs a person first.
        (vault / "Needs_Action" / "dm.md").write_text(
            note(
                {
                    "type": "social_post",
                    "platforms": ["twitter"],
                    "kind": "reply",
                    "in_reply_to": "42",
                    "text": "On its way!",
                }
            ),
            encoding="utf-8",
        )
        wait_for(lambda: "dm.md" in files_in(vault, "Pending_Approval"), timeout=5)

        stopped = time.monotonic()
        assert daemon.terminate(timeout=10) == 0, daemon.output()
        assert time.monotonic() - stopped < 5, "SIGTERM should stop the daemon promptly"
    finally:
        daemon.kill()

    assert files_in(vault, "Needs_Action") == []
    assert files_in(vault, "Approved") == []
    assert files_in(vault, "Done") == sorted([POST, REPLY, "early.md", "late.md"])
    assert files_in(vault, "Pending_Approval") == sorted([INVOICE, PAYMENT, "dm.md"])
    assert files_in(vault, "Rejected") == files_in(vault, "Failed") == []

    reply = (vault / "Done" / REPLY).read_text(encoding="utf-8")
    assert_user_text_intact(reply, REPLY)
    stamps = meta(reply)
    assert stamps["status"] == "done"
    assert "<!-- vaultd:begin" not in reply, "a Done note no longer carries the request"
    markers = [r["marker"] for r in outbox(state)]
    assert markers.count(f"vaultd:{stamps['id']}:facebook") == 1
    assert len(markers) == len(set(markers)) == 5  # post x2, early, reply, late
    assert "Traceback" not in daemon.output()


def test_polling_mode_also_executes_a_moved_file(tmp_path: Path):
    vault, state = demo_vault(tmp_path)
    daemon = Daemon(vault, state, "--polling")
    try:
        # Wait until the daemon is up: its start-up scan settles a task dropped beforehand.
        (vault / "Needs_Action" / "ready.md").write_text(
            note({"type": "social_post", "platforms": ["facebook"], "text": "Ready"}),
            encoding="utf-8",
        )
        wait_for(lambda: "ready.md" in files_in(vault, "Done"), timeout=15)

        move(vault, vault / "Pending_Approval" / INVOICE, "Approved")
        wait_for(lambda: INVOICE in files_in(vault, "Done"), timeout=10)
        assert daemon.terminate() == 0, daemon.output()
    finally:
        daemon.kill()

    invoice = (vault / "Done" / INVOICE).read_text(encoding="utf-8")
    assert_user_text_intact(invoice, INVOICE)
    assert meta(invoice)["status"] == "done"
    assert meta(invoice)["result"]["odoo"]["dry_run"] is True


def test_ctrl_c_stops_the_daemon_cleanly_too(tmp_path: Path):
    vault, state = demo_vault(tmp_path)
    (vault / "Needs_Action" / "ready.md").write_text(
        note({"type": "social_post", "platforms": ["facebook"], "text": "Ready"}),
        encoding="utf-8",
    )
    daemon = Daemon(vault, state)
    try:
        wait_for(lambda: "ready.md" in files_in(vault, "Done"), timeout=15)
        assert daemon.terminate(sig=signal.SIGINT) == 0, daemon.output()
    finally:
        daemon.kill()
    assert "KeyboardInterrupt" not in daemon.output()
    assert "stopped" in daemon.output()


def test_live_mode_without_settings_fails_clearly_instead_of_pretending(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    for name in ("FACEBOOK_PAGE_ID", "FACEBOOK_PAGE_TOKEN", "FACEBOOK_GRAPH_URL"):
        monkeypatch.delenv(name, raising=False)
    make_files(
        vault_root,
        {
            "Needs_Action/post.md": note(
                {"type": "social_post", "platforms": ["facebook"], "text": "Live!"}
            )
        },
    )
    result = vaultd(
        "run", "--vault", str(vault_root), "--state-dir", str(state_dir), "--once", "--live"
    )

    assert result.returncode == 0
    warning = next(line for line in result.stderr.splitlines() if "WARNING facebook: " in line)
    reason = warning.split("WARNING facebook: ", 1)[1].removesuffix("; its actions will fail")
    assert reason
    failed = (vault_root / "Failed/post.md").read_text()
    assert f"facebook: {reason}" in failed
    assert outbox(state_dir) == []


def test_the_running_daemon_schedules_its_jobs_and_status_shows_their_next_run(tmp_path: Path):
    vault, state = demo_vault(tmp_path)
    daemon = Daemon(vault, state)
    try:
        wait_for((state / "jobs.sqlite3").exists, timeout=15)
        status = wait_for(
            lambda: (
                (out := vaultd("status", "--vault", vault, "--state-dir", state).stdout)
                and "weekly_briefing" in out
                and out
            ),
            timeout=15,
        )
        assert daemon.terminate() == 0, daemon.output()
    finally:
        daemon.kill()

    for job in ("weekly_briefing", "approval_expiry", "log_retention", "dashboard_refresh"):
        assert job in status
    assert "Scheduler has been shut down" in daemon.output()
