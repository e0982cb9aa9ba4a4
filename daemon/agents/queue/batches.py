"""Batches of runs (POST /api/v1/batches): enqueued all at once or not at all, and followed
as one.

A batch's runs are written in one durable transaction with the batch's row: if any of them
cannot be enqueued (its identity key is taken by an unfinished run), none is. A batch's
state is derived from its runs', never stored, so it cannot disagree with them:

    queued     every run is queued
    running    some run is not finished yet
    succeeded  every run succeeded
    failed     every run is finished, and one failed or was cancelled

`batch.finished` is written for the webhooks by a trigger when its last run finishes
(daemon/agents/webhooks/events.py).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.agents.queue.insert import NewRun, insert_run
from daemon.agents.queue.records import IdentityTaken
from daemon.agents.queue.service import Options, RunQueue, duplicate
from daemon.agents.skills.registry import Skill
from daemon.agents.skills.run_errors import InputsInvalid
from daemon.agents.skills.runs import RunView
from daemon.agents.skills.store import as_run
from daemon.core.ledger_db import LedgerDatabase
from daemon.core.timestamps import iso, now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS run_batches (
    id            TEXT PRIMARY KEY,
    requested_by  TEXT,
    webhook       TEXT,
    size          INTEGER NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS skill_runs_batch ON skill_runs(batch_id);
"""
FINISHED = ("succeeded", "failed", "cancelled")
MAX_BATCH = 100


def new_batch_id() -> str:
    return f"batch-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


def state_of(states: Sequence[str]) -> str:
    """Given the states of a batch's runs, return the batch's."""
    if all(state == "queued" for state in states):
        return "queued"
    if not all(state in FINISHED for state in states):
        return "running"
    return "succeeded" if all(state == "succeeded" for state in states) else "failed"


