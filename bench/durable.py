"""The durable baseline: the physical limit for vaultd's promise on one auto-approved file.

vaultd promises that nothing destructive runs twice, that no file is lost and that every
action can be explained. For one auto-approved task file, the least any program keeping
that promise must do is what `baseline` does, in this order, per file:

1. read the note and parse its frontmatter (python-frontmatter, libyaml where it can);
2. commit an INTENT row in its own transaction, in a real SQLite file in WAL mode with
   `PRAGMA synchronous=FULL` (one WAL fsync): before a remote call, the ledger must be able
   to say it may have been made, or a crash makes the call run twice;
3. commit a DONE row (the call's answer) in its own transaction, with the same
   `synchronous=FULL` (one WAL fsync), as issue 13 defines the baseline;
4. rewrite the note once with its stamps (the status and the result) through a temporary
   file in the same folder: write, fsync, `os.replace`, then fsync of the folder, so that
   the user's body is on disk before the new name replaces the old one, and the new name
   itself is on disk;
5. move the note into Done/ with one rename, then fsync Done/, so the note's place is on
   disk;
6. append one JSON line to a log file opened once for the whole run, flushed per line (in
   the kernel's hands, so a kill -9 cannot lose it; vaultd's audit log promises that much).

Nothing else: no validation model, no policy, no approval request, no dry-run record, no
second rewrite. vaultd itself does not fsync the folders (steps 4 and 5) and commits DONE
with `synchronous=NORMAL`; the baseline does them anyway, as the issue asks, so the ratio
vaultd ÷ baseline errs on vaultd's side.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import frontmatter
import yaml

try:
    from yaml import CSafeDumper as Dumper
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as Dumper  # type: ignore[assignment]

SCHEMA = """
CREATE TABLE steps (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    at TEXT NOT NULL
)
"""


def baseline(incoming: Path, root: Path) -> float:
    """Given a folder of task files, take each through the six steps of the module's
    docstring into `root`/Done/, with the ledger and the log under `root`; return files/s.
    Raise RuntimeError if a file did not reach Done/.
    """
    done = root / "Done"
    done.mkdir(parents=True)
    paths = sorted(incoming.iterdir())
    loop = _Loop(incoming, done, root)
    try:
        started = time.perf_counter()
        for number, path in enumerate(paths):
            loop.one_file(path, f"t{number}")
        elapsed = time.perf_counter() - started
    finally:
        loop.close()
    landed = len(list(done.iterdir()))
    if landed != len(paths):
        raise RuntimeError(f"durable baseline: {landed} of {len(paths)} files reached Done/")
    return len(paths) / elapsed


class _Loop:
    """The ledger, the two folders and the log the baseline holds open for a whole run."""

    def __init__(self, incoming: Path, done: Path, root: Path) -> None:
        self.done = done
        self.db = sqlite3.connect(root / "ledger.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(SCHEMA)
        self.folder_fd = os.open(incoming, os.O_RDONLY | os.O_DIRECTORY)
        self.done_fd = os.open(done, os.O_RDONLY | os.O_DIRECTORY)
        self.log: TextIO = (root / "log.json").open("a", encoding="utf-8")

    def close(self) -> None:
        self.log.close()
        os.close(self.done_fd)
        os.close(self.folder_fd)
        self.db.close()

    def one_file(self, path: Path, task: str) -> None:
        """Given a task file and a task id, take it through the six steps into Done/."""
        text = path.read_text(encoding="utf-8")  # 1
        post = frontmatter.loads(text)
        payload = json.dumps(post.metadata, sort_keys=True, default=str).encode()
        payload_hash = hashlib.sha256(payload).hexdigest()
        now = datetime.now(UTC).isoformat()
        self.db.execute("BEGIN IMMEDIATE")  # 2
        step = self.db.execute(
            "INSERT INTO steps (task, payload_hash, state, at) VALUES (?, ?, 'intent', ?)",
            (task, payload_hash, now),
        ).lastrowid
        self.db.execute("COMMIT")
        result = {"dry_run": True, "id": f"dry-{task}"}
        self.db.execute("BEGIN IMMEDIATE")  # 3
        self.db.execute(
            "UPDATE steps SET state = 'done', result = ? WHERE id = ?", (json.dumps(result), step)
        )
        self.db.execute("COMMIT")
        stamps = yaml.dump(
            {"id": task, "status": "done", "result": result}, Dumper=Dumper, sort_keys=False
        )
        end = text.index("\n---", 3) + 1  # the closing --- line: stamps go just before it
        tmp = path.with_name(f".{path.name}.tmp")  # 4
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text[:end] + stamps + text[end:])
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        os.fsync(self.folder_fd)
        path.rename(self.done / path.name)  # 5
        os.fsync(self.done_fd)
        line = {
            "timestamp": now,
            "event": "executed",
            "task_id": task,
            "content_hash": payload_hash,
        }
        self.log.write(json.dumps(line) + "\n")  # 6
        self.log.flush()
