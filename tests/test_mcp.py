"""The MCP servers through the real `mcp` client, connected in memory to the server objects.

The vault server runs on a real vault, ledger and run service; the odoo and social servers
read the loopback Odoo, Graph API and X API stand-ins through vaultd's real transports.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import files_in, read_tree
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from standins.all import StandIns, running_all
from standins.odoo import FakeOdoo
from standins.x_api import Tweet

from daemon.agents.api.schemas import RunOut, SkillList, SkillOut
from daemon.agents.mcp.answers import guarded
from daemon.agents.mcp.odoo_server import build_odoo_server
from daemon.agents.mcp.social_server import build_social_server
from daemon.agents.mcp.vault_server import build_vault_server
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.service import open_runs
from daemon.cli.check import check_file
from daemon.cli.main import main
from daemon.cli.mcp import SERVER_NAMES
from daemon.core.audit import Redactor
from daemon.core.settings import Settings
from daemon.service.app import App
from daemon.service.runner import Runner

pytestmark = pytest.mark.anyio

VAULT_TOOLS = {
    "list_skills",
    "describe_skill",
    "create_task_file",
    "start_skill_run",
    "read_run",
    "list_runs",
    "list_pending_approvals",
    "vault_status",
    "kg_neighborhood",
    "kg_semantic_search",
    "kg_fetch_context",
}
# Words no tool name may contain: nothing here decides, executes or changes the world.
FORBIDDEN_WORDS = {"approve", "reject", "execute", "run_now", "move", "delete", "publish", "pay"}
POST = {"platforms": ["facebook", "twitter"], "text": "Our Q1 launch is live!"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def connected(server: MCPServer) -> AsyncIterator[Client]:
    """A real MCP client session (initialize handshake, JSON-RPC) to the server object."""
    async with Client(server, mode="legacy", raise_exceptions=False) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def answer(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    data: dict[str, Any] = result.structured_content
    assert json.loads(text_of(result)) == data  # the text block says the same, as JSON
    return data


def refusal(result: CallToolResult) -> str:
    assert result.is_error
    message = text_of(result)
    assert "Traceback" not in message
    return message


def process(app: App) -> None:
    Runner(app.pipeline, app.config).run_once()


def work(app: App) -> int:
    """Work the queue's due runs, as the workers of `vaultd run` do."""
    return Workers(open_runs(app), app.config.queue).drain()


@pytest.fixture
def vault_server(app: App) -> MCPServer:
    return build_vault_server(app, open_runs(app))


# -- the vault server ------------------------------------------------------------------------


async def test_the_vault_server_offers_its_tools_and_none_can_approve_or_execute(
    vault_server: MCPServer,
):
    async with connected(vault_server) as client:
        assert client.server_info is not None and client.server_info.name == "vaultd"
        tools = (await client.list_tools()).tools

    assert {tool.name for tool in tools} == VAULT_TOOLS
    for tool in tools:
        assert not FORBIDDEN_WORDS & set(tool.name.split("_")), tool.name
        assert tool.description
        assert tool.annotations is not None and tool.annotations.destructive_hint is not True


async def test_list_skills_and_describe_skill_show_the_built_in_skills(vault_server: MCPServer):
    async with connected(vault_server) as client:
        listed = answer(await client.call_tool("list_skills", {}))
        described = answer(await client.call_tool("describe_skill", {"key": "post-social-media"}))
        unknown = refusal(await client.call_tool("describe_skill", {"key": "post-to-myspace"}))

    keys = {skill["key"] for skill in listed["skills"]}
    assert keys == {"create-invoice", "generate-briefing", "post-social-media", "register-payment"}
    assert listed["skipped"] == []
    assert described["approval_required"] is True
    assert described["parameters"]["required"] == ["text"]
    assert described["builtin"] is True
    assert "no skill named 'post-to-myspace'" in unknown
    assert "post-social-media" in unknown  # the known ones are named


async def test_skill_tools_name_input_schema_intents_and_guardrails_as_the_api_does(
    vault_server: MCPServer,
):
    async with connected(vault_server) as client:
        listed = answer(await client.call_tool("list_skills", {}))["skills"]
        described = answer(await client.call_tool("describe_skill", {"key": "create-invoice"}))

    SkillList.model_validate({"skills": listed})  # each one a valid API answer
    for skill in listed:
        assert set(skill) == set(SkillOut.model_fields), skill["key"]  # the API's very names
        assert {"input_schema", "intents", "guardrails"} <= set(skill)
        assert skill["parameters"] == skill["input_schema"]  # the old name, for one release
    assert [skill for skill in listed if skill["key"] == "create-invoice"] == [described]
    assert described["guardrails"]["max_amount"] == "10000"
    assert "partner" in described["input_schema"]["properties"]


