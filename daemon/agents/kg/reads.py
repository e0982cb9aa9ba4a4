"""The graph as agents read it: neighborhood, search and context of one vault's index, the
same answers for the REST API (`/api/v1/kg/…`), the MCP tools (`kg_neighborhood`,
`kg_semantic_search`, `kg_fetch_context`) and `vaultd kg`.

Read-only by construction: each question opens the index with SQLite's `mode=ro`, so no
agent interface can write to it (only `vaultd kg rebuild` does). A question asked for a
caller of the API or MCP names `hide`: given the ids of the graph's skill runs, it returns
those this caller may not see (run_access.py). Those runs are left out of the graph asked,
their edges and the evidence they state too, so a run of another group is answered exactly
as a run the graph does not hold. Every answer passes through the app's redactor, as MCP
answers do (a secret a note quotes is `[redacted]`); a search result whose note holds a
secret gets its snippet cut from the redacted text, as FTS5's highlighting would break the
secret up ("odoo-[key]-…") past the redactor. Search is full-text (FTS5,
BM25); vectors are not built yet, and every search answer says which ranking it used.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.agents.kg import query
from daemon.agents.kg.context import fetch_context
from daemon.agents.kg.store import KgError, kg_path
from daemon.core.config import Config
from daemon.lifecycle.app import LEDGER_FILE, App

log = logging.getLogger(__name__)

MAX_RESULTS = 100  # a search answers at most this many notes
RANKING = "full_text_bm25"  # what search ranks by; "vectors" once they exist
Hide = Callable[[list[str]], set[str]]  # run ids -> those the caller may not see


@dataclass(frozen=True)
class GraphReads:
    """The questions an agent may ask of one vault's graph."""

    vault: Path
    index: Path
    ledger: Path | None  # the ledger, if `[kg] sources` lists it (for stale ledger rows)
    redact: Callable[[Any], Any] = field(default=lambda value: value)

    @classmethod
    def of(
        cls,
        vault: Path,
        state_dir: Path,
        config: Config,
        redact: Callable[[Any], Any] | None = None,
    ) -> GraphReads:
        ledger = state_dir / LEDGER_FILE if "ledger" in config.kg.sources else None
        return cls(vault, kg_path(vault, state_dir), ledger, redact or (lambda value: value))

    @classmethod
    def of_app(cls, app: App) -> GraphReads:
        return cls.of(app.vault.root, app.state_dir, app.config, app.audit.redact)

    def neighborhood(
        self, ref: str, *, depth: int = 1, edge: str | None = None, hide: Hide | None = None
    ) -> dict[str, Any]:
        """The nodes within `depth` edges of REF, the edges among them, with evidence."""
        with self._open(hide) as db:
            found = query.neighborhood(db, ref, depth=depth, edge_type=edge or None)
        return dict(self.redact(found))

    def context(self, ref: str, *, depth: int = 1, hide: Hide | None = None) -> dict[str, Any]:
        """The neighborhood of REF with every evidence row checked against the vault now."""
        with self._open(hide) as db:
            found = fetch_context(db, self.vault, ref, depth=depth, ledger=self.ledger)
        return dict(self.redact(found))

    def search(self, text: str, *, limit: int = 20, hide: Hide | None = None) -> dict[str, Any]:
        """The notes matching every word of `text`, best first, and how they were ranked."""
        if not 1 <= limit <= MAX_RESULTS:
            raise KgError(f"limit {limit}: expected 1 to {MAX_RESULTS}")
        with self._open(hide) as db:
            hits = query.search_hits(db, text, limit=limit)
            results = [result for _, result in hits]
            for rowid, result in hits:
                # By its row: `path` is not indexed, so asking by path read every note.
                row = db.execute(
                    "SELECT title || ' ' || body FROM search WHERE rowid = ?", (rowid,)
                ).fetchone()
                indexed = str(row[0]) if row else ""
                if self.redact(indexed) != indexed:
                    result["snippet"] = _snippet(self.redact(indexed), re.findall(r"\w+", text))
        return dict(self.redact({"query": text, "ranking": RANKING, "results": results}))

    @contextmanager
    def _open(self, hide: Hide | None = None) -> Iterator[sqlite3.Connection]:
        if not self.index.exists():
            # Said without the index's path: an API caller need not learn the state directory.
            raise KgError("no knowledge graph yet; run `vaultd kg rebuild` first", status=503)
        try:
            db = sqlite3.connect(f"file:{self.index}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as error:
            log.warning("knowledge graph %s: cannot open it (%s)", self.index, error)
            raise KgError("the knowledge graph cannot be opened now", status=503) from None
        try:
            if hide is not None:
                _hide_runs(db, hide)
            yield db
        except sqlite3.Error as error:
            log.warning("knowledge graph %s: %s", self.index, error)
            raise KgError(f"the knowledge graph cannot answer now ({error})", status=503) from None
        finally:
            db.close()


def _hide_runs(db: sqlite3.Connection, hide: Hide) -> None:
    """Shadow the graph's tables, for this connection only, with views that leave out the
    runs `hide` names: their nodes, their edges, and the evidence rows they state. Temporary
    views live in the connection's own temp schema, which SQLite searches first; the index
    (opened mode=ro) is not written."""
    runs = [row[0][4:] for row in db.execute("SELECT key FROM nodes WHERE type = 'run'")]
    hidden = sorted(f"run:{run_id}" for run_id in hide(runs)) if runs else []
    if not hidden:
        return
    db.execute("CREATE TEMP TABLE hidden (key TEXT PRIMARY KEY)")
    db.executemany("INSERT OR IGNORE INTO temp.hidden VALUES (?)", [(key,) for key in hidden])
    out = "NOT IN (SELECT key FROM temp.hidden)"
    db.execute(f"CREATE TEMP VIEW nodes AS SELECT * FROM main.nodes WHERE key {out}")  # noqa: S608
    db.execute(
        f"CREATE TEMP VIEW edges AS SELECT * FROM main.edges WHERE src {out} AND dst {out}"  # noqa: S608
    )
    db.execute(f"CREATE TEMP VIEW evidence AS SELECT * FROM main.evidence WHERE note_key {out}")  # noqa: S608


def _snippet(text: str, words: list[str], size: int = 12) -> str:
    """`size` words of `text` (already redacted) around the first that holds a searched
    word, without highlighting, as FTS5's snippet() would have shown them."""
    tokens = text.split()
    wanted = [word.casefold() for word in words]
    at = next((i for i, t in enumerate(tokens) if any(w in t.casefold() for w in wanted)), 0)
    start = max(0, min(at - size // 3, len(tokens) - size))
    cut = tokens[start : start + size]
    return ("…" if start else "") + " ".join(cut) + ("…" if start + size < len(tokens) else "")
