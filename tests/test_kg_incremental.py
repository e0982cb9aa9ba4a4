"""A note edited is brought into the graph alone (daemon/agents/kg/incremental.py), and the
graph is then exactly the one a full build of the same vault gives: the same nodes, edges,
evidence and notices, the same export bytes. Beside the edits it takes (links gained and
lost, an entity losing its last mention, a partner's name written another way, a link
property that names a partner), the changes it must leave to a full derive (renames,
deleted and added notes, a changed or copied vaultd id, a new attachment) are checked too.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest
from conftest import make_files

from daemon.agents.kg import query
from daemon.agents.kg.build import BuildReport, rebuild
from daemon.agents.kg.ledger_source import LedgerFact
from daemon.agents.kg.store import connect, kg_path

TABLES = ("nodes", "edges", "evidence", "notices")

# The ledger's word on task t-1 (the note with that id) and on an invoice: its partner and
# remote nodes meet the notes' own.
LEDGER = [
    LedgerFact(
        "id:t-1", "task", "t-1.md", "approved_by", "small", "actor:policy", "actor",
        "the policy", "ledger:tasks/t-1", "a" * 64, "auto_approved at 2026-12-01",
    ),
    LedgerFact(
        "id:t-1", "task", "t-1.md", "executed_as", "odoo", "remote:odoo:INV/2026/0001",
        "remote", "INV/2026/0001", "ledger:steps/1", "b" * 64, "odoo call succeeded",
    ),
]  # fmt: skip

START = {
    "Plans/t-1.md": "---\nid: t-1\npartner: Acme Corp\ninvoice: INV/2026/0001\n---\n"
    "Bill [[Acme Corp]] #client\n",
    "Clients/Globex.md": "---\npartner: Globex\ntags: [client, big]\n---\n[[t-1]] [[Later]]\n",
    "Notes/a.md": "[[Globex]] [[Clients/Globex#Top|the big one]] ![[chart.png]]\n",
    "Notes/b.md": '---\nrelated: "[[Initech]]"\nvendor: initech\n---\n[[a]] #x\n',
    "Notes/c.md": "plain\n",
    "img/logo.png": "png",
}

# What an edit may put in a note: each line a fact of a kind the graph keeps.
LINES = [
    "[[a]]", "[[b#Part]]", "[[c|see c]]", "![[logo.png]]", "![[chart.png]]", "[[Later]]",
    "[[./Later]]", "[[later]]", "[[Acme Corp]]", "[[acme corp]]", "[[Initech]]", "[[Nowhere]]",
    "[[Globex]]", "[[Clients/Globex]]", "[[../out]]", "[[t-1]]", "#x", "#client", "#new/tag",
    "plain words",
]  # fmt: skip
FRONT = [
    "partner: Acme Corp", "partner: ACME   corp", "customer: Globex", "vendor: Initech",
    "invoice: INV/2026/0001", "invoice_number: INV/2026/0002", "platforms: [twitter, facebook]",
    'related: "[[Initech]]"', 'related: "[[Later]]"', "tags: [client, x]", "product: Widget",
    "status: done",
]  # fmt: skip


def table_rows(db: sqlite3.Connection) -> list[list[tuple[object, ...]]]:
    return [sorted(db.execute(f"SELECT * FROM {table}")) for table in TABLES]  # noqa: S608


class Pair:
    """One vault, kept by builds in turn, beside a full build of it from nothing each time."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.vault = tmp_path / "vault"
        make_files(self.vault, START)
        self.db = connect(kg_path(self.vault, tmp_path / "kept"), create=True)
        rebuild(self.db, self.vault, facts=LEDGER)
        self.tick = 1_700_000_000_000_000_000
        self.fresh = 0

    def write(self, relative: str, text: str) -> None:
        make_files(self.vault, {relative: text})
        self.tick += 1_000_000  # a new mtime, even for the same size within one clock tick
        os.utime(self.vault / relative, ns=(self.tick, self.tick))

    def check(self) -> BuildReport:
        """Bring the kept index up to date; assert it is the full build's, row for row."""
        report = rebuild(self.db, self.vault, facts=LEDGER)
        self.fresh += 1
        fresh = connect(kg_path(self.vault, self.tmp / f"fresh{self.fresh}"), create=True)
        try:
            rebuild(fresh, self.vault, facts=LEDGER)
            assert table_rows(self.db) == table_rows(fresh)
            assert list(query.export_lines(self.db)) == list(query.export_lines(fresh))
        finally:
            fresh.close()
        return report


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    made = Pair(tmp_path)
    yield made
    made.db.close()


