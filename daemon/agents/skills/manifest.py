"""What a skill is: the `skill.json` beside its `execute.py` (research note §5).

    my-skill/
      skill.json    name, description, parameters (JSON Schema), intents, guardrails,
                    approval_required, rate_limit, timeout_s, cooldown_seconds,
                    required_groups, tools, channel
      execute.py    def run(inputs, tools): ... return a JSON-able result

A skill reaches the world only through `tools`, and only through the tools its manifest
names. Destructive tools never act directly: they drop a task file into Needs_Action/, and
the approval lifecycle decides.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from daemon.core.config import CHANNEL
from daemon.core.models import Platform

# The validation context key that marks a manifest shipped with vaultd (registry.load_skill).
BUILTIN = "builtin"

# Tools a skill may name, and whether each changes the world (and so becomes a task file).
TOOLS: dict[str, bool] = {
    "social.post": True,
    "odoo.create_invoice": True,
    "odoo.register_payment": True,
    "code.request_change": True,
    "briefing.generate": False,
    "vault.status": False,
}
ToolName = Literal[
    "social.post",
    "odoo.create_invoice",
    "odoo.register_payment",
    "code.request_change",
    "briefing.generate",
    "vault.status",
]


class Guardrails(BaseModel):
    """Limits checked on every tool call of a run, before anything is requested."""

    model_config = ConfigDict(extra="forbid")

    max_amount: Decimal | None = Field(default=None, gt=0)
    allowed_platforms: list[Platform] | None = None


class SkillManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")
    description: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (draft 2020-12) of the inputs; an object schema",
    )
    intents: list[str] = Field(default_factory=list)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    # True: every world-changing request of this skill waits for a person, even where the
    # policy would approve it by itself. False: the policy decides, as for any task file.
    approval_required: bool = True
    rate_limit: int | None = Field(default=None, gt=0, description="runs per hour")
    timeout_s: float = Field(default=60, gt=0, le=3600)
    cooldown_seconds: float = Field(default=0, ge=0)
    required_groups: list[str] = Field(default_factory=list)
    tools: list[ToolName] = Field(default_factory=list)
    # The queue channel its runs wait in (`[queue.channels]` in the config gives capacities).
    channel: str = Field(default="default", pattern=f"^{CHANNEL}$")

    @field_validator("parameters")
    @classmethod
    def _a_json_schema_of_an_object(
        cls, schema: dict[str, Any], info: ValidationInfo
    ) -> dict[str, Any]:
        # The built-in skills ship with vaultd and tests/test_skills.py checks their schemas
        # against the metaschema; checking them again on every start cost jsonschema's import.
        if not (info.context or {}).get(BUILTIN):
            problem = _schema_problem(json.dumps(schema, sort_keys=True))
            if problem is not None:
                raise ValueError(f"not a valid JSON Schema: {problem}")
        if schema.get("type") != "object":
            raise ValueError('must be an object schema ("type": "object")')
        return schema

    def destructive_tools(self) -> list[str]:
        return [tool for tool in self.tools if TOOLS[tool]]

    def input_errors(self, inputs: Any) -> list[tuple[str, str]]:
        """Return every (field path, message) by which inputs break the parameters schema."""
        from jsonschema import Draft202012Validator  # noqa: PLC0415 (a tenth of a second)

        validator = Draft202012Validator(self.parameters)
        return [
            ("/".join(str(part) for part in error.absolute_path) or "(inputs)", error.message)
            for error in sorted(validator.iter_errors(inputs), key=lambda e: list(e.path))
        ]


@lru_cache(maxsize=256)
def _schema_problem(schema_json: str) -> str | None:
    """Given a JSON Schema as canonical JSON, return why it is not a valid draft 2020-12
    schema, or None. Checked once per distinct schema: every open of a vault loads the same
    builtin skills, and checking a schema against the metaschema costs about 10 ms."""
    from jsonschema import Draft202012Validator  # noqa: PLC0415 (a tenth of a second)
    from jsonschema.exceptions import SchemaError  # noqa: PLC0415

    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as error:
        return error.message
    return None
