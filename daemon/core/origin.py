"""Where a task file came from, when vaultd wrote it: for a skill run, or for an agent at a door.

A world-changing tool call of a skill becomes a task file whose frontmatter says

    origin: {run: run-20261122-1a2b3c4d, step: <token>, skill: post-social-media,
             file: <the file's name>, approval_required: true}

The pipeline records `run:<run>:<token>` as the task's origin (for the file of that name
only, and only once), which is how the run learns what became of its request.

A task an agent writes itself through a door (MCP's create_task_file) says

    origin: {door: mcp, by: "mcp:finance", step: <token>, skill: create-invoice,
             approval_required: true}

and, as a run records its step before it writes the file, the door records the same in the
ledger (`door_origins`: the token, who asked, the name it wrote, and why a person must
approve) before the file exists. There the ledger's row decides, not the file: a file that
carries the token is that request or a copy of it, and the file under the name the door
wrote is that request even with its origin cut out; either gets the row's origin
(`<by>@<token>`, such as `mcp:finance@3fa9c1d2e4b5a6f7`) and the row's demand for a
person. A door origin that no row backs is forged: nothing is recorded, a person approves.

`approval_required` can only make the policy stricter: a file claiming it is asked about
like any other, and a file leaving it out (and not bound by a door's row) is decided by the
policy, so copying or forging this key gains nothing.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from daemon.core import ledger as task_states
from daemon.core.ledger import Ledger
from daemon.core.policy import Decision
from daemon.core.timestamps import now_iso

DOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS door_origins (
    token       TEXT PRIMARY KEY,
    door        TEXT NOT NULL,
    caller      TEXT NOT NULL,
    skill       TEXT,
    file        TEXT NOT NULL,
    rule        TEXT,
    reason      TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS door_origins_file ON door_origins(file);
"""
# How each door is named to the person who approves.
DOOR_NAMES = {"mcp": "vaultd's MCP server", "api": "vaultd's REST API"}
# A task file under a door's name is that door's request while its task has not ended.
_STILL_OPEN = (task_states.PENDING, task_states.APPROVED)


@dataclass(frozen=True)
class Origin:
    key: str | None  # what the ledger records; None if absent, already claimed or forged
    skill: str | None
    approval_required: bool
    # Why a person must approve, when it is not "the skill requires it" (a door's demand).
    rule: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Demand:
    """Why every task an agent writes at a door for this action needs a person."""

    rule: str
    reason: str


def door_demand(
    door: str,
    caller: str,
    *,
    action_type: str,
    skill_key: str | None,
    skill_requires: bool | None,
    require_from: Collection[str],
) -> Demand | None:
    """Given the door and who calls it, the task's action type, the key of the skill that
    guards it and whether that skill requires approval (None: the skill is missing or
    invalid), and the doors of `[policy] require_approval_from`, return why a person must
    approve the task; None if the policy may decide it."""
    if skill_requires is None:
        which = (
            f"skill {skill_key}, which guards {action_type} tasks, is missing or invalid"
            if skill_key
            else f"no skill guards {action_type} tasks"
        )
        return Demand("skill_missing", f"{which}, so a person approves each one")
    if skill_requires:
        return Demand(
            "skill_requires_approval",
            f"skill {skill_key} requires a person's approval for every request",
        )
    if door in require_from:
        return Demand(
            "origin_requires_approval",
            f"written by {caller} through {DOOR_NAMES.get(door, door)}: [policy] "
            f"require_approval_from asks a person for every task an agent writes there",
        )
    return None


def door_stamp(
    door: str, caller: str, skill_key: str | None, demand: Demand | None
) -> dict[str, Any]:
    """Given a door, its caller, the guarding skill's key and the demand (None: the policy
    decides), return a fresh `origin` stamp for the task file's frontmatter."""
    stamp: dict[str, Any] = {"door": door, "by": caller, "step": secrets.token_hex(8)}
    if skill_key:
        stamp["skill"] = skill_key
    if demand is not None:
        stamp["approval_required"] = True
    return stamp


