"""The knowledge graph for agents: `GET /api/v1/kg/…` on a real uvicorn server and the MCP
tools kg_neighborhood, kg_semantic_search and kg_fetch_context through the real MCP client
give the answer `vaultd kg … --json` gives; authenticated, read-only, and clear when asked
something the graph cannot answer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_files
from mcp import Client
from test_mcp import answer, refusal

from daemon.agents.api.keys import ApiKeyStore
from daemon.agents.api.server import ApiServer
from daemon.agents.kg.build import rebuild
from daemon.agents.kg.store import connect, kg_path
from daemon.agents.mcp.vault_server import build_vault_server
from daemon.agents.skills.service import open_runs
from daemon.cli.main import main
from daemon.core.settings import Settings
from daemon.core.vault import Vault
from daemon.service.app import App, open_app

SECRET = "kg-test-secret-" + "k" * 60
ACME = (
    "---\nid: inv-acme-1\ntype: note\npartner: Acme Corp\n---\n"
    "# Invoice plan\nBill [[Acme Corp]] #client\n"
)
NOTES = {
    "Plans/acme-invoice.md": ACME,
    "Clients/Acme.md": "# Acme\nOur oldest client. Winter sale partner.\n",
    "Plans/other.md": "# Other\nNothing about that company.\n",
}


class Graph:
    """A vault with a built graph, served over the REST API with one API key."""

    def __init__(self, root: Path, *, build: bool = True) -> None:
        vault = root / "vault"
        Vault(vault).ensure_folders()
        make_files(vault, NOTES)
        self.app: App = open_app(vault, state_dir=root / "state")
        self.index = kg_path(vault, root / "state")
        if build:
            db = connect(self.index, create=True)
            rebuild(db, vault)
            db.close()
        self.key = ApiKeyStore(self.app.ledger).create("agent", ["marketing"])
        self.server = ApiServer(
            self.app,
            open_runs(self.app),
            port=0,
            settings=Settings({"VAULTD_JWT_SECRET": SECRET}),
            access_log=False,
        )
        self.server.start()
        self.http = httpx.Client(
            base_url=self.server.url, timeout=30, headers={"X-API-Key": self.key}
        )

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/api/v1/kg/{path}", params=params)

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
        where = ["--vault", str(self.app.vault.root), "--state-dir", str(self.app.state_dir)]
        assert main(["kg", *args, *where, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.app.close()


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Graph]:
    made = Graph(tmp_path)
    yield made
    made.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def call(app: App, tool: str, arguments: dict[str, Any]) -> Any:
    async with Client(
        build_vault_server(app, open_runs(app)), mode="legacy", raise_exceptions=False
    ) as client:
        return await client.call_tool(tool, arguments)


@pytest.mark.anyio
async def test_the_partners_context_is_the_same_from_the_cli_the_api_and_mcp(
    graph: Graph, capsys: pytest.CaptureFixture[str]
):
    from_cli = graph.cli(capsys, "context", "Acme Corp")
    over_http = graph.get("context", ref="Acme Corp")
    assert over_http.status_code == 200, over_http.text
    over_mcp = answer(await call(graph.app, "kg_fetch_context", {"ref": "Acme Corp"}))
    assert from_cli == over_http.json() == over_mcp
    paths = {row["path"] for edge in over_mcp["edges"] for row in edge["evidence"]}
    assert "Plans/acme-invoice.md" in paths
    assert {row["stale"] for edge in over_mcp["edges"] for row in edge["evidence"]} == {False}

    # Editing the cited line marks that evidence stale, on every interface alike.
    note = graph.app.vault.root / "Plans/acme-invoice.md"
    note.write_text(ACME.replace("# Invoice plan\n", "# Invoice plan\nNew line.\n"), "utf-8")
    stale = answer(await call(graph.app, "kg_fetch_context", {"ref": "Acme Corp"}))
    assert graph.get("context", ref="Acme Corp").json() == stale
    cited = [r for e in stale["edges"] for r in e["evidence"] if r["path"] == note.name or
             r["path"] == "Plans/acme-invoice.md"]  # fmt: skip
    assert cited and all(r["stale"] for r in cited)


@pytest.mark.anyio
async def test_neighborhood_and_search_answer_as_the_cli_does(
    graph: Graph, capsys: pytest.CaptureFixture[str]
):
    near = graph.get("neighborhood", ref="inv-acme-1", depth=2)
    assert near.json() == graph.cli(capsys, "neighborhood", "inv-acme-1", "--depth", "2")
    tool = await call(graph.app, "kg_neighborhood", {"ref": "inv-acme-1", "depth": 2})
    assert answer(tool) == near.json()

    found = graph.get("search", q="winter sale").json()
    assert found["ranking"] == "full_text_bm25"  # no vectors: it says so
    assert found["results"] == graph.cli(capsys, "search", "winter sale")
    assert [r["path"] for r in found["results"]] == ["Clients/Acme.md"]
    tool = await call(graph.app, "kg_semantic_search", {"query": "winter sale"})
    assert answer(tool) == found


def test_every_kg_endpoint_wants_a_caller(graph: Graph):
    for path, params in [("context", {"ref": "x"}), ("neighborhood", {"ref": "x"}),
                         ("search", {"q": "x"})]:  # fmt: skip
        anonymous = httpx.get(f"{graph.server.url}/api/v1/kg/{path}", params=params)
        assert anonymous.status_code == 401, path
        forged = httpx.get(
            f"{graph.server.url}/api/v1/kg/{path}", params=params, headers={"X-API-Key": "vd_x"}
        )
        assert forged.status_code == 401, path


@pytest.mark.anyio
async def test_questions_the_graph_cannot_answer_get_a_status_and_a_reason(graph: Graph):
    missing = graph.get("context", ref="Nobody Ltd")
    assert missing.status_code == 404 and "Nobody Ltd" in missing.json()["error"]
    deep = graph.get("neighborhood", ref="inv-acme-1", depth=9)
    assert deep.status_code == 422 and deep.json()["problems"][0]["field"] == "query/depth"
    assert graph.get("search", q="!!!").status_code == 422  # no word to search for
    assert graph.get("search", q="x", limit=1000).status_code == 422
    assert graph.get("context").status_code == 422  # ref is required
    said = refusal(await call(graph.app, "kg_fetch_context", {"ref": "Nobody Ltd"}))
    assert "no node" in said


def test_a_vault_whose_graph_was_never_built_is_503_saying_how_to_build_it(tmp_path: Path):
    unbuilt = Graph(tmp_path, build=False)
    try:
        answer_ = unbuilt.get("search", q="acme")
        assert answer_.status_code == 503
        assert "vaultd kg rebuild" in answer_.json()["error"]
        assert str(tmp_path) not in answer_.text  # the state directory is not the caller's
        assert not unbuilt.index.exists()  # asking did not create an index
    finally:
        unbuilt.close()


@pytest.mark.anyio
async def test_a_hostile_agent_can_neither_write_the_graph_nor_read_outside_the_vault(
    graph: Graph, tmp_path: Path
):
    secret = tmp_path / "outside.md"
    secret.write_text("# Outside\nthe payroll password\n", encoding="utf-8")
    before = hashlib.sha256(graph.index.read_bytes()).hexdigest()
    hostile = [
        "../outside.md",
        "[[../outside]]",
        str(secret),
        "x'; DROP TABLE nodes; --",
        "note:../../outside.md",
    ]
    for ref in hostile:
        asked = graph.get("context", ref=ref)
        assert asked.status_code in (404, 422), (ref, asked.text)
        assert "payroll" not in asked.text
        said = await call(graph.app, "kg_fetch_context", {"ref": ref})
        assert said.is_error and "payroll" not in str(said.content)
    for query in ["payroll password", '" OR 1=1 --', "NEAR(password payroll)"]:
        found = graph.get("search", q=query)
        assert found.status_code == 200 and found.json()["results"] == [], query
    assert hashlib.sha256(graph.index.read_bytes()).hexdigest() == before
    assert graph.get("search", q="acme").json()["results"]  # the graph still answers


def test_a_bare_name_means_the_partner_even_beside_a_note_named_like_it(tmp_path: Path):
    # "Clients/Acme Corp.md" is how people keep a client; its [[link]] or path still names it.
    made = Graph(tmp_path)
    try:
        make_files(made.app.vault.root, {"Clients/Acme Corp.md": "# Acme Corp\nOur client.\n"})
        db = connect(made.index, create=True)
        rebuild(db, made.app.vault.root)
        db.close()
        assert made.get("context", ref="Acme Corp").json()["start"] == "partner:acme corp"
        assert made.get("context", ref="[[Acme Corp]]").json()["start"] == (
            "note:Clients/Acme Corp.md"
        )
        note = made.get("context", ref="Clients/Acme Corp.md").json()["start"]
        assert note == "note:Clients/Acme Corp.md"
    finally:
        made.close()