async def test_run_tools_give_run_id_state_output_and_trace_and_the_old_id(
    app: App, vault_server: MCPServer
):
    async with connected(vault_server) as client:
        started = answer(
            await client.call_tool(
                "start_skill_run", {"skill_key": "post-social-media", "inputs": {"text": "Hi"}}
            )
        )
        assert started["state"] == "queued"
        work(app)
        read = answer(await client.call_tool("read_run", {"run_id": started["run_id"]}))
        (listed,) = answer(await client.call_tool("list_runs", {}))["runs"]

    assert read == listed
    assert read["queue"]["tries"] == 1
    for run in (read, listed):
        RunOut.model_validate(run)  # a valid API answer, under the API's very names
        assert set(run) | {"queue"} == set(RunOut.model_fields)
        assert (run["run_id"], run["id"]) == (started["run_id"], started["run_id"])
        assert run["state"] == "awaiting_approval"
        assert "output" in run
        [step] = run["trace"]
        assert (step["tool"], step["state"]) == ("social.post", "requested")


async def test_create_task_file_writes_a_valid_task_into_needs_action(
    app: App, vault_server: MCPServer, vault_root: Path
):
    async with connected(vault_server) as client:
        written = answer(
            await client.call_tool(
                "create_task_file",
                {
                    "type": "social_post",
                    "fields": POST,
                    "body": "For the launch.",
                    "name": "q1 launch",
                },
            )
        )

    assert written["task_file"] == "Needs_Action/q1 launch.md"
    assert written["payload"]["platforms"] == ["facebook", "twitter"]
    path = vault_root / written["task_file"]
    assert check_file(path) == []  # valid exactly as `vaultd check` judges it
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\ntype: social_post\n")
    assert text.endswith("For the launch.\n")

    process(app)  # the real pipeline takes it through the lifecycle
    assert files_in(vault_root, "Needs_Action") == []
    assert files_in(vault_root, "Rejected") == []


async def test_create_task_file_never_overwrites_and_makes_a_unique_name(
    vault_server: MCPServer, vault_root: Path
):
    async with connected(vault_server) as client:
        first = answer(
            await client.call_tool(
                "create_task_file", {"type": "social_post", "fields": POST, "name": "post.md"}
            )
        )
        second = answer(
            await client.call_tool(
                "create_task_file", {"type": "social_post", "fields": POST, "name": "post.md"}
            )
        )
        unnamed = answer(
            await client.call_tool("create_task_file", {"type": "social_post", "fields": POST})
        )

    assert first["task_file"] == "Needs_Action/post.md"
    assert second["task_file"] == "Needs_Action/post (2).md"
    assert unnamed["task_file"].startswith("Needs_Action/social_post-")
    assert len(files_in(vault_root, "Needs_Action")) == 3


@pytest.mark.parametrize(
    ("task_type", "fields", "expected"),
    [
        ("social_post", {"platforms": ["facebook"]}, "text: missing"),
        (
            "social_post",
            {"platforms": ["instagram"], "text": "Hi"},
            "image_url: image_url is required when instagram is a platform",
        ),
        ("odoo_payment", {"invoice": "INV/2026/00042", "amount": -5}, "amount: "),
        ("odoo_invoice", {"partner": "Acme", "lines": [], "colour": "red"}, "colour: unknown"),
        # vaultd's own keys cannot be forged through a task file.
        ("social_post", {**POST, "approval": {"status": "approved"}}, "approval: unknown field"),
        ("social_post", {**POST, "status": "done"}, "status: unknown field"),
        ("social_post", {**POST, "type": "odoo_payment"}, "type: given twice"),
    ],
)
async def test_create_task_file_refuses_an_invalid_task_with_its_field_errors(
    app: App,
    vault_root: Path,
    task_type: str,
    fields: dict[str, Any],
    expected: str,
):
    before = read_tree(vault_root)
    # In the finance group, which the Odoo skills require: what is refused is the fields.
    finance = build_vault_server(app, open_runs(app), groups={"finance"})
    async with connected(finance) as client:
        result = await client.call_tool("create_task_file", {"type": task_type, "fields": fields})

    assert expected in refusal(result)
    assert read_tree(vault_root) == before  # nothing written anywhere


