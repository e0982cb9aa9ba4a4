"""fetch_context: neighbours with evidence checked against the vault as it is now (stale when
the note changed, and where the line went), and a note's identity kept when it moves."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from conftest import make_files

from daemon.agents.kg import query
from daemon.agents.kg.build import rebuild
from daemon.agents.kg.context import fetch_context
from daemon.agents.kg.store import connect, kg_path

PLAN = "---\nid: plan-7\npartner: Acme Corporation\n---\n# Plan\nWork with [[Acme Corp]] #client\n"


def built(tmp_path: Path, files: dict[str, str | bytes]) -> tuple[sqlite3.Connection, Path]:
    vault = tmp_path / "vault"
    make_files(vault, files)
    db = connect(kg_path(vault, tmp_path / "state"), create=True)
    rebuild(db, vault)
    return db, vault


def rows(found: dict[str, Any], dst: str) -> list[dict[str, Any]]:
    (edge,) = [e for e in found["edges"] if e["dst"] == dst]
    return list(edge["evidence"])


def test_evidence_of_an_unchanged_note_is_not_stale(tmp_path):
    db, vault = built(tmp_path, {"Plans/plan.md": PLAN, "Clients/Acme Corp.md": "x\n"})
    found = fetch_context(db, vault, "plan-7")
    assert found["source"] == "vault"
    every = [r for item in found["nodes"] + found["edges"] for r in item["evidence"]]
    assert len(every) >= 4
    assert {r["stale"] for r in every} == {False}
    assert all("now" not in r for r in every)


def test_editing_a_cited_line_marks_its_evidence_stale_and_says_where_the_line_is_now(tmp_path):
    db, vault = built(tmp_path, {"Plans/plan.md": PLAN, "Clients/Acme Corp.md": "x\n"})
    (vault / "Plans/plan.md").write_text(
        PLAN.replace("# Plan\n", "# Plan\nA new first paragraph.\n\n"), encoding="utf-8"
    )
    (link,) = rows(fetch_context(db, vault, "plan-7"), "note:Clients/Acme Corp.md")
    assert link["lines"] == [6, 6] and link["stale"] is True
    assert link["now"]["path"] == "Plans/plan.md"
    assert link["now"]["lines"] == [8, 8]
    assert link["now"]["why"] == "the note changed"

    (vault / "Plans/plan.md").write_text(PLAN.replace("[[Acme Corp]]", "nobody"), encoding="utf-8")
    (link,) = rows(fetch_context(db, vault, "plan-7"), "note:Clients/Acme Corp.md")
    assert link["now"]["lines"] is None
    assert link["now"]["why"] == "the note changed; the quoted line is no longer in it"


def test_a_moved_note_with_an_id_is_found_where_it_is_now_before_any_rebuild(tmp_path):
    db, vault = built(tmp_path, {"Plans/plan.md": PLAN, "Clients/Acme Corp.md": "x\n"})
    (vault / "Archive").mkdir()
    (vault / "Plans/plan.md").rename(vault / "Archive/plan.md")
    found = fetch_context(db, vault, "plan-7")
    (partner,) = rows(found, "partner:acme corporation")
    assert partner["stale"] is True
    assert partner["now"]["path"] == "Archive/plan.md"
    assert partner["now"]["lines"] == [3, 3]
    assert partner["now"]["why"] == "the note moved to Archive/plan.md"


def test_a_deleted_note_leaves_its_evidence_stale_with_nowhere_to_point(tmp_path):
    db, vault = built(tmp_path, {"a.md": "[[b]]\n", "b.md": "b\n"})
    (vault / "a.md").unlink()
    (edge,) = rows(fetch_context(db, vault, "b.md"), "note:b.md")
    assert edge["stale"] is True
    assert edge["now"] == {"path": None, "lines": None, "why": "the note is gone from this path"}


def test_a_note_with_a_vaultd_id_keeps_its_node_and_its_links_across_a_rename(tmp_path):
    db, vault = built(
        tmp_path,
        {"Needs_Action/task.md": "---\nid: task-42\n---\nbody\n", "ref.md": "see [[task]]\n"},
    )
    before = query.neighborhood(db, "task-42")
    (vault / "Done").mkdir()
    (vault / "Needs_Action/task.md").rename(vault / "Done/task.md")
    rebuild(db, vault)
    after = query.neighborhood(db, "task-42")
    assert before["start"] == after["start"] == "id:task-42"
    assert [(e["src"], e["dst"]) for e in after["edges"]] == [("note:ref.md", "id:task-42")]
    assert [(e["src"], e["dst"]) for e in before["edges"]] == [("note:ref.md", "id:task-42")]
    assert after["nodes"][0]["path"] == "Done/task.md"
    assert after["nodes"][0]["evidence"][0]["path"] == "Done/task.md"


def test_a_note_swapped_for_a_symlink_after_the_build_is_not_followed(tmp_path):
    db, vault = built(tmp_path, {"a.md": "[[b]]\n", "b.md": "b\n"})
    outside = tmp_path / "outside.md"
    outside.write_text("[[b]]\n", encoding="utf-8")  # the very bytes a.md had
    (vault / "a.md").unlink()
    (vault / "a.md").symlink_to(outside)
    (edge,) = rows(fetch_context(db, vault, "b.md"), "note:b.md")
    assert edge["stale"] is True
    assert edge["now"] == {"path": None, "lines": None, "why": "the note is gone from this path"}
