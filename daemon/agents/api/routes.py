"""The endpoints of /api/v1, each a thin layer over the run service.

The endpoints are plain (sync) functions: FastAPI runs them in its thread pool, so a skill
that runs for a while never blocks the event loop. None of them can approve anything. A
caller reads and executes only the runs of callers that share one of its groups
(run_access.py); any other run is a 404, as if it did not exist.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from daemon.agents.api.auth import Authenticator, Caller
from daemon.agents.api.run_access import RunAccess
from daemon.agents.api.schemas import (
    BatchOut,
    CreateBatch,
    CreateRun,
    ErrorOut,
    RunOut,
    SkillList,
    SkillOut,
)
from daemon.agents.api.views import batch_json, run_json
from daemon.agents.kg.reads import GraphReads
from daemon.agents.queue.batches import BatchItem
from daemon.agents.queue.service import Options
from daemon.agents.skills.runs import InputsInvalid, Runs, SkillNotFound
from daemon.core.webhook_config import check_url

PREFIX = "/api/v1"


@dataclass(frozen=True)
class ApiState:
    """What the endpoints work with; kept on `app.state.vaultd`."""

    runs: Runs
    auth: Authenticator
    access: RunAccess
    # Hosts a run's webhook may name beyond loopback ([webhooks] allowed_hosts).
    webhook_hosts: tuple[str, ...] = ()
    graph: GraphReads | None = None  # the vault's knowledge graph (kg_routes.py)


# Declared for the OpenAPI document (and /docs' "Authorize"); the headers are read raw, so
# a wrong scheme gets its own message rather than "missing credentials".
_bearer = HTTPBearer(
    auto_error=False, description="an API key (vd_...) or a JWT", scheme_name="bearer"
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey")


def _webhook(request: Request, url: str | None, what: str) -> str | None:
    """Given a request's `webhook` (None if it named none), return it if vaultd may post to
    it; raise InputsInvalid naming the field `webhook` if not (a 422)."""
    if url is None:
        return None
    try:
        return check_url(url, api_state(request).webhook_hosts)
    except ValueError as error:
        raise InputsInvalid(what, [("webhook", str(error))]) from None


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.vaultd
    return state


def authenticated(
    request: Request,
    _bearer_doc: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    _api_key_doc: Annotated[str | None, Security(_api_key)],
) -> Caller:
    """The caller of this request; every /api/v1 route depends on it (401 if unknown)."""
    return api_state(request).auth.authenticate(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )


def error_statuses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut} for status in (401, *statuses)}


CallerDep = Annotated[Caller, Depends(authenticated)]
router = APIRouter(prefix=PREFIX, dependencies=[Depends(authenticated)])


@router.get("/skills", response_model=SkillList, responses=error_statuses(), tags=["skills"])
def list_skills(request: Request) -> SkillList:
    """The active skills, each with its `input_schema`, `intents` and `guardrails`."""
    registry = api_state(request).runs.registry
    return SkillList(skills=[SkillOut.of(skill) for skill in registry.listed()])


@router.get(
    "/skills/{key}", response_model=SkillOut, responses=error_statuses(404), tags=["skills"]
)
def get_skill(request: Request, key: str) -> SkillOut:
    """One skill's definition: its `input_schema`, `intents`, `guardrails` and limits."""
    registry = api_state(request).runs.registry
    skill = registry.get(key)
    if skill is None:
        known = ", ".join(s.key for s in registry.listed()) or "none"
        raise SkillNotFound(f"no skill named {key!r} (known: {known})")
    return SkillOut.of(skill)


@router.post(
    "/runs",
    status_code=201,
    response_model=RunOut,
    responses={
        **error_statuses(403, 404, 409, 422, 429),
        202: {"model": RunOut, "description": "enqueued (execute: true); follow Location"},
    },
    tags=["runs"],
)
def create_run(request: Request, response: Response, body: CreateRun, caller: CallerDep) -> Any:
    """Create a run: a draft (201), or with `execute: true` a queued run (202 Accepted at
    once; the daemon's workers run it). Follow it at its URL (the Location header): a run
    whose requests need a person waits as `awaiting_approval` until they are done.

    With execute, an unfinished run with the same identity key (by default: the same skill
    and inputs) makes this a 409 naming that run (`run_id`, Location)."""
    access = api_state(request).access
    if body.execute:
        webhook = _webhook(request, body.webhook, body.skill_key)
        options = Options(
            body.priority,
            body.eta,
            body.max_retries,
            body.identity_key,
            tuple(body.depends_on),
            webhook,
        )
        view = access.enqueue(caller, body.skill_key, body.inputs, options)
        response.status_code = 202
    else:
        view = access.create(caller, body.skill_key, body.inputs)
    response.headers["Location"] = f"{PREFIX}/runs/{view.run.id}"
    return run_json(view, access.scheduling(view.run.id))


@router.get("/runs/{run_id}", response_model=RunOut, responses=error_statuses(404), tags=["runs"])
def get_run(request: Request, run_id: str, caller: CallerDep) -> Any:
    """A run's `state`, `output` and `trace` (one step per tool call). 404 also for a run of
    a caller that shares none of this caller's groups."""
    access = api_state(request).access
    return run_json(access.view(caller, run_id), access.scheduling(run_id))


@router.post(
    "/runs/{run_id}/execute",
    response_model=RunOut,
    responses=error_statuses(403, 404, 409, 429),
    tags=["runs"],
)
def execute_run(request: Request, run_id: str, caller: CallerDep) -> Any:
    """Execute a draft run, or a failed one again (as a new attempt). 404 for a run this
    caller may not see."""
    return run_json(api_state(request).access.execute(caller, run_id))


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchOut,
    responses=error_statuses(403, 404, 409, 422, 429),
    tags=["batches"],
)
def create_batch(request: Request, response: Response, body: CreateBatch, caller: CallerDep) -> Any:
    """Enqueue a batch of runs (202 Accepted at once): all of them or, if any cannot be
    enqueued, none (the error names `runs[N].field`). Follow it at its URL (Location): its
    state comes from its runs'."""
    state = api_state(request)
    webhook = _webhook(request, body.webhook, "the batch")
    items = [
        BatchItem(
            run.skill_key,
            run.inputs,
            Options(
                run.priority, run.eta, run.max_retries, run.identity_key, tuple(run.depends_on)
            ),
        )
        for run in body.runs
    ]
    batch_id, _ = state.access.enqueue_batch(caller, items, webhook)
    response.headers["Location"] = f"{PREFIX}/batches/{batch_id}"
    access = state.access
    return batch_json(access.batch(caller, batch_id), access.scheduling)


@router.get(
    "/batches/{batch_id}", response_model=BatchOut, responses=error_statuses(404), tags=["batches"]
)
def get_batch(request: Request, batch_id: str, caller: CallerDep) -> Any:
    """A batch: its state (from its runs'), its runs by state, and each run. 404 also for a
    batch of runs this caller may not see."""
    access = api_state(request).access
    return batch_json(access.batch(caller, batch_id), access.scheduling)
