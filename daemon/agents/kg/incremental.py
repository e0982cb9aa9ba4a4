"""Bringing the derived graph up to date for notes whose content changed, without deriving
it again whole: exactly the rows a full derive (daemon/agents/kg/graph.py) would give.

Only the simple change is done here, the one a person editing notes makes: each changed
note was a note before and still is (so the files links resolve against are the same), and
keeps its vaultd id (so every note keeps its node key). Anything else (a note added,
removed, renamed or skipped, an id changed, the ledger changed) is `derive`'s. Under those
conditions a note's facts reach only:

- its own edges (their source is its node, which no other note has) and its own evidence
  rows (they carry its path, which no other note's rows do);
- the nodes it names (tags, entities, files, unresolved links): such a node exists while
  some evidence row still names it, and its label is the least of those its notes give it;
- the `names` edges of the entities and unresolved links it names (graph._join_names).

The note's facts as they were are derived again beside the facts as they are, with the same
code as a full derive, and the difference is written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from daemon.agents.kg.extract import NoteFacts, normal_name
from daemon.agents.kg.graph import (
    ENTITY_KINDS,
    Writer,
    add_fact,
    add_note,
    resolver_of,
    subject_of_edge,
    subject_of_node,
)
from daemon.agents.kg.resolve import MISSING, RESOLVED, Resolver

Claim = tuple[str, str, str | None]  # a node's type, label and path, as a note gives them


@dataclass(frozen=True)
class Change:
    """One note's facts before and after a build read it again."""

    before: NoteFacts
    after: NoteFacts


def simple(changes: Sequence[Change]) -> bool:
    """Whether `update` may bring these changes in: each keeps its path and vaultd id."""
    return all(
        c.before.path == c.after.path and c.before.vaultd_id == c.after.vaultd_id for c in changes
    )


class _Keys(Mapping[str, str]):
    """{path: node key} of the notes, read from the nodes (unchanged by a simple change)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._known: dict[str, str | None] = {}

    def _key(self, path: str) -> str | None:
        if path not in self._known:
            row = self.db.execute(
                "SELECT key FROM nodes WHERE path = ? AND type = 'note'", (path,)
            ).fetchone()
            self._known[path] = row[0] if row else None
        return self._known[path]

    def __getitem__(self, path: str) -> str:
        key = self._key(path)
        if key is None:
            raise KeyError(path)
        return key

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._key(path) is not None

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError("the keys of one note at a time")

    def __len__(self) -> int:
        raise NotImplementedError("the keys of one note at a time")


def update(db: sqlite3.Connection, changes: Sequence[Change]) -> None:
    """Write the graph's rows again for `changes` (all `simple`), as derive would."""
    keys, resolver = _Keys(db), resolver_of(db)
    new_facts = {change.after.path: change.after for change in changes}
    claims: dict[str, tuple[list[Claim], list[Claim]]] = {}  # key: before, after
    for change in changes:
        before = _derived(change.before, keys, resolver)
        after = _derived(change.after, keys, resolver)
        db.executemany(
            "DELETE FROM edges WHERE src = ? AND type = ? AND field = ? AND dst = ?",
            list(before.edges),
        )
        db.executemany(
            "DELETE FROM evidence WHERE subject = ? AND path = ?",
            sorted({(row[0], change.before.path) for row in before.rows}),
        )
        db.executemany(
            "INSERT INTO edges VALUES (?, ?, ?, ?, ?, ?)",
            [(*key, *value) for key, value in sorted(after.edges.items())],
        )
        db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?)", after.rows)
        for side, writer in enumerate((before, after)):
            for key, claim in writer.nodes.items():
                if not _is_note(key):
                    claims.setdefault(key, ([], []))[side].append(claim)
    for key, (was, now) in sorted(claims.items()):
        _renode(db, key, was, now, partial(_claims, db, key, keys, resolver, new_facts))
    _rename(db, set(claims))


def _is_note(key: str) -> bool:
    return key.startswith(("id:", "note:"))


def _derived(note: NoteFacts, keys: Mapping[str, str], resolver: Resolver) -> Writer:
    writer = Writer()
    add_note(writer, keys[note.path], note)
    for fact in note.facts:
        add_fact(writer, resolver, keys, note, fact)
    return writer