def note(front: list[str], lines: list[str]) -> str:
    head = "---\n" + "".join(f"{line}\n" for line in front) + "---\n" if front else ""
    return head + "".join(f"{line}\n" for line in lines)


def test_an_edited_note_is_brought_in_alone_and_the_graph_is_a_full_builds(pair: Pair):
    pair.write("Notes/a.md", "[[Globex]] [[Nowhere]] #fresh\n")
    report = pair.check()
    assert (report.read_paths, report.incremental) == (["Notes/a.md"], True)


def test_an_entity_that_loses_its_last_mention_leaves_the_graph(pair: Pair):
    pair.write("Clients/Globex.md", "---\ntags: [client]\n---\n[[t-1]]\n")  # no partner now
    assert pair.check().incremental
    assert not pair.db.execute("SELECT 1 FROM nodes WHERE key = 'partner:globex'").fetchone()
    assert not pair.db.execute("SELECT 1 FROM nodes WHERE key = 'tag:big'").fetchone()


def test_a_partner_named_another_way_keeps_the_least_label_of_those_left(pair: Pair):
    pair.write("Notes/c.md", "---\npartner: ACME   corp\n---\nplain\n")
    assert pair.check().incremental
    label = "SELECT label FROM nodes WHERE key = 'partner:acme corp'"
    assert pair.db.execute(label).fetchone() == ("ACME corp",)
    pair.write("Notes/c.md", "plain\n")
    assert pair.check().incremental
    assert pair.db.execute(label).fetchone() == ("Acme Corp",)


def test_a_link_property_names_the_partner_until_either_goes(pair: Pair):
    names = "SELECT src, dst FROM edges WHERE type = 'names' AND dst = 'partner:initech'"
    assert ("unresolved:initech", "partner:initech") in pair.db.execute(names).fetchall()
    pair.write("Notes/b.md", '---\nrelated: "[[Initech]]"\n---\n[[a]] #x\n')  # vendor gone
    assert pair.check().incremental
    assert pair.db.execute(names).fetchall() == []
    pair.write("Notes/c.md", "---\ncustomer: INITECH\n---\nplain\n")  # named by another note
    assert pair.check().incremental
    assert pair.db.execute(names).fetchall() == [("unresolved:initech", "partner:initech")]


@pytest.mark.parametrize(
    "change",
    ["rename", "delete", "add", "new id", "copied id", "attachment", "skipped"],
)
def test_what_is_more_than_an_edit_is_derived_whole_and_still_the_same(pair: Pair, change: str):
    vault = pair.vault
    if change == "rename":
        (vault / "Notes/a.md").rename(vault / "Notes/renamed.md")
    elif change == "delete":
        (vault / "Clients/Globex.md").unlink()
    elif change == "add":
        pair.write("Later.md", "here now [[Initech]]\n")
    elif change == "new id":
        pair.write("Plans/t-1.md", "---\nid: t-2\npartner: Acme Corp\n---\nBill\n")
    elif change == "copied id":
        pair.write("Notes/c.md", "---\nid: t-1\n---\nplain\n")
    elif change == "attachment":
        pair.write("img/chart.png", "png")
    else:
        pair.write("Notes/c.md", "x" * (5 * 1024 * 1024))  # over the limit: skipped
    assert not pair.check().incremental


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_give_the_graph_a_full_build_gives(pair: Pair, seed: int):
    rng = random.Random(seed)
    paths = [p for p in START if p.endswith(".md")]
    incremental = 0
    for _ in range(12):
        for path in rng.sample(paths, rng.choice([1, 1, 2, 3])):  # one build, several edits
            front = rng.sample(FRONT, rng.randint(0, 3))
            if path == "Plans/t-1.md":
                front = ["id: t-1", *front]  # most edits keep the id, so most are incremental
            elif rng.random() < 0.1:
                front = [f"id: n-{rng.randint(1, 2)}", *front]
            if rng.random() < 0.1:
                front = [*front, "broken: [unclosed"]
            lines = rng.choices(LINES, k=rng.randint(0, 5))
            pair.write(path, note(front, lines))
        incremental += pair.check().incremental
    assert incremental > 0
