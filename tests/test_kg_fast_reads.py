"""The graph's faster reads answer exactly as the slower ones did: search ranks ties at the
edge of its limit by path, however many there are (daemon/agents/kg/fulltext.py), and the
evidence read in bulk is each subject's own, in order (daemon/agents/kg/rows.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import make_files

from daemon.agents.kg import fulltext, query
from daemon.agents.kg.build import rebuild
from daemon.agents.kg.graph import subject_of_edge, subject_of_node
from daemon.agents.kg.store import connect, kg_path


def built(tmp_path: Path, files: dict[str, str | bytes]) -> sqlite3.Connection:
    vault = tmp_path / "vault"
    make_files(vault, files)
    db = connect(kg_path(vault, tmp_path / "state"), create=True)
    rebuild(db, vault)
    return db


def one_statement(db: sqlite3.Connection, match: str, limit: int) -> list[tuple[str, float]]:
    rows = db.execute(fulltext._BY_SCORE_AND_PATH, (match, limit)).fetchall()
    return [(path, score) for _, path, score in rows]


# Twelve notes that score alike (the same words, the same length), in paths whose order is
# not the order they were written in, beside notes that score better and worse.
TIED = {f"{'zyxwvutsrqpo'[n]}/tie {n:02d}.md": "alpha beta gamma\n" for n in range(12)}
OTHERS = {
    "best.md": "alpha alpha alpha beta\n",
    "worse.md": "alpha beta " + "filler " * 40 + "\n",
    "only beta.md": "beta\n",
}


@pytest.mark.parametrize("margin", [0, 1, 2, 5, 500])
def test_search_breaks_ties_at_its_limit_by_path_as_one_statement_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, margin: int
):
    db = built(tmp_path, {**TIED, **OTHERS})
    monkeypatch.setattr(fulltext, "_MARGIN", margin)
    for text in ("alpha", "alpha beta", "beta", "gamma"):
        match = fulltext.match_of(text)
        for limit in range(1, 17):
            hits = [(hit.path, hit.score) for hit in fulltext.ranked(db, match, limit)]
            assert hits == one_statement(db, match, limit), (text, limit)


def test_search_snippets_are_those_one_statement_cuts(tmp_path: Path):
    db = built(tmp_path, {**TIED, **OTHERS})
    rows = db.execute(
        "SELECT path, snippet(search, 2, '[', ']', '…', 12) FROM search WHERE search MATCH ?"
        " ORDER BY bm25(search, 10.0, 1.0), path",
        ('"alpha"',),
    ).fetchall()
    results = query.search(db, "alpha", limit=100)
    assert [(r["path"], r["snippet"]) for r in results] == [
        (path, " ".join(snippet.split())) for path, snippet in rows
    ]


def test_a_search_that_matches_nothing_answers_nothing(tmp_path: Path):
    db = built(tmp_path, OTHERS)
    assert query.search(db, "nowhere", limit=5) == []


def test_the_evidence_of_a_neighborhood_is_each_subjects_own_in_order(tmp_path: Path):
    db = built(
        tmp_path,
        {
            "a.md": "---\npartner: Acme\ntags: [x]\n---\n[[b]] [[b#Part|alias]] #x\n#x again\n",
            "b.md": "---\npartner: ACME\n---\n[[a]] [[missing]]\n",
            "c.md": "[[Acme]] [[a]]\n",
        },
    )
    found = query.neighborhood(db, "a.md", depth=3)
    for item in found["nodes"]:
        assert item["evidence"] == one_by_one(db, subject_of_node(item["key"]))
    for item in found["edges"]:
        subject = subject_of_edge(item["src"], item["type"], item["field"], item["dst"])
        assert item["evidence"] == one_by_one(db, subject)
    assert all(item["evidence"] for item in [*found["nodes"], *found["edges"]])


def one_by_one(db: sqlite3.Connection, subject: str) -> list[dict[str, object]]:
    """The evidence of one subject, read alone and sorted by SQLite."""
    rows = db.execute(
        "SELECT note_key, path, sha256, line_start, line_end, quote, detail FROM evidence"
        " WHERE subject = ? ORDER BY path, line_start, line_end, detail, quote",
        (subject,),
    )
    return [
        {"note": n, "path": p, "sha256": s, "lines": [a, b], "quote": q}
        | (json.loads(d) if d else {})
        for n, p, s, a, b, q, d in rows
    ]


# The attack on the bulk reads: they must read through the views that hide a caller's
# unseen runs (reads.py), or a run's rows would come back as evidence of its task.


def test_the_bulk_reads_leave_out_a_hidden_run_and_every_row_it_states(tmp_path: Path):
    from test_kg_interfaces import Graph
    from test_review_kg_api import RUN, finance_run_with_a_task

    from daemon.agents.kg.reads import GraphReads

    graph = Graph(tmp_path)
    try:
        finance_run_with_a_task(graph)
        reads = GraphReads.of_app(graph.app)
        seen = reads.neighborhood("t-pay", depth=2)
        assert f"run:{RUN}" in json.dumps(seen)  # the graph holds it ...
        for hide in (set, lambda runs: {RUN}):
            for answer in (
                reads.neighborhood("t-pay", depth=3, hide=hide),
                reads.context("Needs_Action/payroll.md", depth=2, hide=hide),
            ):
                text = json.dumps(answer)
                assert RUN not in text and "pay-salaries" not in text  # ... but not for them
                rows = [
                    r for item in [*answer["nodes"], *answer["edges"]] for r in item["evidence"]
                ]
                assert rows and all(not r["note"].startswith("run:") for r in rows)
    finally:
        graph.close()


def test_a_name_is_looked_up_against_the_notes_there_are_now_not_those_of_the_last_question(
    tmp_path: Path,
):
    from daemon.agents.kg.store import KgError

    vault = tmp_path / "vault"
    db = built(tmp_path, {"a.md": "[[b]]\n"})
    with pytest.raises(KgError, match="missing"):
        query.find_node(db, "[[b]]")
    make_files(vault, {"y/b.md": "here\n"})
    rebuild(db, vault)
    assert query.find_node(db, "[[b]]") == "note:y/b.md"
    make_files(vault, {"x/B.md": "another b\n"})
    rebuild(db, vault)
    with pytest.raises(KgError, match="ambiguous"):
        query.find_node(db, "[[b]]")
    assert query.find_node(db, "[[x/b]]") == "note:x/B.md"
