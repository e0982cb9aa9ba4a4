"""MCP as an attacker's door: a task written with create_task_file obeys the skill behind
its action type, and carries an origin a copy cannot shed; runs are read by group.

The real MCP client talks to the real vault server; the real pipeline takes the files in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import StandInService, files_in, read_tree
from mcp.server.mcpserver import MCPServer
from test_mcp import answer, connected, process, refusal

from daemon.agents.mcp.vault_server import build_vault_server
from daemon.agents.skills.service import open_runs
from daemon.core.models import Action
from daemon.core.policy import Facts
from daemon.core.vault import Vault
from daemon.service.app import App, open_app

pytestmark = pytest.mark.anyio

POST = {"platforms": ["facebook"], "text": "Spring sale!"}
INVOICE = {
    "partner": "Acme Corp",
    "recurring": True,
    "lines": [{"product": "Consulting hour", "quantity": 1, "price_unit": 40}],
}
PAYMENT = {"invoice": "INV/2026/00042", "amount": 20}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class KnownOdoo(StandInService):
    """An Odoo that knows every partner and invoice: small recurring ones auto-approve."""

    def facts(self, action: Action) -> Facts:
        return Facts(partner_known=True, invoice_known=True)


def server(app: App, *groups: str) -> MCPServer:
    return build_vault_server(app, open_runs(app), groups=set(groups))


def tasks(app: App) -> dict[str, dict[str, Any]]:
    """The ledger's tasks by file name."""
    return {Path(row["file"]).name: row for row in app.ledger.rows("SELECT * FROM tasks")}


def app_with(root: Path, config: str) -> App:
    vault = root / "vault"
    Vault(vault).ensure_folders()
    path = root / "config.toml"
    path.write_text(config, encoding="utf-8")
    return open_app(vault, config_path=path, state_dir=root / "state")


def without_origin(text: str) -> str:
    """Return the note with its `origin` key taken out of the frontmatter."""
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    meta.pop("origin")
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}"


# -- the skill's guards --------------------------------------------------------------------


async def test_mcp_create_task_file_cannot_auto_post_what_the_skill_says_needs_approval(
    app: App, vault_root: Path
):
    async with connected(server(app)) as client:
        written = answer(
            await client.call_tool(
                "create_task_file", {"type": "social_post", "fields": POST, "name": "sale"}
            )
        )
    assert written["approval_required"] is True
    process(app)  # a scheduled post: the policy alone would approve it

    assert files_in(vault_root, "Pending_Approval") == ["sale.md"]
    assert files_in(vault_root, "Approved") == files_in(vault_root, "Done") == []
    task = tasks(app)["sale.md"]
    assert (task["approval"], task["rule"]) == ("required", "skill_requires_approval")
    assert "post-social-media" in task["reason"]
    assert task["origin"].startswith("mcp@")


async def test_the_skills_approval_holds_even_where_the_door_rule_is_switched_off(
    tmp_path: Path,
):
    app = app_with(tmp_path, "[policy]\nrequire_approval_from = []\n")
    try:
        async with connected(server(app)) as client:
            answer(
                await client.call_tool(
                    "create_task_file", {"type": "social_post", "fields": POST, "name": "sale"}
                )
            )
        process(app)
        assert tasks(app)["sale.md"]["rule"] == "skill_requires_approval"
    finally:
        app.close()


async def test_mcp_create_task_file_without_the_finance_group_cannot_write_an_invoice(
    app: App, vault_root: Path
):
    before = read_tree(vault_root)
    async with connected(server(app, "marketing")) as client:
        invoice = refusal(
            await client.call_tool("create_task_file", {"type": "odoo_invoice", "fields": INVOICE})
        )
        payment = refusal(
            await client.call_tool("create_task_file", {"type": "odoo_payment", "fields": PAYMENT})
        )
        # Refused before anything else is looked at: an invalid invoice says the same.
        invalid = refusal(
            await client.call_tool("create_task_file", {"type": "odoo_invoice", "fields": {}})
        )

    assert "skill create-invoice" in invoice and "requires one of the groups finance" in invoice
    assert "vaultd mcp --group finance" in invoice
    assert "skill register-payment" in payment and "finance" in payment
    assert "requires one of the groups finance" in invalid
    assert read_tree(vault_root) == before  # nothing written
    assert app.ledger.rows("SELECT * FROM door_origins") == []


