"""Adversarial review of the knowledge graph's agent interfaces (REST /api/v1/kg/..., the MCP
kg_* tools), the graph keeper of `vaultd run`, and the ledger's retried open."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_files
from mcp import Client
from test_kg_interfaces import Graph, call
from test_mcp import answer

from daemon.agents.api.keys import ApiKeyStore
from daemon.agents.kg import build as kg_build
from daemon.agents.kg import ledger_source
from daemon.agents.kg.build import rebuild
from daemon.agents.kg.markdown import scan
from daemon.agents.kg.query import MAX_NODES
from daemon.agents.kg.reads import GraphReads
from daemon.agents.kg.store import KgError, connect
from daemon.agents.mcp.vault_server import build_vault_server
from daemon.agents.skills.service import open_runs
from daemon.core.ledger import Ledger
from daemon.core.ledger_schema import SCHEMA
from daemon.lifecycle.app import LEDGER_FILE
from daemon.service import graph_keeper
from daemon.service.graph_keeper import GraphKeeper

RUN = "run-20261201-0000f1n4"
NOW = "2026-12-01T10:00:00.000Z"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Graph]:
    made = Graph(tmp_path)
    yield made
    made.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rebuild_with_ledger(graph: Graph) -> None:
    db = connect(graph.index, create=True)
    try:
        rebuild(db, graph.app.vault.root, ledger=graph.app.state_dir / LEDGER_FILE)
    finally:
        db.close()


def finance_run_with_a_task(graph: Graph) -> None:
    """A run asked for by a caller of group `finance` (not the test key's `marketing`),
    which wrote the task file Needs_Action/payroll.md."""
    make_files(graph.app.vault.root, {"Needs_Action/payroll.md": "---\nid: t-pay\n---\nx\n"})
    ledger = graph.app.ledger
    with ledger.transaction() as db:
        db.execute(
            "INSERT INTO skill_runs (id, skill, inputs, state, attempt, created_at, updated_at)"
            " VALUES (?, 'pay-salaries', '{}', 'succeeded', 1, ?, ?)",
            (RUN, NOW, NOW),
        )
        db.execute(
            "INSERT INTO run_callers (run_id, requested_by, groups) VALUES (?, ?, ?)",
            (RUN, "apikey:finance-bot", '["finance"]'),
        )
    ledger.put_task(
        "t-pay",
        type="odoo_payment",
        file="Needs_Action/payroll.md",
        state="done",
        approval="human_approved",
        decided_at=NOW,
        origin=f"run:{RUN}:tok1",
        created_at=NOW,
    )
    rebuild_with_ledger(graph)


# Finding 1: the graph tells any caller about the runs of other groups.


@pytest.mark.anyio
async def test_a_caller_of_another_group_learns_nothing_of_a_run_through_the_graph(graph: Graph):
    finance_run_with_a_task(graph)
    # The run API hides the run from a `marketing` caller, as if it did not exist ...
    hidden = graph.http.get(f"/api/v1/runs/{RUN}")
    assert hidden.status_code == 404
    # ... and the graph must not tell it either: not by the run's key, not as a neighbour.
    direct = graph.get("neighborhood", ref=f"run:{RUN}")
    assert direct.status_code == 404, direct.text
    around = graph.get("neighborhood", ref="t-pay", depth=2)
    assert RUN not in around.text and "pay-salaries" not in around.text
    context = graph.get("context", ref="Needs_Action/payroll.md", depth=2)
    assert RUN not in context.text
    over_mcp = await call(graph.app, "kg_neighborhood", {"ref": "t-pay", "depth": 2})
    assert RUN not in str(over_mcp.content)
    # Worded exactly as a run the graph does not hold, so its id cannot be probed.
    other = "run-20261201-0000dead"
    unknown = graph.get("neighborhood", ref=f"run:{other}")
    assert unknown.status_code == 404
    assert direct.json()["error"].replace(RUN, other) == unknown.json()["error"]
    # A caller of the run's group still sees it.
    finance = ApiKeyStore(graph.app.ledger).create("finance-bot", ["finance"])
    seen = graph.http.get(
        "/api/v1/kg/neighborhood", params={"ref": "t-pay"}, headers={"X-API-Key": finance}
    )
    assert seen.status_code == 200 and f"run:{RUN}" in seen.text
    assert graph.http.get(f"/api/v1/runs/{RUN}", headers={"X-API-Key": finance}).is_success
    async with Client(
        build_vault_server(graph.app, open_runs(graph.app), groups={"finance"}),
        mode="legacy",
        raise_exceptions=False,
    ) as client:
        tool = await client.call_tool("kg_neighborhood", {"ref": "t-pay"})
    assert f"run:{RUN}" in str(answer(tool))


# Finding 2: a folder swapped for a symbolic link is followed when a note is read.


def outside_folder(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.md").write_text("# Notes\nthe payroll password is hunter2\n", "utf-8")
    return outside


def test_a_rebuild_never_reads_through_a_folder_swapped_for_a_link_after_the_walk(
    graph: Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """build.py: 'a link swapped in after the walk is not read either'. O_NOFOLLOW covers the
    file's own name only; a folder on its path swapped for a link is followed."""
    outside = outside_folder(tmp_path)
    vault = graph.app.vault.root
    make_files(vault, {"Plans/leak/notes.md": "# Notes\nharmless\n"})
    real_walk = kg_build.walk

    def walk_then_swap(root: Path) -> Iterator[kg_build.Entry]:
        for entry in real_walk(root):
            if entry.path == "Plans/leak/notes.md":  # the agent swaps the folder now
                shutil.rmtree(vault / "Plans/leak")
                (vault / "Plans/leak").symlink_to(outside)
            yield entry

    monkeypatch.setattr(kg_build, "walk", walk_then_swap)
    db = connect(graph.index, create=True)
    rebuild(db, vault)
    db.close()
    found = graph.get("search", q="payroll password")
    assert found.status_code == 200
    assert found.json()["results"] == [], found.text


def test_context_never_reads_through_a_folder_swapped_for_a_link(graph: Graph, tmp_path: Path):
    """fetch_context reads each cited note again, by its stored path; a folder of that path
    replaced by a link since the build makes it read (and hash, and search) a file outside
    the vault."""
    outside = outside_folder(tmp_path)
    vault = graph.app.vault.root
    make_files(vault, {"Plans/leak/notes.md": "# Notes\nthe payroll password is hunter2\n"})
    db = connect(graph.index, create=True)
    rebuild(db, vault)
    db.close()
    shutil.rmtree(vault / "Plans/leak")
    (outside / "notes.md").write_text("# Notes\nthe payroll password is hunter2\nmore\n", "utf-8")
    (vault / "Plans/leak").symlink_to(outside)
    asked = graph.get("context", ref="Plans/leak/notes.md")
    assert asked.status_code == 200, asked.text
    rows = [row for node in asked.json()["nodes"] for row in node["evidence"]]
    rows += [row for edge in asked.json()["edges"] for row in edge["evidence"]]
    assert rows
    for row in rows:  # the note is gone from the vault: it was not read from outside
        assert row["stale"] and row["now"]["path"] is None, row


# Finding 3: one context call re-walks the whole vault once per stale note with an id.


def test_one_context_call_walks_the_vault_once_however_many_notes_moved(
    graph: Graph, monkeypatch: pytest.MonkeyPatch
):
    vault = graph.app.vault.root
    many = 60
    hub = "# Hub\n" + "".join(f"[[n{i}]]\n" for i in range(many))
    make_files(vault, {"Plans/hub.md": hub})
    make_files(vault, {f"Plans/n{i}.md": f"---\nid: nid-{i}\n---\n# N{i}\n" for i in range(many)})
    db = connect(graph.index, create=True)
    rebuild(db, vault)
    db.close()
    for i in range(many):  # every note loses its id (or is moved elsewhere): all stale
        (vault / f"Plans/n{i}.md").write_text(f"# N{i}\nchanged\n", "utf-8")
    from daemon.agents.kg import context as kg_context

    walks = []
    real_walk = kg_context.walk

    def counted(root: Path) -> Iterator[kg_build.Entry]:
        walks.append(root)
        yield from real_walk(root)

    monkeypatch.setattr(kg_context, "walk", counted)
    started = time.monotonic()
    asked = graph.get("context", ref="Plans/hub.md")
    assert asked.status_code == 200, asked.text
    assert len(walks) <= 1, f"{len(walks)} walks of the vault, {time.monotonic() - started:.1f}s"


# Finding 5: two processes opening a ledger of an older vaultd at once: one fails to start.


def test_two_processes_bringing_an_older_ledger_up_to_date_at_once_both_open(tmp_path: Path):
    """A daemon and a CLI command started beside it (the case of commit 36ca5dd) on a ledger
    an older vaultd wrote: both read that `tasks` has no `origin` column before either adds
    it; the second ALTER then fails with "duplicate column name", which is no lock error."""
    path = tmp_path / "ledger.sqlite3"
    older = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    older.execute("PRAGMA journal_mode=WAL")
    older.executescript(SCHEMA)  # tasks without `origin`, as an older vaultd left it
    older.execute("BEGIN IMMEDIATE")  # the other process, upgrading the same ledger now
    opened: list[object] = []

    def open_beside() -> None:
        try:
            opened.append(Ledger(path))
        except Exception as error:  # noqa: BLE001 - the test reports it
            opened.append(error)

    beside = threading.Thread(target=open_beside)
    beside.start()
    time.sleep(0.5)  # it has read `tasks` and waits for the write lock to add `origin`
    older.execute("ALTER TABLE tasks ADD COLUMN origin TEXT")
    older.execute("COMMIT")
    beside.join(timeout=30)
    older.close()
    assert opened and isinstance(opened[0], Ledger), opened
    opened[0].close()


# Finding 6: the keeper reads the whole ledger again every refresh, changed or not.


def test_the_keeper_reads_the_ledger_again_only_when_it_changed(
    graph: Graph, monkeypatch: pytest.MonkeyPatch
):
    """read_ledger of a ledger with 10,000 invoices took 2.3 s of CPU in the daemon, every
    [kg] refresh_seconds (10 s); with 50,000 it took 13 s: the keeper never rested."""
    finance_run_with_a_task(graph)
    reads: list[Path] = []
    real = ledger_source.read_ledger

    def counted(path: Path) -> list[ledger_source.LedgerFact]:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(graph_keeper, "read_ledger", counted, raising=False)
    monkeypatch.setattr(kg_build, "read_ledger", counted)
    keeper = GraphKeeper(GraphReads.of_app(graph.app), 10)
    try:
        first = keeper.refresh()
        assert first is not None
        for _ in range(3):
            again = keeper.refresh()
            assert again is not None and not again.derived
        assert len(reads) == 1, f"the ledger was read {len(reads)} times, unchanged"
        # A change to the ledger is read at the next refresh, and shows in the graph.
        graph.app.ledger.put_task(
            "t-new", type="odoo_invoice", file="Done/t-new.md", state="done",
            approval="auto_approved", rule="small", decided_at=NOW, created_at=NOW,
        )  # fmt: skip
        changed = keeper.refresh()
        assert changed is not None and changed.derived and len(reads) == 2
        found = graph.get("neighborhood", ref="id:t-new")
        assert found.status_code == 200, found.text
    finally:
        keeper.stop()
        getattr(keeper, "_close_watch", lambda: None)()


# Finding 7: a task both approved and asked for by a run: one of its ledger rows is always stale.


def test_ledger_evidence_of_a_task_a_run_asked_for_is_not_stale_right_after_the_build(
    graph: Graph,
):
    """Its approval and its request cite the same `ledger:tasks/<id>`, hashed two ways (the
    task's row; the task's row with the run's skill): context kept one hash per place."""
    finance_run_with_a_task(graph)
    finance = ApiKeyStore(graph.app.ledger).create("finance-reader", ["finance"])
    asked = graph.http.get(
        "/api/v1/kg/context", params={"ref": "t-pay"}, headers={"X-API-Key": finance}
    )
    assert asked.status_code == 200, asked.text
    rows = [r for e in asked.json()["edges"] for r in e["evidence"] if r.get("source") == "ledger"]
    assert {(e["type"]) for e in asked.json()["edges"]} >= {"approved_by", "requested"}
    assert rows and [r for r in rows if r["stale"]] == [], rows


# Finding 8: every context call over the API read the whole ledger.


def test_a_context_call_reads_only_the_ledger_rows_it_cites(
    graph: Graph, monkeypatch: pytest.MonkeyPatch
):
    """kg_fetch_context read every approval and call of the ledger to check the few rows it
    cites (2.3 s of the daemon's CPU per call at 10,000 invoices, for any API caller)."""
    finance_run_with_a_task(graph)
    from daemon.agents.kg import context as kg_context

    def whole_ledger(path: Path) -> list[ledger_source.LedgerFact]:
        raise AssertionError(f"read the whole ledger {path}")

    monkeypatch.setattr(kg_context, "read_ledger", whole_ledger, raising=False)
    monkeypatch.setattr(ledger_source, "read_ledger", whole_ledger)
    finance = ApiKeyStore(graph.app.ledger).create("finance-reader", ["finance"])
    asked = graph.http.get(
        "/api/v1/kg/context", params={"ref": "t-pay"}, headers={"X-API-Key": finance}
    )
    assert asked.status_code == 200, asked.text
    rows = [r for e in asked.json()["edges"] for r in e["evidence"] if r.get("source") == "ledger"]
    assert rows and not any(r["stale"] for r in rows)
    graph.app.ledger.put_task("t-pay", reason="changed afterwards")
    later = graph.http.get(
        "/api/v1/kg/context", params={"ref": "t-pay"}, headers={"X-API-Key": finance}
    ).json()
    rows = [r for e in later["edges"] for r in e["evidence"] if r.get("source") == "ledger"]
    assert rows and all(r["stale"] and r["now"]["why"] == "the ledger row changed" for r in rows)


# Finding 9: a walk at depth 5 on a dense graph answers the whole graph.


def test_a_deep_walk_on_a_dense_graph_answers_a_bounded_part_and_says_so(graph: Graph):
    """2,000 notes tagged alike, ten links each: depth 5 from any note answered all 2,001
    nodes and 21,960 edges with their evidence, 7.9 MB built in 1.5 s per request, for any
    caller, as often as it asks (4 notes of a vault, 40 requests at once)."""
    vault = graph.app.vault.root
    many = 1200
    make_files(
        vault,
        {
            f"Plans/d{i}.md": f"# D{i}\n#dense\n"
            + "".join(f"[[d{(i * 7 + j * 13) % many}]]\n" for j in range(6))
            for i in range(many)
        },
    )
    db = connect(graph.index, create=True)
    rebuild(db, vault)
    db.close()
    asked = graph.get("neighborhood", ref="Plans/d0.md", depth=5)
    assert asked.status_code == 200, asked.text[:300]
    found = asked.json()
    assert len(found["nodes"]) <= MAX_NODES, (len(found["nodes"]), len(asked.content))
    assert found["truncated"] is True
    keys = {n["key"] for n in found["nodes"]}
    assert all(e["src"] in keys and e["dst"] in keys for e in found["edges"])
    small = graph.get("neighborhood", ref="inv-acme-1").json()
    assert small["truncated"] is False


# Finding 10: a vault that is briefly not there (moved, an unmounted drive) empties the graph.


def test_the_keeper_keeps_the_graph_of_a_vault_it_cannot_read_now(graph: Graph, tmp_path: Path):
    """The keeper's build walks the vault: a vault folder that is gone (renamed, moved by
    the user, a sync drive not mounted) is one unreadable folder, so every note is 'gone'
    and the graph is emptied, then read again in full when the vault is back."""
    keeper = GraphKeeper(GraphReads.of_app(graph.app), 10)
    vault = graph.app.vault.root
    assert graph.get("search", q="winter sale").json()["results"]
    vault.rename(tmp_path / "moved-away")
    try:
        with pytest.raises(KgError, match="cannot be read"):  # refused, not emptied
            keeper.refresh()
        found = graph.get("search", q="winter sale")
        assert found.status_code == 200 and found.json()["results"], found.text
    finally:
        (tmp_path / "moved-away").rename(vault)
        getattr(keeper, "_close_watch", lambda: None)()


# Finding 11: the REST API answers a secret a note quotes, which MCP redacts.

ODOO_KEY = "odoo-key-" + "s3cr3t" * 6


@pytest.fixture
def graph_with_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Graph]:
    monkeypatch.setenv("ODOO_API_KEY", ODOO_KEY)  # read by the redactor when the app opens
    made = Graph(tmp_path, build=False)
    make_files(
        made.app.vault.root,
        {"Plans/setup.md": f"# Odoo setup\nwinter key pasted by mistake: {ODOO_KEY}\n"},
    )
    db = connect(made.index, create=True)
    rebuild(db, made.app.vault.root)
    db.close()
    yield made
    made.close()


