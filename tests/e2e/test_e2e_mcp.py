"""`vaultd mcp` as Claude Code starts it: a subprocess speaking MCP over stdin and stdout;
`vaultd mcp config` as a new user runs it, redirected by the shell or with --output.

The real `mcp` stdio client launches the real CLI, initializes, lists the tools and calls
them; any stray byte vaultd printed on stdout would break the JSON-RPC stream.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
import forkserver
import pytest
from conftest import VAULTD, files_in
from e2e_support import ok, vaultd
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import TextContent

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_vaultd_mcp_serves_the_vault_tools_over_stdio(vault_root: Path, state_dir: Path):
    command, *prefix = VAULTD
    server = StdioServerParameters(
        command=command,
        args=[*prefix, "mcp", "--vault", str(vault_root), "--state-dir", str(state_dir)],
        env=dict(os.environ),
        cwd=REPO,
    )

    async def session() -> tuple[set[str], str, dict[str, object], str]:
        with anyio.fail_after(60):
            return await calls()

    async def calls() -> tuple[set[str], str, dict[str, object], str]:
        async with Client(server, mode="legacy", read_timeout_seconds=20) as client:
            assert client.server_info is not None
            post = {"platforms": ["twitter"], "text": "Hello from MCP"}
            tools = {tool.name for tool in (await client.list_tools()).tools}
            skills = await client.call_tool("list_skills", {})
            created = await client.call_tool(
                "create_task_file",
                {
                    "type": "social_post",
                    "fields": post,
                    "name": "from-claude",
                },
            )
            refused = await client.call_tool(
                "create_task_file",
                {"type": "social_post", "fields": post, "name": "../Approved/x"},
            )
            # Enqueued for the workers of `vaultd run`; the server runs nothing itself.
            run = await client.call_tool(
                "start_skill_run", {"skill_key": "post-social-media", "inputs": {"text": "Hi"}}
            )
            assert run.structured_content is not None, run.content
            assert run.structured_content["state"] == "queued"
            assert not skills.is_error and not created.is_error and refused.is_error
            refusal = "".join(b.text for b in refused.content if isinstance(b, TextContent))
            assert created.structured_content is not None
            return tools, client.server_info.name, created.structured_content, refusal

    tools, name, created, refusal = anyio.run(session)

    assert name == "vaultd"
    assert {"list_skills", "create_task_file", "start_skill_run", "read_run"} <= tools
    assert created["task_file"] == "Needs_Action/from-claude.md"
    assert files_in(vault_root, "Needs_Action") == ["from-claude.md"]  # the run is queued
    ok(vaultd("run", "--vault", vault_root, "--state-dir", state_dir, "--once"))
    pending = files_in(vault_root, "Pending_Approval")
    assert "from-claude.md" in pending and len(pending) == 2  # and the run's request
    assert files_in(vault_root, "Approved") == []
    assert "is not allowed" in refusal
    assert (state_dir / "ledger.sqlite3").is_file()  # the state stayed where it was told


def test_mcp_config_redirected_by_the_shell_says_to_use_output_which_leaves_no_file(
    vault_root: Path, tmp_path: Path
):
    missing = tmp_path / "vaultd.env"
    redirected = tmp_path / "redirected" / ".mcp.json"
    redirected.parent.mkdir()
    command = forkserver.command(
        ["mcp", "config", "--vault", str(vault_root), "--env-file", str(missing)]
    )
    with redirected.open("w", encoding="utf-8") as stdout:  # what `> .mcp.json` does
        shell = subprocess.run(
            command, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=30, check=False
        )

    assert shell.returncode == 1
    assert f"{missing}: env file not found" in shell.stderr
    assert "Use --output .mcp.json instead of `> .mcp.json`" in shell.stderr
    assert f"Your shell has already created {redirected}, empty: delete it" in shell.stderr

    project = tmp_path / "project"
    project.mkdir()
    output = project / ".mcp.json"
    refused = subprocess.run(
        [*command, "--output", str(output)], capture_output=True, text=True, timeout=30, check=False
    )
    assert refused.returncode == 1
    assert f"{missing}: env file not found" in refused.stderr
    assert list(project.iterdir()) == []  # nothing, not even an empty file

    missing.write_text("ODOO_URL=https://odoo.example\n", encoding="utf-8")
    written = subprocess.run(
        [*command, "--output", str(output)], capture_output=True, text=True, timeout=30, check=False
    )
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    assert "vaultd-odoo" in json.loads(output.read_text(encoding="utf-8"))["mcpServers"]


def test_vaultd_mcp_over_stdio_obeys_the_skills_and_reads_only_its_groups_runs(
    vault_root: Path, state_dir: Path
):
    """Two servers as Claude Code would start them: one without --group, one with finance.
    (Forked by the suite's fork server; the test above starts a fresh interpreter.)"""
    base = ["mcp", "--vault", str(vault_root), "--state-dir", str(state_dir)]

    def server(*groups: str) -> StdioServerParameters:
        flags = [flag for group in groups for flag in ("--group", group)]
        command, *args = forkserver.command([*base, *flags])
        return StdioServerParameters(command=command, args=args, env=dict(os.environ), cwd=REPO)

    invoice = {"partner": "Acme", "lines": [{"product": "X", "quantity": 1, "price_unit": 10}]}

    def text(result: Any) -> str:
        return "".join(b.text for b in result.content if isinstance(b, TextContent))

    async def calls() -> dict[str, Any]:
        async with Client(server(), mode="legacy", read_timeout_seconds=20) as client:
            refused = await client.call_tool(
                "create_task_file", {"type": "odoo_invoice", "fields": invoice}
            )
            post = await client.call_tool(
                "create_task_file",
                {"type": "social_post", "fields": {"platforms": ["facebook"], "text": "Hi"}},
            )
            run = await client.call_tool(
                "start_skill_run", {"skill_key": "post-social-media", "inputs": {"text": "Yo"}}
            )
        assert run.structured_content is not None and post.structured_content is not None
        run_id = run.structured_content["run_id"]
        async with Client(server("finance"), mode="legacy", read_timeout_seconds=20) as client:
            hidden = await client.call_tool("read_run", {"run_id": run_id})
            listed = await client.call_tool("list_runs", {})
        return {
            "refused": (refused.is_error, text(refused)),
            "post": post.structured_content,
            "hidden": (hidden.is_error, text(hidden)),
            "listed": listed.structured_content,
            "run_id": run_id,
        }

    async def session() -> dict[str, Any]:
        with anyio.fail_after(90):
            return await calls()

    found = anyio.run(session)
    is_error, refusal = found["refused"]
    assert is_error and "requires one of the groups finance" in refusal
    assert found["post"]["approval_required"] is True
    hidden_error, hidden = found["hidden"]  # worded as a run that does not exist
    assert hidden_error and hidden.endswith(f"no run {found['run_id']!r}")
    assert found["listed"] == {"runs": []}

    ok(vaultd("run", "--vault", vault_root, "--state-dir", state_dir, "--once"))
    pending = files_in(vault_root, "Pending_Approval")
    assert len(pending) == 2  # the post written directly, and the run's: neither by policy
    assert files_in(vault_root, "Done") == files_in(vault_root, "Approved") == []
