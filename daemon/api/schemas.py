"""The request and response bodies, as the OpenAPI document shows them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from daemon.skills.registry import Skill


class CreateRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill_key: str = Field(description="the skill to run (GET /api/v1/skills lists them)")
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="checked against the skill's `parameters` schema"
    )
    execute: bool = Field(default=False, description="start the run now; else it is a draft")


class SkillOut(BaseModel):
    """One skill: its `skill.json`, under its key."""

    model_config = ConfigDict(extra="allow")

    key: str
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON Schema (draft 2020-12) of the inputs")
    intents: list[str]
    guardrails: dict[str, Any]
    approval_required: bool
    rate_limit: int | None = Field(description="runs per hour")
    timeout_s: float
    cooldown_seconds: float
    required_groups: list[str]
    tools: list[str]
    builtin: bool

    @classmethod
    def of(cls, skill: Skill) -> SkillOut:
        return cls(key=skill.key, builtin=skill.builtin, **skill.manifest.model_dump(mode="json"))


class SkillList(BaseModel):
    skills: list[SkillOut]


class TraceStepOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    attempt: int
    seq: int
    tool: str
    state: str
    inputs: Any = None
    output: Any = None
    error: str | None = None
    duration_ms: int | None = None
    task_file: str | None = Field(default=None, description="the task file a request wrote")


class RunOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    skill: str
    state: str = Field(
        description="draft, queued, running, awaiting_approval, succeeded, failed or cancelled"
    )
    inputs: Any = None
    output: Any = None
    error: str | None = None
    requested_by: str | None = None
    attempt: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    trace: list[TraceStepOut]


class Problem(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: str
    problems: list[Problem] | None = None
