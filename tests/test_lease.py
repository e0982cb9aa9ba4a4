"""The executor lease (daemon/core/lease.py) in-process: who may execute on a vault, and what
a daemon that may not does (nothing). The same protocol, with real daemons on one vault,
is in tests/e2e/test_e2e_executor_lease.py."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import files_in, make_files, note, read_tree, wait_for

from daemon.cli.status import format_status
from daemon.core.config import Config, Timing
from daemon.core.errors import VaultError
from daemon.core.hints import Hints
from daemon.core.lease import (
    LEASE_DIR,
    LEASE_FILE,
    ExecutorLease,
    LeaseProblem,
    LeaseRecord,
    lease_path,
    machine_id,
    read_lease,
)
from daemon.core.vault import Vault
from daemon.reports.dashboard import Dashboard
from daemon.reports.status import build_snapshot
from daemon.service.app import App
from daemon.service.runner import Runner
from daemon.service.watcher import StableQueue, _Hints

POST = {"type": "social_post", "platforms": ["facebook"], "text": "Hello"}


def lease_of(vault: Path, tmp_path: Path, name: str, **options: float) -> ExecutorLease:
    """The lease as the daemon of one machine (state directory `name`) sees it."""
    return ExecutorLease(vault, tmp_path / name, mode="dry-run", **options)  # type: ignore[arg-type]


def foreign_lease(vault: Path, *, heartbeat: datetime) -> dict[str, object]:
    """Write, as another machine's daemon would have, a lease naming that machine."""
    record = {
        "machine_id": "0b7f5a8e-0000-4000-8000-00000000beef",
        "host": "laptop",
        "pid": 4242,
        "mode": "live",
        "since": "2025-01-01T08:00:00.000Z",
        "heartbeat": heartbeat.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "claim": "c" * 32,
    }
    lease_path(vault).parent.mkdir(exist_ok=True)
    lease_path(vault).write_text(json.dumps(record), encoding="utf-8")
    return record


def test_the_first_daemon_claims_an_absent_lease_and_names_its_machine(vault_root, tmp_path):
    lease = lease_of(vault_root, tmp_path, "a")

    assert lease.claim() is None

    record = read_lease(vault_root)
    assert record is not None and record.machine_id == machine_id(tmp_path / "a")
    assert record.pid == os.getpid() and record.mode == "dry-run"
    assert record.since and record.heartbeat and record.claim
    assert lease.holds()
    assert sorted(p.name for p in (vault_root / LEASE_DIR).iterdir()) == [LEASE_FILE]


def test_a_machine_id_is_made_once_and_kept(tmp_path: Path):
    assert machine_id(tmp_path / "s", create=False) is None
    first = machine_id(tmp_path / "s")
    assert first is not None
    assert machine_id(tmp_path / "s") == machine_id(tmp_path / "s", create=False) == first
    assert machine_id(tmp_path / "other") != first
    (tmp_path / "s" / "machine_id").write_text("not a uuid\n")
    with pytest.raises(LeaseProblem, match="not a machine id"):
        machine_id(tmp_path / "s")


def test_of_two_claims_on_an_absent_lease_exactly_one_wins(vault_root, tmp_path):
    leases = [lease_of(vault_root, tmp_path, f"machine-{n}") for n in range(8)]
    results: list[LeaseRecord | None] = [None] * len(leases)
    start = threading.Barrier(len(leases))

    def claim(n: int) -> None:
        start.wait()
        results[n] = leases[n].claim()

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [n for n, result in enumerate(results) if result is None]
    assert len(winners) == 1
    (winner,) = winners
    holder = read_lease(vault_root)
    assert holder is not None and holder.machine_id == leases[winner].machine_id
    assert all(r is None or r.machine_id == holder.machine_id for r in results)
    assert [lease.holds() for lease in leases].count(True) == 1


def test_the_link_that_claims_an_absent_lease_fails_if_one_appeared(vault_root, tmp_path):
    """Without the flock (another filesystem, another machine's sync), the hard link alone
    still refuses to replace a lease that appeared after the look."""
    first, second = lease_of(vault_root, tmp_path, "a"), lease_of(vault_root, tmp_path, "b")
    assert first.claim() is None
    record = LeaseRecord(machine_id=second.machine_id, claim="x")
    lease_path(vault_root).parent.mkdir(exist_ok=True)
    with pytest.raises(FileExistsError):
        second._write(record, create=True)
    assert read_lease(vault_root).machine_id == first.machine_id  # type: ignore[union-attr]
    assert not [p for p in (vault_root / LEASE_DIR).iterdir() if p.name != LEASE_FILE]