def issue(ledger: Ledger, stamp: dict[str, Any], demand: Demand | None, file: str) -> None:
    """Given a door's stamp, its demand and the name the file is to get, record them in the
    ledger (durably): call this before the file is written."""
    ledger.ensure_schema(DOOR_SCHEMA)
    with ledger.transaction(durable=True) as db:
        db.execute(
            "INSERT INTO door_origins (token, door, caller, skill, file, rule, reason,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stamp["step"],
                stamp["door"],
                stamp["by"],
                stamp.get("skill"),
                file,
                demand.rule if demand else None,
                demand.reason if demand else None,
                now_iso(),
            ),
        )


def written_as(ledger: Ledger, stamp: dict[str, Any], file: str) -> None:
    """Given an issued stamp and the name its file got (another if the one wanted was
    taken), record that name."""
    with ledger.transaction(durable=True) as db:
        db.execute("UPDATE door_origins SET file = ? WHERE token = ?", (file, stamp["step"]))


def read_origin(meta: dict[str, Any], name: str, ledger: Ledger) -> Origin:
    """Given a note's frontmatter and file name, return its origin.

    A door's request is whatever the ledger's row for it says (see the module's text). Only
    the file a run wrote is its request: the name must be the one the run gave it, and only
    the first file to claim an origin gets it. A copy still has `approval_required`, which
    only makes the policy stricter.
    """
    value = meta.get("origin")
    door = _door_origin(value if isinstance(value, dict) else None, name, ledger)
    if door is not None:
        return door
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


def _door_origin(value: dict[str, Any] | None, name: str, ledger: Ledger) -> Origin | None:
    """Return the origin a door's row gives this file, the one of a forged door claim, or
    None if the file is no door's request."""
    claims = value is not None and "door" in value
    token = value.get("step") if value is not None and claims else None
    query = "SELECT * FROM door_origins WHERE token = ?"
    rows = _rows(ledger, query, (token,)) if isinstance(token, str) else []
    if not rows:
        named = _rows(
            ledger, "SELECT * FROM door_origins WHERE file = ? ORDER BY created_at DESC", (name,)
        )
        rows = [row for row in named if _still_open(ledger, _key(row))]
    if rows:
        row = rows[0]
        required = row["rule"] is not None
        return Origin(_key(row), row["skill"], required, row["rule"], row["reason"])
    if claims:
        return Origin(
            None,
            None,
            True,
            "unverified_origin",
            "this task claims an origin that vaultd has no record of, so a person approves it",
        )
    return None


def _key(row: dict[str, Any]) -> str:
    return f"{row['caller']}@{row['token']}"


def _still_open(ledger: Ledger, key: str) -> bool:
    """Return True if no task has this origin yet, or its task is still asked or approved."""
    states = {
        row["state"] for row in ledger.rows("SELECT state FROM tasks WHERE origin = ?", (key,))
    }
    return states <= set(_STILL_OPEN)


def _rows(ledger: Ledger, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    try:
        return ledger.rows(sql, args)
    except sqlite3.OperationalError:  # no door ever wrote a task into this ledger
        return []


def stricter(decision: Decision, origin: Origin) -> Decision:
    """Given the policy's decision and the task's origin, return the decision, turned into
    "ask a person" if the origin demands it (the skill's approval_required, or a door's
    rule: daemon/agents/mcp/task_guard.py)."""
    if decision.needs_approval or not origin.approval_required:
        return decision
    if origin.rule and origin.reason:
        rule, reason = origin.rule, origin.reason
    else:
        who = f"skill {origin.skill}" if origin.skill else "the skill that wrote this task"
        rule, reason = (
            "skill_requires_approval",
            f"{who} requires a person's approval for every request",
        )
    return Decision(True, rule, reason, decision.amount, decision.currency)
