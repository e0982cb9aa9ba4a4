"""Who may see which skill run, over the REST API and MCP: callers that share a group.

A run started here remembers who asked for it and that caller's groups (`run_callers`,
written before the run executes). A caller reads or executes a run if it shares one of
those groups. A run asked for by a caller without groups is the business of that same
caller only (the same `requested_by`: `apikey:NAME`, `jwt:SUB`, or `mcp` for an MCP server
started without --group), and so is a run no caller here asked for (from the CLI, a
`type: skill` task file, or one started before this record was kept). Any other run is
answered exactly as a run that does not exist (RunNotFound: HTTP 404, an MCP tool error
"no run ..."), so its id cannot be probed.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.agents.api.caller import Caller
from daemon.agents.api.keys import NAME
from daemon.agents.queue.batches import Batches, BatchItem
from daemon.agents.queue.service import Options, RunQueue
from daemon.agents.skills.runs import RunNotFound, Runs, RunView
from daemon.core.config import QueueConfig
from daemon.core.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS run_callers (
    run_id        TEXT PRIMARY KEY,
    requested_by  TEXT NOT NULL,
    groups        TEXT NOT NULL
);
"""


def mcp_caller(groups: set[str] | frozenset[str] | list[str]) -> Caller:
    """Given the groups `vaultd mcp --group` was started with, return the caller it is:
    `mcp`, or `mcp:` and its groups (sorted, comma-separated). Raise ConfigError for a
    group that is not a plain word (as an API key's groups must be)."""
    listed = sorted(set(groups))
    for group in listed:
        if not NAME.match(group):
            raise ConfigError(f"--group {group!r}: groups are 1-64 letters, digits, or . _ @ -")
    return Caller("mcp:" + ",".join(listed) if listed else "mcp", frozenset(listed))


def may_see(caller: Caller, requested_by: str | None, groups: list[str] | None) -> bool:
    """Given a caller, and who asked for a run with their groups (None: not recorded),
    return True if the caller may read and execute that run."""
    if groups:
        return bool(caller.groups & set(groups))
    return requested_by is not None and requested_by == caller.requested_by


