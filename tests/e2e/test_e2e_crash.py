"""A power cut at any point of an execution: after a restart nothing has run twice or been lost.

`VAULTD_FAILPOINT=<point>` makes the real `vaultd` process SIGKILL itself at that point. The
dry-run outbox plays the remote service, so counting its records counts the remote calls.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import files_in, make_files, move, note, outbox, read_tree
from e2e_support import (
    audit_events,
    calls_per_marker,
    integrity,
    meta,
    ok,
    vaultd,
)

from daemon.core.ledger import (
    APPROVED,
    DONE,
    EXECUTED,
    EXECUTING,
    FAILED,
    PENDING,
    REJECTED,
    UNKNOWN,
    Ledger,
)

pytestmark = pytest.mark.e2e

BODY = "Drafted by the marketing agent.\nDo not post before the launch call.\n"
POST = note(
    {
        "type": "social_post",
        "platforms": ["facebook", "twitter"],
        "text": "We are live!",
        "scheduled_for": "2026-01-05T09:00:00Z",
    },
    BODY,
)
REPLY = note(
    {
        "type": "social_post",
        "platforms": ["facebook"],
        "kind": "reply",
        "in_reply_to": "123_456",
        "text": "Thanks, Dana!",
    },
    BODY,
)
KILLED = -signal.SIGKILL
TASK_STATES = (PENDING, APPROVED, EXECUTING, EXECUTED, DONE, FAILED, UNKNOWN, REJECTED)


def run_once(vault: Path, state: Path, failpoint: str | None = None):
    return vaultd("run", "--vault", vault, "--once", "--state-dir", state, failpoint=failpoint)


def assert_killed(process) -> None:
    assert process.returncode == KILLED, (
        f"expected SIGKILL, got {process.returncode}\n{process.stderr}"
    )


def assert_done_exactly_once(vault: Path, state: Path, name: str, targets: list[str]) -> None:
    """The note is in Done/ with its body, and the remote side saw one call per target."""
    assert files_in(vault, "Done") == [name], read_tree(vault)
    for folder in ("Needs_Action", "Pending_Approval", "Approved", "Rejected", "Failed"):
        assert files_in(vault, folder) == [], (folder, read_tree(vault))
    text = (vault / "Done" / name).read_text(encoding="utf-8")
    assert text.endswith("---\n" + BODY)
    stamps = meta(text)
    assert stamps["status"] == "done"
    costs = {"estimated_cost_usd"} if "twitter" in targets else set()
    assert set(stamps["result"]) == {"dry_run", *targets, *costs}
    assert calls_per_marker(state) == {f"vaultd:{stamps['id']}:{t}": 1 for t in targets}
    assert integrity(state) == "ok"
    # One task in the ledger, and it is done: no half-finished ghost left for `status`.
    ledger = Ledger(state / "ledger.sqlite3", readonly=True)
    try:
        tasks = ledger.tasks(*TASK_STATES)
    finally:
        ledger.close()
    assert [(t.id, t.state, t.file) for t in tasks] == [(stamps["id"], "done", f"Done/{name}")]


@pytest.mark.parametrize(
    ("failpoint", "calls_before_restart"),
    [
        ("before-intent", 0),  # nothing recorded, nothing sent
        ("after-intent", 0),  # the INTENTs recorded, no call left
        ("after-call", 1),  # the call was made, its result never recorded
        ("after-done", 1),  # the first call is recorded DONE, the second never started
    ],
)
def test_a_crash_during_execution_is_settled_on_restart_without_calling_twice(
    vault_root: Path, state_dir: Path, failpoint: str, calls_before_restart: int
):
    vault, state = vault_root, state_dir
    make_files(vault, {"Needs_Action/launch.md": POST})

    assert_killed(run_once(vault, state, failpoint))
    assert len(outbox(state)) == calls_before_restart
    assert files_in(vault, "Approved") == ["launch.md"]  # auto-approved, then the crash
    assert integrity(state) == "ok"

    ok(run_once(vault, state))

    assert_done_exactly_once(vault, state, "launch.md", ["facebook", "twitter"])
    if failpoint in ("after-intent", "after-call"):
        # The dry-run connectors' lookups settle every call, so the post's two INTENTs are
        # committed together before the first call (daemon/lifecycle/call_records.py): after
        # the crash both are in doubt, and each is looked up. The one made is found; the
        # one not made is proven absent, and made once.
        lookups = [e["result"]["lookup"] for e in audit_events(vault) if e["event"] == "reconciled"]
        assert lookups == (
            ["absent", "absent"] if failpoint == "after-intent" else ["found", "absent"]
        )

    # A third start finds nothing left to do.
    ok(run_once(vault, state))
    assert_done_exactly_once(vault, state, "launch.md", ["facebook", "twitter"])


def test_a_crash_on_every_call_in_turn_still_posts_each_platform_once(
    vault_root: Path, state_dir: Path
):
    """Crash after each call of a two-platform post, restarting each time."""
    vault, state = vault_root, state_dir
    make_files(vault, {"Needs_Action/launch.md": POST})

    assert_killed(run_once(vault, state, "after-call"))
    assert len(outbox(state)) == 1
    assert_killed(run_once(vault, state, "after-call"))
    assert len(outbox(state)) == 2
    ok(run_once(vault, state))

    assert_done_exactly_once(vault, state, "launch.md", ["facebook", "twitter"])


def test_a_crash_between_writing_the_stamps_and_moving_to_approved_loses_nothing(
    vault_root: Path,
    state_dir: Path,
):
    vault, state = vault_root, state_dir
    make_files(vault, {"Needs_Action/launch.md": POST})

    assert_killed(run_once(vault, state, "mid-move"))
    assert files_in(vault, "Needs_Action") == ["launch.md"]
    assert outbox(state) == []

    ok(run_once(vault, state))

    assert_done_exactly_once(vault, state, "launch.md", ["facebook", "twitter"])


def test_a_crash_between_writing_done_and_moving_to_done_finishes_the_move(
    vault_root: Path, state_dir: Path
):
    vault, state = vault_root, state_dir
    make_files(vault, {"Needs_Action/reply.md": REPLY})
    ok(run_once(vault, state))
    assert files_in(vault, "Pending_Approval") == ["reply.md"]
    move(vault, vault / "Pending_Approval" / "reply.md", "Approved")

    assert_killed(run_once(vault, state, "mid-move"))
    assert files_in(vault, "Approved") == ["reply.md"]
    assert meta((vault / "Approved/reply.md").read_text(encoding="utf-8"))["status"] == "done"
    assert len(outbox(state)) == 1

    ok(run_once(vault, state))

    assert_done_exactly_once(vault, state, "reply.md", ["facebook"])


def test_a_crash_in_the_long_running_daemon_is_settled_by_the_next_one(
    vault_root: Path, state_dir: Path
):
    """The same protocol holds for `vaultd run` without --once: the file event path."""
    vault, state = vault_root, state_dir
    make_files(vault, {"Needs_Action/reply.md": REPLY})
    ok(run_once(vault, state))
    move(vault, vault / "Pending_Approval" / "reply.md", "Approved")

    killed = vaultd("run", "--vault", vault, "--state-dir", state, failpoint="after-call")
    assert_killed(killed)
    assert len(outbox(state)) == 1

    ok(run_once(vault, state))

    assert_done_exactly_once(vault, state, "reply.md", ["facebook"])


def test_a_crash_while_moving_an_invalid_note_to_rejected_leaves_one_task(
    vault_root: Path, state_dir: Path
):
    vault, state = vault_root, state_dir
    make_files(
        vault, {"Needs_Action/bad.md": note({"type": "social_post", "text": "no platforms"})}
    )

    assert_killed(run_once(vault, state, "mid-move"))
    ok(run_once(vault, state))

    assert files_in(vault, "Rejected") == ["bad.md"]
    ledger = Ledger(state / "ledger.sqlite3", readonly=True)
    assert list(ledger.counts().items()) == [(REJECTED, 1)]
    ledger.close()
