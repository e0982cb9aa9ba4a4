"""What agents are told about skills and runs, under the same names on every interface.

The REST API (routes.py) and the MCP vault server (daemon/agents/mcp/vault_server.py) both answer
through these functions, so a skill shows `input_schema`, `intents` and `guardrails` and a
run shows `run_id`, `state`, `output` and `trace` (the seed PRD's US-1 and US-2) alike.
The names used before stay for one release, with the same values:

    parameters  a skill's input schema   use input_schema
    id          a run's id               use run_id

Nothing here imports FastAPI: the MCP server, which does not load it, uses this too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from daemon.agents.skills.registry import Skill
from daemon.agents.skills.runs import RunView

# Old name → the name that replaces it; the old one goes in the release after next.
DEPRECATED = {"parameters": "input_schema", "id": "run_id"}


def skill_json(skill: Skill) -> dict[str, Any]:
    """Given a skill, return its definition as JSON: key, name, description, input_schema,
    intents, guardrails, approval, limits, tools and builtin, plus the deprecated
    `parameters` (a copy of input_schema)."""
    fields = skill.manifest.model_dump(mode="json")
    schema = fields.pop("parameters")
    return {
        "key": skill.key,
        "name": fields.pop("name"),
        "description": fields.pop("description"),
        "input_schema": schema,
        **fields,
        "builtin": skill.builtin,
        "parameters": copy.deepcopy(schema),
    }


def run_json(view: RunView, queue: dict[str, Any] | None = None) -> dict[str, Any]:
    """Given a run and its trace (and how the queue schedules it, if it was enqueued),
    return it as JSON: run_id first, then the run's fields (state, inputs, output, error,
    trace ...) including the deprecated `id`, then `queue`."""
    body = {"run_id": view.run.id, **view.to_json()}
    if queue is not None:
        body["queue"] = queue
    return body


def batch_json(
    found: dict[str, Any], scheduling: Callable[[str], dict[str, Any] | None]
) -> dict[str, Any]:
    """Given a batch (Batches.view) and how each run is scheduled, return it as JSON: its
    fields, then its runs as run_json shows them."""
    runs = [run_json(view, scheduling(view.run.id)) for view in found["runs"]]
    return {**{k: v for k, v in found.items() if k != "runs"}, "runs": runs}
