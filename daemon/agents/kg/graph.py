"""Deriving the nodes, edges and evidence from the facts the index holds for every note.

Node keys: `id:<vaultd id>` for a note with an id no other note has, else `note:<path>`;
`tag:<tag>`; `<kind>:<name>` for an entity (`partner:acme corporation`, `invoice:…`);
`file:<path>` for a linked file that is not a note; `unresolved:<target>` for a link that
does not lead to exactly one file (its edges say `missing`, `ambiguous` or `invalid`, and
why). Every node and edge gets one evidence row per place of a note that says it.
Everything is derived again at each build that changes more than notes' content (and
incremental.py gives exactly these rows for the rest), so the graph never depends on build
order.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from daemon.agents.kg.extract import ENTITY_KEYS, Fact, NoteFacts, normal_name, title_of
from daemon.agents.kg.ledger_source import LedgerFact
from daemon.agents.kg.resolve import MISSING, RESOLVED, Resolution, Resolver, normal_target
from daemon.agents.kg.store import EVIDENCE_INDEX

# Built once: json.dumps with options builds a new encoder at every call.
_STRING = json.encoder.encode_basestring  # a str as JSON, as json.dumps(ensure_ascii=False)
_ENCODE_SORTED = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode
ENTITY_KINDS = frozenset(ENTITY_KEYS.values())
EDGE_TYPES = {"link": "links_to", "embed": "embeds", "property": "property", "tag": "tagged"}


@dataclass(frozen=True)
class _Note:
    key: str
    facts: NoteFacts


def subject_of_node(key: str) -> str:
    """The evidence subject of a node: `["node", key]` as JSON (json.dumps' own string
    encoder, spelled out: a list through the JSON encoder cost a second per 30,000)."""
    return f'["node", {_STRING(key)}]'


def subject_of_edge(src: str, type_: str, field: str, dst: str) -> str:
    return f'["edge", {_STRING(src)}, {_STRING(type_)}, {_STRING(field)}, {_STRING(dst)}]'


def note_keys(facts: list[NoteFacts]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Return {path: node key} and the notices about ids: a vaultd id shared by several
    notes (a copied file) names none of them, so each keeps its path as its identity."""
    by_id: dict[str, list[str]] = defaultdict(list)
    for note in facts:
        if note.vaultd_id:
            by_id[note.vaultd_id].append(note.path)
    keys, notices = {}, []
    for note in facts:
        sharing = by_id.get(note.vaultd_id or "", [])
        if len(sharing) == 1:
            keys[note.path] = f"id:{note.vaultd_id}"
        else:
            keys[note.path] = f"note:{note.path}"
            if sharing:
                others = ", ".join(p for p in sharing if p != note.path)
                notices.append((note.path, f"id {note.vaultd_id!r} is also the id of {others}"))
    return keys, notices


