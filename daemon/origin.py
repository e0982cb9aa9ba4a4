"""Where a task file came from, when vaultd itself wrote it for a skill run.

A world-changing tool call of a skill becomes a task file whose frontmatter says

    origin: {run: run-20261122-1a2b3c4d, step: <token>, skill: post-social-media,
             file: <the file's name>, approval_required: true}

The pipeline records `run:<run>:<token>` as the task's origin (for the file of that name
only, and only once), which is how the run learns what became of its request.
`approval_required` can only make the policy stricter: a file claiming it is asked about
like any other, and a file leaving it out is decided by the policy, so copying or forging
this key gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.ledger import Ledger
from daemon.policy import Decision


@dataclass(frozen=True)
class Origin:
    key: str | None  # what the ledger records; None if absent or already claimed
    skill: str | None
    approval_required: bool


def read_origin(meta: dict[str, Any], name: str, ledger: Ledger) -> Origin:
    """Given a note's frontmatter and file name, return its origin.

    Only the file the run wrote is its request: the name must be the one the run gave it,
    and only the first file to claim an origin gets it. A copy still has
    `approval_required`, which only makes the policy stricter.
    """
    value = meta.get("origin")
    if not isinstance(value, dict):
        return Origin(None, None, False)
    run, token, skill = value.get("run"), value.get("step"), value.get("skill")
    strict = value.get("approval_required") is True
    if not (isinstance(run, str) and isinstance(token, str)) or value.get("file") != name:
        return Origin(None, None, strict)
    key: str | None = f"run:{run}:{token}"
    if ledger.rows("SELECT 1 FROM tasks WHERE origin = ?", (key,)):
        key = None  # a copy of a request a run made: it is not that request
    return Origin(key, skill if isinstance(skill, str) else None, strict)


def stricter(decision: Decision, origin: Origin) -> Decision:
    """Return the decision, turned into "ask a person" if the skill demands it."""
    if decision.needs_approval or not origin.approval_required:
        return decision
    who = f"skill {origin.skill}" if origin.skill else "the skill that wrote this task"
    return Decision(
        True,
        "skill_requires_approval",
        f"{who} requires a person's approval for every request",
        decision.amount,
        decision.currency,
    )
