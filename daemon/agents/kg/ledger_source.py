"""The ledger as a source of the knowledge graph: what was approved, by whom, what it became
at its service, and which skill run asked for it (issue 15, item 2).

    id:<task>  ─approved_by (rule)──► actor:policy | actor:person
    id:<task>  ─executed_as (target)─► remote:<target>:<invoice number, tweet id, …>
    id:<task>  ─landed_as (target)─► commit:<sha>     a code task's commits on its target
    run:<run>  ─requested────────────► id:<task>

A task's node is `id:<task id>`, the key its note has in the vault graph, so these edges
join the note's own (a task whose note is gone is a node of type `task`). Each edge has
one evidence row: the ledger row it came from (`ledger:tasks/<id>`, `ledger:steps/<id>`),
the SHA-256 of that row as canonical JSON, and a quote saying what it records. Dry-run
calls sent nothing, so they are no `executed_as` edge. Read from the ledger's database
read-only; a state directory without a ledger gives nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEDGER = "ledger"
# Result keys that name what a call made, in the order they are preferred.
_REMOTE_KEYS = ("number", "tweet_id", "post_id", "media_id", "comment_id", "message_id", "id")
_MAX_QUOTE = 200
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a commit id, SHA-1 or SHA-256


@dataclass(frozen=True)
class LedgerFact:
    """One edge the ledger states, with its two ends and the row that says it."""

    src: str
    src_type: str
    src_label: str
    type: str
    field: str
    dst: str
    dst_type: str
    dst_label: str
    where: str  # ledger:<table>/<key>
    row_sha256: str
    quote: str


def read_ledger(path: Path) -> list[LedgerFact]:
    """Given the ledger's file, return the facts it states, sorted; [] if it is absent."""
    if not path.is_file():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        facts = [*_approvals(db), *_executions(db)]
        if "skill_runs" in tables:
            facts += _requests(db)
    finally:
        db.close()
    return sorted(facts, key=lambda f: (f.src, f.type, f.field, f.dst, f.where))


def row_hashes(path: Path | None, places: set[str]) -> dict[str, str]:
    """Given the ledger's file and places evidence cites (`ledger:tasks/<id>`,
    `ledger:steps/<id>`), return the SHA-256 each of those rows has now, hashed as
    read_ledger hashes it; a row gone is left out. Only those rows are read: a context
    question costs what it cites, not the whole ledger."""
    tasks = sorted(
        {p.removeprefix("ledger:tasks/") for p in places if p.startswith("ledger:tasks/")}
    )
    steps = sorted(
        {int(p[13:]) for p in places if p.startswith("ledger:steps/") and p[13:].isdigit()}
    )
    if path is None or not path.is_file() or not (tasks or steps):
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    hashes: dict[str, str] = {}
    try:
        for chunk in _chunks(tasks):
            for row in db.execute(
                f"SELECT * FROM tasks WHERE id IN ({_marks(chunk)})",  # noqa: S608
                chunk,
            ):
                hashes[f"ledger:tasks/{row['id']}"] = _row_hash(row)
        for chunk in _chunks(steps):
            for row in db.execute(
                "SELECT s.*, t.file FROM steps s JOIN tasks t ON t.id = s.task_id"  # noqa: S608
                f" WHERE s.id IN ({_marks(chunk)})",
                chunk,
            ):
                hashes[f"ledger:steps/{row['id']}"] = _row_hash(row)
    finally:
        db.close()
    return hashes


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[start : start + 500] for start in range(0, len(items), 500)]


def _marks(chunk: list[Any]) -> str:
    return ", ".join("?" * len(chunk))