@pytest.mark.parametrize(
    "name",
    [
        "../Approved/post.md",
        "../../outside.md",
        "Approved/post.md",
        "..\\Approved\\post.md",
        "..",
        ".hidden.md",
        "/tmp/post.md",
        "post\n.md",
        "post.sync-conflict-20261201-ABC.md",
    ],
)
async def test_create_task_file_refuses_a_name_that_leaves_needs_action_or_hides(
    vault_server: MCPServer, vault_root: Path, name: str
):
    before = read_tree(vault_root)
    async with connected(vault_server) as client:
        result = await client.call_tool(
            "create_task_file", {"type": "social_post", "fields": POST, "name": name}
        )

    assert "is not allowed" in refusal(result)
    assert read_tree(vault_root) == before
    assert not (vault_root.parent / "outside.md").exists()


async def test_start_skill_run_of_a_post_awaits_approval_and_writes_the_task_file(
    app: App, vault_server: MCPServer, vault_root: Path
):
    async with connected(vault_server) as client:
        started = answer(
            await client.call_tool(
                "start_skill_run",
                {"skill_key": "post-social-media", "inputs": {"text": "Launch day!"}},
            )
        )
        run_id = started["id"]
        assert (started["state"], started["trace"]) == ("queued", [])
        assert files_in(vault_root, "Needs_Action") == []  # nothing ran inside the call
        work(app)  # the workers of `vaultd run`
        (step,) = answer(await client.call_tool("read_run", {"run_id": run_id}))["trace"]
        assert (vault_root / step["task_file"]).is_file()  # the request, as a task file
        assert step["task_file"].startswith("Needs_Action/post-social-media-")

        process(app)  # the pipeline asks a person: the skill requires approval

        read = answer(await client.call_tool("read_run", {"run_id": run_id}))
        runs = answer(await client.call_tool("list_runs", {"limit": 5}))
        pending = answer(await client.call_tool("list_pending_approvals", {}))
        status = answer(await client.call_tool("vault_status", {}))
        missing = refusal(await client.call_tool("read_run", {"run_id": "run-nope"}))

    assert started["requested_by"] == "mcp"
    assert read["state"] == "awaiting_approval"
    assert [run["id"] for run in runs["runs"]] == [run_id]
    assert len(pending["pending"]) == 1 and pending["more"] == 0
    request = pending["pending"][0]
    assert request["file"].startswith("Pending_Approval/post-social-media-")
    assert request["rule"] == "skill_requires_approval"
    assert status["counts"]["Pending_Approval"] == 1
    assert [run["id"] for run in status["runs"]] == [run_id]
    assert "no run 'run-nope'" in missing


async def test_start_skill_run_refuses_bad_inputs_unknown_skills_and_missing_groups(
    app: App, vault_server: MCPServer, vault_root: Path
):
    invoice = {
        "partner": "Acme Corp",
        "lines": [{"product": "CONS", "quantity": 1, "price_unit": 10}],
    }
    async with connected(vault_server) as client:
        bad = refusal(
            await client.call_tool(
                "start_skill_run",
                {"skill_key": "post-social-media", "inputs": {"platforms": ["myspace"]}},
            )
        )
        unknown = refusal(await client.call_tool("start_skill_run", {"skill_key": "nope"}))
        forbidden = refusal(
            await client.call_tool(
                "start_skill_run", {"skill_key": "create-invoice", "inputs": invoice}
            )
        )

    assert "inputs for post-social-media" in bad and "text" in bad
    assert "no skill named 'nope'" in unknown
    assert "requires one of the groups finance" in forbidden
    assert files_in(vault_root, "Needs_Action") == []

    finance = build_vault_server(app, open_runs(app), groups={"finance"})
    async with connected(finance) as client:
        started = answer(
            await client.call_tool(
                "start_skill_run", {"skill_key": "create-invoice", "inputs": invoice}
            )
        )
    assert started["state"] == "queued"
    work(app)
    assert len(files_in(vault_root, "Needs_Action")) == 1


# -- the odoo server -------------------------------------------------------------------------


