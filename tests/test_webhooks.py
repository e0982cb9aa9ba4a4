"""Completion webhooks (issue 14, item 5): the outbox, the signed delivery and its retries,
against a loopback receiver that verifies every delivery with the `standardwebhooks` library.

The attacks: an agent naming a webhook inside the network (or anywhere), a redirect that
would lead past the URL check, the secret reaching the log; and the failures: a receiver
that fails, disappears (410), or never answers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standins.webhooks import TEST_SECRET, Receiver, ReceiverState

from daemon.agents.skills.store import RunStore
from daemon.agents.webhooks import events
from daemon.agents.webhooks.delivery import Deliverer
from daemon.agents.webhooks.outbox import DELIVERED, DISABLED, FAILED, PENDING, Outbox
from daemon.agents.webhooks.worker import WebhookWorker
from daemon.core.audit import AuditLog
from daemon.core.config import load_config
from daemon.core.errors import ConfigError
from daemon.core.ledger import Ledger
from daemon.core.settings import Settings
from daemon.core.webhook_config import EVENTS, WebhooksConfig, check_url

RUN = {"run_id": "run_01", "state": "succeeded", "skill_key": "demo", "output": {"n": 1}}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)  # after what is enqueued now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def world(tmp_path: Path):
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    audit = AuditLog(tmp_path / "Logs")
    clock = Clock()

    def deliverer(config: WebhooksConfig | None = None, secret: str | None = TEST_SECRET):
        settings = Settings({"VAULTD_WEBHOOK_SECRET": secret} if secret else {})
        return Deliverer(
            Outbox(ledger), config or WebhooksConfig(), settings, audit, clock, jitter=lambda: 1
        )

    yield ledger, audit, clock, deliverer
    audit.close()
    ledger.close()


def entries(tmp_path: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((tmp_path / "Logs").glob("*.json"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def states(ledger: Ledger) -> list[tuple[str, str, int]]:
    return [
        (row["url"], row["state"], row["attempts"])
        for row in ledger.rows("SELECT url, state, attempts FROM webhook_outbox ORDER BY id")
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",  # inside the network
        "http://192.168.1.1:9000/hook",
        "https://example.com/hook",  # anywhere
        "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
        "http://0x7f000001/hook",  # loopback spelt so a check of the text misses it
        "http://2130706433/hook",
        "http://127.1/hook",
        "http://localhost.example.com/hook",
        "http://user:pw@127.0.0.1/hook",  # credentials in the URL
        "file:///etc/passwd",
        "ftp://127.0.0.1/hook",
        "http://127.0.0.1:0/hook",
        "http://127.0.0.1:99999/hook",
        "http://127.0.0.1 /hook",
        "http://127.0.0.1/ho\nok",
        "http:///hook",
        "",
    ],
)
def test_a_webhook_url_outside_loopback_or_malformed_is_refused_saying_why(url: str):
    with pytest.raises(ValueError, match=r"\w"):
        check_url(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/hook", "http://[::1]:9000/h", "https://localhost/x"]
)
def test_loopback_urls_are_allowed(url: str):
    assert check_url(url) == url


def test_a_host_is_allowed_only_by_name_in_the_config(tmp_path: Path):
    assert check_url("https://hooks.example.com/x", ["hooks.example.com"])
    with pytest.raises(ValueError, match="allowed_hosts"):
        check_url("https://evil.example.com/x", ["hooks.example.com"])
    config = tmp_path / "config.toml"
    config.write_text(
        '[[webhooks.subscriptions]]\nurl = "https://hooks.example.com/x"\nevents = ["run.failed"]\n'
    )
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.url.*allowed_hosts"):
        load_config(config)
    config.write_text(
        '[webhooks]\nallowed_hosts = ["hooks.example.com"]\n'
        '[[webhooks.subscriptions]]\nurl = "https://hooks.example.com/x"\nevents = ["run.failed"]\n'
    )
    assert load_config(config).webhooks.subscribers("run.failed") == ["https://hooks.example.com/x"]
    assert load_config(config).webhooks.subscribers("run.succeeded") == []


def test_a_delivery_fails_twice_then_arrives_verified_with_the_same_id_each_time(
    world, tmp_path: Path
):
    ledger, _, clock, deliverer = world
    with Receiver(ReceiverState(fail_first=2)) as receiver:
        send = deliverer()
        assert send.outbox.enqueue("run.succeeded", "run_01", RUN, [receiver.url]) == 1
        for _ in range(3):
            assert send.deliver_due() == 1
            assert send.deliver_due() == 0  # the retry waits for its backoff
            clock.advance(3600)
        got = receiver.state.wait_for(3)
    assert len(got) == 3
    assert {r.headers["webhook-id"] for r in got} == {got[0].headers["webhook-id"]}
    assert all(r.verified == RUN for r in got), [r.error for r in got]
    assert states(ledger) == [(receiver.url, DELIVERED, 3)]
    log = [e for e in entries(tmp_path) if e["event"].startswith("webhook_")]
    assert [(e["event"], e["result"]["status"]) for e in log] == [
        ("webhook_retrying", "error"),
        ("webhook_retrying", "error"),
        ("webhook_delivered", "success"),
    ]
    assert log[0]["parameters"]["webhook_id"] == got[0].headers["webhook-id"]
    assert all(isinstance(e["duration_ms"], int) for e in log)


def test_retries_back_off_exponentially_and_give_up_after_max_attempts(world):
    ledger, _, clock, deliverer = world
    config = WebhooksConfig(max_attempts=4, backoff_seconds=10, max_backoff_seconds=25)
    send = deliverer(config)
    assert [send.backoff(n) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]
    with Receiver(ReceiverState(fail_first=100)) as receiver:
        send.outbox.enqueue("run.failed", "run_02", RUN, [receiver.url])
        waits = []
        while send.outbox.counts().get(PENDING):
            send.deliver_due()
            (row,) = ledger.rows("SELECT next_at FROM webhook_outbox")
            waits.append(row["next_at"])
            clock.advance(30)
    assert states(ledger) == [(receiver.url, FAILED, 4)]
    assert len(receiver.state.received) == 4


def test_a_410_disables_the_url_drops_what_waits_for_it_and_writes_no_more(world):
    ledger, _, _, deliverer = world
    with Receiver(ReceiverState(gone=True)) as receiver:
        send = deliverer()
        send.outbox.enqueue("run.succeeded", "run_03", RUN, [receiver.url])
        send.outbox.enqueue("run.failed", "run_04", RUN, [receiver.url])
        assert send.deliver_due(limit=1) == 1
        assert send.outbox.enqueue("run.succeeded", "run_05", RUN, [receiver.url]) == 0
        assert send.deliver_due() == 0
    assert [s for _, s, _ in states(ledger)] == [DISABLED, DISABLED]
    assert len(receiver.state.received) == 1


def test_a_redirect_is_never_followed(world):
    ledger, _, _, deliverer = world
    with (
        Receiver(ReceiverState()) as target,
        Receiver(ReceiverState(redirect_to=target.url)) as receiver,
    ):
        send = deliverer()
        send.outbox.enqueue("run.succeeded", "run_06", RUN, [receiver.url])
        send.deliver_due()
    assert target.state.received == []
    assert states(ledger) == [(receiver.url, PENDING, 1)]
    (row,) = ledger.rows("SELECT last_status FROM webhook_outbox")
    assert row["last_status"] == 302


def test_the_same_event_written_twice_is_one_delivery(world):
    ledger, _, _, deliverer = world
    outbox = deliverer().outbox
    assert outbox.enqueue("run.succeeded", "run_07", RUN, ["http://127.0.0.1:9/a"] * 2) == 1
    assert outbox.enqueue("run.succeeded", "run_07", RUN, ["http://127.0.0.1:9/a"]) == 0
    assert len(states(ledger)) == 1


def test_without_a_secret_deliveries_wait_and_the_log_says_why(world, tmp_path: Path):
    ledger, _, clock, deliverer = world
    with Receiver() as receiver:
        send = deliverer(secret=None)
        send.outbox.enqueue("run.succeeded", "run_08", RUN, [receiver.url])
        send.deliver_due()
        assert receiver.state.received == []
        (entry,) = [e for e in entries(tmp_path) if e["event"] == "webhook_retrying"]
        assert "VAULTD_WEBHOOK_SECRET is not set" in entry["error"]
        bad = deliverer(secret="not base64 at all: ***")  # noqa: S106 (a malformed fake)
        clock.advance(3600)
        bad.deliver_due()
    assert receiver.state.received == []
    assert states(ledger) == [(receiver.url, PENDING, 2)]
    text = "".join(p.read_text() for p in (tmp_path / "Logs").glob("*.json"))
    assert "not a whsec_" in text and "***" not in text


def test_the_secret_never_reaches_the_outbox_or_the_log(world, tmp_path: Path):
    ledger, _, _, deliverer = world
    with Receiver() as receiver:
        send = deliverer()
        send.outbox.enqueue("run.succeeded", "run_09", RUN, [receiver.url])
        send.deliver_due()
        assert receiver.state.verified()
    secret = TEST_SECRET.removeprefix("whsec_")
    assert secret not in ledger.path.read_bytes().decode("latin-1")
    assert secret not in "".join(p.read_text() for p in (tmp_path / "Logs").glob("*.json"))


def test_a_receiver_that_never_answers_is_retried_after_the_timeout(world):
    ledger, _, _, deliverer = world
    with Receiver(ReceiverState(stall_first=1, stall_seconds=3)) as receiver:
        send = deliverer(WebhooksConfig(timeout_seconds=0.5))
        send.outbox.enqueue("run.succeeded", "run_10", RUN, [receiver.url])
        send.deliver_due()
    (row,) = ledger.rows("SELECT state, attempts, last_error FROM webhook_outbox")
    assert (row["state"], row["attempts"]) == (PENDING, 1)
    assert "no answer" in row["last_error"]


def test_the_worker_delivers_at_once_when_woken_and_survives_a_restart(world):
    _, _, _, deliverer = world
    with Receiver() as receiver:
        send = deliverer()
        send.clock = lambda: datetime.now(UTC)  # the worker runs on the real clock
        worker = WebhookWorker(send, poll_seconds=30)
        worker.start()
        try:
            assert worker.healthy()
            started = time.monotonic()
            send.outbox.enqueue("run.succeeded", "run_11", RUN, [receiver.url])
            worker.wake()
            assert receiver.state.wait_for(1, timeout=5)
            assert time.monotonic() - started < 2  # woken, not after the 30 s poll
            worker.restart()
            assert worker.healthy()
            send.outbox.enqueue("run.failed", "run_12", RUN, [receiver.url])
            worker.wake()
            assert len(receiver.state.wait_for(2, timeout=5)) == 2
        finally:
            worker.stop()
        assert not worker.healthy()
    deadline = time.monotonic() + 5
    while send.outbox.counts().get(DELIVERED) != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert send.outbox.counts() == {DELIVERED: 2}


# -- events: a run's change of state, captured by the trigger and expanded -----------------


def make_run(ledger: Ledger, run_id: str, state: str = "running", webhook: str | None = None):
    now = "2026-12-01T10:00:00.000Z"
    with ledger.transaction() as db:
        db.execute(
            "INSERT INTO skill_runs (id, skill, inputs, state, attempt, created_at, updated_at,"
            " webhook) VALUES (?, 'demo', '{}', ?, 1, ?, ?, ?)",
            (run_id, state, now, now, webhook),
        )


def set_state(ledger: Ledger, run_id: str, *states: str, attempt: int | None = None):
    """Move a run through states in one transaction (as the queue does a retry)."""
    with ledger.transaction() as db:
        for state in states:
            db.execute("UPDATE skill_runs SET state = ? WHERE id = ?", (state, run_id))
        if attempt is not None:
            db.execute("UPDATE skill_runs SET attempt = ? WHERE id = ?", (attempt, run_id))


@pytest.fixture
def runs(world):
    ledger = world[0]
    RunStore(ledger)
    events.install(ledger)
    return ledger


def view(run_id: str) -> dict:
    return {"run_id": run_id, "state": "as GET shows it"}


def test_every_final_state_and_awaiting_approval_becomes_one_delivery_per_url(runs):
    ledger = runs
    config = WebhooksConfig(
        subscriptions=[
            {"url": "http://127.0.0.1:9/all", "events": list(EVENTS)},
            {"url": "http://127.0.0.1:9/ends", "events": ["run.succeeded", "run.failed"]},
        ]
    )
    make_run(ledger, "r1", webhook="http://127.0.0.1:9/own")
    set_state(ledger, "r1", "awaiting_approval")
    set_state(ledger, "r1", "succeeded")
    make_run(ledger, "r2")
    set_state(ledger, "r2", "failed")
    make_run(ledger, "r3")
    set_state(ledger, "r3", "cancelled")  # no event is subscribable for it
    assert events.expand(ledger, config, view) == 3
    assert events.expand(ledger, config, view) == 0  # each event once
    rows = ledger.rows("SELECT event, subject, url, body FROM webhook_outbox ORDER BY id")
    assert [(r["event"], r["subject"], r["url"].rsplit("/", 1)[1]) for r in rows] == [
        ("run.awaiting_approval", "r1#1", "all"),
        ("run.awaiting_approval", "r1#1", "own"),
        ("run.succeeded", "r1#1", "all"),
        ("run.succeeded", "r1#1", "ends"),
        ("run.succeeded", "r1#1", "own"),
        ("run.failed", "r2#1", "all"),
        ("run.failed", "r2#1", "ends"),
    ]
    assert json.loads(rows[0]["body"]) == view("r1")


def test_a_failure_the_queue_retried_is_not_told_and_a_final_one_is(runs):
    ledger = runs
    config = WebhooksConfig(
        subscriptions=[{"url": "http://127.0.0.1:9/h", "events": ["run.failed"]}]
    )
    make_run(ledger, "r4")
    set_state(ledger, "r4", "failed", "queued", attempt=2)  # failed, retried at once
    assert events.expand(ledger, config, view) == 1
    set_state(ledger, "r4", "running")
    set_state(ledger, "r4", "failed")  # attempt 2 failed, no tries left
    assert events.expand(ledger, config, view) == 1
    rows = ledger.rows("SELECT subject FROM webhook_outbox")
    assert [r["subject"] for r in rows] == ["r4#2"]


def test_a_change_rolled_back_writes_no_event_and_a_change_always_writes_one(runs):
    ledger = runs
    make_run(ledger, "r5")
    with pytest.raises(RuntimeError), ledger.transaction() as db:
        db.execute("UPDATE skill_runs SET state = 'succeeded' WHERE id = 'r5'")
        raise RuntimeError("a crash midway")
    assert ledger.rows("SELECT * FROM webhook_events") == []
    other = sqlite3.connect(ledger.path)  # another process: `vaultd serve`, a CLI
    other.execute("UPDATE skill_runs SET state = 'succeeded' WHERE id = 'r5'")
    other.commit()
    other.close()
    assert [r["event"] for r in ledger.rows("SELECT event FROM webhook_events")] == [
        "run.succeeded"
    ]


def test_a_runs_webhook_no_longer_allowed_is_not_delivered(runs):
    ledger = runs
    make_run(ledger, "r6", webhook="https://hooks.example.com/x")
    set_state(ledger, "r6", "succeeded")
    assert events.expand(ledger, WebhooksConfig(), view) == 1
    assert ledger.rows("SELECT * FROM webhook_outbox") == []