def _renode(
    db: sqlite3.Connection,
    key: str,
    was: list[Claim],
    now: list[Claim],
    every_claim: Callable[[], list[Claim]],
) -> None:
    """Write node `key` again, given what the changed notes claimed of it before and now:
    it stays while some evidence names it, with the least (type, label) of its claims.

    A tag's or a file's claim is its key's; an entity's or an unresolved link's label is
    what some note wrote. When no changed note gave the label the node has, or one still
    gives it, the least of the others' is no less than that label, so the node is that or
    a changed note's claim; otherwise every note that names it is derived again for its
    claim (`every_claim`)."""
    subject = subject_of_node(key)
    if key.startswith(("tag:", "file:")):
        named = db.execute("SELECT 1 FROM evidence WHERE subject = ? LIMIT 1", (subject,))
        if named.fetchone() is None:
            db.execute("DELETE FROM nodes WHERE key = ?", (key,))
        elif now or was:
            db.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?)", (key, *(now or was)[0]))
        return
    row = db.execute("SELECT type, label, path FROM nodes WHERE key = ?", (key,)).fetchone()
    stored: Claim | None = (row[0], row[1], row[2]) if row else None
    if (
        stored is not None
        and any(claim[:2] == stored[:2] for claim in was)
        and not any(claim[:2] == stored[:2] for claim in now)
    ):
        left = every_claim()  # the label it had may have been only that note's
    else:
        left = [*now, *([stored] if stored else [])]
    if not left:
        db.execute("DELETE FROM nodes WHERE key = ?", (key,))
        return
    type_, label, where = min(left, key=lambda claim: claim[:2])
    db.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?)", (key, type_, label, where))


def _claims(
    db: sqlite3.Connection,
    key: str,
    keys: Mapping[str, str],
    resolver: Resolver,
    new_facts: dict[str, NoteFacts],
) -> list[Claim]:
    """Every claim of node `key` by the notes whose evidence names it now."""
    paths = db.execute(
        "SELECT DISTINCT path FROM evidence WHERE subject = ?", (subject_of_node(key),)
    )
    found = []
    for (path,) in paths.fetchall():
        note = new_facts.get(path) or _stored(db, path)
        claim = _derived(note, keys, resolver).nodes.get(key)
        if claim is not None:
            found.append(claim)
    return found


def _stored(db: sqlite3.Connection, path: str) -> NoteFacts:
    row = db.execute("SELECT facts FROM files WHERE path = ?", (path,)).fetchone()
    return NoteFacts.from_json(json.loads(row[0]))


def _rename(db: sqlite3.Connection, touched: set[str]) -> None:
    """Write again the `names` edges (graph._join_names) of the unresolved links and the
    entities in `touched`, and their evidence: the rows naming either end, now."""
    links = sorted(key for key in touched if key.startswith("unresolved:"))
    entities = sorted(key for key in touched if key.split(":", 1)[0] in ENTITY_KINDS)
    old = [
        row
        for chunk in (links, entities)
        for key in chunk
        for row in db.execute(
            "SELECT src, dst FROM edges WHERE type = 'names' AND (src = ? OR dst = ?)",
            (key, key),
        )
    ]
    for src, dst in sorted(set(old)):
        db.execute(
            "DELETE FROM edges WHERE src = ? AND type = 'names' AND field = '' AND dst = ?",
            (src, dst),
        )
        db.execute(
            "DELETE FROM evidence WHERE subject = ?", (subject_of_edge(src, "names", "", dst),)
        )
    if not (links or entities):
        return
    by_name = _names(db, "SELECT key, label FROM nodes WHERE type IN ({kinds})", ENTITY_KINDS)
    unresolved = _names(db, "SELECT key, label FROM nodes WHERE type IN ({kinds})", {"unresolved"})
    pairs = set()
    for name, found in unresolved.items():
        for link in found:
            for entity in by_name.get(name, []):
                if link in links or entity in entities:
                    pairs.add((link, entity))
    for link, entity in sorted(pairs):
        missing = db.execute(
            "SELECT 1 FROM edges WHERE dst = ? AND status = ? LIMIT 1", (link, MISSING)
        ).fetchone()
        if missing is None:
            continue
        db.execute("INSERT INTO edges VALUES (?, 'names', '', ?, ?, '')", (link, entity, RESOLVED))
        subject = subject_of_edge(link, "names", "", entity)
        rows = {
            (subject, *row)
            for end in (link, entity)
            for row in db.execute(
                "SELECT note_key, path, sha256, line_start, line_end, quote, detail"
                " FROM evidence WHERE subject = ?",
                (subject_of_node(end),),
            )
        }
        db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _names(
    db: sqlite3.Connection, query: str, types: set[str] | frozenset[str]
) -> dict[str, list[str]]:
    """{normal name of the label: node keys} of the nodes of these types."""
    kinds = sorted(types)
    found: dict[str, list[str]] = {}
    for key, label in db.execute(query.format(kinds=", ".join("?" * len(kinds))), kinds):
        found.setdefault(normal_name(label), []).append(key)
    return found
