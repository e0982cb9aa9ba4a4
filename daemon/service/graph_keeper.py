"""Keeping the knowledge graph current while `vaultd run` runs: one thread that brings the
index up to date every `[kg] refresh_seconds` (10 s by default; 0 turns it off).

Only a graph someone built is kept: until `vaultd kg rebuild` has made the index, the keeper
does nothing, so a vault that does not use the graph pays nothing for it. Each refresh is
the same build as `vaultd kg rebuild` (daemon/agents/kg/build.py): a note whose mtime and
size are unchanged is not opened, only a changed one is read again, and the graph is derived
again only when something changed. The ledger is read again only when it has changed
(SQLite's `data_version`, seen from one read-only connection kept for that): reading every
approval and call of a year's ledger took seconds, every 10 s. Supervised like the
watcher: `healthy` while its thread lives, `restart` starts a new one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from daemon.agents.kg.build import BuildReport, rebuild
from daemon.agents.kg.ledger_source import LedgerFact, read_ledger
from daemon.agents.kg.reads import GraphReads
from daemon.agents.kg.store import connect

log = logging.getLogger(__name__)


class GraphKeeper:
    name = "knowledge graph"

    def __init__(
        self, graph: GraphReads, interval: float, *, may_write: Callable[[], bool] = lambda: True
    ) -> None:
        self.graph = graph
        self.interval = interval
        self.may_write = may_write  # this daemon holds the executor lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._watch: sqlite3.Connection | None = None  # the ledger, read-only, for data_version
        self._seen: tuple[int, int, int] | None = None  # the ledger's file and version read
        self._facts: list[LedgerFact] = []

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vaultd-kg", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if not self._thread.is_alive():
                self._close_watch()

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart(self) -> None:
        self.stop()
        self.start()

    def refresh(self) -> BuildReport | None:
        """Bring a built index up to date once; None if there is no index to keep."""
        if not self.graph.index.exists():
            return None
        facts = self._ledger_facts()
        db = connect(self.graph.index, create=False)
        try:
            return rebuild(db, self.graph.vault, ledger=self.graph.ledger, facts=facts)
        finally:
            db.close()

    def _ledger_facts(self) -> list[LedgerFact]:
        """The ledger's facts: read again only if the ledger changed since they were read."""
        ledger = self.graph.ledger
        if ledger is None:
            return []
        version = self._version(ledger)
        if version is None or version != self._seen:
            self._facts = read_ledger(ledger)  # after the version: a later commit reads again
            self._seen = version
        return self._facts

    def _version(self, ledger: Path) -> tuple[int, int, int] | None:
        """(device, inode, data_version) of the ledger, or None if there is none to watch.
        data_version changes whenever another connection commits to the file; a file put
        in its place (a restored backup) is another inode, watched from a new connection."""
        try:
            info = ledger.stat()
            if self._seen is not None and self._seen[:2] != (info.st_dev, info.st_ino):
                self._close_watch()
            if self._watch is None:
                self._watch = sqlite3.connect(
                    f"file:{ledger}?mode=ro", uri=True, check_same_thread=False
                )
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        except (OSError, sqlite3.Error):
            self._close_watch()
            return None
        return info.st_dev, info.st_ino, int(version)

    def _close_watch(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.may_write():
                continue
            try:
                report = self.refresh()
            except Exception as error:  # noqa: BLE001 - a locked or broken index: logged, retried
                said = f"{type(error).__name__}: {error}"
                if said != self._last_error:  # once per distinct error, not every interval
                    log.warning("knowledge graph: refresh failed (%s); trying again", said)
                self._last_error = said
                continue
            self._last_error = ""
            if report is not None and report.derived:
                log.info(
                    "knowledge graph: %d note(s) read again, %d gone; graph derived again",
                    report.extracted,
                    report.removed,
                )