class BatchStore:
    def __init__(self, ledger: LedgerDatabase) -> None:
        self.ledger = ledger
        ledger.ensure_schema(SCHEMA)

    def enqueue(
        self,
        batch_id: str,
        runs: Sequence[NewRun],
        *,
        requested_by: str | None,
        webhook: str | None,
        unfinished_with: Callable[[str], str | None],
    ) -> list[dict[str, Any]]:
        """Durably record a batch and all of its runs in one transaction; return the runs'
        rows as written. Raise IdentityTaken (naming the holder), recording nothing, if any
        run's identity key is taken by an unfinished run. (Two runs of the batch with one
        key are the caller's to refuse first.)"""
        try:
            with self.ledger.transaction(durable=True) as db:
                db.execute(
                    "INSERT INTO run_batches (id, requested_by, webhook, size, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (batch_id, requested_by, webhook, len(runs), now_iso()),
                )
                return [insert_run(db, self.ledger.redact, run) for run in runs]
        except sqlite3.IntegrityError:
            for run in runs:
                holder = unfinished_with(run.key)
                if holder is not None:
                    raise IdentityTaken(holder) from None
            raise  # not an identity: a bug worth its traceback

    def get(self, batch_id: str) -> dict[str, Any] | None:
        rows = self.ledger.rows("SELECT * FROM run_batches WHERE id = ?", (batch_id,))
        return rows[0] if rows else None

    def run_ids(self, batch_id: str) -> list[str]:
        """Return the batch's runs, in the order they were given."""
        rows = self.ledger.rows(
            "SELECT id FROM skill_runs WHERE batch_id = ? ORDER BY rowid", (batch_id,)
        )
        return [str(row["id"]) for row in rows]


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch, as the caller asked for it."""

    skill_key: str
    inputs: Any
    options: Options = field(default_factory=Options)


class Batches:
    """Enqueue a batch of runs at once, and show it."""

    def __init__(self, queue: RunQueue) -> None:
        self.queue = queue
        self.store = BatchStore(queue.runs.store.ledger)

    def enqueue(
        self,
        items: Sequence[BatchItem],
        *,
        requested_by: str | None,
        groups: set[str] | None = None,
        webhook: str | None = None,
        also: Callable[[str], list[tuple[str, tuple[Any, ...]]]] | None = None,
        sees: Callable[[str], bool] = lambda _run_id: True,
    ) -> tuple[str, list[RunView]]:
        """Given runs to enqueue as one batch, enqueue all of them or none; return the
        batch's id and its runs (queued). Raise InputsInvalid naming `runs[N].field` for
        every problem of every run (and for a batch the skills' pace cannot take), what
        Runs.admit raises for the first run it refuses, or Duplicate."""
        if not 1 <= len(items) <= MAX_BATCH:
            raise InputsInvalid("the batch", [("runs", f"1 to {MAX_BATCH} runs, not {len(items)}")])
        batch_id = new_batch_id()
        prepared: list[NewRun] = []
        skills: dict[str, Skill] = {}
        problems: list[tuple[str, str]] = []
        for number, item in enumerate(items):
            try:
                new, skill = self.queue.prepare(
                    item.skill_key,
                    item.inputs,
                    requested_by,
                    groups,
                    item.options,
                    also,
                    sees,
                    batch_id,
                )
            except InputsInvalid as invalid:
                problems += [(f"runs[{number}].{where}", why) for where, why in invalid.problems]
                continue
            prepared.append(new)
            skills[skill.key] = skill
        problems += self._pace(items, skills) + _twice(prepared)
        if problems:
            raise InputsInvalid("the batch", problems)
        try:
            rows = self.store.enqueue(
                batch_id,
                prepared,
                requested_by=requested_by,
                webhook=webhook,
                unfinished_with=self.queue.store.unfinished_with,
            )
        except IdentityTaken as taken:
            raise duplicate(taken, sees) from None
        views = [RunView(as_run(row), []) for row in rows]
        for view in views:
            self.queue.runs.logged(view.run, "run_queued")
        return batch_id, views

    def view(self, batch_id: str) -> dict[str, Any] | None:
        """Return a batch with its runs and its state, or None if there is no such batch."""
        batch = self.store.get(batch_id)
        if batch is None:
            return None
        views = [self.queue.runs.view(run_id) for run_id in self.store.run_ids(batch_id)]
        states = [view.run.state for view in views]
        return {
            "batch_id": batch_id,
            "state": state_of(states),
            "counts": dict(sorted(Counter(states).items())),
            "size": batch["size"],
            "created_at": batch["created_at"],
            "runs": views,
        }

    def _pace(self, items: Sequence[BatchItem], skills: dict[str, Skill]) -> list[tuple[str, str]]:
        """The batch as a whole against each skill's rate_limit and cooldown_seconds (each
        run alone was checked against the runs before it)."""
        counts = Counter(item.skill_key for item in items if item.skill_key in skills)
        problems = []
        hour_ago = iso(datetime.now(UTC) - timedelta(hours=1))
        for key, count in counts.items():
            manifest = skills[key].manifest
            if manifest.cooldown_seconds and count > 1:
                problems.append(
                    (
                        "runs",
                        f"{count} runs of {key}, which runs once per "
                        f"{manifest.cooldown_seconds:g} s (cooldown_seconds)",
                    )
                )
            if manifest.rate_limit:
                before = len(self.queue.runs.store.started_since(key, hour_ago))
                if before + count > manifest.rate_limit:
                    problems.append(
                        (
                            "runs",
                            f"{count} runs of {key} after {before} in the last hour: "
                            f"over its rate_limit of {manifest.rate_limit}/hour",
                        )
                    )
        return problems


def _twice(runs: Sequence[NewRun]) -> list[tuple[str, str]]:
    """A problem for each run of the batch with the identity key of an earlier one."""
    first: dict[str, int] = {}
    problems = []
    for number, run in enumerate(runs):
        if run.key in first:
            problems.append(
                (
                    f"runs[{number}]",
                    f"the same skill and inputs (or identity_key) as runs[{first[run.key]}]",
                )
            )
        first.setdefault(run.key, number)
    return problems