def digest(facts: list[LedgerFact]) -> str:
    """Return the SHA-256 of the facts: a build derives the graph again when it changes."""
    text = json.dumps([f.__dict__ for f in facts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _row_hash(row: sqlite3.Row, *, leave_out: str = "") -> str:
    data = dict(row)
    data.pop(leave_out, None)
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _task_label(file: str | None, task_id: str) -> str:
    """A task's label: its note's file name (its id if it has no file)."""
    return Path(str(file or task_id)).name


def _approvals(db: sqlite3.Connection) -> list[LedgerFact]:
    facts = []
    for row in db.execute(
        "SELECT * FROM tasks WHERE approval IN ('auto_approved', 'human_approved') ORDER BY id"
    ):
        by_policy = row["approval"] == "auto_approved"
        actor, label = ("actor:policy", "the policy") if by_policy else ("actor:person", "a person")
        quote = f"{row['approval']} at {row['decided_at'] or '?'}"
        if row["rule"]:
            quote += f" by rule {row['rule']}"
        if row["reason"]:
            quote += f": {row['reason']}"
        facts.append(
            LedgerFact(
                f"id:{row['id']}",
                "task",
                _task_label(row["file"], row["id"]),
                "approved_by",
                str(row["rule"] or ""),
                actor,
                "actor",
                label,
                f"ledger:tasks/{row['id']}",
                _row_hash(row),
                quote[:_MAX_QUOTE],
            )
        )
    return facts


def _executions(db: sqlite3.Connection) -> list[LedgerFact]:
    facts = []
    for row in db.execute(
        "SELECT s.*, t.file FROM steps s JOIN tasks t ON t.id = s.task_id"
        " WHERE s.state = 'succeeded' ORDER BY s.id"
    ):
        try:
            result = json.loads(row["result"]) if row["result"] else {}
        except json.JSONDecodeError:
            continue
        if not isinstance(result, dict) or result.get("dry_run"):
            continue  # nothing was sent
        facts += _landed(row, result)
        for made in _made(result):
            url = result.get("url")
            quote = f"{row['target']} call succeeded at {row['finished_at'] or '?'}: {made}"
            facts.append(
                LedgerFact(
                    f"id:{row['task_id']}",
                    "task",
                    _task_label(row["file"], row["task_id"]),
                    "executed_as",
                    str(row["target"]),
                    f"remote:{row['target']}:{made}",
                    "remote",
                    made,
                    f"ledger:steps/{row['id']}",
                    _row_hash(row),
                    (quote + (f" ({url})" if isinstance(url, str) else ""))[:_MAX_QUOTE],
                )
            )
    return facts


def _landed(row: sqlite3.Row, result: dict[str, Any]) -> list[LedgerFact]:
    """A code task's commits on its target branch (daemon/connectors/code.py's result)."""
    commits, target = result.get("commits"), result.get("target")
    if not isinstance(commits, list) or not isinstance(target, str):
        return []
    return [
        LedgerFact(
            f"id:{row['task_id']}",
            "task",
            _task_label(row["file"], row["task_id"]),
            "landed_as",
            target,
            f"commit:{sha}",
            "commit",
            sha[:12],
            f"ledger:steps/{row['id']}",
            _row_hash(row),
            f"landed on {target} at {row['finished_at'] or '?'} as commit {sha}"[:_MAX_QUOTE],
        )
        for sha in commits
        if isinstance(sha, str) and _SHA.fullmatch(sha)
    ]


def _made(result: dict[str, Any]) -> list[str]:
    """Given a call's result, return what it made at its service (one or more names)."""
    payments = result.get("payments")
    if isinstance(payments, list) and payments:
        return [str(name) for name in payments]
    for key in _REMOTE_KEYS:
        value = result.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return [str(value)]
    return []


def _requests(db: sqlite3.Connection) -> list[LedgerFact]:
    facts = []
    for row in db.execute(
        "SELECT t.*, r.skill FROM tasks t JOIN skill_runs r"
        " ON t.origin LIKE 'run:' || r.id || ':%' ORDER BY t.id"
    ):
        run_id = str(row["origin"]).split(":")[1]
        facts.append(
            LedgerFact(
                f"run:{run_id}",
                "run",
                f"{row['skill']} ({run_id})",
                "requested",
                "",
                f"id:{row['id']}",
                "task",
                _task_label(row["file"], row["id"]),
                f"ledger:tasks/{row['id']}",
                # The task's row alone, as its approval hashes the same place: one place,
                # one hash (context checks a cited row by its place).
                _row_hash(row, leave_out="skill"),
                f"run {run_id} of skill {row['skill']} asked for task {row['id']}"[:_MAX_QUOTE],
            )
        )
    return facts
