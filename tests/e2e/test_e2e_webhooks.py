"""Issue 14, item 5: completion webhooks from the real `vaultd run`.

A run enqueued with `runs create --execute --webhook URL` is worked by the daemon, and a
loopback receiver (tests/standins/webhooks.py) verifies every delivery with the
`standardwebhooks` library. It fails the first two: the third arrives, with the same
`webhook-id` each time. Then a receiver that holds the delivery without an answer while the
daemon is killed (kill -9): after the restart it is delivered, with the same `webhook-id`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import forkserver
import pytest
from conftest import wait_for
from e2e_support import Daemon, audit_events
from standins.webhooks import TEST_SECRET, Receiver, ReceiverState
from test_e2e_queue import setup

pytestmark = pytest.mark.e2e

FAST_RETRIES = "[webhooks]\nbackoff_seconds = 0.2\nmax_backoff_seconds = 0.5\n"


def enqueue(tmp_path: Path, vault: Path, state: Path, config: Path, url: str, n: int) -> str:  # noqa: PLR0917
    marks = tmp_path / "marks"
    made = forkserver.run(
        [
            "runs",
            "create",
            "announce",
            "--input",
            json.dumps({"n": n, "pause": 0.0, "marks": str(marks)}),
            "--execute",
            "--webhook",
            url,
            "--vault",
            str(vault),
            "--state-dir",
            str(state),
            "--config",
            str(config),
        ],
        timeout=60,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return made.stdout.split(":")[0].split()[-1]


def test_a_run_is_told_to_its_webhook_verified_after_two_failures_with_one_id(tmp_path: Path):
    """The run waits for its post's approval (auto-approved) and then succeeds: two events,
    each its own webhook-id; the two failed attempts are retried under their id."""
    vault, state, _, config = setup(tmp_path)
    config.write_text(config.read_text() + FAST_RETRIES)
    env = {"VAULTD_WEBHOOK_SECRET": TEST_SECRET}
    with Receiver(ReceiverState(fail_first=2)) as receiver:
        daemon = Daemon(vault, state, "--config", str(config), env=env)
        try:
            run_id = enqueue(tmp_path, vault, state, config, receiver.url, 1)
            got = receiver.state.wait_for(4, timeout=30)
            wait_for(lambda: len(delivered(vault)) == 2, timeout=10)
        finally:
            assert daemon.terminate() == 0, daemon.output()
    assert len(got) == 4, daemon.output()
    assert all(r.verified is not None for r in got), [r.error for r in got]
    by_id: dict[str, list[str]] = {}
    for r in got:
        by_id.setdefault(r.headers["webhook-id"], []).append(r.verified["run_id"])
    assert len(by_id) == 2 and all(ids == [run_id] * len(ids) for ids in by_id.values())
    failed_ids = [r.headers["webhook-id"] for r in got[:2]]
    assert all(i in [r.headers["webhook-id"] for r in got[2:]] for i in failed_ids)
    last = got[-1].verified
    assert last["queue"]["channel"] == "default"  # the run as GET shows it
    assert {d["parameters"]["event"] for d in delivered(vault)} == {
        "run.awaiting_approval",
        "run.succeeded",
    }
    retried = [e for e in audit_events(vault) if e["event"] == "webhook_retrying"]
    assert len(retried) == 2 and all(e["result"]["status"] == "error" for e in retried)
    status = forkserver.run(["status", "--vault", str(vault), "--state-dir", str(state)])
    assert status.returncode == 0, status.stderr
    assert "Webhooks: 2 delivered (each attempt is in the audit log)" in status.stdout


def delivered(vault: Path) -> list[dict]:
    return [e for e in audit_events(vault) if e["event"] == "webhook_delivered"]


def test_a_daemon_killed_mid_delivery_delivers_after_its_restart_with_the_same_id(
    tmp_path: Path,
):
    vault, state, _, config = setup(tmp_path)
    config.write_text(config.read_text() + FAST_RETRIES + "timeout_seconds = 30\n")
    env = {"VAULTD_WEBHOOK_SECRET": TEST_SECRET}
    with Receiver(ReceiverState(stall_first=1, stall_seconds=20)) as receiver:
        daemon = Daemon(vault, state, "--config", str(config), env=env)
        try:
            enqueue(tmp_path, vault, state, config, receiver.url, 2)
            receiver.state.wait_for(1, timeout=30)  # held there, unanswered
        finally:
            daemon.kill()
        again = Daemon(vault, state, "--config", str(config), env=env)
        try:
            got = receiver.state.wait_for(3, timeout=30)
            wait_for(lambda: len(delivered(vault)) == 2, timeout=10)
        finally:
            assert again.terminate() == 0, again.output()
    held = got[0].headers["webhook-id"]
    assert [r.headers["webhook-id"] for r in got[1:]].count(held) == 1, "not sent again"
    assert all(r.verified is not None for r in got)
    assert len({d["parameters"]["webhook_id"] for d in delivered(vault)}) == 2


def test_vaultd_run_once_from_cron_delivers_what_the_runs_it_worked_owe(tmp_path: Path):
    vault, state, _, config = setup(tmp_path)
    env = {**os.environ, "VAULTD_WEBHOOK_SECRET": TEST_SECRET}
    with Receiver() as receiver:
        enqueue(tmp_path, vault, state, config, receiver.url, 3)
        where = ["--vault", str(vault), "--state-dir", str(state), "--config", str(config)]
        once = forkserver.run(["run", "--once", *where], env=env, timeout=120)
        assert once.returncode == 0, once.stdout + once.stderr
        got = receiver.state.wait_for(1, timeout=5)
    assert got and all(r.verified is not None for r in got), [r.error for r in got]
    assert {r.verified["run_id"] for r in got} == {got[0].verified["run_id"]}
