"""An agent's whole round trip with one daemon: `vaultd run --api`.

An API key is made with the real CLI; the real daemon serves the API and runs the pipeline;
the agent starts a run over HTTP; a person approves by moving the file; the agent reads the
finished run with its trace.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest
from conftest import files_in, move, wait_for
from e2e_support import Daemon, ok, vaultd

from daemon.core.vault import Vault

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_agent_starts_a_run_over_the_api_a_person_approves_it_and_the_run_finishes(
    tmp_path: Path,
):
    vault, state = tmp_path / "vault", tmp_path / "state"
    Vault(vault).ensure_folders()
    port = free_port()
    config = tmp_path / "vaultd.toml"
    config.write_text(f"[daemon]\nstability_ms = 100\n\n[api]\nport = {port}\n")
    created_key = vaultd("apikey", "create", "agent", "--vault", vault, "--state-dir", state)
    key = ok(created_key).stdout.strip()

    daemon = Daemon(vault, state, "--api", "--config", str(config))
    try:
        wait_for(lambda: re.search(r"REST API on http://127\.0\.0\.1:\d+", daemon.output()), 20)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30
        )
        skills = api.get("/api/v1/skills").json()["skills"]
        assert "post-social-media" in {skill["key"] for skill in skills}

        created = api.post(
            "/api/v1/runs",
            json={
                "skill_key": "post-social-media",
                "inputs": {"text": "Winter sale starts Monday", "platforms": ["facebook"]},
                "execute": True,
            },
        )
        assert created.status_code == 202, created.text
        run = created.json()
        assert run["state"] == "queued"
        assert run["requested_by"] == "apikey:agent"
        assert created.headers["Location"] == f"/api/v1/runs/{run['run_id']}"

        # The daemon's workers run it; the daemon takes its request in and asks the person.
        wait_for(lambda: files_in(vault, "Pending_Approval"), timeout=10)
        [name] = files_in(vault, "Pending_Approval")
        move(vault, vault / "Pending_Approval" / name, "Approved")

        def finished() -> dict[str, object] | None:
            body: dict[str, object] = api.get(f"/api/v1/runs/{run['id']}").json()
            return body if body["state"] == "succeeded" else None

        done = wait_for(finished, timeout=15)
        assert done is not None
        [step] = done["trace"]  # type: ignore[misc]
        assert step["tool"] == "social.post"
        assert step["output"]["task_file"] == f"Done/{name}"
        assert files_in(vault, "Done") == [name]
        # No interface can approve: there is no route for it.
        assert api.post(f"/api/v1/runs/{run['id']}/approve").status_code == 404
    finally:
        assert daemon.terminate() == 0, daemon.output()
    assert "restarting" not in daemon.output()