def derive(db: sqlite3.Connection, ledger: Sequence[LedgerFact] = ()) -> None:
    """Replace the nodes, edges, evidence and notices with those the stored facts give
    (and the ledger's, daemon/agents/kg/ledger_source.py).

    One note at a time: a note's edges and evidence rows are its own (their source is its
    node, their path its path), so they are written as it is derived; only the nodes (the
    least label of each), the unresolved links that are missing and the keys stay in
    memory. Holding every note's facts and every row at once took 600 MB at 50,000 notes.
    """
    ids = [
        NoteFacts(path, "", 0, "", vaultd_id=vaultd_id)
        for path, vaultd_id in db.execute(
            "SELECT path, json_extract(facts, '$.vaultd_id') FROM files"
            " WHERE facts IS NOT NULL ORDER BY path"
        )
    ]
    keys, notices = note_keys(ids)
    del ids
    resolver = resolver_of(db)
    db.execute("DROP INDEX IF EXISTS evidence_ordered")  # made again once, below
    for table in ("nodes", "edges", "evidence", "notices"):
        db.execute(f"DELETE FROM {table}")  # noqa: S608 (a fixed table name)
    db.executemany("INSERT INTO notices VALUES (?, ?)", notices)
    graph = Writer()  # every node; then the names edges and the ledger's edges and rows
    missing: set[str] = set()
    edges: list[tuple[str, ...]] = []
    rows: list[tuple[str, str, str, str, int, int, str, str]] = []
    stored = db.execute("SELECT facts FROM files WHERE facts IS NOT NULL ORDER BY path")
    for (facts,) in stored:
        note = NoteFacts.from_json(json.loads(facts))
        one = Writer()
        add_note(one, keys[note.path], note)
        for fact in note.facts:
            add_fact(one, resolver, keys, note, fact)
        for key, (type_, label, path) in one.nodes.items():
            graph.node(key, type_, label, path)
        for (src, type_, field, dst), (status, reason) in one.edges.items():
            edges.append((src, type_, field, dst, status, reason))
            if status == MISSING:
                missing.add(dst)
        rows.extend(one.rows)
        if len(rows) > _BATCH:
            _write(db, edges, rows)
    _write(db, edges, rows)
    db.execute(EVIDENCE_INDEX)
    _join_names(db, graph, missing)
    for stated in ledger:
        _add_ledger_fact(graph, stated)
    graph.flush(db)


_BATCH = 50_000  # evidence rows written at once


def _write(
    db: sqlite3.Connection,
    edges: list[tuple[str, ...]],
    rows: list[tuple[str, str, str, str, int, int, str, str]],
) -> None:
    db.executemany("INSERT INTO edges VALUES (?, ?, ?, ?, ?, ?)", edges)
    db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    edges.clear()
    rows.clear()


def resolver_of(db: sqlite3.Connection) -> Resolver:
    """The resolver of the files links may lead to: every file but those skipped, and the
    files skipped for not being notes (attachments)."""
    files = [row[0] for row in db.execute("SELECT path FROM files WHERE status != 'skipped'")]
    files += [
        row[0]
        for row in db.execute(
            "SELECT path FROM files WHERE status = 'skipped' AND reason = 'not a Markdown note'"
        )
    ]
    return Resolver(files)


def add_note(writer: Writer, key: str, note: NoteFacts) -> None:
    """Add a note's own node, with the whole note as its evidence."""
    writer.node(key, "note", title_of(note.path), note.path)
    writer.evidence(subject_of_node(key), key, note, (1, note.line_count or 1), note.first_line)


def _add_ledger_fact(writer: Writer, fact: LedgerFact) -> None:
    """Add one ledger fact: its two nodes (a note's node keeps its type and label) and its
    edge, each with the ledger row as evidence."""
    row = (fact.where, fact.row_sha256, 0, 0, fact.quote, _ENCODE_SORTED({"source": "ledger"}))
    for key, type_, label in ((fact.src, fact.src_type, fact.src_label),
                              (fact.dst, fact.dst_type, fact.dst_label)):  # fmt: skip
        writer.node(key, type_, label, None)
        writer.rows.add((subject_of_node(key), fact.src, *row))
    edge = (fact.src, fact.type, fact.field, fact.dst)
    writer.edge(edge, RESOLVED, "")
    writer.rows.add((subject_of_edge(*edge), fact.src, *row))


