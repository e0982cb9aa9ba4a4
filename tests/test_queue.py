"""The durable run queue: identity keys under concurrency, claims, leases and recovery.

Each hostile case runs against the real ledger file, with separate SQLite connections where
the race is between processes (two daemons, or a daemon and `vaultd runs create`).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import files_in, outbox

from daemon.agents.queue.records import IdentityTaken, Scheduling, identity_key, retry_delay
from daemon.agents.queue.service import Options, RunQueue
from daemon.agents.queue.store import QueueStore
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.registry import load_registry
from daemon.agents.skills.run_errors import Duplicate, InputsInvalid, Throttled
from daemon.agents.skills.runs import Runs
from daemon.agents.skills.service import open_runs
from daemon.agents.skills.store import RunStore
from daemon.core.config import QueueConfig, SkillsConfig, load_config
from daemon.core.errors import ConfigError
from daemon.core.ledger import Ledger
from daemon.service.app import App

ECHO = "def run(inputs, tools):\n    return {'echo': inputs}\n"
BOOM = "def run(inputs, tools):\n    raise RuntimeError('boom')\n"


def make_skill(root: Path, name: str, code: str, **manifest: Any) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    data = {"name": name, "description": f"test skill {name}", "tools": [], **manifest}
    (folder / "skill.json").write_text(json.dumps(data), encoding="utf-8")
    (folder / "execute.py").write_text(code, encoding="utf-8")


@pytest.fixture
def runs(app: App, tmp_path: Path) -> Runs:
    skills = tmp_path / "skills"
    make_skill(skills, "echo", ECHO)
    make_skill(skills, "boom", BOOM)
    make_skill(skills, "elsewhere", ECHO, channel="nowhere")
    return open_runs(app, load_registry(SkillsConfig(dirs=[skills]), vault=app.vault.root))


def ledger_at(app: App) -> Ledger:
    """Another connection to the same ledger file, as another process would have."""
    other = Ledger(app.ledger.path)
    RunStore(other)
    return other


def enqueue(store: QueueStore, run_id: str, key: str, **scheduling: Any) -> None:
    store.enqueue(
        run_id, "echo", {}, requested_by="t", key=key, scheduling=Scheduling(**scheduling)
    )


def state_of(app: App, run_id: str) -> str:
    [row] = app.ledger.rows("SELECT state FROM skill_runs WHERE id = ?", (run_id,))
    return str(row["state"])


def test_the_identity_key_is_the_sha256_of_skill_and_canonical_inputs():
    assert identity_key("echo", {"b": 1, "a": [1, 2]}) == identity_key(
        "echo", {"a": [1, 2], "b": 1}
    )
    assert identity_key("echo", {"a": 1}) != identity_key("echo", {"a": "1"})
    assert identity_key("echo", {}) != identity_key("echo2", {})
    assert len(identity_key("echo", {})) == 64


def test_twenty_identical_enqueues_racing_on_separate_connections_make_one_run(app: App):
    RunQueue(open_runs(app), QueueConfig())  # the schema, once
    ledgers = [ledger_at(app) for _ in range(20)]
    stores = [QueueStore(ledger) for ledger in ledgers]
    start = threading.Barrier(20)
    won: list[str] = []
    lost: list[str] = []

    def race(n: int) -> None:
        start.wait()
        try:
            enqueue(stores[n], f"run-{n}", "same-key")
            won.append(f"run-{n}")
        except IdentityTaken as taken:
            lost.append(taken.run_id)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ledger in ledgers:
        ledger.close()

    assert len(won) == 1
    assert lost == won * 19
    assert app.ledger.rows("SELECT COUNT(*) AS n FROM skill_runs")[0]["n"] == 1
    assert app.ledger.rows("SELECT COUNT(*) AS n FROM run_queue")[0]["n"] == 1


def test_a_finished_run_frees_its_identity_key_and_a_refused_enqueue_records_nothing(
    app: App, runs: Runs
):
    queue = RunQueue(runs, QueueConfig())
    first = queue.enqueue("echo", {"n": 1}, requested_by="t").run
    with pytest.raises(Duplicate) as duplicate:
        queue.enqueue("echo", {"n": 1}, requested_by="t")
    assert duplicate.value.run_id == first.id
    assert len(app.ledger.rows("SELECT id FROM skill_runs")) == 1

    Workers(runs, QueueConfig()).drain()
    assert state_of(app, first.id) == "succeeded"
    again = queue.enqueue("echo", {"n": 1}, requested_by="t").run
    assert again.id != first.id


def test_a_duplicate_names_the_existing_run_only_to_a_caller_who_may_see_it(runs: Runs):
    queue = RunQueue(runs, QueueConfig())
    queue.enqueue("echo", {}, requested_by="apikey:a")
    with pytest.raises(Duplicate) as hidden:
        queue.enqueue("echo", {}, requested_by="apikey:b", sees=lambda _run_id: False)
    assert hidden.value.run_id is None
    assert "run-" not in str(hidden.value)


def test_a_skill_in_a_channel_the_config_does_not_have_is_refused_naming_it(app: App, runs: Runs):
    with pytest.raises(InputsInvalid) as refused:
        RunQueue(runs, QueueConfig()).enqueue("elsewhere", {}, requested_by="t")
    assert refused.value.problems[0][0] == "channel"
    assert "'nowhere'" in str(refused.value)
    assert app.ledger.rows("SELECT id FROM skill_runs") == []


def test_claims_take_the_lowest_priority_first_then_the_earliest_and_never_before_eta(
    app: App, runs: Runs
):
    store = RunQueue(runs, QueueConfig()).store
    now = time.time()
    enqueue(store, "late", "k1", priority=5, eta=now - 1)
    enqueue(store, "early", "k2", priority=5, eta=now - 10)
    enqueue(store, "urgent", "k3", priority=1, eta=now - 0.5)
    enqueue(store, "tomorrow", "k4", priority=0, eta=now + 86400)

    order = [store.claim("default", 10, "w", 30) for _ in range(4)]

    assert order == ["urgent", "early", "late", None]


def test_a_channel_never_runs_more_than_its_capacity_even_across_processes(app: App, runs: Runs):
    RunQueue(runs, QueueConfig())
    stores = [QueueStore(ledger_at(app)) for _ in range(4)]
    for n in range(4):
        enqueue(stores[0], f"run-{n}", f"k{n}", channel="odoo")
    start = threading.Barrier(4)
    claimed: list[str | None] = []

    def claim(n: int) -> None:
        start.wait()
        claimed.append(stores[n].claim("odoo", 1, f"w{n}", 30))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len([run for run in claimed if run]) == 1
    assert stores[0].claim("default", 1, "w", 30) is None  # another channel: nothing queued


def test_a_run_whose_worker_died_before_asking_anything_is_tried_again_then_failed(
    app: App, runs: Runs
):
    store = RunQueue(runs, QueueConfig()).store
    enqueue(store, "r", "k", max_retries=1, retry_pattern=((1, 0.0),))
    assert store.claim("default", 2, "dead-worker", 0.05) == "r"
    assert store.recover() == []  # the lease still holds
    time.sleep(0.1)

    [again] = store.recover()
    assert (again.state, state_of(app, "r")) == ("queued", "queued")
    assert "its worker dead-worker stopped" in again.reason
    assert store.claim("default", 2, "dead-too", 0.05) == "r"
    time.sleep(0.1)

    [failed] = store.recover()
    assert (failed.state, state_of(app, "r")) == ("failed", "failed")
    assert "no tries left (max_retries 1)" in failed.reason
    [row] = app.ledger.rows("SELECT attempt, error FROM skill_runs WHERE id = 'r'")
    assert row["attempt"] == 2 and "no tries left" in row["error"]


def test_a_run_that_recorded_a_request_is_never_started_again_after_its_worker_died(
    app: App, runs: Runs
):
    store = RunQueue(runs, QueueConfig()).store
    enqueue(store, "r", "k", max_retries=5)
    assert store.claim("default", 2, "w", 0.05) == "r"
    step_token = secrets.token_hex(8)  # as tools.py gives a request step
    runs.store.add_step("r", 1, 1, "social.post", {}, state="requested", token=step_token)
    time.sleep(0.1)

    [recovered] = store.recover()

    assert recovered.state == "awaiting_approval"
    assert "not run again" in recovered.reason
    assert state_of(app, "r") == "awaiting_approval"
    assert store.claim("default", 2, "w2", 30) is None


def test_a_worker_that_lost_its_lease_cannot_record_the_end_of_a_run_taken_over(
    app: App, runs: Runs
):
    store = RunQueue(runs, QueueConfig()).store
    enqueue(store, "r", "k", max_retries=3, retry_pattern=((1, 0.0),))
    assert store.claim("default", 2, "frozen", 0.05) == "r"
    time.sleep(0.1)
    store.recover()
    assert store.claim("default", 2, "fresh", 30) == "r"

    assert store.holds("r", "frozen", 30) is False
    assert store.requeue("r", "frozen", "late error") is None
    assert store.holds("r", "fresh", 30) is True


def test_the_retry_pattern_gives_the_wait_after_n_tries():
    pattern = {1: 10.0, 5: 60.0}
    assert [retry_delay(pattern, n) for n in (0, 1, 4, 5, 9)] == [0.0, 10.0, 10.0, 60.0, 60.0]


def test_workers_retry_a_failing_run_per_its_pattern_and_then_fail_it_saying_why(
    app: App, runs: Runs
):
    config = QueueConfig(max_retries=1, retry_pattern={1: 0})
    run = RunQueue(runs, config).enqueue("boom", {}, requested_by="t").run
    workers = Workers(runs, config)

    assert workers.drain() == 2

    view = runs.view(run.id)
    assert (view.run.state, view.run.attempt) == ("failed", 2)
    assert "boom" in (view.run.error or "")
    assert RunQueue(runs, config).scheduling(run.id)["tries"] == 2  # type: ignore[index]


def test_a_queued_run_can_be_cancelled_and_is_then_never_claimed(app: App, runs: Runs):
    run = RunQueue(runs, QueueConfig()).enqueue("echo", {}, requested_by="t").run
    assert runs.cancel(run.id, reason="not needed").run.state == "cancelled"
    assert Workers(runs, QueueConfig()).drain() == 0


def test_a_request_run_from_the_queue_writes_its_task_file_once(app: App, runs: Runs):
    queue = RunQueue(runs, QueueConfig())
    run = queue.enqueue("post-social-media", {"text": "Hi"}, requested_by="t").run
    assert Workers(runs, QueueConfig()).drain() == 1
    assert runs.view(run.id).run.state == "awaiting_approval"
    assert len(files_in(app.vault.root, "Needs_Action")) == 1
    assert Workers(runs, QueueConfig()).drain() == 0
    assert len(files_in(app.vault.root, "Needs_Action")) == 1


def test_the_run_of_a_worker_process_seen_dead_is_taken_back_without_waiting_its_lease(
    app: App, runs: Runs
):
    store = RunQueue(runs, QueueConfig()).store
    enqueue(store, "r", "k", retry_pattern=((1, 0.0),))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_owner = f"{socket.gethostname()}:{gone.stdout.strip()}:cafe:default-0"
    assert store.claim("default", 2, dead_owner, 3600) == "r"
    alive_owner = f"{socket.gethostname()}:{os.getppid()}:beef:default-1"
    enqueue(store, "s", "k2")
    assert store.claim("default", 2, alive_owner, 3600) == "s"

    recovered = Workers(runs, QueueConfig()).recover()

    assert [(item.run_id, item.state) for item in recovered] == [("r", "queued")]
    assert state_of(app, "s") == "running"


def test_worker_threads_hold_the_channel_capacity(app: App, runs: Runs, tmp_path: Path):
    skills = tmp_path / "more"
    marks = tmp_path / "marks"
    marks.mkdir()
    slow = (
        "import os, time\n"
        "def run(inputs, tools):\n"
        f"    d = {str(marks)!r}\n"
        "    open(os.path.join(d, f\"{inputs['n']}.start\"), 'w').write(str(time.time()))\n"
        "    time.sleep(0.25)\n"
        "    open(os.path.join(d, f\"{inputs['n']}.end\"), 'w').write(str(time.time()))\n"
        "    return inputs\n"
    )
    make_skill(skills, "slow", slow)
    slow_runs = open_runs(app, load_registry(SkillsConfig(dirs=[skills]), vault=app.vault.root))
    config = QueueConfig(channels={"default": 2}, poll_seconds=0.05)
    queue = RunQueue(slow_runs, config)
    ids = [queue.enqueue("slow", {"n": n}, requested_by="t").run.id for n in range(5)]
    workers = Workers(slow_runs, config)
    workers.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(list(marks.glob("*.end"))) < 5:
            time.sleep(0.05)
    finally:
        workers.stop()

    spans = [
        (float((marks / f"{n}.start").read_text()), float((marks / f"{n}.end").read_text()))
        for n in range(5)
    ]
    most = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert most == 2  # in parallel, and never more than the capacity
    assert {slow_runs.view(run_id).run.state for run_id in ids} == {"succeeded"}
    assert Options().priority == 10


def test_a_runs_request_whose_intake_a_crash_cut_before_its_move_still_finishes_the_run(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Found by the kill -9 test under the queue: the task was recorded approved at its
    Needs_Action/ path, the daemon died before the move, and the next look took the note
    for a copy of the run's request: posted once, but the run waited for ever."""
    skills = tmp_path / "announcing"
    post = (
        "def run(inputs, tools):\n"
        "    tools.call('social.post', platforms=['facebook'], text='Hi')\n"
    )
    make_skill(skills, "announce", post, tools=["social.post"], approval_required=False)
    runs = open_runs(app, load_registry(SkillsConfig(dirs=[skills]), vault=app.vault.root))
    run = RunQueue(runs, QueueConfig()).enqueue("announce", {}, requested_by="t").run
    Workers(runs, QueueConfig()).drain()
    [name] = files_in(app.vault.root, "Needs_Action")

    def crash(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL between the record and the move

    with monkeypatch.context() as patched:
        patched.setattr("daemon.lifecycle.intake.write_and_move_loaded", crash)
        with pytest.raises(KeyboardInterrupt):
            app.pipeline.process(app.vault.root / "Needs_Action" / name)
    app.pipeline.process(app.vault.root / "Needs_Action" / name)

    assert files_in(app.vault.root, "Done") == [name]
    assert runs.view(run.id).run.state == "succeeded"
    assert len(outbox(app.state_dir)) == 1
    origins = app.ledger.rows("SELECT origin, state FROM tasks")
    assert [row["state"] for row in origins] == ["done"]
    assert origins[0]["origin"].startswith(f"run:{run.id}:")


def test_a_run_longer_than_its_lease_is_kept_by_the_heartbeat_and_never_taken_twice(
    app: App, tmp_path: Path
):
    skills, marks = tmp_path / "long", tmp_path / "long-marks"
    marks.mkdir()
    long_run = (
        "import time\n"
        "def run(inputs, tools):\n"
        f"    open({str(marks / 'starts')!r}, 'a').write('x')\n"
        "    time.sleep(1.6)\n"
        "    return 'done'\n"
    )
    make_skill(skills, "long", long_run)
    runs = open_runs(app, load_registry(SkillsConfig(dirs=[skills]), vault=app.vault.root))
    config = QueueConfig(lease_seconds=1, poll_seconds=0.05, max_retries=3, retry_pattern={1: 0})
    run = RunQueue(runs, config).enqueue("long", {}, requested_by="t").run
    working, watching = Workers(runs, config), Workers(runs, config)  # two pools, as two daemons
    working.start()
    try:
        deadline = time.monotonic() + 10
        while runs.view(run.id).run.state != "succeeded" and time.monotonic() < deadline:
            assert watching.recover() == []  # its lease is renewed: nothing to take back
            time.sleep(0.1)
    finally:
        working.stop()
    assert runs.view(run.id).run.state == "succeeded"
    assert (marks / "starts").read_text() == "x"


class ThreadKilled(BaseException):
    """Ends a worker thread as nothing but a bug would (an error is logged and survived)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_thread_that_died_is_seen_unhealthy_and_restarted(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
):
    workers = Workers(runs, QueueConfig(channels={"default": 1}, poll_seconds=0.01))

    def broken(_channel: str, _owner: str) -> bool:
        raise ThreadKilled

    monkeypatch.setattr(workers, "work_one", broken)
    workers.start()
    try:
        deadline = time.monotonic() + 5
        while workers.healthy() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not workers.healthy()
        monkeypatch.undo()
        workers.restart()
        assert workers.healthy()
        run = RunQueue(runs, QueueConfig()).enqueue("echo", {}, requested_by="t").run
        deadline = time.monotonic() + 10
        while runs.view(run.id).run.state != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs.view(run.id).run.state == "succeeded"
    finally:
        workers.stop()


def test_a_lease_under_this_pid_from_a_pool_no_longer_alive_is_taken_back_at_once(
    app: App, runs: Runs
):
    """A container's daemon is pid 1 again after a restart: its predecessor's leases carry
    the same pid, but no pool of this process has their prefix."""
    store = RunQueue(runs, QueueConfig()).store
    enqueue(store, "r", "k", retry_pattern=((1, 0.0),))
    predecessor = f"{socket.gethostname()}:{os.getpid()}:0ld0ld00:default-0"
    assert store.claim("default", 2, predecessor, 3600) == "r"
    live = Workers(runs, QueueConfig())
    enqueue(store, "s", "k2")
    assert store.claim("default", 2, live._owner("default-0"), 3600) == "s"

    recovered = Workers(runs, QueueConfig()).recover()

    assert [(item.run_id, item.state) for item in recovered] == [("r", "queued")]
    assert state_of(app, "s") == "running"


def test_an_error_in_a_worker_is_logged_and_the_worker_goes_on(
    runs: Runs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    workers = Workers(runs, QueueConfig(channels={"default": 1}, poll_seconds=0.01))
    calls: list[str] = []

    def flaky(channel: str, _owner: str) -> bool:
        calls.append(channel)
        raise RuntimeError("database is locked")

    monkeypatch.setattr(workers, "work_one", flaky)
    workers.start()
    try:
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert workers.healthy()  # the same thread, still working
    finally:
        workers.stop()
    assert len(calls) >= 3  # it went on after each error
    assert "database is locked" in caplog.text


def test_a_burst_of_enqueues_cannot_outrun_the_skills_rate_limit_or_cooldown(
    app: App, tmp_path: Path
):
    """Before any of them starts, queued runs count: else an agent could queue a hundred
    runs of a skill limited to two an hour, each with other inputs, and all would run."""
    skills = tmp_path / "paced"
    make_skill(skills, "twice-an-hour", ECHO, rate_limit=2)
    make_skill(skills, "cool", ECHO, cooldown_seconds=600)
    runs = open_runs(app, load_registry(SkillsConfig(dirs=[skills]), vault=app.vault.root))
    queue = RunQueue(runs, QueueConfig())

    queue.enqueue("twice-an-hour", {"n": 1}, requested_by="t")
    queue.enqueue("twice-an-hour", {"n": 2}, requested_by="t")
    with pytest.raises(Throttled, match="rate_limit 2/hour"):
        queue.enqueue("twice-an-hour", {"n": 3}, requested_by="t")
    queue.enqueue("cool", {"n": 1}, requested_by="t")
    with pytest.raises(Throttled, match="cooling down"):
        queue.enqueue("cool", {"n": 2}, requested_by="t")


def test_a_queue_table_that_would_break_the_queue_is_refused_listing_every_problem(
    tmp_path: Path,
):
    config = tmp_path / "vaultd.toml"
    config.write_text(
        "[queue]\nlease_seconds = 0\nretry_pattern = {0 = 5}\n"
        '[queue.channels]\nodoo = 0\n"Bad Name" = 1\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    message = str(refused.value)
    assert "queue.lease_seconds" in message
    assert "queue.retry_pattern" in message and "tries from 1" in message
    assert "queue.channels" in message and "'Bad Name'" in message
    assert "odoo: a capacity is from 1 to 64" in message
    assert "the channel `default` is required" in message


def _claim_work(store: QueueStore) -> int:
    """How many SQLite VM steps (in hundreds) a claim of the one queued run takes."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    with store.ledger.connection() as db:
        db.set_progress_handler(count, 100)
    try:
        assert store.claim("default", 10, "w", 30) == "now"
    finally:
        with store.ledger.connection() as db:
            db.set_progress_handler(None, 100)
    return steps[0]


def test_a_claims_work_does_not_grow_with_the_runs_finished_before(
    app: App, runs: Runs, tmp_path: Path
):
    """The queue keeps a row for every run ever queued: a claim that walked a channel's rows
    cost 35 ms after 10,000 finished runs and 740 ms after 50,000 (measured, bench-style,
    outside the suite); it reads the runs by state instead."""
    store = RunQueue(runs, QueueConfig()).store
    enqueue(store, "now", "k-now", eta=time.time() - 1)
    alone = _claim_work(store)

    crowded = Ledger(tmp_path / "crowded.sqlite3")
    RunStore(crowded)
    other = QueueStore(crowded)
    for n in range(3000):
        enqueue(other, f"old-{n}", f"k-{n}", eta=time.time() - 100)
    with crowded.transaction() as db:
        db.execute("UPDATE skill_runs SET state = 'succeeded'")
    enqueue(other, "now", "k-now", eta=time.time() - 1)

    work = _claim_work(other)
    assert work <= 2 * alone + 5, (alone, work)
