"""`vaultd kg` as a person runs it: rebuild, status, export, search and neighborhood, through
the real CLI (a subprocess where the process matters, `main()` in-process elsewhere: each
vaultd process spends most of a second importing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_files
from e2e_support import ok, vaultd

from daemon.cli.main import main
from daemon.core.vault import ALL_FOLDERS

pytestmark = pytest.mark.e2e

NOTES: dict[str, str | bytes] = {
    "Clients/Acme Corp.md": (
        "---\nid: client-acme\npartner: Acme Corporation\ntags: [client]\n---\n"
        "# Acme Corp\nOur biggest retainer customer. See [[Plans/Q1 plan]].\n"
    ),
    "Plans/Q1 plan.md": (
        '---\nrelated: "[[Acme Corp]]"\n---\n'
        "Quarterly plan: retainer renewal with [[Acme Corp#Terms|Acme]] #planning\n"
        "Also [[Someday Note]] and [[Q1]].\n"
    ),
    "Archive/Q1.md": "old retainer numbers\n",
    "Plans/Q1.md": "#planning draft\n",
    "Done/invoice.md": "---\ninvoice: INV/2026/00042\npartner: Acme Corporation\n---\n",
    "Broken.md": "---\nkey: [unclosed\n---\n[[Acme Corp]]\n",
    "image.png": b"\x89PNG\r\n",
}


def new_vault(root: Path, files: dict[str, str | bytes]) -> Path:
    """A vaultd vault (its folders) holding these files."""
    for folder in ALL_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    make_files(root, files)
    return root


class Kg:
    """`vaultd kg …` on one vault and state dir, in this process."""

    def __init__(self, vault: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.vault, self.state, self.capsys = vault, state, capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["kg", *args, "--vault", str(self.vault), "--state-dir", str(self.state)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> object:
        code, out, err = self.run(*args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kg")
    vault, state = new_vault(root / "vault", NOTES), root / "state"
    out = ok(vaultd("kg", "rebuild", "--vault", vault, "--state-dir", state)).stdout
    assert "5 note(s) indexed, 1 failed, 1 file(s) skipped" in out
    return vault, state


@pytest.fixture
def kg(built: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> Kg:
    return Kg(*built, capsys)


def test_status_reports_coverage_with_every_failure_and_its_reason(kg: Kg):
    status = kg.json("status")
    assert isinstance(status, dict)
    assert (status["indexed"], status["failed"], status["skipped"]) == (5, 1, 1)
    assert status["files"] == [
        {
            "path": "Broken.md",
            "status": "failed",
            "reason": "frontmatter: invalid YAML at line 3, column 1: "
            "did not find expected ',' or ']'",
        },
        {"path": "image.png", "status": "skipped", "reason": "not a Markdown note"},
    ]
    _, text, _ = kg.run("status")
    assert "notes indexed: 5  failed: 1  skipped files: 1" in text
    assert "failed   Broken.md: frontmatter: invalid YAML at line 3" in text


def test_export_is_byte_identical_for_the_same_vault_built_elsewhere_in_another_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    exports = []
    for name, order in (("one", sorted(NOTES)), ("two", sorted(NOTES, reverse=True))):
        vault, state = tmp_path / name / "my vault", tmp_path / f"state-{name}"
        for relative in order:  # created in another order: other inodes, mtimes, row ids
            new_vault(vault, {relative: NOTES[relative]})
        assert Kg(vault, state, capsys).run("rebuild")[0] == 0
        exported = vaultd("kg", "export", "--vault", vault, "--state-dir", state)
        exports.append(ok(exported).stdout.encode())
    assert exports[0] == exports[1]
    lines = [json.loads(line) for line in exports[0].decode().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds == sorted(kinds, key=["node", "edge", "evidence", "file"].index)
    assert [x["key"] for x in lines if x["kind"] == "node"] == sorted(
        x["key"] for x in lines if x["kind"] == "node"
    )
    assert str(tmp_path) not in exports[0].decode()
    out = tmp_path / "graph.jsonl"
    assert Kg(vault, state, capsys).run("export", "--output", str(out))[0] == 0
    assert out.read_bytes() == exports[1]


def test_search_ranks_with_bm25_and_takes_any_text_without_fts_syntax_errors(kg: Kg):
    results = kg.json("search", "retainer")
    assert isinstance(results, list)
    assert {r["path"] for r in results} == {
        "Archive/Q1.md",
        "Clients/Acme Corp.md",
        "Plans/Q1 plan.md",
    }
    assert results == sorted(results, key=lambda r: -r["score"])
    # A word of the title weighs more than in a body: the note titled Acme comes first
    acme = kg.json("search", "ACME")
    assert isinstance(acme, list)
    assert acme[0]["path"] == "Clients/Acme Corp.md"
    assert {r["path"] for r in acme} == {
        "Clients/Acme Corp.md",
        "Plans/Q1 plan.md",
        "Done/invoice.md",
        "Broken.md",
    }
    assert kg.run("search", 'NEAR("x" *) OR AND :')[0] == 0
    code, _, err = kg.run("search", "--- ***")
    assert (code, err) == (1, "vaultd: '--- ***': nothing to search for (no word)\n")


def test_neighborhood_follows_links_by_any_ref_with_evidence(kg: Kg):
    for ref in ("[[Acme Corp]]", "client-acme", "Clients/Acme Corp.md", "acme corp"):
        assert kg.json("neighborhood", ref)["start"] == "id:client-acme", ref  # type: ignore[index]
    near = kg.json("neighborhood", "Acme Corporation")
    assert {n["key"] for n in near["nodes"]} == {  # type: ignore[index]
        "partner:acme corporation",
        "id:client-acme",
        "note:Done/invoice.md",
    }
    deep = kg.json("neighborhood", "INV/2026/00042", "--depth", "2")
    assert {(n["key"], n["distance"]) for n in deep["nodes"]} == {  # type: ignore[index]
        ("invoice:inv/2026/00042", 0),
        ("note:Done/invoice.md", 1),
        ("partner:acme corporation", 2),
    }
    tagged = kg.json("neighborhood", "#planning", "--edge", "tagged")
    assert {n["key"] for n in tagged["nodes"]} == {  # type: ignore[index]
        "tag:planning",
        "note:Plans/Q1 plan.md",
        "note:Plans/Q1.md",
    }
    _, text, _ = kg.run("neighborhood", "Plans/Q1 plan.md")
    assert "Q1 plan -links_to-> Q1 (unresolved)  (ambiguous: 2 notes have this name" in text
    assert "Q1 plan -links_to-> Someday Note (unresolved)  (missing: no note of this name)" in text
    assert "Plans/Q1 plan.md:2 @" in text and 'related: "[[Acme Corp]]"' in text


def test_an_ambiguous_or_unknown_ref_is_refused_naming_what_it_could_mean(kg: Kg):
    code, _, err = kg.run("neighborhood", "Q1")
    assert code == 1
    assert err == (
        "vaultd: 'Q1' names 2 nodes: note:Archive/Q1.md, note:Plans/Q1.md; give one of these keys\n"
    )
    code, _, err = kg.run("neighborhood", "Nobody")
    assert (code, err) == (
        1,
        "vaultd: 'Nobody': no node of this name, key, id or path "
        "('Nobody': missing: no note of this name)\n",
    )
    code, _, err = kg.run("neighborhood", "Q1", "--depth", "9")
    assert (code, err) == (1, "vaultd: depth 9: expected 1 to 5\n")


def test_reading_commands_before_a_rebuild_say_what_to_run(tmp_path: Path, capsys):
    vault, state = new_vault(tmp_path / "vault", {"a.md": "x"}), tmp_path / "state"
    for command in ("status", "export", "search"):
        args = [command, "word"] if command == "search" else [command]
        code, _, err = Kg(vault, state, capsys).run(*args)
        assert code == 1
        assert err == (
            f"vaultd: {state / 'kg.sqlite3'}: no knowledge graph yet; "
            "run `vaultd kg rebuild` first\n"
        )
    assert not state.exists()
    with pytest.raises(SystemExit) as usage:
        main(["kg", "--vault", str(vault)])
    assert usage.value.code == 2
    assert "KG_COMMAND" in capsys.readouterr().err


def test_context_marks_the_evidence_of_an_edited_line_stale(tmp_path: Path, capsys):
    vault = new_vault(tmp_path / "vault", {k: v for k, v in NOTES.items() if k != "Broken.md"})
    kg = Kg(vault, tmp_path / "state", capsys)
    assert kg.run("rebuild")[0] == 0
    _, fresh, _ = kg.run("context", "Plans/Q1 plan.md")
    assert "STALE" not in fresh
    plan = vault / "Plans/Q1 plan.md"
    plan.write_text(plan.read_text().replace("Also", "Intro.\nAlso"), encoding="utf-8")
    _, text, _ = kg.run("context", "Plans/Q1 plan.md")
    assert "Plans/Q1 plan.md:5 @" in text
    assert "STALE (the note changed); now at Plans/Q1 plan.md:6" in text
    found = kg.json("context", "Plans/Q1 plan.md")
    assert isinstance(found, dict)
    stale = {(r["path"], r["stale"]) for e in found["edges"] for r in e["evidence"]}
    # the link from the Acme note into the plan was read from a note that did not change
    assert stale == {("Plans/Q1 plan.md", True), ("Clients/Acme Corp.md", False)}


def test_an_escape_sequence_in_a_note_reaches_the_terminal_escaped(tmp_path: Path, capsys):
    hostile = "Pay [[Acme Corp]] now\x1b[2J\x1b]0;owned\x07 \u202eevil\n"
    vault = new_vault(tmp_path / "vault", {"a.md": hostile, "Acme Corp.md": "x\n"})
    kg = Kg(vault, tmp_path / "state", capsys)
    assert kg.run("rebuild")[0] == 0
    for args in (("neighborhood", "a.md"), ("context", "a.md"), ("search", "owned")):
        code, out, _ = kg.run(*args)
        assert code == 0
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, args
        assert "⟨U+001B⟩" in out, args


def test_a_damaged_index_or_a_state_dir_in_the_vault_is_refused_naming_the_file(
    tmp_path: Path, capsys
):
    vault, state = new_vault(tmp_path / "vault", {"a.md": "x"}), tmp_path / "state"
    state.mkdir()
    (state / "kg.sqlite3").write_bytes(b"not a database at all, " * 20)
    for command in ("rebuild", "status"):
        code, _, err = Kg(vault, state, capsys).run(command)
        assert (code, err) == (
            1,
            f"vaultd: {state / 'kg.sqlite3'}: cannot open the knowledge graph "
            "(file is not a database)\n",
        )
    code, _, err = Kg(vault, vault / "state", capsys).run("rebuild")
    assert (code, err) == (
        1,
        f"vaultd: {vault.resolve() / 'state'}: the state directory must be outside the vault\n",
    )
    assert not (vault / "state").exists()
