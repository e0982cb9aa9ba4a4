"""Building the graph's index from a real vault: what is read, what is not, what a hostile
vault cannot make it do, and evidence on every node and edge."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import make_files, read_tree

from daemon.agents.kg import query
from daemon.agents.kg.build import BuildReport, rebuild, walk
from daemon.agents.kg.store import connect, kg_path
from daemon.core.errors import ConfigError


def build(
    vault: Path, state: Path, *, full: bool = False
) -> tuple[sqlite3.Connection, BuildReport]:
    db = connect(kg_path(vault, state), create=True)
    return db, rebuild(db, vault, full=full)


def edge(db: sqlite3.Connection, src: str, dst_label: str) -> tuple[str, str, str]:
    return db.execute(
        "SELECT e.dst, e.status, e.reason FROM edges e JOIN nodes n ON n.key = e.dst"
        " WHERE e.src = ? AND n.label = ?",
        (src, dst_label),
    ).fetchone()


def test_unchanged_notes_are_not_read_again_and_same_bytes_are_not_parsed_again(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"a.md": "[[b]]\n", "b.md": "#tag\n", "c.md": "plain\n"})
    db, first = build(vault, state)
    assert sorted(first.read_paths) == ["a.md", "b.md", "c.md"]
    _, again = build(vault, state)
    assert (again.read_paths, again.unchanged, again.derived) == ([], 3, False)

    os.utime(vault / "b.md", ns=(1, 1))  # touched: opened, hashed, not parsed
    (vault / "c.md").write_text("changed [[a]]\n", encoding="utf-8")
    _, third = build(vault, state)
    assert sorted(third.read_paths) == ["b.md", "c.md"]
    assert (third.same_content, third.extracted, third.derived) == (1, 1, True)
    assert edge(db, "note:c.md", "a")[:2] == ("note:a.md", "resolved")

    _, forced = build(vault, state, full=True)
    assert sorted(forced.read_paths) == ["a.md", "b.md", "c.md"]


def test_a_link_to_a_missing_note_is_kept_and_resolves_when_the_note_appears(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"a.md": "see [[Later Idea]]\n"})
    db, _ = build(vault, state)
    assert edge(db, "note:a.md", "Later Idea") == (
        "unresolved:later idea",
        "missing",
        "no note of this name",
    )
    make_files(vault, {"Inbox/later idea.md": "here now\n"})
    _, report = build(vault, state)
    assert report.read_paths == ["Inbox/later idea.md"]  # a.md is not read again
    assert edge(db, "note:a.md", "later idea")[:2] == ("note:Inbox/later idea.md", "resolved")
    assert db.execute("SELECT count(*) FROM nodes WHERE type = 'unresolved'").fetchone() == (0,)


def test_an_embed_of_an_attachment_resolves_when_the_file_appears(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"a.md": "![[chart.png]]\n"})
    db, _ = build(vault, state)
    assert edge(db, "note:a.md", "chart.png")[1] == "missing"
    make_files(vault, {"img/chart.png": b"\x89PNG"})
    _, report = build(vault, state)
    assert (report.read_paths, report.derived) == ([], True)
    assert edge(db, "note:a.md", "chart.png")[:2] == ("file:img/chart.png", "resolved")


def test_a_symlink_out_of_the_vault_is_skipped_and_never_read(tmp_path):
    vault, state, outside = tmp_path / "vault", tmp_path / "state", tmp_path / "outside"
    make_files(outside, {"secret.md": "TOPSECRET [[x]]\n", "dir/deep.md": "TOPSECRET\n"})
    make_files(vault, {"a.md": "[[secret]]\n"})
    (vault / "secret.md").symlink_to(outside / "secret.md")
    (vault / "linked").symlink_to(outside / "dir")
    db, report = build(vault, state)
    assert report.read_paths == ["a.md"]
    files = {f["path"]: f["reason"] for f in query.coverage(db)["files"]}
    assert files == {
        "linked": "a symbolic link: never followed",
        "secret.md": "a symbolic link: never followed",
    }
    assert "TOPSECRET" not in "\n".join(query.export_lines(db))
    assert query.search(db, "TOPSECRET") == []
    assert edge(db, "note:a.md", "secret")[1] == "missing"


def test_a_10_mb_note_is_skipped_with_its_size_and_not_read(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"huge.md": "[[x]]\n" * (10 * 1024 * 1024 // 6 + 1), "ok.md": "fine\n"})
    db, report = build(vault, state)
    assert report.read_paths == ["ok.md"]
    (huge,) = [f for f in query.coverage(db)["files"] if f["path"] == "huge.md"]
    assert huge["status"] == "skipped"
    assert "over the 4 MiB limit" in huge["reason"]


def test_a_fifo_in_the_vault_does_not_hang_the_build(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"ok.md": "fine\n"})
    os.mkfifo(vault / "pipe.md")
    db, _ = build(vault, state)
    assert {"path": "pipe.md", "status": "skipped", "reason": "not a regular file"} in (
        query.coverage(db)["files"]
    )


def test_broken_notes_are_failed_with_their_reason_and_the_build_goes_on(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(
        vault,
        {
            "alias.md": "---\na: &x 1\nb: *x\n---\n[[ok]]\n",
            "binary.md": b"\x00\x01\x02",
            "latin.md": "caf\xe9".encode("latin-1"),
            "ok.md": "---\ntags: [fine]\n---\n",
        },
    )
    db, _ = build(vault, state)
    cover = query.coverage(db)
    assert (cover["indexed"], cover["failed"]) == (1, 3)
    reasons = {f["path"]: f["reason"] for f in cover["files"]}
    assert reasons["latin.md"] == "not UTF-8 text (byte 3)"
    assert reasons["binary.md"].startswith("frontmatter: file contains NUL bytes")
    assert reasons["alias.md"].startswith("frontmatter: YAML a")
    assert edge(db, "note:alias.md", "ok")[:2] == ("note:ok.md", "resolved")


def test_the_index_lives_in_the_state_dir_and_nothing_is_written_in_the_vault(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"a.md": "[[b]] #t\n", ".obsidian/app.json": "{}"})
    before = read_tree(vault, skip=())
    build(vault, state)
    assert read_tree(vault, skip=()) == before
    assert (state / "kg.sqlite3").exists()
    with pytest.raises(ConfigError, match="outside the vault"):
        kg_path(vault, vault / "state")


def test_dot_folders_and_sync_copies_are_left_out(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(
        vault,
        {
            ".obsidian/x.md": "[[a]]",
            ".hidden.md": "[[a]]",
            ".trash/old.md": "[[a]]",
            "a.md": "",
            "a.sync-conflict-20261201-abc.md": "[[a]]",
            "draft.md~": "[[a]]",
        },
    )
    db, report = build(vault, state)
    assert report.read_paths == ["a.md"]
    assert {f["path"]: f["reason"] for f in query.coverage(db)["files"]} == {
        "a.sync-conflict-20261201-abc.md": "a sync-conflict copy",
        "draft.md~": "a temporary or backup file",
    }


def test_two_notes_sharing_a_vaultd_id_both_keep_their_path_as_identity(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(
        vault,
        {
            "Done/t.md": "---\nid: task-7\n---\n",
            "Copy/t.md": "---\nid: task-7\n---\n",
            "own.md": "---\nid: task-8\n---\n",
        },
    )
    db, _ = build(vault, state)
    keys = [row[0] for row in db.execute("SELECT key FROM nodes ORDER BY key")]
    assert keys == ["id:task-8", "note:Copy/t.md", "note:Done/t.md"]
    assert query.coverage(db)["notices"] == [
        {"path": "Copy/t.md", "message": "id 'task-7' is also the id of Done/t.md"},
        {"path": "Done/t.md", "message": "id 'task-7' is also the id of Copy/t.md"},
    ]


def test_every_node_and_edge_has_evidence_that_matches_the_file(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(
        vault,
        {
            "Clients/Acme.md": "---\nid: c-1\npartner: Acme Corporation\ntags: [client]\n---\n",
            "Plans/q1.md": (
                '---\nrelated: "[[Jane Doe]]"\nplatforms: [facebook]\n---\n'
                "# Q1\nWork for [[Acme]] and ![[chart.png]] #plan\n[[Acme#Terms|terms]]\n"
            ),
            "chart.png": b"\x89PNG",
        },
    )
    db, _ = build(vault, state)
    subjects = [
        json.dumps(["node", key], ensure_ascii=False)
        for (key,) in db.execute("SELECT key FROM nodes")
    ] + [
        json.dumps(["edge", *row], ensure_ascii=False)
        for row in db.execute("SELECT src, type, field, dst FROM edges")
    ]
    assert len(subjects) == 15  # 8 nodes, 7 edges
    for subject in subjects:
        rows = db.execute(
            "SELECT path, sha256, line_start, line_end, quote FROM evidence WHERE subject = ?",
            (subject,),
        ).fetchall()
        assert rows, f"no evidence for {subject}"
        for path, sha, start, end, quote in rows:
            data = (vault / path).read_bytes()
            assert sha == hashlib.sha256(data).hexdigest()
            lines = data.decode().splitlines()
            assert 1 <= start <= end <= len(lines)
            assert quote == lines[start - 1]
    anchored = query.neighborhood(db, "Plans/q1.md")["edges"]
    acme = next(e for e in anchored if e["dst"] == "id:c-1")
    assert [(r["lines"], r.get("anchor"), r.get("alias")) for r in acme["evidence"]] == [
        ([6, 6], None, None),
        ([7, 7], "Terms", "terms"),
    ]


def test_a_removed_note_leaves_the_graph_and_its_links_become_unresolved(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"a.md": "[[b]]\n", "b.md": "findme\n"})
    db, _ = build(vault, state)
    (vault / "b.md").unlink()
    _, report = build(vault, state)
    assert (report.removed, report.read_paths) == (1, [])
    assert edge(db, "note:a.md", "b")[:2] == ("unresolved:b", "missing")
    assert query.search(db, "findme") == []


def test_a_link_cycle_is_walked_once_at_any_depth(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(vault, {"a.md": "[[b]] [[a]]\n", "b.md": "[[c]]\n", "c.md": "[[a]]\n"})
    db, _ = build(vault, state)
    found = query.neighborhood(db, "a.md", depth=5)
    assert [(n["key"], n["distance"]) for n in found["nodes"]] == [
        ("note:a.md", 0),
        ("note:b.md", 1),
        ("note:c.md", 1),
    ]
    assert [(e["src"], e["dst"]) for e in found["edges"]] == [
        ("note:a.md", "note:a.md"),
        ("note:a.md", "note:b.md"),
        ("note:b.md", "note:c.md"),
        ("note:c.md", "note:a.md"),
    ]


def test_a_link_property_to_no_note_names_the_entity_of_exactly_that_name(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(
        vault,
        {
            "plan.md": '---\nrelated: "[[ACME Corporation]]"\nother: "[[Acme Corp]]"\n---\n',
            "invoice.md": "---\npartner: Acme Corporation\n---\n",
        },
    )
    db, _ = build(vault, state)
    names = db.execute("SELECT src, dst FROM edges WHERE type = 'names'").fetchall()
    assert names == [("unresolved:acme corporation", "partner:acme corporation")]  # not Corp
    subject = json.dumps(
        ["edge", "unresolved:acme corporation", "names", "", "partner:acme corporation"]
    )
    quotes = db.execute("SELECT path, quote FROM evidence WHERE subject = ?", (subject,))
    assert sorted(quotes) == [
        ("invoice.md", "partner: Acme Corporation"),
        ("plan.md", 'related: "[[ACME Corporation]]"'),
    ]
    make_files(vault, {"Clients/Acme Corporation.md": "the client\n"})
    build(vault, state)
    assert db.execute("SELECT count(*) FROM edges WHERE type = 'names'").fetchone() == (0,)
    assert edge(db, "note:plan.md", "Acme Corporation")[:2] == (
        "note:Clients/Acme Corporation.md",
        "resolved",
    )


def test_a_link_climbing_out_of_the_vault_is_invalid_and_reads_nothing_outside(tmp_path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    make_files(tmp_path, {"outside.md": "OUTSIDE\n"})
    make_files(vault, {"a.md": "[[../outside]] ![[../../etc/passwd]] [[/outside]]\n"})
    db, report = build(vault, state)
    assert report.read_paths == ["a.md"]
    found = db.execute("SELECT dst, status, reason FROM edges ORDER BY dst").fetchall()
    assert found == [
        ("unresolved:../../etc/passwd", "invalid", "the path climbs out with '..'"),
        ("unresolved:../outside", "invalid", "the path climbs out with '..'"),
        ("unresolved:/outside", "invalid", "an absolute path, not a vault link"),
    ]
    assert "OUTSIDE" not in "\n".join(query.export_lines(db))


def test_a_folder_that_cannot_be_listed_is_reported_not_silently_left_out(tmp_path):
    vault = tmp_path / "vault"
    make_files(vault, {"a.md": "", "sub/b.md": ""})
    entries = walk(vault)
    assert next(entries).path == "a.md"
    shutil.rmtree(vault / "sub")  # gone between the listing of the vault and its own
    assert [(e.path, e.status, e.reason) for e in entries] == [
        ("sub", "skipped", "a folder that cannot be read (No such file or directory)")
    ]