def seed_invoices(odoo: FakeOdoo) -> dict[str, int]:
    """Through the stand-in's ORM: Blue Cafe with a paid, an unpaid and a draft invoice."""
    cafe = odoo.execute(
        "res.partner", "create", [{"name": "Blue Cafe", "email": "hi@blue.cafe"}], {}
    )
    ids = {}
    for key, day, price in (
        ("paid", "2026-10-01", 40.0),
        ("unpaid", "2026-11-01", 45.5),
        ("draft", "2026-11-20", 10.0),
    ):
        line = [0, 0, {"quantity": 1, "price_unit": price}]
        values = {"partner_id": cafe, "move_type": "out_invoice", "invoice_line_ids": [line]}
        values |= {"invoice_date": day, "invoice_date_due": "2026-11-15"}
        ids[key] = odoo.execute("account.move", "create", [values], {})
        if key != "draft":
            odoo.execute("account.move", "action_post", [[ids[key]]], {})
    odoo.records["account.move"][ids["paid"]].update(payment_state="paid", amount_residual=0.0)
    return ids


@pytest.fixture
def standins() -> Iterator[StandIns]:
    with running_all() as running:
        yield running


@pytest.mark.parametrize("protocol", ["xmlrpc", "json2"])
async def test_the_odoo_server_reads_partners_invoices_and_unpaid_invoices(
    standins: StandIns, protocol: str
):
    ids = seed_invoices(standins.odoo.odoo)
    settings = Settings({**standins.env(), "ODOO_PROTOCOL": protocol})
    server = build_odoo_server(settings)
    async with connected(server) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        partners = answer(await client.call_tool("partners", {"name": "cafe"}))
        invoices = answer(await client.call_tool("invoices", {"partner": "Blue"}))
        posted = answer(await client.call_tool("invoices", {"state": "posted"}))
        unpaid = answer(await client.call_tool("unpaid_invoices", {}))
        nobody = answer(await client.call_tool("invoices", {"partner": "Nobody"}))

    assert tools == {"partners", "invoices", "unpaid_invoices"}
    assert partners["partners"] == [
        {
            "id": partners["partners"][0]["id"],
            "name": "Blue Cafe",
            "email": "hi@blue.cafe",
            "is_company": False,
        }
    ]
    assert [i["id"] for i in invoices["invoices"]] == [ids["draft"], ids["unpaid"], ids["paid"]]
    assert {i["id"] for i in posted["invoices"]} == {ids["unpaid"], ids["paid"]}
    (due,) = unpaid["invoices"]
    assert due["id"] == ids["unpaid"] and due["number"] == "INV/2026/00002"
    assert due["partner"] == "Blue Cafe" and due["amount_due"] == 45.5
    assert due["overdue"] is (datetime.now(UTC).date().isoformat() > "2026-11-15")
    assert due["url"].startswith(standins.odoo.url)
    assert unpaid["total_due"] == {"USD": 45.5}
    assert nobody["invoices"] == []
    assert (
        standins.odoo.odoo.calls["account.move.create"] == 3
    )  # ours only: the server wrote nothing
    writes = {call for call in standins.odoo.odoo.calls if not call.endswith("search_read")}
    assert writes <= {"res.partner.create", "account.move.create", "account.move.action_post"}


async def test_the_odoo_server_answers_clearly_and_without_secrets_when_it_cannot_read(
    standins: StandIns,
):
    wrong = Settings({**standins.env(), "ODOO_PASSWORD": "not-the-password-4711"})
    async with connected(build_odoo_server(wrong)) as client:
        refused = refusal(await client.call_tool("partners", {"name": "Acme"}))
    async with connected(build_odoo_server(Settings({}))) as client:
        unset = refusal(await client.call_tool("unpaid_invoices", {}))

    assert "Odoo refused the login 'admin'" in refused
    assert "not-the-password-4711" not in refused
    assert (
        "Odoo is not configured: missing ODOO_URL, ODOO_DB, ODOO_USERNAME, ODOO_PASSWORD" in unset
    )


# -- the social server -----------------------------------------------------------------------


