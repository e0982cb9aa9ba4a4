"""The REST API as a new user meets it: `vaultd apikey create`, `vaultd serve`, HTTP calls.

The real CLI runs as subprocesses; `vaultd run --once` plays the daemon that takes the
run's task file through the approval lifecycle.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import forkserver
import httpx
import pytest
from conftest import files_in, move, wait_for
from e2e_support import ok, vaultd

from daemon.core.vault import Vault

pytestmark = pytest.mark.e2e

PORT_ANY = ("--port", "0")


class Serve:
    """A `vaultd serve --port 0` subprocess; `url` is read from its log."""

    def __init__(self, vault: Path, state: Path, log: Path) -> None:
        self.log = log
        with log.open("w", encoding="utf-8") as output:
            self.process = forkserver.start(
                ["serve", "--vault", str(vault), "--state-dir", str(state), *PORT_ANY],
                log=output,
            )
        found = wait_for(self._url, timeout=20)
        self.url: str = found

    def _url(self) -> str | None:
        assert self.process.poll() is None, self.log.read_text()
        match = re.search(r"vaultd API on (http://127\.0\.0\.1:\d+)", self.log.read_text())
        return match.group(1) if match else None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    Vault(root).ensure_folders()
    return root


@pytest.fixture
def served(vault: Path, tmp_path: Path) -> Iterator[Serve]:
    server = Serve(vault, tmp_path / "state", tmp_path / "serve.log")
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)


def test_a_new_user_runs_a_skill_through_serve_and_approves_it_by_moving_the_file(
    vault: Path, tmp_path: Path, served: Serve
):
    state = tmp_path / "state"
    created = ok(vaultd("apikey", "create", "agent", "--vault", vault, "--state-dir", state))
    key = created.stdout.strip()
    assert key.startswith("vd_")
    assert "only time it is shown" in created.stderr
    headers = {"Authorization": f"Bearer {key}"}

    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get("/api/v1/skills").status_code == 401
        skills = client.get("/api/v1/skills", headers=headers).json()["skills"]
        assert "post-social-media" in [skill["key"] for skill in skills]

        answer = client.post(
            "/api/v1/runs",
            json={
                "skill_key": "post-social-media",
                "inputs": {"text": "Spring launch", "platforms": ["facebook"]},
                "execute": True,
            },
            headers=headers,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["state"] == "queued"
        location = answer.headers["Location"]
        assert client.get(location, headers=headers).json()["state"] == "queued"

        # `vaultd run --once` works the queue, then takes the run's request in.
        ok(vaultd("run", "--vault", vault, "--state-dir", state, "--once"))
        assert client.get(location, headers=headers).json()["state"] == "awaiting_approval"
        [name] = files_in(vault, "Pending_Approval")
        move(vault, vault / "Pending_Approval" / name, "Approved")
        ok(vaultd("run", "--vault", vault, "--state-dir", state, "--once"))

        finished = client.get(location, headers=headers).json()
        assert finished["state"] == "succeeded"
        assert finished["requested_by"] == "apikey:agent"
        assert finished["trace"][0]["output"]["task_file"] == f"Done/{name}"

        listing = ok(vaultd("apikey", "list", "--vault", vault, "--state-dir", state))
        assert "agent" in listing.stdout and "active" in listing.stdout
        ok(vaultd("apikey", "revoke", "agent", "--vault", vault, "--state-dir", state))
        refused = client.get("/api/v1/skills", headers=headers)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["error"]

    assert served.stop() == 0
    for database in state.glob("ledger.sqlite3*"):  # the WAL too
        assert key.encode() not in database.read_bytes()


def test_serve_refuses_a_non_loopback_host_and_says_why(vault: Path, tmp_path: Path):
    refused = vaultd(
        "serve",
        "--vault",
        vault,
        "--state-dir",
        tmp_path / "state",
        "--host",
        "0.0.0.0",  # noqa: S104
    )
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0" in refused.stderr
    assert "--allow-remote" in refused.stderr
