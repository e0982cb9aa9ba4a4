"""Secrets from the environment never reach the vault, the logs or the state directory."""

from pathlib import Path
from typing import Any

import pytest
from conftest import make_files, note

from daemon.app import open_app
from daemon.connectors.base import Absent, Health, Lookup
from daemon.errors import ConnectorError
from daemon.models import Action
from daemon.policy import Facts

CANARY = "canary-s3cr3t-7f2a91"


class LeakyService:
    """Stands in for a service that echoes credentials back in answers and errors."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return {"url": f"https://user:{CANARY}@example.test/feed", "marker": marker}

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        if self.fail:
            raise ConnectorError(f"401: token {CANARY} expired")
        return {"id": "1", "echo": f"Bearer {CANARY}", "access_token": "anything"}

    def lookup(self, marker: str) -> Lookup:
        return Absent()

    def check(self) -> Health:
        return Health(True, "stand-in")

    def facts(self, action: Action) -> Facts:
        return Facts()


def every_byte_under(*roots: Path) -> bytes:
    return b"".join(p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file())


def test_a_secret_in_the_environment_never_reaches_vault_logs_or_state(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FACEBOOK_PAGE_TOKEN", CANARY)
    app = open_app(vault_root, state_dir=state_dir)
    app.pipeline.connectors["facebook"] = LeakyService("facebook")
    app.pipeline.connectors["twitter"] = LeakyService("twitter", fail=True)
    post = {"type": "social_post", "text": "Hello"}
    make_files(
        vault_root,
        {
            "Needs_Action/ok.md": note({**post, "platforms": ["facebook"]}),
            "Needs_Action/bad.md": note({**post, "text": "Bye", "platforms": ["twitter"]}),
        },
    )
    for name in ("ok.md", "bad.md"):
        app.pipeline.process(vault_root / "Needs_Action" / name)
    app.close()

    assert (vault_root / "Done/ok.md").exists()
    assert (vault_root / "Failed/bad.md").exists()
    everything = every_byte_under(vault_root, state_dir)
    assert CANARY.encode() not in everything
    assert b"[redacted]" in (vault_root / "Done/ok.md").read_bytes()
