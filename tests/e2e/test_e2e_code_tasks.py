"""Code tasks through the real daemon (issue 16): drop one, find it waiting in
Pending_Approval/ with its diff, approve it by moving the note, and find the commit on the
target with its trailer; and a SIGKILL in the middle of landing never lands it twice.

Every point of landing is killed in-process in tests/test_code_tasks.py; here the real
process is killed at the two points where the target may have moved without the ledger
knowing (`after-call`: moved, not yet recorded). VAULTD_NIGHTLY=1 kills it at every point.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from code_support import code_task, git, make_repo, trailers, write_config
from conftest import files_in, make_files, move, note
from e2e_support import meta, ok, vaultd

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


def test_a_person_approves_a_code_change_by_moving_one_note(setup):
    repo, vault, state, config = setup
    ok(run_once(vault, state, config))
    pending = vault / "Pending_Approval" / "change.md"
    shown = meta(pending.read_text())
    assert "+changed by the agent" in pending.read_text()
    assert git(repo, "log", "--format=%s", "main") == "Initial commit"
    move(vault, pending, "Approved")
    ok(run_once(vault, state, config))
    assert files_in(vault, "Done") == ["change.md"]
    assert trailers(repo) == [shown["id"], shown["id"]]
    assert git(repo, "rev-parse", "main^{tree}") == git(
        repo, "rev-parse", f"{shown['code']['head_sha']}^{{tree}}"
    )


@pytest.mark.parametrize("point", POINTS)
def test_a_daemon_killed_while_landing_lands_exactly_once(setup, point: str):
    repo, vault, state, config = setup
    ok(run_once(vault, state, config))
    task_id = meta((vault / "Pending_Approval" / "change.md").read_text())["id"]
    move(vault, vault / "Pending_Approval" / "change.md", "Approved")
    killed = run_once(vault, state, config, failpoint=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ok(run_once(vault, state, config))
    assert files_in(vault, "Done") == ["change.md"], files_in(vault, "Failed")
    assert trailers(repo) == [task_id, task_id]
