"""The suite's fork server (tests/forkserver.py) gives a forked `vaultd` what a fresh one gets:
its own argv, environment, directory and streams, a real pid to signal, and its exit code.
(That it arms its own VAULTD_FAILPOINT, which vaultd reads at import, the crash tests show:
tests/e2e/test_e2e_crash.py expects a SIGKILL at each point.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import forkserver
import pytest

pytestmark = pytest.mark.skipif(not forkserver.enabled(), reason="VAULTD_TEST_FRESH=1")


def test_a_forked_vaultd_prints_exits_and_reads_its_own_directory_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    done = forkserver.run(["--version"])
    assert done.returncode == 0 and done.stdout.startswith("vaultd ")
    monkeypatch.chdir(tmp_path)
    missing = forkserver.run(["status", "--vault", "nowhere"], env={**os.environ, "LANG": "C"})
    assert missing.returncode == 1
    assert f"{tmp_path / 'nowhere'}" in missing.stderr or "nowhere" in missing.stderr
    bad = forkserver.run(["no-such-command"])
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_forked_daemon_is_a_process_of_its_own_that_sigkill_ends(tmp_path: Path):
    vault = tmp_path / "vault"
    assert forkserver.run(["init", str(vault)]).returncode == 0
    log = (tmp_path / "daemon.log").open("w", encoding="utf-8")
    daemon = forkserver.start(
        ["run", "--vault", str(vault), "--state-dir", str(tmp_path / "state")], log=log
    )
    try:
        assert daemon.pid not in (os.getpid(), os.getppid())
        deadline = time.monotonic() + 20
        while "watching for file events" not in (tmp_path / "daemon.log").read_text():
            assert daemon.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(subprocess.TimeoutExpired):
            daemon.wait(timeout=0.1)
        os.kill(daemon.pid, signal.SIGKILL)
        assert daemon.wait(timeout=10) == -signal.SIGKILL
    finally:
        daemon.kill()
        log.close()


def test_the_command_for_a_program_that_starts_vaultd_itself_is_the_forked_vaultd(
    tmp_path: Path,
):
    """What the MCP tests give the MCP client: a stand-in process whose streams, directory,
    exit code and SIGTERM are the forked vaultd's."""
    vault = tmp_path / "vault"
    done = subprocess.run(
        forkserver.command(["init", str(vault)]), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and (vault / "Needs_Action").is_dir(), done.stderr
    bad = subprocess.run(
        forkserver.command(["no-such-command"]), capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    log = (tmp_path / "daemon.log").open("w", encoding="utf-8")
    args = ["run", "--vault", str(vault), "--state-dir", str(tmp_path / "state")]
    daemon = subprocess.Popen(forkserver.command(args), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "watching for file events" not in (tmp_path / "daemon.log").read_text():
        assert daemon.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    daemon.terminate()  # passed on: the forked vaultd stops cleanly, with its own exit code
    assert daemon.wait(timeout=20) == 0


def test_the_command_for_a_program_that_starts_vaultd_itself_dies_of_the_signal_vaultd_died_of(
    tmp_path: Path,
):
    """A forked vaultd killed by a signal (SIGHUP: vaultd leaves it to its default) gave the
    stand-in `sys.exit(-1)`, an exit code of 255, where a fresh vaultd's parent sees a death
    by SIGHUP (-1 from Popen)."""
    vault = tmp_path / "vault"
    assert forkserver.run(["init", str(vault)]).returncode == 0
    log = (tmp_path / "daemon.log").open("w", encoding="utf-8")
    args = ["run", "--vault", str(vault), "--state-dir", str(tmp_path / "state")]
    daemon = subprocess.Popen(forkserver.command(args), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "watching for file events" not in (tmp_path / "daemon.log").read_text():
            assert daemon.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        daemon.send_signal(signal.SIGHUP)  # passed on
        assert daemon.wait(timeout=20) == -signal.SIGHUP
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