@pytest.mark.anyio
async def test_the_api_redacts_secrets_from_graph_answers_as_mcp_does(graph_with_a_secret: Graph):
    graph = graph_with_a_secret
    over_mcp = await call(graph.app, "kg_semantic_search", {"query": "winter key pasted"})
    assert ODOO_KEY not in str(over_mcp.content) and "[redacted]" in str(over_mcp.content)
    for path, params in [
        ("context", {"ref": "Plans/setup.md"}),
        ("neighborhood", {"ref": "Plans/setup.md"}),
        ("search", {"q": "winter key pasted"}),
    ]:
        asked = graph.get(path, **params)
        assert asked.status_code == 200, asked.text
        assert ODOO_KEY not in asked.text, path


# Finding 12: one small note freezes the daemon (the code-span regex backtracks cubically).


def test_a_note_of_backticks_is_read_in_linear_time():
    """`x ` + 1,000 backticks + `a`: extract took 7.7 s (2,000: 52 s), holding the GIL, so
    the keeper's refresh froze every thread of `vaultd run`: watcher, executor, API, lease."""
    started = time.monotonic()
    links, _ = scan("x " + "`" * 4000 + "a [[Real]]\n", 1)
    assert time.monotonic() - started < 1.0
    assert [link.target for link in links] == ["Real"]
    # Code spans are still no links: a run of backticks closes at the next run as long.
    links, _ = scan("``a ` [[No]] b`` [[Yes]] `[[No]]` ``c` [[Too]]\n", 1)
    assert [link.target for link in links] == ["Yes", "Too"]


def test_a_long_frontmatter_line_without_a_colon_is_read_in_linear_time():
    """_KEY_LINE backtracked quadratically on a frontmatter line with no colon (valid YAML
    in a flow sequence): 40 KB took 4.1 s, a note at the 4 MiB limit hours, GIL held."""
    from daemon.agents.kg.extract import extract

    data = ("---\nk: [a,\nb" + " " * 200_000 + "x]\nother: v\n---\n# t\n").encode()
    started = time.monotonic()
    facts = extract("Plans/long.md", data)
    assert time.monotonic() - started < 1.0
    assert facts.status == "indexed"
