"""Enqueuing a skill run: the checks every interface shares, then one durable transaction.

The REST API, MCP's start_skill_run and `vaultd runs create --execute` all come here. The
caller, the inputs, the channel and the skill's pace are checked first (a 4xx error naming
the field, and nothing enqueued); the run, its queue row and whatever the interface records
beside it (who asked, with which groups) are then written in one transaction, with the
identity key held UNIQUE among unfinished runs by the database itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.agents.queue.insert import NewRun
from daemon.agents.queue.records import IdentityTaken, Scheduling, callers_key, identity_key
from daemon.agents.queue.store import QueueStore
from daemon.agents.skills.registry import Skill
from daemon.agents.skills.run_errors import Duplicate, InputsInvalid
from daemon.agents.skills.runs import Runs, RunView
from daemon.agents.skills.store import Run, as_run
from daemon.core.config import QueueConfig


@dataclass(frozen=True)
class Options:
    """What a caller may say of how its run is scheduled (None: the config's default)."""

    priority: int = 10
    eta: datetime | None = None
    max_retries: int | None = None
    identity_key: str | None = None
    # Runs that must succeed first; the run fails if one of them fails or is cancelled.
    depends_on: tuple[str, ...] = ()
    # Told when the run ends (daemon/agents/webhooks/); checked by the caller (check_url).
    webhook: str | None = None


class RunQueue:
    """The run service's queue: enqueue, and show how a run is scheduled."""

    def __init__(self, runs: Runs, config: QueueConfig) -> None:
        self.runs = runs
        self.config = config
        self.store = QueueStore(runs.store.ledger)

    def enqueue(
        self,
        skill_key: str,
        inputs: Any,
        *,
        requested_by: str | None,
        groups: set[str] | None = None,
        options: Options | None = None,
        also: Callable[[str], list[tuple[str, tuple[Any, ...]]]] | None = None,
        sees: Callable[[str], bool] = lambda _run_id: True,
    ) -> RunView:
        """Given a skill, its inputs and who asks, enqueue a run; return it (queued).

        `also(run_id)` gives statements recorded in the same transaction; `sees(run_id)`
        says whether the caller may learn an existing run's id (or depend on it). Raise what
        Runs.admit raises, InputsInvalid for an unknown channel or a parent that is unknown
        or failed, and Duplicate if an unfinished run has the same identity key (its id only
        if `sees` it).
        """
        new, _ = self.prepare(skill_key, inputs, requested_by, groups, options, also, sees)
        try:
            written = self.store.enqueue(
                new.run_id,
                new.skill,
                new.inputs,
                requested_by=new.requested_by,
                key=new.key,
                scheduling=new.scheduling,
                also=new.also,
                parents=new.parents,
            )
        except IdentityTaken as taken:
            raise duplicate(taken, sees) from None
        run = as_run(written)
        self.runs.logged(run, "run_queued")
        # The run as enqueued (queued, no trace yet): a worker may have started it since.
        return RunView(run, [])

    def prepare(  # noqa: PLR0917 - enqueue's arguments, handed on
        self,
        skill_key: str,
        inputs: Any,
        requested_by: str | None,
        groups: set[str] | None,
        options: Options | None,
        also: Callable[[str], list[tuple[str, tuple[Any, ...]]]] | None,
        sees: Callable[[str], bool],
        batch_id: str | None = None,
    ) -> tuple[NewRun, Skill]:
        """Check a run to enqueue and return it ready to write, with its skill; raise what
        `enqueue` raises, Duplicate excepted."""
        options = options or Options()
        skill = self.runs.admit(skill_key, inputs, groups)
        channel = skill.manifest.channel
        if channel not in self.config.channels:
            known = ", ".join(sorted(self.config.channels))
            raise InputsInvalid(
                skill_key,
                [("channel", f"skill's channel {channel!r} is not in [queue.channels] ({known})")],
            )
        parents = self._parents(options.depends_on, sees)
        run_id = f"run-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
        key = (
            callers_key(skill_key, options.identity_key)
            if options.identity_key
            else identity_key(skill_key, inputs)
        )
        scheduling = Scheduling(
            channel=channel,
            priority=options.priority,
            eta=options.eta.timestamp() if options.eta else None,
            max_retries=(
                self.config.max_retries if options.max_retries is None else options.max_retries
            ),
            retry_pattern=tuple(self.config.retry_pattern.items()),
        )
        statements = (*(also(run_id) if also else []), *_webhook(run_id, options.webhook))
        return (
            NewRun(
                run_id,
                skill_key,
                inputs,
                requested_by,
                key,
                scheduling,
                statements,
                parents,
                batch_id,
            ),
            skill,
        )

    def _parents(self, depends_on: tuple[str, ...], sees: Callable[[str], bool]) -> list[str]:
        """Given the runs a new run depends on, return them (once each); raise InputsInvalid
        naming `depends_on` for one that does not exist (or the caller may not see: the
        same words), or that already failed or was cancelled."""
        problems = []
        parents = list(dict.fromkeys(depends_on))
        for parent in parents:
            run = self.runs.store.get(parent)
            if run is None or not sees(parent):
                problems.append(("depends_on", f"no run {parent!r}"))
            elif run.state in ("failed", "cancelled"):
                problems.append(("depends_on", f"run {parent} {run.state}: it cannot succeed"))
        if problems:
            raise InputsInvalid("the run", problems)
        return parents

    def listed(
        self,
        *,
        state: str | None = None,
        channel: str | None = None,
        skill: str | None = None,
        limit: int = 50,
    ) -> list[tuple[Run, str | None]]:
        """Return the latest runs (newest first) with their channel (None: never enqueued),
        only those in `state`, enqueued in `channel` and of `skill`, as each is given."""
        query = "SELECT r.id, q.channel FROM skill_runs r LEFT JOIN run_queue q ON q.run_id = r.id"
        where, args = [], []
        for column, value in (("r.state", state), ("q.channel", channel), ("r.skill", skill)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self.runs.store.ledger.rows(
            query + " ORDER BY r.created_at DESC LIMIT ?", [*args, limit]
        )
        found = [(self.runs.store.get(row["id"]), row["channel"]) for row in rows]
        return [(run, channel) for run, channel in found if run is not None]

    def scheduling(self, run_id: str) -> dict[str, Any] | None:
        return self.store.entry(run_id)


def _webhook(run_id: str, url: str | None) -> list[tuple[str, tuple[Any, ...]]]:
    """The statement that records a run's own webhook, in its enqueuing transaction."""
    return [("UPDATE skill_runs SET webhook = ? WHERE id = ?", (url, run_id))] if url else []


def duplicate(taken: IdentityTaken, sees: Callable[[str], bool]) -> Duplicate:
    """The 409 for an identity key an unfinished run holds: naming it if the caller sees it."""
    visible = sees(taken.run_id)
    shown = taken.run_id if visible else "(a run you may not see)"
    return Duplicate(
        f"an identical run is not finished yet: {shown} (same skill and inputs, or "
        "the same identity_key)",
        taken.run_id if visible else None,
    )
