"""Reading the graph: finding a node from what a person types, its neighborhood, full-text
search (FTS5, BM25), coverage, and the deterministic export.

The graph is read-only here: nothing in this module writes to the index.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from daemon.agents.kg.extract import links_in, normal_name
from daemon.agents.kg.fulltext import match_of, ranked
from daemon.agents.kg.graph import ENTITY_KINDS, subject_of_edge, subject_of_node
from daemon.agents.kg.markdown import normal_tag
from daemon.agents.kg.resolve import RESOLVED, Resolver
from daemon.agents.kg.rows import evidence_of, nodes_of
from daemon.agents.kg.store import KgError

MAX_DEPTH = 5
# A walk stops adding nodes at this many (`truncated`: true): depth 5 on a dense graph
# reached the whole graph, megabytes of evidence per question, for any caller.
MAX_NODES = 500


def find_node(db: sqlite3.Connection, ref: str) -> str:
    """Given what a person names (a node key, a note path, a `[[link]]`, a vaultd id, a
    `#tag`, an entity's name or an invoice number), return the node's key. Raise KgError
    naming the candidates if it names several, or saying so if none."""
    text = ref.strip()
    if not text:
        raise KgError("an empty reference: name a note, a [[link]], an id, a #tag or a name")
    if _exists(db, text):
        return text
    targets = links_in(text)
    if targets:
        return _by_path(db, targets[0], ref)
    if text.startswith("#") and _exists(db, f"tag:{normal_tag(text)}"):
        return f"tag:{normal_tag(text)}"
    if _exists(db, f"id:{text}"):
        return f"id:{text}"
    named = [f"{kind}:{normal_name(text)}" for kind in _NAMED_KINDS]
    candidates = {row[0] for row in db.execute(_BY_NAME, (text, *named))}
    try:
        candidates.add(_by_path(db, text, ref))
    except KgError as error:
        if not candidates:
            raise KgError(
                f"{ref!r}: no node of this name, key, id or path ({error})", status=404
            ) from None
    if len(candidates) > 1:
        # An unresolved link named like the notes it could mean adds nothing to choose from.
        candidates = {c for c in candidates if not c.startswith("unresolved:")} or candidates
    entities = {c for c in candidates if c.split(":", 1)[0] in ENTITY_KINDS}
    if len(candidates) > 1 and len(entities) == 1:
        # A bare name means the partner (person, company …) of that name, not the note named
        # like it ("Clients/Acme Corp.md"): that note is named by its path or [[link]].
        candidates = entities
    if len(candidates) > 1:
        listed = ", ".join(sorted(candidates))
        raise KgError(f"{ref!r} names {len(candidates)} nodes: {listed}; give one of these keys")
    return candidates.pop()


# The kinds of node a name stands for, keyed by that name (daemon/agents/kg/graph.py).
_NAMED_KINDS = (*sorted(ENTITY_KINDS), "unresolved")
_PLACES = ", ".join("?" * len(_NAMED_KINDS))
_BY_NAME = f"SELECT key FROM nodes WHERE label = ? COLLATE NOCASE OR key IN ({_PLACES})"  # noqa: S608


def _exists(db: sqlite3.Connection, key: str) -> bool:
    return db.execute("SELECT 1 FROM nodes WHERE key = ?", (key,)).fetchone() is not None


def _by_path(db: sqlite3.Connection, target: str, ref: str) -> str:
    resolution = _resolver(db).resolve(target)
    if resolution.status != RESOLVED:
        raise KgError(f"{ref!r}: {resolution.status}: {resolution.reason}")
    row = db.execute(
        "SELECT key FROM nodes WHERE path = ? ORDER BY key LIMIT 1", (resolution.path,)
    ).fetchone()
    return str(row[0])


# The resolver of the last paths asked, and those paths: a resolver is made from the very
# list it was made from, never from an older one, so it answers as a new one would.
# Making it (folding 50,000 paths) was most of a question that names a note or a partner.
_LAST_RESOLVER: list[tuple[list[str], Resolver]] = []


def _resolver(db: sqlite3.Connection) -> Resolver:
    paths = [
        row[0] for row in db.execute("SELECT path FROM nodes WHERE path IS NOT NULL ORDER BY path")
    ]
    last = _LAST_RESOLVER[0] if _LAST_RESOLVER else None
    if last is not None and last[0] == paths:
        return last[1]
    resolver = Resolver(paths)
    _LAST_RESOLVER[:] = [(paths, resolver)]
    return resolver


def node(db: sqlite3.Connection, key: str) -> dict[str, Any]:
    type_, label, path = db.execute(
        "SELECT type, label, path FROM nodes WHERE key = ?", (key,)
    ).fetchone()
    return {"key": key, "type": type_, "label": label, "path": path}


def evidence(db: sqlite3.Connection, subject: str) -> list[dict[str, Any]]:
    return evidence_of(db, [subject])[subject]


def neighborhood(
    db: sqlite3.Connection, ref: str, *, depth: int = 1, edge_type: str | None = None
) -> dict[str, Any]:
    """Return the nodes within `depth` edges of REF (either direction), the edges among
    them, and the evidence of each, in a stable order: at most MAX_NODES nodes, the
    nearest first (`truncated` says whether some were left out)."""
    if not 1 <= depth <= MAX_DEPTH:
        raise KgError(f"depth {depth}: expected 1 to {MAX_DEPTH}")
    start = find_node(db, ref)
    distance = {start: 0}
    frontier = [start]
    edges: set[tuple[str, str, str, str, str, str]] = set()
    truncated = False
    for level in range(1, depth + 1):
        reached: list[str] = []
        for key in frontier:
            for edge in _edges_of(db, key, edge_type):
                for other in (edge[0], edge[3]):
                    if other not in distance and len(distance) < MAX_NODES:
                        distance[other] = level
                        reached.append(other)
                if edge[0] in distance and edge[3] in distance:
                    edges.add(edge)
                else:  # an edge to a node left out is left out too
                    truncated = True
        frontier = sorted(reached)
        if truncated:
            break
    ordered = sorted(distance, key=lambda k: (distance[k], k))
    listed = sorted(edges)
    found = nodes_of(db, ordered)
    cited = evidence_of(
        db,
        [
            *(subject_of_node(key) for key in ordered),
            *(subject_of_edge(*edge[:4]) for edge in listed),
        ],
    )
    return {
        "start": start,
        "depth": depth,
        "truncated": truncated,
        "nodes": [
            {**found[key], "distance": distance[key], "evidence": cited[subject_of_node(key)]}
            for key in ordered
        ],
        "edges": [
            {
                "src": src,
                "type": type_,
                "field": field,
                "dst": dst,
                "status": status,
                **({"reason": reason} if reason else {}),
                "evidence": cited[subject_of_edge(src, type_, field, dst)],
            }
            for src, type_, field, dst, status, reason in listed
        ],
    }


def _edges_of(
    db: sqlite3.Connection, key: str, edge_type: str | None
) -> Iterator[tuple[str, str, str, str, str, str]]:
    query = "SELECT src, type, field, dst, status, reason FROM edges WHERE (src = ? OR dst = ?)"
    params: tuple[str, ...] = (key, key)
    if edge_type:
        query, params = query + " AND type = ?", (*params, edge_type)
    yield from db.execute(query + " ORDER BY src, type, field, dst", params)


def search(db: sqlite3.Connection, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Return the notes that match every word of `text`, best first (BM25; the title weighs
    more than the body). The words are searched as written: FTS5 syntax is not parsed."""
    return [result for _, result in search_hits(db, text, limit=limit)]


def search_hits(
    db: sqlite3.Connection, text: str, *, limit: int = 20
) -> list[tuple[int, dict[str, Any]]]:
    """`search`, each result beside its row in the full-text index (for reads.py)."""
    results = []
    for hit in ranked(db, match_of(text), limit):
        key = db.execute("SELECT key FROM nodes WHERE path = ? AND type = 'note'", (hit.path,))
        found = key.fetchone()
        result = {
            "key": found[0] if found else None,
            "path": hit.path,
            "score": round(-hit.score, 6),
            "snippet": " ".join(hit.snippet.split()),
        }
        results.append((hit.rowid, result))
    return results


def coverage(db: sqlite3.Connection) -> dict[str, Any]:
    """Return what the index holds: counts by status, every failed or skipped file with its
    reason, and the notices (such as a vaultd id shared by two notes)."""
    counts = dict(db.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
    problems = [
        {"path": path, "status": status, "reason": reason}
        for path, status, reason in db.execute(
            "SELECT path, status, reason FROM files WHERE status != 'indexed' ORDER BY path"
        )
    ]
    graph = {
        "nodes": db.execute("SELECT count(*) FROM nodes").fetchone()[0],
        "edges": db.execute("SELECT count(*) FROM edges").fetchone()[0],
        "unresolved_edges": db.execute(
            "SELECT count(*) FROM edges WHERE status != 'resolved'"
        ).fetchone()[0],
        "evidence": db.execute("SELECT count(*) FROM evidence").fetchone()[0],
    }
    return {
        "indexed": counts.get("indexed", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "graph": graph,
        "files": problems,
        "notices": [
            {"path": path, "message": message}
            for path, message in db.execute("SELECT path, message FROM notices ORDER BY path")
        ],
    }


def export_lines(db: sqlite3.Connection) -> Iterator[str]:
    """Yield the graph as JSON lines: nodes, edges, evidence, then coverage, each sorted.
    Nothing machine-specific (times, absolute paths, row ids) is in it, so the same vault
    exports byte for byte the same anywhere."""

    def line(data: dict[str, Any]) -> str:
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    for key, type_, label, path in db.execute("SELECT * FROM nodes ORDER BY key"):
        yield line({"kind": "node", "key": key, "type": type_, "label": label, "path": path})
    for src, type_, field, dst, status, reason in db.execute(
        "SELECT * FROM edges ORDER BY src, type, field, dst"
    ):
        yield line(
            {"kind": "edge", "src": src, "type": type_, "field": field, "dst": dst}
            | {"status": status, "reason": reason}
        )
    for row in db.execute(
        "SELECT * FROM evidence ORDER BY subject, path, line_start, line_end, detail, quote"
    ):
        subject, note_key, path, sha, start, end, quote, detail = row
        yield line(
            {"kind": "evidence", "subject": json.loads(subject), "note": note_key, "path": path}
            | {"sha256": sha, "lines": [start, end], "quote": quote}
            | ({"detail": json.loads(detail)} if detail else {})
        )
    for path, status, reason, sha in db.execute(
        "SELECT path, status, reason, sha256 FROM files ORDER BY path"
    ):
        yield line(
            {"kind": "file", "path": path, "status": status, "reason": reason, "sha256": sha}
        )
