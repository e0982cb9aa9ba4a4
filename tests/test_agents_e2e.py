"""End to end, as root: a real OS user for the agents, `vaultd agents setup`, the real daemon,
and an agent that tries every way around the approval it has. None works, nothing runs, and
what the agent may do (a task into Needs_Action/, a plan into Plans/) still works.

Needs root to create the user; skipped otherwise, except under CI=true, where it must run.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import forkserver
import pytest
from conftest import VAULTD, audit, files_in, outbox, parsed, wait_for

ROOT = Path(__file__).resolve().parents[1]
REFUSED = re.compile(r"Permission denied|Operation not permitted")
INVOICE = """---
type: odoo_invoice
partner: Acme Corporation
currency: USD
lines:
  - {product: Consulting hour, quantity: 10, price_unit: 85, description: December}
---
Please invoice Acme for December.
"""
REPLY = """---
type: social_post
platforms: [facebook]
kind: reply
in_reply_to: "1234_5678"
text: "Thank you, we will look into it."
---
Written by the agent.
"""


@dataclass(frozen=True)
class Agent:
    name: str
    uid: int
    gid: int

    def setpriv(self) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run a shell script as the agent: its uid and gid, no other group."""
        return subprocess.run(
            [*self.setpriv(), "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def vaultd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run vaultd's command line as the agent.

        The interpreter may live where the agent cannot reach (here under /root), so the
        process starts as root, imports vaultd, and drops to the agent's uid and gid with no
        other group before vaultd's main runs: every file vaultd opens, it opens as the agent.
        """
        script = (
            "import os, sys\n"
            "from daemon.cli.main import main\n"
            f"os.setgroups([]); os.setgid({self.gid}); os.setuid({self.uid})\n"
            f"assert os.getuid() == os.geteuid() == {self.uid} and os.getgroups() == []\n"
            f"sys.exit(main({list(argv)!r}))\n"
        )
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=_environment(),
            check=False,
        )


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}


@pytest.fixture
def agent() -> Iterator[Agent]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create an OS user for the agents (CI runs it as root)")
    missing = [tool for tool in ("useradd", "userdel", "setpriv") if shutil.which(tool) is None]
    if missing:
        message = f"needs {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: under CI as root this test must run")
        pytest.skip(message)
    name = f"vaultd-agent-test-{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/bin/sh", name],
        check=True,
    )
    try:
        ids = subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True)
        gid = subprocess.run(["id", "-g", name], capture_output=True, text=True, check=True)
        yield Agent(name, int(ids.stdout), int(gid.stdout))
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def place() -> Iterator[Path]:
    """A fresh folder under /tmp that other users can pass through (0755)."""
    made = Path(tempfile.mkdtemp(prefix="vaultd-e2e-", dir="/tmp"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made)


def vaultd(*argv: str) -> subprocess.CompletedProcess[str]:
    return forkserver.run(argv, env=_environment(), timeout=60)


def test_a_confined_agent_cannot_approve_by_any_way_and_can_still_hand_in_work(
    agent: Agent, place: Path
):
    vault, state = place / "vault", place / "state"
    env, config = place / "vaultd.env", place / "config.toml"
    assert vaultd("init", str(vault)).returncode == 0
    for task in (vault / "Needs_Action").iterdir():
        task.unlink()  # the template's post would be executed by policy: start empty
    env.write_text("ODOO_PASSWORD=a-secret-value\n")
    config.write_text(f'[agents]\nuser = "{agent.name}"\n')
    flags = ["--vault", str(vault), "--state-dir", str(state), "--config", str(config)]
    with_env = [*flags, "--env-file", str(env)]

    # Before setup the env file is readable and no state directory exists: no live start.
    refused = vaultd("run", "--live", "--once", *with_env)
    assert refused.returncode == 1, refused.stderr
    assert f"{env}: {agent.name} can read it" in refused.stderr
    assert f"{state}: does not exist yet" in refused.stderr

    setup = vaultd("agents", "setup", *with_env, "--user", agent.name)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert f"changed {vault / 'Needs_Action'}: owner root:root → root:{agent.name}" in setup.stdout
    assert f"changed {env}: mode 0644 → 0600" in setup.stdout
    check = vaultd("check", *with_env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"agents: {agent.name} can write only Needs_Action/ and Plans/" in check.stdout

    (vault / "Plans" / "person_plan.md").write_text("the person's plan\n")
    daemon = subprocess.Popen(
        [*VAULTD, "run", *flags], env=_environment(), stderr=subprocess.PIPE, text=True
    )
    try:
        (vault / "Needs_Action" / "invoice_acme.md").write_text(INVOICE)
        pending = vault / "Pending_Approval" / "invoice_acme.md"
        wait_for(lambda: pending.is_file() and "id" in parsed(pending).meta, timeout=30)
        task_id = parsed(pending).meta["id"]
        before = pending.read_bytes()
        approved = vault / "Approved" / "invoice_acme.md"

        attempts = {
            "rename into Approved/": f"mv '{pending}' '{approved}'",
            "copy into Approved/": f"cp '{pending}' '{approved}'",
            "delete the request": f"rm -f '{pending}'",
            "hard link into Approved/": f"ln '{pending}' '{approved}'",
            "edit the request": f"echo 'amount: 1' >> '{pending}'",
            "write the ledger": f"echo x >> '{state / 'ledger.sqlite3'}'",
            "read the env file": f"cat '{env}'",
            "list the state directory": f"ls '{state}'",
            "rename a person's plan": f"mv '{vault}/Plans/person_plan.md' '{vault}/Plans/x.md'",
            "change the config": f"echo 'x = 1' >> '{config}'",
        }
        for what, script in attempts.items():
            tried = agent.sh(script)
            assert tried.returncode != 0, f"{what}: {tried.stdout}"
            assert REFUSED.search(tried.stderr), f"{what}: {tried.stderr}"

        approve = agent.vaultd("approve", "--vault", str(vault), "--state-dir", str(state),
                               str(task_id))  # fmt: skip
        assert approve.returncode == 1, approve.stdout + approve.stderr
        assert "permission denied" in approve.stderr
        assert "nothing was decided" in approve.stderr

        # What the agent may do: hand in a task (written aside, then renamed into place) and
        # a plan. The daemon takes the task in.
        inbox = vault / "Needs_Action"
        handed = agent.sh(
            f"cat > '{inbox}/.reply.tmp' <<'EOF'\n{REPLY}EOF\n"
            f"mv '{inbox}/.reply.tmp' '{inbox}/agent_reply.md' && "
            f"echo 'step 1' > '{vault}/Plans/agent_plan.md'"
        )
        assert handed.returncode == 0, handed.stderr
        reply = vault / "Pending_Approval" / "agent_reply.md"
        wait_for(lambda: reply.is_file() and "id" in parsed(reply).meta, timeout=30)
        assert (vault / "Plans" / "agent_plan.md").read_text() == "step 1\n"
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)

    # Nothing ran, nothing was approved, and the request is as vaultd wrote it.
    assert outbox(state) == []
    assert files_in(vault, "Done") == [] and files_in(vault, "Approved") == []
    assert pending.read_bytes() == before
    entries = audit(vault)
    assert not [
        e for e in entries if e.get("approval_status") in ("human_approved", "auto_approved")
    ]
    requested = {e.get("task_id") for e in entries if e.get("approval_status") == "pending"}
    assert task_id in requested and len(requested) == 2  # the invoice and the agent's reply
    # The agent's task became a file of vaultd's own: nothing in the vault is left for it.
    assert reply.stat().st_uid == 0
    after = vaultd("check", *with_env)
    assert after.returncode == 0, after.stdout + after.stderr
