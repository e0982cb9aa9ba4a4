"""Code tasks through the real daemon (issue 16): drop one, find it waiting in
Pending_Approval/ with its diff, approve it by moving the note, have the daemon SIGKILLed
while it lands the change, restart it, and find the commits on the target, with their
trailer, once.

Every point of landing is killed in-process in tests/test_code_tasks.py; here the real
process is killed where the target has moved and the ledger does not know it yet
(`after-call`). VAULTD_NIGHTLY=1 kills it at every point (6 runs).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from code_support import code_task, git, make_repo, trailers, write_config
from conftest import files_in, make_files, move, note, wait_for
from e2e_support import Daemon, meta, ok, vaultd

from daemon.core import failpoints
from daemon.core.vault import Vault

pytestmark = pytest.mark.e2e

POINTS = failpoints.POINTS if os.environ.get("VAULTD_NIGHTLY") else ("after-call",)


def run_once(vault: Path, state: Path, config: Path, failpoint: str | None = None):
    return vaultd(
        "run",
        "--vault",
        vault,
        "--state-dir",
        state,
        "--config",
        config,
        "--once",
        "--live",
        failpoint=failpoint,
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    repo = make_repo(tmp_path / "demo")
    vault = tmp_path / "vault"
    Vault(vault).ensure_folders()
    make_files(vault, {"Needs_Action/change.md": note(code_task("COMMIT"))})
    return repo, vault, tmp_path / "state", write_config(tmp_path, repo)


@pytest.mark.parametrize("point", POINTS)
def test_a_person_approves_by_moving_one_note_and_a_kill_while_landing_lands_it_once(
    setup, point: str
):
    repo, vault, state, config = setup
    ok(run_once(vault, state, config))
    pending = vault / "Pending_Approval" / "change.md"
    shown = meta(pending.read_text())
    assert "+changed by the agent" in pending.read_text()
    assert git(repo, "log", "--format=%s", "main") == "Initial commit"
    move(vault, pending, "Approved")
    killed = run_once(vault, state, config, failpoint=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ok(run_once(vault, state, config))  # the restart
    assert files_in(vault, "Done") == ["change.md"], files_in(vault, "Failed")
    assert trailers(repo) == [shown["id"], shown["id"]]  # landed, once
    assert git(repo, "rev-parse", "main^{tree}") == git(
        repo, "rev-parse", f"{shown['code']['head_sha']}^{{tree}}"
    )


POST = (
    "---\ntype: social_post\nplatforms: [facebook]\nkind: post\ntext: Winter hours\n"
    "scheduled_for: 2026-11-02T09:00:00Z\n---\nApproved by policy.\n"
)


def test_the_daemon_goes_on_with_other_files_while_a_code_tasks_agent_works(tmp_path: Path):
    """An agent may work for half an hour: the pipeline never waits for it."""
    repo = make_repo(tmp_path / "demo")
    vault, state = tmp_path / "vault", tmp_path / "state"
    Vault(vault).ensure_folders()
    config = write_config(tmp_path, repo, timeout_s=90)
    gate = tmp_path / "let the agent finish"
    make_files(vault, {"Needs_Action/change.md": note(code_task(f"GATE {gate}"))})
    daemon = Daemon(vault, state, "--config", str(config))
    try:
        wait_for(lambda: any((state / "worktrees").glob("*")), timeout=30)  # the agent works
        make_files(vault, {"Needs_Action/post.md": POST})
        # Done while the agent still waits for its gate: however slow the machine is.
        wait_for(lambda: files_in(vault, "Done") == ["post.md"], timeout=30)
        assert files_in(vault, "Needs_Action") == ["change.md"]
        gate.write_text("go\n")
        wait_for(lambda: files_in(vault, "Pending_Approval") == ["change.md"], timeout=60)
        assert "+changed by the agent" in (vault / "Pending_Approval" / "change.md").read_text()
    finally:
        daemon.terminate()


def test_a_daemon_that_stops_kills_the_agent_at_work_and_prepares_again_next_time(
    tmp_path: Path,
):
    repo = make_repo(tmp_path / "demo")
    vault, state = tmp_path / "vault", tmp_path / "state"
    Vault(vault).ensure_folders()
    config = write_config(tmp_path, repo)
    mark = f"{os.getpid()}-{time.monotonic_ns()}"
    pid_file = Path(os.environ.get("TMPDIR", "/tmp"), f"vaultd-agent-{mark}")
    make_files(vault, {"Needs_Action/change.md": note(code_task(f"SLOW 60 {mark}"))})
    daemon = Daemon(vault, state, "--config", str(config))
    try:
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=20))
    finally:
        assert daemon.terminate() == 0, daemon.output()
        pid_file.unlink(missing_ok=True)

    def gone() -> bool:
        status = Path(f"/proc/{pid}/status")
        return not status.exists() or "State:\tZ" in status.read_text()

    wait_for(gone, timeout=15)  # not left working in a worktree nobody watches
    assert files_in(vault, "Needs_Action") == ["change.md"]  # prepared again at the next start
