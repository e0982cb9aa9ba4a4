"""The guards a task an agent writes itself must pass: those of the skill for its action type.

One rule for every door: a task written through MCP's create_task_file obeys the skill that
would have made the same request in a run (registry.ACTION_SKILLS: social_post →
post-social-media, odoo_invoice → create-invoice, odoo_payment → register-payment):

- the caller's groups must include one of the skill's `required_groups` (the check runs use,
  `Runs._check_groups`), else the task is refused before anything is looked at;
- the skill's guardrails (`max_amount`, `allowed_platforms`) apply, as to a run's tool call;
- a person approves it if the skill says `approval_required`, if that skill is missing or
  invalid (the strictest default, never a bypass), or if the door is one of
  `[policy] require_approval_from`; the demand is recorded with the task's origin in the
  ledger before the file is written (daemon/core/origin.py), so a copy cannot shed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.agents.skills.registry import Registry, Skill
from daemon.agents.skills.runs import Runs
from daemon.agents.skills.tools import Refused, _check_guardrails
from daemon.core.errors import VaultdError
from daemon.core.ledger import Ledger
from daemon.core.models import Action
from daemon.core.origin import DOOR_SCHEMA, Demand, door_demand, door_stamp


class TaskRefused(VaultdError):
    """The task file was not written; the message says why, naming each field."""


@dataclass(frozen=True)
class Door:
    """One caller at one door: the door ("mcp"), who calls (recorded as the task's origin,
    such as `mcp:finance`), their groups, and the doors whose tasks always need a person."""

    name: str
    caller: str
    groups: frozenset[str]
    require_from: tuple[str, ...]


@dataclass(frozen=True)
class Admitted:
    """A task type this caller may write: the skill that guards it and why a person must
    approve it (None: the policy decides)."""

    kind: str
    skill_key: str | None
    skill: Skill | None
    demand: Demand | None

    def stamp(self, door: Door) -> dict[str, Any]:
        """Return a fresh `origin` stamp for a task file of this type written at `door`."""
        return door_stamp(door.name, door.caller, self.skill_key, self.demand)


@dataclass(frozen=True)
class TaskGuard:
    """The guards of one door, over the skills of one registry and the ledger of one vault."""

    registry: Registry
    ledger: Ledger
    door: Door

    def __post_init__(self) -> None:
        self.ledger.ensure_schema(DOOR_SCHEMA)

    def admit(self, kind: str) -> Admitted:
        """Given a task's action type, return what guards it for this caller; raise
        TaskRefused if the caller lacks every group the guarding skill requires."""
        key, skill = self.registry.for_action(kind)
        if skill is not None:
            try:
                Runs._check_groups(skill, set(self.door.groups))  # the very check runs pass
            except VaultdError as error:
                raise TaskRefused(self._no_group(kind, skill, str(error))) from None
        requires = skill.manifest.approval_required if skill is not None else None
        demand = door_demand(
            self.door.name,
            self.door.caller,
            action_type=kind,
            skill_key=key,
            skill_requires=requires,
            require_from=self.door.require_from,
        )
        return Admitted(kind, key, skill, demand)

    def check(self, admitted: Admitted, action: Action) -> None:
        """Given an admitted task and its validated action, return if the skill's guardrails
        allow it; raise TaskRefused naming the guardrail otherwise."""
        if admitted.skill is None:
            return
        try:
            _check_guardrails(admitted.skill.manifest, action)
        except Refused as error:
            raise TaskRefused(
                f"task refused, nothing written: {admitted.kind} tasks obey skill "
                f"{admitted.skill.key}: {error}"
            ) from None

    def _no_group(self, kind: str, skill: Skill, why: str) -> str:
        mine = ", ".join(sorted(self.door.groups)) or "none"
        needed = sorted(skill.manifest.required_groups)
        how = (
            f"; start the server with `vaultd mcp --group {needed[0]}` to write them"
            if self.door.name == "mcp"
            else ""
        )
        return (
            f"task refused, nothing written: {kind} tasks obey {why} (this caller's groups: "
            f"{mine}){how}"
        )
