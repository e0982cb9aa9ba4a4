"""Issue 12, item 2: one executor per vault, across machines.

Two machines that sync one vault each run `vaultd run` with their own state directory (and
ledger). Here both run on one vault folder with separate state directories, which is what
the sync tool makes of it, only faster. The vault's executor lease (`.vaultd/executor.json`)
lets exactly one of them execute; the other processes no file, writes nothing into the
vault and says why, until a person runs `vaultd run --take-over` on it. Before the lease,
the second daemon took the first one's notes in flight for forgeries and asked again, and
approving those posted and invoiced twice.

VAULTD_NIGHTLY=1 runs 20 rounds of the races instead of 3, and 5 of the live one instead of 1.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import files_in, make_files, move, outbox, read_tree, wait_for
from e2e_support import (
    UNLIMITED_BUDGETS,
    Daemon,
    LiveTask,
    assert_each_file_once_with_its_body,
    expected_calls,
    ledger_task_states,
    live_tasks,
    meta,
    nightly,
    ok,
    remote_objects,
    seed_invoice,
    vaultd,
    write_calls,
    write_env_file,
    write_live_config,
)
from standins.all import running_all

from daemon.cli.main import main
from daemon.core.lease import machine_id, read_lease
from daemon.core.vault import Vault

pytestmark = pytest.mark.e2e

ROUNDS = 20 if nightly() else 2
LIVE_ROUNDS = 5 if nightly() else 1
STANDBY = "not the executor: machine "
LOST = "took the executor lease: this daemon stops executing now"
# A daemon that must do nothing is watched this long (a few rescans and heartbeats).
QUIET_SECONDS = 2.0
# How long to wait for what must happen (generous: the suite shares a loaded machine).
WAIT = 30
FOREIGN = "0b7f5a8e-0000-4000-8000-00000000beef"


def write_config(path: Path) -> Path:
    """A config that keeps each round short: quick stability, rescans and heartbeats."""
    path.write_text(
        "[daemon]\n"
        "stability_ms = 50\n"
        "rescan_seconds = 1\n"
        "dashboard_seconds = 0.5\n"
        "lease_heartbeat_seconds = 0.2\n" + UNLIMITED_BUDGETS,
        encoding="utf-8",
    )
    return path


def workload(tag: str, count: int, start: int = 0) -> list[LiveTask]:
    """Posts the policy approves, and replies and invoices a person approves."""
    tasks = []
    for i in range(start, start + count):
        body = f"Body of {tag} {i}: ünïcødé ✓ and a [[wiki link]].\n\n- keep me byte for byte\n"
        kind = ("post", "reply", "invoice")[i % 3]
        task: dict[str, object]
        if kind == "post":
            task = {
                "type": "social_post",
                "platforms": ["facebook", "twitter"],
                "text": f"{tag} {i}",
            }
        elif kind == "reply":
            task = {
                "type": "social_post",
                "platforms": ["twitter"],
                "kind": "reply",
                "in_reply_to": "42",
                "text": f"Thanks, {tag} {i}",
            }
        else:
            line = {"product": "Consulting", "quantity": 1, "price_unit": 500 + i}
            task = {"type": "odoo_invoice", "partner": "Acme Corp", "lines": [line]}
        tasks.append(LiveTask(f"{tag}-{i:03d}-{kind}.md", kind, task, body))
    return tasks


def calls_of(task: LiveTask) -> int:
    """How many connector calls a task makes: one per platform, one for an invoice."""
    return 1 if task.kind == "invoice" else len(task.meta["platforms"])


def drop(vault: Path, tasks: list[LiveTask]) -> None:
    make_files(vault, {f"Needs_Action/{task.name}": task.note() for task in tasks})


def approve_what_waits(vault: Path) -> None:
    """A person approves every request the executor has issued, by moving it."""
    for name in files_in(vault, "Pending_Approval"):
        path = vault / "Pending_Approval" / name
        try:
            stamps = meta(path.read_text(encoding="utf-8"))
            if stamps.get("id") and stamps.get("status") == "pending_approval":
                move(vault, path, "Approved")
        except (FileNotFoundError, AssertionError):
            continue  # being rewritten or moved at this moment: next time


def approve_until_done(vault: Path, tasks: list[LiveTask], timeout: float = WAIT) -> None:
    names = sorted(task.name for task in tasks)

    def done() -> bool:
        approve_what_waits(vault)
        return files_in(vault, "Done") == names

    wait_for(done, timeout=timeout, interval=0.05)


def executor_of(vault: Path, states: list[Path]) -> tuple[Path, Path]:
    """Return (the executor's state directory, the other one), as the lease names them."""
    lease = read_lease(vault)
    assert lease is not None and lease.machine_id, lease
    (executor,) = [s for s in states if machine_id(s, create=False) == lease.machine_id]
    (other,) = [s for s in states if s != executor]
    return executor, other


def assert_nothing_twice(executor: Path, other: Path, tasks: list[LiveTask]) -> None:
    """Every call made once, by the executor alone; every note one id, never re-issued."""
    markers = Counter(r["marker"] for state in (executor, other) for r in outbox(state))
    assert set(markers.values()) <= {1}, markers
    assert sum(markers.values()) == sum(calls_of(task) for task in tasks), markers
    assert outbox(other) == []
    # The other daemon never opened its ledger: it issued no request and knows no note.
    assert not (other / "ledger.sqlite3").exists()
    files = Counter(Path(file).name for _, file in ledger_task_states(executor).values())
    assert files == Counter(task.name for task in tasks), files  # one id per note


def text_of(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def stop_all(*daemons: Daemon) -> None:
    for daemon in daemons:
        if daemon.alive():
            assert daemon.terminate() == 0, daemon.output()
        else:
            daemon.kill()
        assert "Traceback" not in daemon.output(), daemon.output()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[Path, Path, Path, Path]]:
    """A bare vault, a config, and the state directories of machines A and B."""
    vault = tmp_path / "vault"
    Vault(vault).ensure_folders()
    yield vault, write_config(tmp_path / "config.toml"), tmp_path / "state-a", tmp_path / "state-b"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_machines_on_one_vault_execute_each_note_once_and_never_reissue_one(
    machines: tuple[Path, Path, Path, Path], round_: int
):
    vault, config, state_a, state_b = machines
    early, late = workload(f"r{round_}", 6), workload(f"r{round_}", 6, start=6)
    drop(vault, early)  # found by the start-up scans of both
    both = [Daemon(vault, state, "--config", str(config)) for state in (state_a, state_b)]
    try:
        drop(vault, late)  # found by file events while both run
        approve_until_done(vault, early + late)
        executor, other = executor_of(vault, [state_a, state_b])
        standby = both[[state_a, state_b].index(other)]
        wait_for(lambda: STANDBY in standby.output(), timeout=WAIT)
    finally:
        stop_all(*both)

    assert_nothing_twice(executor, other, early + late)
    assert_each_file_once_with_its_body(vault, early + late, folders=("Done",))
    holder = read_lease(vault)
    assert holder is not None
    assert standby.output().count(f"{STANDBY}{holder.machine_id} (") == 1, standby.output()


def test_a_second_machine_never_executes_a_note_the_first_approved(
    machines: tuple[Path, Path, Path, Path],
):
    vault, config, state_a, state_b = machines
    tasks = [t for t in workload("asleep", 3) if t.kind != "post"]
    drop(vault, tasks)
    first = Daemon(vault, state_a, "--config", str(config))
    try:
        waiting = sorted(t.name for t in tasks)
        wait_for(lambda: files_in(vault, "Pending_Approval") == waiting, timeout=WAIT)
        wait_for(
            lambda: all("id" in meta(p.read_text()) for p in (vault / "Pending_Approval").iterdir())
        )
    finally:
        stop_all(first)  # machine A goes to sleep with its requests out
    approve_what_waits(vault)  # a person approves them, on the synced copy of the vault
    assert files_in(vault, "Approved") == sorted(t.name for t in tasks)
    before = read_tree(vault, skip=())

    second = Daemon(vault, state_b, "--config", str(config))
    try:
        wait_for(lambda: STANDBY in second.output(), timeout=WAIT)
        time.sleep(QUIET_SECONDS)  # proving that nothing happens takes a while
        assert read_tree(vault, skip=()) == before, "the second machine touched the vault"
        assert second.alive(), second.output()
        woken = Daemon(vault, state_a, "--config", str(config))  # machine A wakes up
        try:
            wait_for(lambda: files_in(vault, "Done") == sorted(t.name for t in tasks), timeout=WAIT)
        finally:
            stop_all(woken)
    finally:
        stop_all(second)

    assert_nothing_twice(state_a, state_b, tasks)
    assert_each_file_once_with_its_body(vault, tasks, folders=("Done",))


def write_foreign_lease(vault: Path, heartbeat: datetime) -> str:
    """Write the lease another machine left, its heartbeat at `heartbeat`; return its text."""
    record = {
        "machine_id": FOREIGN,
        "host": "old-laptop",
        "pid": 4242,
        "mode": "live",
        "since": "2025-01-01T08:00:00.000Z",
        "heartbeat": heartbeat.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "claim": "c" * 32,
    }
    (vault / ".vaultd").mkdir(exist_ok=True)
    text = json.dumps(record, indent=2) + "\n"
    (vault / ".vaultd/executor.json").write_text(text, encoding="utf-8")
    return text


def test_take_over_only_by_a_person_never_by_an_old_heartbeat(
    machines: tuple[Path, Path, Path, Path],
):
    vault, config, _, state = machines
    lease = write_foreign_lease(vault, datetime.now(UTC) - timedelta(days=365))
    (task,) = workload("old", 1)
    drop(vault, [task])
    before = read_tree(vault, skip=())
    run = ("run", "--vault", vault, "--state-dir", state, "--config", config)

    once = ok(vaultd(*run, "--once"))
    assert f"{STANDBY}{FOREIGN} (old-laptop, pid 4242, since " in once.stderr
    assert "--take-over" in once.stderr
    daemon = Daemon(vault, state, "--config", str(config))
    try:
        wait_for(lambda: STANDBY in daemon.output(), timeout=WAIT)
        time.sleep(QUIET_SECONDS)  # many heartbeat periods: the year-old one still holds
    finally:
        stop_all(daemon)
    assert read_tree(vault, skip=()) == before, "a year-old heartbeat let a daemon in"
    assert daemon.output().count(STANDBY) == 1, daemon.output()
    assert not (state / "ledger.sqlite3").exists()

    taken = ok(vaultd(*run, "--once", "--take-over"))
    assert f"took the executor lease over from machine {FOREIGN} (old-laptop" in taken.stderr
    assert files_in(vault, "Done") == [task.name]
    assert read_lease(vault).machine_id == machine_id(state)  # type: ignore[union-attr]
    assert (vault / ".vaultd/executor.json").read_text() != lease
    again = ok(vaultd(*run, "--once"))  # its own lease now: a restart needs no flag
    assert STANDBY not in again.stderr


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_daemons_started_at_once_elect_exactly_one_executor(
    machines: tuple[Path, Path, Path, Path], round_: int
):
    vault, config, state_a, state_b = machines
    tasks = [t for t in workload(f"race{round_}", 9) if t.kind == "post"]
    drop(vault, tasks)
    both = [Daemon(vault, state, "--config", str(config), "--once") for state in (state_a, state_b)]
    codes = [daemon.process.wait(timeout=60) for daemon in both]
    for daemon in both:
        daemon.kill()

    assert codes == [0, 0], [daemon.output() for daemon in both]
    executor, other = executor_of(vault, [state_a, state_b])
    standby = both[[state_a, state_b].index(other)]
    assert standby.output().count(STANDBY) == 1, standby.output()
    assert STANDBY not in both[[state_a, state_b].index(executor)].output()
    assert files_in(vault, "Done") == sorted(t.name for t in tasks)
    assert_nothing_twice(executor, other, tasks)


def test_the_executor_stops_when_a_person_takes_over_on_another_machine(
    machines: tuple[Path, Path, Path, Path],
):
    vault, config, state_a, state_b = machines
    first_task, second_task = [t for t in workload("handover", 4) if t.kind == "post"]
    first = Daemon(vault, state_a, "--config", str(config))
    try:
        drop(vault, [first_task])
        wait_for(lambda: files_in(vault, "Done") == [first_task.name], timeout=WAIT)
        second = Daemon(vault, state_b, "--config", str(config), "--take-over")
        try:
            wait_for(lambda: LOST in first.output(), timeout=WAIT)
            drop(vault, [second_task])
            wait_for(lambda: len(files_in(vault, "Done")) == 2, timeout=WAIT)
            wait_for(lambda: f"{STANDBY}{machine_id(state_b)} (" in first.output(), timeout=WAIT)
            assert first.alive(), "a daemon that lost the lease waits, it does not crash"
        finally:
            stop_all(second)
    finally:
        stop_all(first)

    assert "took the executor lease over from machine " in second.output()
    first_id = meta((vault / "Done" / first_task.name).read_text())["id"]
    second_id = meta((vault / "Done" / second_task.name).read_text())["id"]
    assert sorted(r["marker"] for r in outbox(state_a)) == [
        f"vaultd:{first_id}:facebook",
        f"vaultd:{first_id}:twitter",
    ]
    assert sorted(r["marker"] for r in outbox(state_b)) == [
        f"vaultd:{second_id}:facebook",
        f"vaultd:{second_id}:twitter",
    ]
    assert first.output().count(LOST) == 1


def test_status_and_the_dashboard_say_who_executes_and_how_to_take_over(
    machines: tuple[Path, Path, Path, Path], capsys: pytest.CaptureFixture[str]
):
    vault, config, state_a, state_b = machines
    first = Daemon(vault, state_a, "--config", str(config))
    try:
        wait_for(lambda: read_lease(vault) is not None, timeout=WAIT)
        second = Daemon(vault, state_b, "--config", str(config))
        try:
            wait_for(lambda: STANDBY in second.output(), timeout=WAIT)
            drop(vault, workload("status", 1))  # the executor writes Dashboard.md after it

            def status(state: Path, *extra: str) -> str:
                capsys.readouterr()
                assert (
                    main(["status", "--vault", str(vault), "--state-dir", str(state), *extra]) == 0
                )
                return capsys.readouterr().out

            # In this process: the daemons are the subprocesses, status only reads.
            standby, executing = status(state_b), status(state_a)
            as_json = json.loads(status(state_b, "--json"))
            dashboard = wait_for(
                lambda: (
                    "Executor: " in text_of(vault / "Dashboard.md")
                    and text_of(vault / "Dashboard.md")
                ),
                timeout=WAIT,
            )
        finally:
            stop_all(second)
    finally:
        stop_all(first)

    pid, host = first.process.pid, socket.gethostname()
    line = next(x for x in standby.splitlines() if "not the executor" in x)
    assert line.startswith(
        f"  not the executor: machine {machine_id(state_a)} ({host}, pid {pid}, since "
    )
    assert " UTC, heartbeat " in line
    # The command as pasted in the folder that holds the vault (daemon/core/hints.py).
    assert line.endswith(" run --vault vault --state-dir state-b --take-over` to take it")
    assert "Scheduled jobs" not in standby  # a daemon that is not the executor runs none
    assert "  the executor of this vault (heartbeat " in executing
    assert as_json["executor"]["machine_id"] == machine_id(state_a)
    assert as_json["executor"]["this_machine"] is False
    assert f"\nExecutor: {host} (pid {pid}, dry-run), heartbeat " in dashboard


@pytest.mark.parametrize("round_", range(LIVE_ROUNDS))
def test_two_live_daemons_on_one_vault_create_each_remote_object_once(tmp_path: Path, round_: int):
    """The issue's case with real connectors: two `vaultd run --live` daemons, separate
    state directories, ~20 tasks against the stand-ins; each object exists once."""
    vault = tmp_path / "vault"
    Vault(vault).ensure_folders()
    with running_all() as standins:
        standins.graph.reads_to_finish = 0
        tasks = live_tasks(20, f"two{round_}", seed_invoice(standins.odoo.odoo))
        before = write_calls(standins)
        env_file = write_env_file(tmp_path / "live.env", standins.env())
        config = write_live_config(tmp_path / "config.toml", stability_ms=50)
        live = ("--live", "--env-file", str(env_file), "--config", str(config))
        drop(vault, tasks[:10])
        both = [Daemon(vault, tmp_path / name, *live) for name in ("state-a", "state-b")]
        try:
            drop(vault, tasks[10:])
            names = sorted(task.name for task in tasks)
            wait_for(lambda: files_in(vault, "Done") == names, timeout=60, interval=0.1)
        finally:
            stop_all(*both)
        sent = write_calls(standins)
        sent.subtract(before)
        objects = {
            (task.name, target): remote_objects(standins, task, target)
            for task in tasks
            for target in task.targets
        }

    assert set(objects.values()) == {1}, objects
    assert +sent == expected_calls(tasks)
    assert_each_file_once_with_its_body(vault, tasks, folders=("Done",))
    executor, other = executor_of(vault, [tmp_path / "state-a", tmp_path / "state-b"])
    assert not (other / "ledger.sqlite3").exists()
    files = Counter(Path(file).name for _, file in ledger_task_states(executor).values())
    assert files == Counter(task.name for task in tasks)
