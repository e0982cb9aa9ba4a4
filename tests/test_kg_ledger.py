"""The ledger as a source of the knowledge graph (issue 15, item 2): who approved a task, what
it became at its service, which run asked for it; each edge with the ledger row it came from
as evidence, joined to the task's note by its vaultd id.

The attacks: a result that names no remote object, a dry-run that sent nothing (no edge
may claim it did), a ledger row changed after the build (its evidence is stale), and a
ledger that changes while the vault does not (the graph must follow).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from conftest import make_files

from daemon.agents.kg import query
from daemon.agents.kg.build import rebuild
from daemon.agents.kg.context import fetch_context
from daemon.agents.kg.graph import subject_of_edge, subject_of_node
from daemon.agents.kg.store import connect, kg_path
from daemon.agents.skills.store import RunStore
from daemon.core import ledger
from daemon.core.ledger import Ledger


def edges(db: sqlite3.Connection) -> set[tuple[str, str, str, str]]:
    return {tuple(row) for row in db.execute("SELECT src, type, field, dst FROM edges")}


def book(state: Path) -> Ledger:
    books = Ledger(state / "ledger.sqlite3")
    RunStore(books)  # the skill runs' tables, as a daemon has them
    return books


def invoice_task(books: Ledger, task_id: str, result: dict, *, origin: str | None = None):
    books.put_task(
        task_id,
        type="odoo_invoice",
        file=f"Done/{task_id}.md",
        state=ledger.DONE,
        payload_hash="sha256:x" + task_id,
        approval="auto_approved",
        rule="small_known_partner",
        reason="under 100 USD to a known, recurring partner",
        decided_at="2026-11-30T10:00:00.000Z",
        **({"origin": origin} if origin else {}),
    )
    run = books.start_run(task_id, "sha256:x" + task_id, dry_run=bool(result.get("dry_run")))
    step = books.record_intent(run, task_id, "odoo", f"vaultd:{task_id}:odoo", {"m": 1})
    books.finish_step(step, ledger.SUCCEEDED, result=result, duration_ms=5)


def test_approvals_executions_and_requests_join_the_notes_with_the_ledger_rows_as_evidence(
    tmp_path: Path,
):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"Done/t1.md": "---\nid: t1\ntype: odoo_invoice\n---\nInvoice for Acme\n"})
    books = book(state)
    invoice_task(books, "t1", {"number": "INV/2026/0007", "url": "http://odoo/inv/7"})
    invoice_task(books, "t2", {"dry_run": True, "number": "INV/DRY"})  # sent nothing
    invoice_task(books, "t3", {"state": "posted"})  # names nothing it made
    now = "2026-11-30T10:00:00.000Z"
    with books.transaction() as db:
        db.execute(
            "INSERT INTO skill_runs (id, skill, inputs, state, attempt, created_at, updated_at)"
            " VALUES ('run-20261130-0000abcd', 'create-invoice', '{}', 'succeeded', 1, ?, ?)",
            (now, now),
        )
    books.put_task("t1", origin="run:run-20261130-0000abcd:tok1")
    books.close()
    db = connect(kg_path(vault, state), create=True)
    rebuild(db, vault, ledger=state / "ledger.sqlite3")
    found = edges(db)
    assert ("id:t1", "approved_by", "small_known_partner", "actor:policy") in found
    assert ("id:t1", "executed_as", "odoo", "remote:odoo:INV/2026/0007") in found
    assert ("run:run-20261130-0000abcd", "requested", "", "id:t1") in found
    assert not [e for e in found if e[0] in ("id:t2", "id:t3") and e[1] == "executed_as"]
    # The task's note keeps its node: the ledger's edges join it, they do not replace it.
    (kind,) = db.execute("SELECT type FROM nodes WHERE key = 'id:t1'").fetchone()
    assert kind == "note"
    (kind,) = db.execute("SELECT type FROM nodes WHERE key = 'id:t2'").fetchone()
    assert kind == "task"  # no note of it in the vault
    near = query.neighborhood(db, "id:t1", depth=1)
    executed = [e for e in near["edges"] if e["type"] == "executed_as"]
    (evidence,) = executed[0]["evidence"]
    assert evidence["path"].startswith("ledger:steps/")
    assert "INV/2026/0007" in evidence["quote"] and "http://odoo/inv/7" in evidence["quote"]
    # Every node and edge has evidence.
    cited = {row[0] for row in db.execute("SELECT subject FROM evidence")}
    assert {subject_of_node(k) for (k,) in db.execute("SELECT key FROM nodes")} <= cited
    assert {subject_of_edge(*e) for e in found} <= cited


def test_a_ledger_that_changed_is_derived_again_though_no_note_did(tmp_path: Path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"Done/t1.md": "---\nid: t1\n---\n"})
    books = book(state)
    db = connect(kg_path(vault, state), create=True)
    rebuild(db, vault, ledger=state / "ledger.sqlite3")
    assert not [e for e in edges(db) if e[1] == "executed_as"]
    invoice_task(books, "t1", {"number": "INV/2026/0008"})
    report = rebuild(db, vault, ledger=state / "ledger.sqlite3")
    assert report.derived and report.extracted == 0
    assert ("id:t1", "executed_as", "odoo", "remote:odoo:INV/2026/0008") in edges(db)
    assert not rebuild(db, vault, ledger=state / "ledger.sqlite3").derived  # nothing new
    books.close()


def test_ledger_evidence_goes_stale_when_its_row_changes(tmp_path: Path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"Done/t1.md": "---\nid: t1\n---\n"})
    books = book(state)
    invoice_task(books, "t1", {"number": "INV/2026/0009"})
    db = connect(kg_path(vault, state), create=True)
    path = state / "ledger.sqlite3"
    rebuild(db, vault, ledger=path)
    fresh = fetch_context(db, vault, "id:t1", ledger=path)
    rows = [r for e in fresh["edges"] for r in e["evidence"] if r["path"].startswith("ledger:")]
    assert rows and not any(r["stale"] for r in rows)
    books.put_task("t1", reason="changed afterwards")
    later = fetch_context(db, vault, "id:t1", ledger=path)
    approved = [e for e in later["edges"] if e["type"] == "approved_by"]
    (row,) = approved[0]["evidence"]
    assert row["stale"] and row["now"]["why"] == "the ledger row changed"
    books.close()


def test_the_export_with_the_ledger_is_the_same_bytes_from_two_builds(tmp_path: Path):
    """Two machines with the same vault and the same ledger (a copy) export the same bytes:
    nothing of when or where the graph was built is in it."""
    books = book(tmp_path / "made")
    invoice_task(books, "t1", {"number": "INV/2026/0010"})
    books.close()
    exports = []
    for name, notes in (("one", ["Done/t1.md", "a.md"]), ("two", ["a.md", "Done/t1.md"])):
        vault, state = tmp_path / name / "vault", tmp_path / name / "state"
        for note in notes:  # written in another order
            make_files(vault, {note: "---\nid: t1\n---\n" if "t1" in note else "[[t1]]\n"})
        state.mkdir(parents=True)
        shutil.copy(tmp_path / "made" / "ledger.sqlite3", state / "ledger.sqlite3")
        db = connect(kg_path(vault, state), create=True)
        rebuild(db, vault, ledger=state / "ledger.sqlite3")
        exports.append("".join(query.export_lines(db)))
    assert exports[0] == exports[1]
    assert "remote:odoo:INV/2026/0010" in exports[0]


def test_a_landed_code_task_is_joined_to_its_commits_and_nothing_else_claims_a_landing(
    tmp_path: Path,
):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"Done/c1.md": "---\nid: c1\ntype: code_task\n---\nFix the footer\n"})
    books = book(state)
    sha = "a" * 40
    for task_id, result in [
        ("c1", {"target": "main", "head": sha, "commits": [sha, "b" * 40]}),
        ("c2", {"target": "main", "dry_run": True, "commits": ["c" * 40]}),  # landed nothing
        ("c3", {"target": "main", "commits": ["../../etc", "not-a-sha", 7]}),  # no commit ids
    ]:
        books.put_task(task_id, type="code_task", file=f"Done/{task_id}.md", state=ledger.DONE,
                       payload_hash="sha256:" + task_id)  # fmt: skip
        run = books.start_run(task_id, "sha256:" + task_id, dry_run=bool(result.get("dry_run")))
        step = books.record_intent(run, task_id, "git", f"vaultd:{task_id}:git", {"m": 1})
        books.finish_step(step, ledger.SUCCEEDED, result=result, duration_ms=5)
    books.close()
    db = connect(kg_path(vault, state), create=True)
    rebuild(db, vault, ledger=state / "ledger.sqlite3")
    landed = {e for e in edges(db) if e[1] == "landed_as"}
    assert landed == {("id:c1", "landed_as", "main", f"commit:{sha}"),
                      ("id:c1", "landed_as", "main", f"commit:{'b' * 40}")}  # fmt: skip
    (label,) = db.execute("SELECT label FROM nodes WHERE key = ?", (f"commit:{sha}",)).fetchone()
    assert label == sha[:12]
    near = fetch_context(db, vault, "id:c1", ledger=state / "ledger.sqlite3")
    rows = [r for e in near["edges"] if e["type"] == "landed_as" for r in e["evidence"]]
    assert rows and all((not r["stale"] and f"commit {sha}" in r["quote"]) or "b" * 40 in r["quote"]
                        for r in rows)  # fmt: skip
