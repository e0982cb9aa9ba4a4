"""The commands vaultd suggests work as printed, pasted into a shell in the vault's folder.

`make run` leaves the vault at ./vault and vaultd at .venv/bin/vaultd, which is not on
PATH. The tests paste each suggestion into `bash -c` in the folder that holds the vault,
with vaultd's folder taken off PATH, after a daemon started from another folder wrote it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import forkserver
import pytest

from tests.e2e.e2e_support import meta, ok, vaultd

pytestmark = pytest.mark.e2e
BIN = str(Path(sys.executable).parent)


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a pasted command the way a person's shell would, without vaultd on PATH."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != BIN)
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def business(tmp_path: Path) -> Path:
    """The folder where `make run` ran: ./vault in it, processed by a daemon started
    elsewhere, with the state directory beside it."""
    home = tmp_path / "business"
    ok(vaultd("init", home / "vault"))
    args = ["run", "--once", "--vault", "business/vault", "--state-dir", "business/state"]
    ok(forkserver.run(args, cwd=tmp_path, timeout=60))
    return home


def suggested(text: str, verb: str) -> str:
    """Return the `vaultd VERB …` command a note suggests."""
    found = re.search(rf"run `([^`]* {verb} --vault [^`]*)`", text)
    assert found, f"no {verb} command in:\n{text}"
    return found.group(1)


def test_the_approve_command_in_a_request_note_works_as_printed(business: Path):
    note = business / "vault/Pending_Approval/invoice_acme_december.md"
    command = suggested(note.read_text(), "approve")
    assert not command.startswith("vaultd ")  # vaultd is not on PATH here

    done = shell(command, business)

    assert done.returncode == 0, done.stderr
    assert (business / "vault/Approved/invoice_acme_december.md").exists()
    assert meta((business / "vault/Approved/invoice_acme_december.md").read_text())["id"]


def test_the_reject_command_in_a_request_note_works_as_printed(business: Path):
    note = business / "vault/Pending_Approval/reply_to_customer.md"

    done = shell(suggested(note.read_text(), "reject"), business)

    assert done.returncode == 0, done.stderr
    assert (business / "vault/Rejected/reply_to_customer.md").exists()


def test_status_names_the_commands_that_work_here_and_says_no_daemon_runs(business: Path):
    status = shell(f"{BIN}/vaultd status --vault vault --state-dir state", business).stdout
    assert "daemon: not running" in status
    approve = re.search(r"approve: (.*)", status)
    assert approve
    note = business / "vault/Pending_Approval/payment_blue_cafe.md"
    task_id = meta(note.read_text())["id"]

    done = shell(approve.group(1).replace("ID", task_id), business)

    assert done.returncode == 0, done.stderr
    assert (business / "vault/Approved/payment_blue_cafe.md").exists()


def test_the_run_command_status_suggests_starts_the_daemon_and_status_then_sees_it(
    business: Path,
):
    status = shell(f"{BIN}/vaultd status --vault vault --state-dir state", business).stdout
    found = re.search(r"until `([^`]+ run [^`]+)` runs", status)
    assert found, status
    daemon = subprocess.Popen(
        ["bash", "-c", f"exec {found.group(1)}"],
        cwd=business,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Each `vaultd status` is a fresh interpreter: asked once the daemon says it watches
    # (its log on stderr), not every 0.1 s while it starts.
    said: list[str] = []
    watching = threading.Event()

    def read_log() -> None:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            said.append(line)
            if "watching for file events" in line:
                watching.set()

    threading.Thread(target=read_log, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while True:
            watching.wait(timeout=max(0.0, deadline - time.monotonic()))
            status = shell(f"{BIN}/vaultd status --vault vault --state-dir state", business)
            if "daemon: running" in status.stdout and "Scheduled jobs" in status.stdout:
                break
            assert daemon.poll() is None, "".join(said)
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.5)
        assert f"pid {daemon.pid}" in status.stdout
        assert "dry-run" in status.stdout
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
