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