class RunAccess:
    """The run service as one caller over the API or MCP sees it."""

    def __init__(self, runs: Runs, queue: QueueConfig | None = None) -> None:
        self.runs = runs
        self.ledger = runs.store.ledger
        self.ledger.ensure_schema(SCHEMA)
        self.queue = RunQueue(runs, queue or QueueConfig())
        self.batches = Batches(self.queue)

    def enqueue(
        self, caller: Caller, skill_key: str, inputs: Any, options: Options | None = None
    ) -> RunView:
        """Given a caller, a skill and its inputs, enqueue a run for the caller; return it
        (queued). Who asked, with which groups, is recorded in the enqueuing transaction.
        Raise what RunQueue.enqueue raises (Duplicate naming the run only if the caller
        may see it)."""
        groups = set(caller.groups)
        return self.queue.enqueue(
            skill_key,
            inputs,
            requested_by=caller.requested_by,
            groups=groups,
            options=options,
            also=lambda run_id: [_caller_of(run_id, caller)],
            sees=lambda run_id: self.sees(caller, run_id),
        )

    def enqueue_batch(
        self, caller: Caller, items: list[BatchItem], webhook: str | None = None
    ) -> tuple[str, list[RunView]]:
        """Given a caller and runs, enqueue them as one batch for the caller (all or none);
        return the batch's id and its runs. Raise what Batches.enqueue raises."""
        groups = set(caller.groups)
        return self.batches.enqueue(
            items,
            requested_by=caller.requested_by,
            groups=groups,
            webhook=webhook,
            also=lambda run_id: [_caller_of(run_id, caller)],
            sees=lambda run_id: self.sees(caller, run_id),
        )

    def batch(self, caller: Caller, batch_id: str) -> dict[str, Any]:
        """Given a caller and a batch id, return the batch; raise RunNotFound if there is
        no such batch or the caller may not see its runs (the same words)."""
        found = self.batches.view(batch_id)
        if found is None or not all(self.sees(caller, v.run.id) for v in found["runs"]):
            raise RunNotFound(f"no batch {batch_id!r}")
        return found

    def scheduling(self, run_id: str) -> dict[str, Any] | None:
        """Return how a run is scheduled in the queue (None if it never was)."""
        return self.queue.scheduling(run_id)

    def create(
        self, caller: Caller, skill_key: str, inputs: Any, *, execute: bool = False
    ) -> RunView:
        """Given a caller, a skill and its inputs, create a run for the caller (and start it
        if `execute`); return it. Raise what Runs.create and Runs.execute raise (Forbidden,
        InputsInvalid, Throttled ...)."""
        groups = set(caller.groups)
        view = self.runs.create(skill_key, inputs, requested_by=caller.requested_by, groups=groups)
        with self.ledger.transaction(durable=True) as db:
            db.execute(*_caller_of(view.run.id, caller))
        return self.runs.execute(view.run.id, groups=groups) if execute else view

    def view(self, caller: Caller, run_id: str) -> RunView:
        """Given a caller and a run id, return the run; raise RunNotFound if there is no such
        run or the caller may not see it."""
        self._must_see(caller, run_id)
        return self.runs.view(run_id)

    def execute(self, caller: Caller, run_id: str) -> RunView:
        """Given a caller and a run id, execute the run; raise RunNotFound if the caller may
        not see it, or what Runs.execute raises."""
        self._must_see(caller, run_id)
        return self.runs.execute(run_id, groups=set(caller.groups))

    def listed(self, caller: Caller, *, limit: int) -> list[RunView]:
        """Given a caller, return the latest `limit` runs it may see, newest first."""
        rows = self.ledger.rows(
            "SELECT r.id, r.requested_by, c.groups FROM skill_runs r"
            " LEFT JOIN run_callers c ON c.run_id = r.id ORDER BY r.created_at DESC"
        )
        seen = [row["id"] for row in rows if may_see(caller, *_who(row))][:limit]
        return [self.runs.view(run_id) for run_id in seen]

    def sees(self, caller: Caller, run_id: str) -> bool:
        """Given a caller and a run id, return True if the run exists and the caller may see it."""
        rows = self.ledger.rows(
            "SELECT r.id, r.requested_by, c.groups FROM skill_runs r"
            " LEFT JOIN run_callers c ON c.run_id = r.id WHERE r.id = ?",
            (run_id,),
        )
        return bool(rows) and may_see(caller, *_who(rows[0]))

    def unseen(self, caller: Caller, run_ids: list[str]) -> set[str]:
        """Given a caller and run ids (the knowledge graph's), return those the caller may
        not see: a run of another group, or no longer in the ledger."""
        seen: set[str] = set()
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            rows = self.ledger.rows(
                "SELECT r.id, r.requested_by, c.groups FROM skill_runs r"  # noqa: S608
                " LEFT JOIN run_callers c ON c.run_id = r.id"
                f" WHERE r.id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            seen.update(row["id"] for row in rows if may_see(caller, *_who(row)))
        return set(run_ids) - seen

    def _must_see(self, caller: Caller, run_id: str) -> None:
        if not self.sees(caller, run_id):
            raise RunNotFound(f"no run {run_id!r}")  # the words of a run that does not exist


def _who(row: dict[str, Any]) -> tuple[str | None, list[str] | None]:
    groups = json.loads(row["groups"]) if row["groups"] is not None else None
    return row["requested_by"], groups


def _caller_of(run_id: str, caller: Caller) -> tuple[str, tuple[Any, ...]]:
    """The statement that records who asked for a run, with which groups (what `sees` reads
    later), for the transaction that makes the run."""
    return (
        "INSERT INTO run_callers (run_id, requested_by, groups) VALUES (?, ?, ?)",
        (run_id, caller.requested_by, json.dumps(sorted(caller.groups))),
    )