async def test_the_social_server_reads_recent_facebook_and_x_posts(standins: StandIns):
    standins.graph.seed_post("Older news", timedelta(days=2))
    newest = standins.graph.seed_post("Fresh news", timedelta(hours=1))
    now = datetime.now(UTC)
    standins.x.state.tweets += [
        Tweet("1800000000000000001", "First tweet", now - timedelta(days=1)),
        Tweet("1800000000000000002", "Second tweet", now - timedelta(hours=1)),
    ]
    server = build_social_server(Settings(standins.env()))
    async with connected(server) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        facebook = answer(await client.call_tool("facebook_posts", {"limit": 5}))
        x = answer(await client.call_tool("x_posts", {"limit": 1}))
        wrong_limit = refusal(await client.call_tool("x_posts", {"limit": 0}))

    assert tools == {"facebook_posts", "x_posts"}
    assert [p["message"] for p in facebook["posts"]] == ["Fresh news", "Older news"]
    assert facebook["posts"][0]["id"] == newest
    assert x["account"] == "@vaultd_test"
    assert [p["text"] for p in x["posts"]] == ["Second tweet"]
    assert x["posts"][0]["url"].endswith("/1800000000000000002")
    assert "limit" in wrong_limit
    assert standins.graph.publishing_posts() == 0 and standins.x.state.posts() == 0
    output = json.dumps([facebook, x])
    for secret in (standins.graph.token, standins.env()["TWITTER_ACCESS_SECRET"]):
        assert secret not in output


async def test_the_social_server_names_what_is_missing_and_hides_the_token(standins: StandIns):
    env = standins.env()
    async with connected(build_social_server(Settings({}))) as client:
        unset = refusal(await client.call_tool("facebook_posts", {}))
    bad_token = Settings({**env, "FACEBOOK_PAGE_TOKEN": "EAAG-wrong-token-0042"})
    async with connected(build_social_server(bad_token)) as client:
        refused = refusal(await client.call_tool("facebook_posts", {}))

    assert "Facebook is not configured: missing FACEBOOK_PAGE_ID, FACEBOOK_PAGE_TOKEN" in unset
    assert "Invalid OAuth access token" in refused
    assert "EAAG-wrong-token-0042" not in refused


# -- vaultd mcp config ------------------------------------------------------------------------


def test_mcp_config_prints_the_three_servers_without_secrets(
    vault_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    env_file = tmp_path / "vaultd.env"
    secrets = {"ODOO_PASSWORD": "odoo-canary-3141", "FACEBOOK_PAGE_TOKEN": "fb-canary-2718"}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()), encoding="utf-8")

    code = main(["mcp", "config", "--vault", str(vault_root), "--env-file", str(env_file)])

    out = capsys.readouterr().out
    assert code == 0
    servers = json.loads(out)["mcpServers"]
    assert set(servers) == {"vaultd", "vaultd-odoo", "vaultd-social"}
    for name, server in servers.items():
        assert Path(server["command"]).is_absolute()
        args = server["args"]
        assert args[args.index("--vault") + 1] == str(vault_root.resolve())
        assert args[args.index("--env-file") + 1] == str(env_file)
        assert "env" not in server
        service = args[args.index("--service") + 1] if "--service" in args else "vault"
        assert name == SERVER_NAMES[service]
    for name, value in secrets.items():
        assert value not in out
        assert name not in os.environ  # the settings were not even read


def test_mcp_config_refuses_an_env_file_inside_the_vault(
    vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    inside = vault_root / "secrets.env"
    inside.write_text("ODOO_PASSWORD=whatever\n", encoding="utf-8")

    code = main(["mcp", "config", "--vault", str(vault_root), "--env-file", str(inside)])

    assert code == 1
    assert "must be outside the vault" in capsys.readouterr().err
    missing = main(["mcp", "config", "--vault", str(vault_root), "--env-file", "/nonexistent.env"])
    assert missing == 1
    assert "env file not found" in capsys.readouterr().err


# -- every tool's answers ---------------------------------------------------------------------


async def test_a_tool_that_crashes_answers_a_redacted_message_and_no_traceback():
    server = MCPServer("crashy")

    @server.tool()
    @guarded(Redactor(["canary-secret-9876"]))
    def crash() -> dict[str, Any]:
        """Fails the way a library might, with a secret in its message."""
        raise RuntimeError("connect to https://user:canary-secret-9876@odoo.example failed")

    @server.tool()
    @guarded(Redactor(["canary-secret-9876"]))
    def leak() -> dict[str, Any]:
        """Answers with a secret in its output."""
        return {"url": "https://odoo.example/?key=canary-secret-9876", "password": "x"}

    async with connected(server) as client:
        crashed = refusal(await client.call_tool("crash", {}))
        leaked = answer(await client.call_tool("leak", {}))

    assert "crash failed unexpectedly: RuntimeError: connect to https://user:" in crashed
    assert "canary-secret-9876" not in crashed
    assert leaked == {"url": "https://odoo.example/?key=[redacted]", "password": "[redacted]"}