async def test_with_the_finance_group_an_invoice_is_written_and_a_person_still_approves_it(
    app: App, vault_root: Path
):
    app.pipeline.connectors["odoo"] = KnownOdoo("odoo")
    async with connected(server(app, "finance")) as client:
        written = answer(
            await client.call_tool(
                "create_task_file", {"type": "odoo_invoice", "fields": INVOICE, "name": "acme"}
            )
        )
    process(app)  # small, recurring, known partner: the policy alone would approve it

    assert written["approval_required"] is True
    assert files_in(vault_root, "Pending_Approval") == ["acme.md"]
    task = tasks(app)["acme.md"]
    assert task["rule"] == "origin_requires_approval"
    assert "require_approval_from" in task["reason"]
    assert task["origin"].startswith("mcp:finance@")


async def test_without_the_door_rule_the_policy_decides_an_invoice_the_skill_leaves_to_it(
    tmp_path: Path,
):
    app = app_with(tmp_path, '[policy]\nrequire_approval_from = ["api"]\n')
    app.pipeline.connectors["odoo"] = KnownOdoo("odoo")
    try:
        async with connected(server(app, "finance")) as client:
            written = answer(
                await client.call_tool(
                    "create_task_file", {"type": "odoo_invoice", "fields": INVOICE, "name": "acme"}
                )
            )
        process(app)
        assert written["approval_required"] is False  # create-invoice leaves it to the policy
        task = tasks(app)["acme.md"]
        assert (task["approval"], task["rule"]) == ("auto_approved", "small_recurring")
        assert task["origin"].startswith("mcp:finance@")
    finally:
        app.close()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            {**INVOICE, "lines": [{"product": "X", "quantity": 1, "price_unit": 20000}]},
            "guardrail max_amount",
        ),
        ({**PAYMENT, "amount": 10001}, "guardrail max_amount"),
    ],
)
async def test_mcp_create_task_file_obeys_the_skills_guardrails(
    app: App, vault_root: Path, fields: dict[str, Any], problem: str
):
    kind = "odoo_invoice" if "lines" in fields else "odoo_payment"
    before = read_tree(vault_root)
    async with connected(server(app, "finance")) as client:
        refused = refusal(
            await client.call_tool("create_task_file", {"type": kind, "fields": fields})
        )
    assert problem in refused
    assert read_tree(vault_root) == before


async def test_a_missing_skill_means_a_person_approves_not_a_bypass(app: App, vault_root: Path):
    runs = open_runs(app)
    del runs.registry.skills["post-social-media"]  # skipped as invalid, say
    async with connected(build_vault_server(app, runs)) as client:
        written = answer(
            await client.call_tool(
                "create_task_file", {"type": "social_post", "fields": POST, "name": "sale"}
            )
        )
    process(app)
    assert written["approval_required"] is True
    task = tasks(app)["sale.md"]
    assert (task["approval"], task["rule"]) == ("required", "skill_missing")


# -- the origin, bound to the ledger ---------------------------------------------------------


