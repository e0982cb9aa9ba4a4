"""Reading many rows of the graph at once: the nodes and the evidence an answer cites, in
a few queries instead of one per node and one per edge.

Every query names the tables `nodes` and `evidence` unqualified, so the temporary views
that leave out the runs a caller may not see (daemon/agents/kg/reads.py) shadow them here
as they do everywhere else. The evidence comes in the order an answer lists it (path, line
range, detail, then the quote), straight from the covering index `evidence_ordered`
(daemon/agents/kg/store.py): nothing is sorted in a temporary B-tree per subject.
"""

from __future__ import annotations

import gc
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_CHUNK = 500  # keys per IN (...): far under SQLite's limit on bound parameters

_EVIDENCE = (
    "SELECT subject, note_key, path, sha256, line_start, line_end, quote, detail FROM evidence"
    " WHERE subject IN ({marks})"
    " ORDER BY subject, path, line_start, line_end, detail, quote, note_key, sha256"
)
_NODES = "SELECT key, type, label, path FROM nodes WHERE key IN ({marks})"


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def nodes_of(db: sqlite3.Connection, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Given node keys, return {key: {key, type, label, path}} of those the graph holds."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(keys))):
        query = _NODES.format(marks=", ".join("?" * len(chunk)))
        for key, type_, label, path in db.execute(query, chunk):
            found[key] = {"key": key, "type": type_, "label": label, "path": path}
    return found


def evidence_of(db: sqlite3.Connection, subjects: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Given evidence subjects (graph.subject_of_node / subject_of_edge), return each one's
    evidence rows as answers show them; a subject with none maps to []."""
    wanted = sorted(set(subjects))
    found: dict[str, list[dict[str, Any]]] = {subject: [] for subject in wanted}
    details: dict[str, dict[str, Any]] = {}  # the same detail is decoded once per call
    with _collector_paused():
        for chunk in _chunks(wanted):
            _read_evidence(db, chunk, found, details)
    return found


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while rows are made into dicts: an answer holds up to
    80,000 of them, none in a cycle, and the collector passes it kept making over them
    were a third of the time. Resumed after, if it was running (another thread that paused
    it too may resume it first: rows are then only made more slowly)."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def _read_evidence(
    db: sqlite3.Connection,
    chunk: list[str],
    found: dict[str, list[dict[str, Any]]],
    details: dict[str, dict[str, Any]],
) -> None:
    if chunk:
        query = _EVIDENCE.format(marks=", ".join("?" * len(chunk)))
        for subject, note_key, path, sha, start, end, quote, detail in db.execute(query, chunk):
            row = {
                "note": note_key,
                "path": path,
                "sha256": sha,
                "lines": [start, end],
                "quote": quote,
            }
            if detail:
                extra = details.get(detail)
                if extra is None:
                    extra = details[detail] = json.loads(detail)
                row.update(extra)
            found[subject].append(row)
