"""Full-text search of the notes: FTS5 ranks them by BM25, ties broken by path.

Ranking by `score, path` in one statement makes FTS5 read the path of every matching
note (a row of its content table each) before it can keep the best few: at 50,000 notes a
common word matches 40,000 of them, and that read was half of each search. Here FTS5 ranks
by score alone and keeps a margin past the limit; when the last row kept scores worse
than the last one wanted, every row tied with that one is among those kept, and the paths
of those few break the ties exactly as `ORDER BY score, path` does. Only when the ties run
past the margin is the one-statement ranking asked instead, so the order is the same either
way. Snippets are cut only for the notes answered.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from daemon.agents.kg.store import KgError

_MARGIN = 500  # rows ranked past the limit, for the ties at its edge
_BY_SCORE = (
    "SELECT rowid, bm25(search, 10.0, 1.0) AS score FROM search WHERE search MATCH ?"
    " ORDER BY score LIMIT ?"
)
_BY_SCORE_AND_PATH = (
    "SELECT rowid, path, bm25(search, 10.0, 1.0) AS score FROM search WHERE search MATCH ?"
    " ORDER BY score, path LIMIT ?"
)
_SNIPPET = (
    "SELECT snippet(search, 2, '[', ']', '…', 12) FROM search WHERE search MATCH ? AND rowid = ?"
)


@dataclass(frozen=True)
class Hit:
    rowid: int  # the note's row in `search` (and in `files`)
    path: str
    score: float  # as bm25() gives it: lower is better
    snippet: str


def match_of(text: str) -> str:
    """Given what a person typed, return the FTS5 query for all of its words, each quoted
    (FTS5 syntax is not parsed). Raise KgError if it holds no word."""
    words = re.findall(r"\w+", text)
    if not words:
        raise KgError(f"{text!r}: nothing to search for (no word)")
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def ranked(db: sqlite3.Connection, match: str, limit: int) -> list[Hit]:
    """Return the best `limit` notes for an FTS5 query, by score then path."""
    rows = db.execute(_BY_SCORE, (match, limit + _MARGIN)).fetchall()
    if not rows:
        return []
    if len(rows) >= limit:
        edge = rows[limit - 1][1]
        if rows[-1][1] == edge and len(rows) == limit + _MARGIN:
            # The ties at the edge may run past the margin: rank by path in SQLite.
            best = db.execute(_BY_SCORE_AND_PATH, (match, limit)).fetchall()
            return [_hit(db, match, rowid, path, score) for rowid, path, score in best]
        rows = [row for row in rows if row[1] <= edge]
    paths = dict(
        db.execute(
            f"SELECT rowid, path FROM search WHERE rowid IN ({', '.join('?' * len(rows))})",  # noqa: S608
            [rowid for rowid, _ in rows],
        ).fetchall()
    )
    best = sorted(((score, paths[rowid], rowid) for rowid, score in rows))[:limit]
    return [_hit(db, match, rowid, path, score) for score, path, rowid in best]


def _hit(db: sqlite3.Connection, match: str, rowid: int, path: str, score: float) -> Hit:
    snippet = db.execute(_SNIPPET, (match, rowid)).fetchone()[0]
    return Hit(rowid, path, score, snippet)
