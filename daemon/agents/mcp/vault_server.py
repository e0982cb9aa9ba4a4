"""The `vault` MCP server: what vaultd can do, and asking it to, through the lifecycle only.

Tools: list_skills, describe_skill, create_task_file, start_skill_run, read_run, list_runs,
list_pending_approvals, vault_status, and the knowledge graph's kg_neighborhood,
kg_semantic_search and kg_fetch_context (kg_tools.py). Asking is all an agent can do here:
a task file and a skill run's requests are decided by the policy or by a person, never by
a tool.

The server is one caller: `mcp`, or `mcp:<groups>` with `vaultd mcp --group`. A task file
it writes obeys the skill behind its type (task_guard.py) and carries that origin; it reads
only the runs of callers that share one of its groups (daemon/agents/api/run_access.py).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from daemon import __version__
from daemon.agents.api.run_access import RunAccess, mcp_caller
from daemon.agents.api.views import run_json, skill_json
from daemon.agents.kg.reads import GraphReads
from daemon.agents.mcp.answers import guarded
from daemon.agents.mcp.kg_tools import add_kg_tools
from daemon.agents.mcp.task_files import write_task_file
from daemon.agents.mcp.task_guard import Door, TaskGuard
from daemon.agents.skills.runs import Runs
from daemon.core.errors import NotFound
from daemon.lifecycle.app import App
from daemon.reports.status import build_snapshot

INSTRUCTIONS = (
    "vaultd is an AI Employee living in an Obsidian vault. To get something done, start a "
    "skill run (list_skills, describe_skill, start_skill_run) or write a task file "
    "(create_task_file). Either way vaultd applies its approval policy: actions that need a "
    "person wait in Pending_Approval/ until the person approves or rejects them; no tool "
    "here can approve. Follow a run with read_run, and the vault with list_pending_approvals "
    "and vault_status. To know the business (who a partner is, what was invoiced, approved or "
    "posted, and where that is written), ask the knowledge graph: kg_semantic_search, then "
    "kg_fetch_context with a result's key, citing its evidence."
)
LISTED = 50  # approval requests and failures read one by one; the rest are counted

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ASKS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)

TaskType = Literal["social_post", "odoo_invoice", "odoo_payment"]


def build_vault_server(app: App, runs: Runs, *, groups: set[str] | None = None) -> MCPServer:
    """Given an app, its run service and the groups the agent counts as in (for skill runs,
    task files and which runs it sees), return the vault server. Raise ConfigError for a
    group that is not a plain word."""
    caller = mcp_caller(set(groups or ()))
    server = MCPServer("vaultd", instructions=INSTRUCTIONS, version=__version__)
    guard = guarded(app.audit.redact, lock=threading.Lock())
    access = RunAccess(runs, app.config.queue)
    door = Door(
        "mcp", caller.requested_by, caller.groups, tuple(app.config.policy.require_approval_from)
    )
    tasks = TaskGuard(runs.registry, app.ledger, door)

    @server.tool(annotations=READS)
    @guard
    def list_skills() -> dict[str, Any]:
        """List the skills vaultd can run, each as describe_skill shows it: key,
        description, input_schema (the JSON Schema of its inputs), intents, guardrails, the
        tools it may use and whether a person must approve what it requests. `parameters`
        is a deprecated copy of input_schema."""
        registry = runs.registry
        return {
            "skills": [skill_json(skill) for skill in registry.listed()],
            "skipped": [str(problem) for problem in registry.problems],
        }

    @server.tool(annotations=READS)
    @guard
    def describe_skill(
        key: Annotated[str, Field(description="the skill's key, as list_skills names it")],
    ) -> dict[str, Any]:
        """Show one skill's whole definition: the JSON Schema of its inputs (input_schema;
        `parameters` is a deprecated copy), intents, guardrails, approval, rate limit,
        timeout, cooldown and tools."""
        skill = runs.registry.get(key)
        if skill is None:
            known = ", ".join(s.key for s in runs.registry.listed()) or "none"
            raise NotFound(f"no skill named {key!r} (known: {known})")
        return skill_json(skill)

    @server.tool(annotations=ASKS)
    @guard
    def create_task_file(
        type: Annotated[TaskType, Field(description="the action the task asks for")],
        fields: Annotated[
            dict[str, Any],
            Field(
                description="the task's frontmatter fields besides type. social_post: "
                "platforms (facebook|instagram|twitter), text, kind (post|reply|dm), link, "
                "image_url, in_reply_to, recipient, scheduled_for. odoo_invoice: partner or "
                "partner_id, lines [{product, quantity, price_unit, description}], currency, "
                "invoice_date, due_date, recurring. odoo_payment: invoice, amount, date, "
                "journal, partner."
            ),
        ],
        body: Annotated[
            str, Field(description="Markdown context for the person who reviews it")
        ] = "",
        name: Annotated[
            str | None,
            Field(description="file name (letters, digits, spaces, - _ .); default: generated"),
        ] = None,
    ) -> dict[str, Any]:
        """Write a task file into Needs_Action/ after validating it as vaultd will. It obeys
        the skill for its type (social_post: post-social-media, odoo_invoice:
        create-invoice, odoo_payment: register-payment): refused without one of the
        skill's required_groups or past its guardrails, and waiting for a person where
        the skill or vaultd's policy for tasks written here says so (approval_required in
        the answer); otherwise the approval policy decides. An invalid task is refused
        with every field problem, and nothing is written."""
        written = write_task_file(app.vault, type, fields, guard=tasks, body=body, name=name)
        return {
            "task_file": app.vault.relative(written.path),
            "type": written.action.type,
            "payload": written.action.payload(),
            "approval_required": written.approval_required,
            "next": (
                "it will wait in Pending_Approval/ for a person (see list_pending_approvals)"
                if written.approval_required
                else "vaultd validates it and applies the approval policy: approved by "
                "policy, or waiting in Pending_Approval/ for a person"
            ),
        }

    @server.tool(annotations=ASKS)
    @guard
    def start_skill_run(
        skill_key: Annotated[str, Field(description="the skill's key, as list_skills names it")],
        inputs: Annotated[
            dict[str, Any] | None,
            Field(description="the inputs, valid against the skill's input_schema"),
        ] = None,
    ) -> dict[str, Any]:
        """Enqueue a run of a skill with these inputs and return it as read_run does (run_id,
        state `queued`, queue). vaultd's workers run it in the background: follow it with
        read_run. A run whose requests need a person becomes `awaiting_approval`: its task
        files wait in Pending_Approval/. An identical run (same skill and inputs) not
        finished yet is refused, naming it."""
        view = access.enqueue(caller, skill_key, inputs or {})
        return run_json(view, access.scheduling(view.run.id))

    @server.tool(annotations=READS)
    @guard
    def read_run(
        run_id: Annotated[str, Field(description="the run's run_id, as start_skill_run gave it")],
    ) -> dict[str, Any]:
        """Read a run: its run_id, state, output, error and trace (one step per tool call).
        `id` is a deprecated copy of run_id. Only runs of callers sharing one of this
        server's groups (without groups: its own) can be read."""
        return run_json(access.view(caller, run_id), access.scheduling(run_id))

    @server.tool(annotations=READS)
    @guard
    def list_runs(
        limit: Annotated[int, Field(ge=1, le=200, description="how many, newest first")] = 20,
    ) -> dict[str, Any]:
        """List the latest skill runs this server may read, newest first, each as read_run
        shows it: run_id, skill, state, who asked, when, output, error and trace."""
        listed = access.listed(caller, limit=limit)
        return {"runs": [run_json(view, access.scheduling(view.run.id)) for view in listed]}

    @server.tool(annotations=READS)
    @guard
    def list_pending_approvals() -> dict[str, Any]:
        """List the approval requests waiting for a person in Pending_Approval/, oldest
        first: id, file, type, amount, age, the rule that asked and when it expires. Only a
        person can decide them (by moving the note, or `vaultd approve` / `vaultd reject`)."""
        snapshot = build_snapshot(app.vault, app.ledger, listed=LISTED, recent=0)
        return {
            "pending": [asdict(item) for item in snapshot.pending],
            "more": snapshot.pending_more,
            "decided_by": "a person: move the note to Approved/ or Rejected/",
        }

    @server.tool(annotations=READS)
    @guard
    def vault_status() -> dict[str, Any]:
        """Show what is going on in the vault: notes per folder, requests waiting for
        approval, failures, the skill runs this server may read, open circuit breakers and
        the latest actions."""
        status = build_snapshot(app.vault, app.ledger, listed=LISTED).to_json()
        status["runs"] = [run for run in status["runs"] if access.sees(caller, run["id"])]
        return status

    add_kg_tools(
        server, GraphReads.of_app(app), guard, lambda run_ids: access.unseen(caller, run_ids)
    )
    return server