def test_a_restart_on_the_same_machine_takes_its_own_lease_again(vault_root, tmp_path):
    before = lease_of(vault_root, tmp_path, "a")
    assert before.claim() is None
    old = read_lease(vault_root)

    after = lease_of(vault_root, tmp_path, "a")  # the same state directory, a new process
    assert after.claim() is None

    new = read_lease(vault_root)
    assert new is not None and old is not None
    assert new.machine_id == old.machine_id and new.claim != old.claim
    assert after.holds()
    assert not before.holds() and before.lost.is_set()  # the old claim is gone for good


@pytest.mark.parametrize("age", [timedelta(seconds=5), timedelta(days=365)])
def test_a_lease_with_an_old_heartbeat_blocks_until_a_person_takes_over(vault_root, tmp_path, age):
    held = foreign_lease(vault_root, heartbeat=datetime.now(UTC) - age)
    lease = lease_of(vault_root, tmp_path, "b")

    holder = lease.claim()

    assert holder is not None and holder.machine_id == held["machine_id"]
    assert json.loads(lease_path(vault_root).read_text()) == held  # untouched
    assert not lease.holds()
    stop = threading.Event()
    assert lease.wait_for_turn(stop, wait=False) is False

    assert lease.claim(take_over=True) is None  # a person said so
    assert read_lease(vault_root).machine_id == lease.machine_id  # type: ignore[union-attr]
    assert lease.holds()


def test_an_unreadable_lease_blocks_like_another_machines(vault_root, tmp_path):
    lease_path(vault_root).parent.mkdir()
    lease_path(vault_root).write_text("{half a lease", encoding="utf-8")
    lease = lease_of(vault_root, tmp_path, "a")

    holder = lease.claim()

    assert holder is not None and holder.problem == "not JSON"
    assert "unreadable" in lease.standby_message(holder)
    assert lease_path(vault_root).read_text() == "{half a lease"


def test_the_executor_notices_a_take_over_at_its_next_check(vault_root, tmp_path, caplog):
    mine, theirs = lease_of(vault_root, tmp_path, "a"), lease_of(vault_root, tmp_path, "b")
    assert mine.claim() is None and mine.holds()

    assert theirs.claim(take_over=True) is None

    with caplog.at_level(logging.ERROR, logger="daemon.core.lease"):
        assert not mine.holds()
        assert not mine.holds()
    assert mine.lost.is_set()
    (said,) = [r.message for r in caplog.records if r.levelno == logging.ERROR]  # once
    assert said.startswith(f"machine {theirs.machine_id} (")
    assert "took the executor lease: this daemon stops executing now" in said
    assert not mine.beat(), "a heartbeat must never write the lease back"
    assert read_lease(vault_root).machine_id == theirs.machine_id  # type: ignore[union-attr]


def test_a_heartbeat_never_overwrites_a_take_over(vault_root, tmp_path):
    """The executor beats every 10 ms while another machine takes over: from then on the
    lease names the other machine, whatever the timing."""
    mine = lease_of(vault_root, tmp_path, "a", heartbeat_seconds=0.01)
    theirs = lease_of(vault_root, tmp_path, "b")
    assert mine.wait_for_turn(threading.Event())
    try:
        wait_for(lambda: read_lease(vault_root).heartbeat != mine._record.since)  # type: ignore[union-attr]
        assert theirs.claim(take_over=True) is None
        wait_for(mine.lost.is_set, timeout=5)
        time.sleep(0.1)
        assert read_lease(vault_root).claim == theirs._record.claim  # type: ignore[union-attr]
        assert theirs.holds()
    finally:
        mine.stop_heartbeat()


def test_the_heartbeat_moves_on_and_the_check_is_a_stat_while_it_does(vault_root, tmp_path):
    lease = lease_of(vault_root, tmp_path, "a", heartbeat_seconds=0.02)
    assert lease.wait_for_turn(threading.Event())
    try:
        first = read_lease(vault_root).heartbeat  # type: ignore[union-attr]
        wait_for(lambda: read_lease(vault_root).heartbeat != first)  # type: ignore[union-attr]
        for _ in range(50):
            assert lease.holds()
    finally:
        lease.stop_heartbeat()
    assert not lease.lost.is_set()


def test_a_lease_deleted_under_the_executor_is_claimed_again(vault_root, tmp_path):
    lease = lease_of(vault_root, tmp_path, "a")
    assert lease.claim() is None
    lease_path(vault_root).unlink()

    assert lease.holds()
    assert read_lease(vault_root).machine_id == lease.machine_id  # type: ignore[union-attr]


