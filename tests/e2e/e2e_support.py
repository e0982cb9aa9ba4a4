"""Helpers for the end-to-end tests: run the real `vaultd` CLI and read what it left behind.

Everything here looks at the outside of vaultd only: the vault's files, the dry-run outbox
(which plays the remote service) and the ledger database as SQLite sees it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path
from typing import IO, Any

import yaml
from conftest import VAULTD, outbox

TEMPLATE = Path(__file__).resolve().parents[2] / "vault_template"
BLOCK_BEGIN = "<!-- vaultd:begin"
BLOCK_END = "<!-- vaultd:end -->\n"


def vaultd(
    *args: str | Path, failpoint: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the vaultd CLI to completion and return the finished process."""
    env = dict(os.environ)
    env.pop("VAULTD_FAILPOINT", None)
    env.pop("VAULTD_FAILPOINT_ONCE", None)
    if failpoint:
        env["VAULTD_FAILPOINT"] = failpoint
    return subprocess.run(
        [*VAULTD, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(process: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Return the process if it exited 0; fail with its output otherwise."""
    assert process.returncode == 0, (
        f"exit {process.returncode}\nstdout:\n{process.stdout}\nstderr:\n{process.stderr}"
    )
    return process


class Daemon:
    """A long-running `vaultd run` subprocess whose output goes to a file (never a full pipe)."""

    def __init__(self, vault: Path, state: Path, *extra: str) -> None:
        self.log_path = state.parent / f"daemon-{os.getpid()}-{id(self)}.log"
        self._log: IO[str] = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [*VAULTD, "run", "--vault", str(vault), "--state-dir", str(state), *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 10, sig: int = signal.SIGTERM) -> int:
        """Send SIGTERM (or `sig`) and return the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def split_note(text: str) -> tuple[str, str]:
    """Return (raw frontmatter, the user's body) of a note, vaultd's rendered block left out."""
    assert text.startswith("---\n"), text
    raw, _, body = text[4:].partition("\n---\n")
    if body.startswith(BLOCK_BEGIN):
        block, found, body = body.partition(BLOCK_END)
        assert found, f"vaultd's block is not closed:\n{block}"
    return raw + "\n", body


def meta(text: str) -> dict[str, Any]:
    """Return the parsed frontmatter of a note."""
    data = yaml.safe_load(split_note(text)[0])
    assert isinstance(data, dict)
    return data


def calls_per_marker(state: Path) -> Counter[str]:
    return Counter(record["marker"] for record in outbox(state))


def integrity(state: Path) -> str:
    """Return SQLite's own verdict on the ledger database ("ok" when sound)."""
    db = sqlite3.connect(state / "ledger.sqlite3")
    try:
        (verdict,) = db.execute("PRAGMA integrity_check").fetchone()
    finally:
        db.close()
    return str(verdict)


def audit_events(vault: Path) -> list[dict[str, Any]]:
    """Return every line of the audit log, across days, in order."""
    events = []
    for path in sorted((vault / "Logs").glob("*.json")):
        events += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return events
