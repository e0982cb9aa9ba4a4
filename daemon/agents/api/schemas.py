"""The request and response bodies, as the OpenAPI document shows them.

A skill's inputs are described by `input_schema` and a run is named by `run_id` (the seed
PRD's names); `parameters` and `id`, the names used before, are still given, marked
deprecated, for one release (see daemon/agents/api/views.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from daemon.agents.api.views import skill_json
from daemon.agents.queue.batches import MAX_BATCH
from daemon.agents.skills.registry import Skill

INPUT_SCHEMA = "JSON Schema (draft 2020-12) of the inputs"


class CreateRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill_key: str = Field(description="the skill to run (GET /api/v1/skills lists them)")
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="checked against the skill's `input_schema`"
    )
    execute: bool = Field(
        default=False,
        description="enqueue the run (202 Accepted, state queued; the daemon's workers run "
        "it); else it is a draft",
    )
    priority: int = Field(default=10, ge=0, le=1000, description="with execute: lower first")
    eta: AwareDatetime | None = Field(default=None, description="with execute: not before")
    max_retries: int | None = Field(
        default=None, ge=0, le=100, description="with execute: tries after the first"
    )
    identity_key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._:@-]{1,128}$",
        description="with execute: no two unfinished runs share one (default: SHA-256 of "
        "the skill and its canonical inputs); a duplicate is 409 with the run's id",
    )
    depends_on: list[Annotated[str, Field(pattern=r"^run-\d{8}-[0-9a-f]{8}$")]] = Field(
        default_factory=list,
        max_length=100,
        description="with execute: runs that must succeed first (it fails if one fails)",
    )

    webhook: str | None = Field(
        default=None,
        max_length=2048,
        description="with execute: a URL told when the run ends (or waits for approval), "
        "signed as Standard Webhooks says; loopback only unless [webhooks] allowed_hosts "
        "names its host",
    )

    @model_validator(mode="after")
    def _queue_fields_only_with_execute(self) -> CreateRun:
        given = sorted(self.model_fields_set & QUEUE_FIELDS)
        if given and not self.execute:
            raise ValueError(f"{', '.join(given)}: only with execute: true (a draft is not queued)")
        return self


QUEUE_FIELDS = {"priority", "eta", "max_retries", "identity_key", "depends_on", "webhook"}


class BatchRun(BaseModel):
    """One run of a batch: as a run with `execute: true`, without its own webhook."""

    model_config = ConfigDict(extra="forbid")

    skill_key: str = Field(description="the skill to run")
    inputs: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=10, ge=0, le=1000)
    eta: AwareDatetime | None = None
    max_retries: int | None = Field(default=None, ge=0, le=100)
    identity_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:@-]{1,128}$")
    depends_on: list[Annotated[str, Field(pattern=r"^run-\d{8}-[0-9a-f]{8}$")]] = Field(
        default_factory=list, max_length=100
    )


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: list[BatchRun] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} runs, enqueued all at once or not at all",
    )
    webhook: str | None = Field(
        default=None,
        max_length=2048,
        description="a URL told (signed) when the batch's last run has ended (batch.finished)",
    )


class SkillOut(BaseModel):
    """One skill: its `skill.json`, under its key, with its inputs' schema as `input_schema`."""

    model_config = ConfigDict(extra="allow")

    key: str
    name: str
    description: str
    input_schema: dict[str, Any] = Field(description=INPUT_SCHEMA)
    intents: list[str] = Field(description="what an agent may ask this skill for")
    guardrails: dict[str, Any] = Field(
        description="limits checked on every tool call (max_amount, allowed_platforms)"
    )
    approval_required: bool
    rate_limit: int | None = Field(description="runs per hour")
    timeout_s: float
    cooldown_seconds: float
    required_groups: list[str]
    tools: list[str]
    channel: str = Field(description="the queue channel its runs wait in")
    builtin: bool
    parameters: dict[str, Any] = Field(
        deprecated=True,
        description=f"Deprecated: the same as `input_schema` ({INPUT_SCHEMA}), under its "
        "old name; it goes in the next release. Read `input_schema` instead.",
    )

    @classmethod
    def of(cls, skill: Skill) -> SkillOut:
        """Given a skill, return its body (skill_json's, checked against this schema)."""
        return cls.model_validate(skill_json(skill))


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

    run_id: str = Field(description="the run's id: GET /api/v1/runs/{run_id} follows it")
    id: str = Field(
        deprecated=True,
        description="Deprecated: the same as `run_id`, under its old name; it goes in the "
        "next release. Read `run_id` instead.",
    )
    skill: str
    state: str = Field(
        description="draft, queued, running, awaiting_approval, succeeded, failed or cancelled"
    )
    inputs: Any = None
    output: Any = Field(default=None, description="what the skill returned, once it ran")
    error: str | None = None
    requested_by: str | None = None
    attempt: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    trace: list[TraceStepOut] = Field(description="one step per tool call, in order")
    queue: dict[str, Any] | None = Field(
        default=None,
        description="how an enqueued run is scheduled: channel, priority, eta, tries, "
        "max_retries, lease_owner, lease_until, heartbeat_at, last_error",
    )


class Problem(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: str
    problems: list[Problem] | None = None


class BatchOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch_id: str = Field(description="GET /api/v1/batches/{batch_id} follows it")
    state: str = Field(description="queued, running, succeeded or failed (from its runs)")
    counts: dict[str, int] = Field(description="its runs by state")
    size: int
    created_at: str
    runs: list[RunOut]