async def test_an_mcp_task_file_copied_to_a_new_name_keeps_its_origin(app: App, vault_root: Path):
    async with connected(server(app)) as client:
        answer(
            await client.call_tool(
                "create_task_file", {"type": "social_post", "fields": POST, "name": "sale"}
            )
        )
    original = vault_root / "Needs_Action" / "sale.md"
    text = original.read_text(encoding="utf-8")
    (vault_root / "Needs_Action" / "copy.md").write_text(text, encoding="utf-8")
    original.write_text(without_origin(text), encoding="utf-8")  # the origin cut out in place
    process(app)
    # A copy that sheds the origin too (after: the policy would run it, then the others
    # would be repeats of it).
    (vault_root / "Needs_Action" / "bare copy.md").write_text(without_origin(text), "utf-8")
    process(app)

    found = tasks(app)
    assert sorted(found) == ["bare copy.md", "copy.md", "sale.md"]
    origin = found["sale.md"]["origin"]
    assert origin.startswith("mcp@")
    for name in ("sale.md", "copy.md"):  # the ledger binds the name and the token
        assert (found[name]["origin"], found[name]["rule"]) == (origin, "skill_requires_approval")
    # A copy that sheds the origin is a task like any file an agent drops: the policy's. It
    # gains nothing a fresh file would not (see the README, "MCP").
    assert found["bare copy.md"]["origin"] is None
    assert set(files_in(vault_root, "Pending_Approval")) >= {"sale.md", "copy.md"}


async def test_a_forged_door_origin_asks_a_person_and_records_nothing(app: App, vault_root: Path):
    forged = {"door": "api", "by": "apikey:boss", "step": "0123456789abcdef"}
    meta = {"type": "social_post", **POST, "origin": forged}
    text = f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\nFrom the boss, honestly.\n"
    (vault_root / "Needs_Action" / "forged.md").write_text(text, encoding="utf-8")
    process(app)

    task = tasks(app)["forged.md"]
    assert (task["approval"], task["rule"]) == ("required", "unverified_origin")
    assert task["origin"] is None  # the boss is not blamed


async def test_an_agent_cannot_pass_its_own_origin_as_a_field(app: App, vault_root: Path):
    before = read_tree(vault_root)
    fields = {**POST, "origin": {"door": "mcp", "by": "mcp:finance", "step": "00"}}
    async with connected(server(app)) as client:
        refused = refusal(
            await client.call_tool("create_task_file", {"type": "social_post", "fields": fields})
        )
    assert "origin" in refused
    assert read_tree(vault_root) == before


# -- runs, by group --------------------------------------------------------------------------


async def test_mcp_reads_only_runs_of_callers_that_share_one_of_its_groups(app: App):
    async with connected(server(app, "finance")) as client:
        mine = answer(
            await client.call_tool(
                "start_skill_run", {"skill_key": "post-social-media", "inputs": {"text": "A"}}
            )
        )
    async with connected(server(app)) as client:
        loner = answer(
            await client.call_tool(
                "start_skill_run", {"skill_key": "post-social-media", "inputs": {"text": "B"}}
            )
        )

    async with connected(server(app, "marketing")) as client:
        other = refusal(await client.call_tool("read_run", {"run_id": mine["run_id"]}))
        unknown = refusal(await client.call_tool("read_run", {"run_id": "run-20260101-00000000"}))
        listed = answer(await client.call_tool("list_runs", {}))["runs"]
        status = answer(await client.call_tool("vault_status", {}))
    async with connected(server(app, "finance", "ops")) as client:
        shared = answer(await client.call_tool("read_run", {"run_id": mine["run_id"]}))
        not_the_loners = refusal(await client.call_tool("read_run", {"run_id": loner["run_id"]}))
        finance_list = answer(await client.call_tool("list_runs", {}))["runs"]
    async with connected(server(app)) as client:
        own = answer(await client.call_tool("read_run", {"run_id": loner["run_id"]}))

    assert mine["requested_by"] == "mcp:finance" and loner["requested_by"] == "mcp"
    # Another group's run looks exactly like one that does not exist.
    assert other == unknown.replace("run-20260101-00000000", mine["run_id"])
    assert listed == [] and status["runs"] == []
    assert shared["run_id"] == mine["run_id"]
    assert "no run" in not_the_loners
    assert [run["run_id"] for run in finance_list] == [mine["run_id"]]
    assert own["run_id"] == loner["run_id"]
    assert json.dumps(own)  # plain JSON
