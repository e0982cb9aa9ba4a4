"""`fetch_context`: a node's neighbours with their evidence, each row checked against the
vault as it is now.

A row whose note no longer has the SHA-256 it was read with is `stale: true`, and `now`
says where its quoted line is today: the same note's path and line, or, for a note with a
vaultd id that has moved since the last build, its new path. Nothing is written: the graph
stays as the last build left it until `vaultd kg rebuild`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.agents.kg.build import read_note, walk
from daemon.agents.kg.extract import extract
from daemon.agents.kg.ledger_source import row_hashes
from daemon.agents.kg.query import neighborhood


@dataclass(frozen=True)
class _Current:
    path: str
    sha256: str
    lines: list[str]


class _Vault:
    """The vault as it is now, each note read at most once per call."""

    def __init__(self, db: sqlite3.Connection, root: Path) -> None:
        self.db, self.root = db, root
        self._read: dict[str, _Current | None] = {}
        self._ids: dict[str, str] | None = None  # vaultd id -> path, of new or changed notes

    def current(self, path: str) -> _Current | None:
        if path not in self._read:
            data = read_note(self.root, path)
            self._read[path] = (
                None
                if isinstance(data, str)
                else _Current(
                    path,
                    hashlib.sha256(data).hexdigest(),
                    data.decode("utf-8", "replace").splitlines(),
                )
            )
        return self._read[path]

    def moved(self, note_key: str) -> _Current | None:
        """Return where the note with this `id:` key is now, among the notes the last build
        did not see as they are (new or changed files), or None. The vault is walked once
        per call, however many notes moved (once per note made one call read it N times)."""
        if not note_key.startswith("id:"):
            return None
        if self._ids is None:
            self._ids = {}
            known = {
                row[0]: row[1:] for row in self.db.execute("SELECT path, mtime_ns, size FROM files")
            }
            for entry in walk(self.root):
                if entry.status != "note" or known.get(entry.path) == (entry.mtime_ns, entry.size):
                    continue
                data = read_note(self.root, entry.path)
                if not isinstance(data, str):
                    found = extract(entry.path, data).vaultd_id
                    if found:
                        self._ids.setdefault(found, entry.path)  # the first in path order
        path = self._ids.get(note_key[3:])
        return self.current(path) if path is not None else None


def fetch_context(
    db: sqlite3.Connection, root: Path, ref: str, *, depth: int = 1, ledger: Path | None = None
) -> dict[str, Any]:
    """Given a REF (as `vaultd kg neighborhood` takes it), return its neighborhood with every
    evidence row marked `stale` or not, and where a stale row's line is now. A row from the
    ledger is checked against the ledger at `ledger` (stale if its row changed or is gone)."""
    found = neighborhood(db, ref, depth=depth)
    vault = _Vault(db, root)
    cited = [row for item in [*found["nodes"], *found["edges"]] for row in item["evidence"]]
    rows = row_hashes(ledger, {r["path"] for r in cited if r["path"].startswith("ledger:")})
    for row in cited:
        if row["path"].startswith("ledger:"):
            _check_ledger(rows, row)
        else:
            _check(vault, row)
    found["source"] = "vault"
    return found


def _check(vault: _Vault, row: dict[str, Any]) -> None:
    current = vault.current(row["path"])
    if current is not None and current.sha256 == row["sha256"]:
        row["stale"] = False
        return
    row["stale"] = True
    if current is None or (row["note"].startswith("id:") and not _same_id(current, row)):
        current = vault.moved(row["note"]) or current
    if current is None:
        row["now"] = {"path": None, "lines": None, "why": "the note is gone from this path"}
        return
    line = _find(current.lines, row["quote"], row["lines"][0])
    changes = [
        *(["moved to " + current.path] if current.path != row["path"] else []),
        *(["changed"] if current.sha256 != row["sha256"] else []),
    ]
    why = "the note " + " and ".join(changes)
    row["now"] = {
        "path": current.path,
        "sha256": current.sha256,
        "lines": [line, line] if line else None,
        "why": why + ("" if line else "; the quoted line is no longer in it"),
    }


def _check_ledger(rows: dict[str, str], row: dict[str, Any]) -> None:
    now = rows.get(row["path"])
    row["stale"] = now != row["sha256"]
    if row["stale"]:
        why = "the ledger row is gone" if now is None else "the ledger row changed"
        row["now"] = {
            "path": row["path"] if now else None,
            "sha256": now,
            "lines": None,
            "why": why,
        }


def _same_id(current: _Current, row: dict[str, Any]) -> bool:
    data = "\n".join(current.lines).encode()
    return extract(current.path, data).vaultd_id == row["note"][3:]


def _find(lines: list[str], quote: str, near: int) -> int | None:
    """Return the line number of `quote` in `lines` nearest to line `near`, or None."""
    cut = quote.endswith("…")
    text = quote[:-1] if cut else quote
    matches = [
        number
        for number, line in enumerate(lines, start=1)
        if (line.startswith(text) if cut else line == text)
    ]
    return min(matches, key=lambda number: (abs(number - near), number)) if matches else None
