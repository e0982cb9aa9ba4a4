"""One daemon per state directory: the lock, the refusal, and `vaultd status` reading it."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO

import forkserver
import pytest
from conftest import outbox

from daemon.core.daemon_lock import AlreadyRunning, DaemonLock, holder_of

Process = forkserver.Forked | forkserver.subprocess.Popen[str]
LOGS: dict[int, IO[str]] = {}  # each started daemon's output, by pid


def test_a_second_lock_on_a_state_directory_is_refused_naming_the_holder(tmp_path: Path):
    lock = DaemonLock.acquire(tmp_path, mode="live")
    try:
        # flock is per open file: a second open in this very process is refused too.
        with pytest.raises(AlreadyRunning) as refused:
            DaemonLock.acquire(tmp_path, mode="dry-run")
        assert refused.value.holder.pid == os.getpid()
        assert refused.value.holder.mode == "live"
        assert f"another vaultd (pid {os.getpid()}, since " in str(refused.value)
        assert str(refused.value).endswith(", live) runs on this vault")
        holder = holder_of(tmp_path)
        assert holder is not None and holder.pid == os.getpid()
    finally:
        lock.release()
    assert holder_of(tmp_path) is None
    DaemonLock.acquire(tmp_path, mode="dry-run").release()


def test_no_lock_file_means_no_daemon(tmp_path: Path):
    assert holder_of(tmp_path / "never-ran") is None


def start(vault: Path, state: Path, *extra: str, log: IO[str] | None = None) -> Process:
    """Start `vaultd run` (forked by the suite's fork server), its output going to `log`."""
    log = log or tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
    process = forkserver.start(
        ["run", "--vault", str(vault), "--state-dir", str(state), *extra], log=log
    )
    LOGS[process.pid] = log
    return process


def output(process: Process) -> str:
    log = LOGS[process.pid]
    log.flush()
    log.seek(0)
    return log.read()


def wait_for_holder(state: Path, process: Process) -> None:
    deadline = time.monotonic() + 20
    while holder_of(state) is None:
        assert process.poll() is None, output(process)
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_second_vaultd_run_exits_1_at_once_saying_who_runs(vault_root: Path, state_dir: Path):
    first = start(vault_root, state_dir, "--live")
    try:
        wait_for_holder(state_dir, first)
        second = forkserver.run(
            ["run", "--once", "--vault", str(vault_root), "--state-dir", str(state_dir)],
            timeout=10,
        )
        assert second.returncode == 1
        assert f"another vaultd (pid {first.pid}, since " in second.stderr
        assert ", live) runs on this vault" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=20)


def test_the_lock_of_a_daemon_killed_with_sigkill_is_gone_with_it(
    vault_root: Path, state_dir: Path
):
    first = start(vault_root, state_dir)
    try:
        wait_for_holder(state_dir, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert holder_of(state_dir) is None
    again = forkserver.run(
        ["run", "--once", "--vault", str(vault_root), "--state-dir", str(state_dir)], timeout=60
    )
    assert again.returncode == 0, again.stderr


ROUNDS = 20 if os.environ.get("VAULTD_NIGHTLY") == "1" else 3
POST = "---\ntype: social_post\nplatforms: [facebook]\ntext: Round {n}\n---\nBody {n}.\n"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_daemons_started_at_once_on_a_fresh_state_directory_never_crash_or_repeat(
    tmp_path: Path, round_: int
):
    vault, state = tmp_path / "vault", tmp_path / "state"
    for folder in ("Needs_Action", "Pending_Approval", "Approved", "Done", "Rejected", "Failed"):
        (vault / folder).mkdir(parents=True)
    for n in range(5):
        (vault / f"Needs_Action/post-{n}.md").write_text(POST.format(n=n))
    both = [start(vault, state, "--once") for _ in range(2)]
    results = [(p.wait(timeout=60), output(p)) for p in both]

    for code, stderr in results:
        assert "Traceback" not in stderr and "sqlite" not in stderr.lower(), stderr
        assert code == 0 or (code == 1 and "another vaultd (pid " in stderr), stderr
    assert 0 in [code for code, _ in results]
    assert sorted(p.name for p in (vault / "Done").iterdir()) == [f"post-{n}.md" for n in range(5)]
    markers = Counter(record["marker"] for record in outbox(state))
    assert len(markers) == 5 and set(markers.values()) == {1}, markers
