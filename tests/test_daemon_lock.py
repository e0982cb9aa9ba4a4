"""One daemon per state directory: the lock, the refusal, and `vaultd status` reading it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import outbox

from daemon.core.daemon_lock import AlreadyRunning, DaemonLock, holder_of

VAULTD = (sys.executable, "-m", "daemon")


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


def start(vault: Path, state: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*VAULTD, "run", "--vault", str(vault), "--state-dir", str(state), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_holder(state: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while holder_of(state) is None:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_second_vaultd_run_exits_1_at_once_saying_who_runs(vault_root: Path, state_dir: Path):
    first = start(vault_root, state_dir, "--live")
    try:
        wait_for_holder(state_dir, first)
        second = subprocess.run(
            [*VAULTD, "run", "--once", "--vault", str(vault_root), "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
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
    again = subprocess.run(
        [*VAULTD, "run", "--once", "--vault", str(vault_root), "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
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
    both = [
        subprocess.Popen(
            [*VAULTD, "run", "--once", "--vault", str(vault), "--state-dir", str(state)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in both]

    for code, stderr in results:
        assert "Traceback" not in stderr and "sqlite" not in stderr.lower(), stderr
        assert code == 0 or (code == 1 and "another vaultd (pid " in stderr), stderr
    assert 0 in [code for code, _ in results]
    assert sorted(p.name for p in (vault / "Done").iterdir()) == [f"post-{n}.md" for n in range(5)]
    markers = Counter(record["marker"] for record in outbox(state))
    assert len(markers) == 5 and set(markers.values()) == {1}, markers