def test_a_symlink_in_place_of_the_lease_folder_is_refused(vault_root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (vault_root / LEASE_DIR).symlink_to(elsewhere)
    with pytest.raises(VaultError, match="not a folder"):
        lease_of(vault_root, tmp_path, "a").claim()
    assert list(elsewhere.iterdir()) == []


# -- what a daemon that is not the executor does: nothing --------------------------------


def test_vaultd_ignores_its_own_lease_folder_as_a_task(app: App, vault_root: Path, tmp_path):
    lease = lease_of(vault_root, tmp_path, "a")
    assert lease.claim() is None
    path = lease_path(vault_root)
    before = path.read_bytes()

    assert app.pipeline.process(path).status == "ignored"
    assert app.pipeline.process(path.parent).status == "ignored"
    queue = StableQueue(0)
    _Hints(app.vault, queue).on_any_event(_Event(str(path)))
    assert len(queue) == 0
    assert app.vault.folder_of(path) is None
    Runner(app.pipeline, app.config, lease=lease).run_once()
    assert path.read_bytes() == before
    assert not any(".vaultd" in line for line in _audit_lines(vault_root))


class _Event:
    """A watchdog event, as the observer hands it to the handler."""

    is_directory = False
    event_type = "modified"

    def __init__(self, src_path: str) -> None:
        self.src_path = src_path


def _audit_lines(vault: Path) -> list[str]:
    return [line for path in sorted((vault / "Logs").glob("*.json")) for line in path.open()]


def test_a_runner_without_the_lease_touches_nothing(app: App, vault_root: Path, tmp_path):
    make_files(vault_root, {"Needs_Action/post.md": note(POST)})
    foreign_lease(vault_root, heartbeat=datetime.now(UTC) - timedelta(days=365))
    lease = lease_of(vault_root, tmp_path, "b")
    assert lease.claim() is not None
    before = read_tree(vault_root, skip=())

    assert Runner(app.pipeline, app.config, lease=lease).run_once() == 0

    assert read_tree(vault_root, skip=()) == before


def test_the_runner_stops_before_the_next_file_once_another_machine_takes_over(
    app: App, vault_root: Path, tmp_path
):
    mine, theirs = lease_of(vault_root, tmp_path, "a"), lease_of(vault_root, tmp_path, "b")
    assert mine.claim() is None
    config = Config(daemon=Timing(stability_ms=20, rescan_seconds=3600))
    runner = Runner(app.pipeline, config, lease=mine)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    try:
        make_files(vault_root, {"Needs_Action/first.md": note(POST)})
        wait_for(lambda: files_in(vault_root, "Done") == ["first.md"])
        assert theirs.claim(take_over=True) is None
        thread.join(timeout=5)
        assert not thread.is_alive(), "the runner goes on after losing the lease"
        make_files(vault_root, {"Needs_Action/second.md": note({**POST, "text": "Later"})})
        time.sleep(0.3)
        assert files_in(vault_root, "Needs_Action") == ["second.md"]
    finally:
        runner.stop_event.set()
        thread.join(timeout=5)
    assert mine.lost.is_set()


def test_the_dashboard_says_who_executes_and_is_not_written_without_the_lease(
    app: App, vault_root: Path, tmp_path
):
    lease = lease_of(vault_root, tmp_path, "a")
    assert lease.claim() is None
    dashboard = Dashboard(app.vault, app.ledger, min_interval=0, may_write=lease.holds)
    dashboard.write()
    text = (vault_root / "Dashboard.md").read_text(encoding="utf-8")
    host = read_lease(vault_root).host  # type: ignore[union-attr]
    assert f"\nExecutor: {host} (pid {os.getpid()}, dry-run), heartbeat 20" in text

    assert lease_of(vault_root, tmp_path, "b").claim(take_over=True) is None
    (vault_root / "Dashboard.md").unlink()
    dashboard.write()
    dashboard.close()
    assert not (vault_root / "Dashboard.md").exists()


def test_status_of_a_daemon_that_is_not_the_executor_names_the_holder_and_the_way_out(
    vault_root: Path, tmp_path: Path
):
    foreign_lease(vault_root, heartbeat=datetime(2025, 1, 1, 9, 30, tzinfo=UTC))
    snapshot = build_snapshot(Vault(vault_root), None)
    snapshot.daemon = {"running": True, "pid": 77, "since": "2026-01-01T00:00:00Z"}
    assert snapshot.executor is not None
    snapshot.executor["this_machine"] = False
    hints = Hints("vaultd", "vault", "state")

    text = format_status(snapshot, hints)

    assert (
        "  not the executor: machine 0b7f5a8e-0000-4000-8000-00000000beef (laptop, pid 4242, "
        "since 2025-01-01 08:00:00 UTC, heartbeat 2025-01-01 09:30:00 UTC) holds the lease; "
        "stop this daemon, then `vaultd run --vault vault --state-dir state --take-over` "
        "to take it"
    ) in text.splitlines()

    snapshot.daemon = {"running": False}
    assert "a daemon started here would execute nothing" in format_status(snapshot, hints)
    snapshot.executor["this_machine"] = True
    snapshot.daemon = {"running": True, "pid": 4242}
    assert "  the executor of this vault (heartbeat 2025-01-01 09:30:00 UTC)" in format_status(
        snapshot, hints
    )
