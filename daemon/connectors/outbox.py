"""The dry-run outbox: a durable record of every request vaultd would have sent.

It plays the remote service for dry-run connectors: `execute` appends the request and
`lookup(marker)` finds it again, so crash recovery works the same way in dry-run as against
a real service. Like a remote service, it keeps its own records: the append is written
before `execute` returns (a killed process loses nothing) but not fsynced, the same
durability as the DONE record the ledger writes after it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from daemon.core.timestamps import now_iso


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, target: str, marker: str, request: dict[str, Any]) -> dict[str, Any]:
        record = {"at": now_iso(), "target": target, "marker": marker, "request": request}
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
        return record

    def find(self, marker: str) -> dict[str, Any] | None:
        for record in self.records():
            if record.get("marker") == marker:
                return record
        return None

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        found = []
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    # A torn last line is a write that never completed: it did not happen.
                    continue
        return found