def _join_names(db: sqlite3.Connection, writer: Writer, missing: set[str]) -> None:
    """Connect a link that leads to no note (`related: "[[Acme Corporation]]"`) to the
    entity of exactly that name (`partner: Acme Corporation`), as a `names` edge.

    The names must be equal once case and blanks are ignored: nothing fuzzy. The edge's
    evidence is the places that say each name (the notes' rows, all written by now). When a
    note of that name appears, the link resolves to it and this edge goes away.
    """
    entities: dict[str, list[str]] = defaultdict(list)
    for key, (type_, label, _) in writer.nodes.items():
        if type_ in ENTITY_KINDS:
            entities[normal_name(label)].append(key)
    pairs = [
        (unresolved, entity)
        for unresolved in sorted(missing)
        for entity in sorted(entities.get(normal_name(writer.nodes[unresolved][1]), []))
    ]
    for unresolved, entity in pairs:
        writer.edge((unresolved, "names", "", entity), RESOLVED, "")
        subject = subject_of_edge(unresolved, "names", "", entity)
        for node_key in (unresolved, entity):
            for row in db.execute(
                "SELECT note_key, path, sha256, line_start, line_end, quote, detail"
                " FROM evidence WHERE subject = ?",
                (subject_of_node(node_key),),
            ):
                writer.rows.add((subject, *row))


def add_fact(
    writer: Writer,
    resolver: Resolver,
    keys: Mapping[str, str],
    note: NoteFacts,
    fact: Fact,
) -> None:
    src, status, reason = keys[note.path], RESOLVED, ""
    if fact.kind == "tag":
        dst = f"tag:{fact.value}"
        writer.node(dst, "tag", f"#{fact.value}", None)
    elif fact.kind == "entity":
        dst = f"{fact.entity}:{normal_name(fact.value)}"
        writer.node(dst, fact.entity, " ".join(fact.value.split()), None)
    else:
        resolution: Resolution = resolver.resolve(fact.value)
        status, reason = resolution.status, resolution.reason
        if resolution.path is None:
            dst = f"unresolved:{normal_target(fact.value)}"
            writer.node(dst, "unresolved", fact.value.strip(), None)
        elif resolution.path in keys:
            dst = keys[resolution.path]
        else:
            dst = f"file:{resolution.path}"
            writer.node(dst, "file", title_of(resolution.path), resolution.path)
    edge_type = EDGE_TYPES.get(fact.kind, fact.entity)
    writer.edge((src, edge_type, fact.field, dst), status, reason)
    lines, detail = (fact.line_start, fact.line_end), _detail(fact)
    subject = subject_of_edge(src, edge_type, fact.field, dst)
    writer.evidence(subject, src, note, lines, fact.quote, detail=detail)
    if not dst.startswith(("id:", "note:")):  # a note's own evidence is the note itself
        writer.evidence(subject_of_node(dst), src, note, lines, fact.quote, detail=detail)


def _detail(fact: Fact) -> str:
    detail = {k: v for k, v in (("anchor", fact.anchor), ("alias", fact.alias)) if v}
    if fact.kind in ("link", "embed", "property"):
        detail["target"] = fact.value
    return _ENCODE_SORTED(detail) if detail else ""


class Writer:
    """Collects rows, the first label of a node winning by sort order, then writes them."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, str, str | None]] = {}
        self.edges: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        self.rows: set[tuple[str, str, str, str, int, int, str, str]] = set()

    def node(self, key: str, type_: str, label: str, path: str | None) -> None:
        known = self.nodes.get(key)
        if known is None or (type_, label) < known[:2]:
            self.nodes[key] = (type_, label, path)

    def edge(self, key: tuple[str, str, str, str], status: str, reason: str) -> None:
        self.edges[key] = (status, reason)

    def evidence(
        self,
        subject: str,
        note_key: str,
        note: NoteFacts,
        lines: tuple[int, int],
        quote: str,
        *,
        detail: str = "",
    ) -> None:
        self.rows.add((subject, note_key, note.path, note.sha256, *lines, quote, detail))

    def flush(self, db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT INTO nodes VALUES (?, ?, ?, ?)",
            [(key, *value) for key, value in sorted(self.nodes.items())],
        )
        db.executemany(
            "INSERT INTO edges VALUES (?, ?, ?, ?, ?, ?)",
            [(*key, *value) for key, value in sorted(self.edges.items())],
        )
        # Rows are unique (a set) and their order is never seen: export sorts them.
        db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.rows)
