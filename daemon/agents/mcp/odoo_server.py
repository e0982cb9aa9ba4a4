"""The `odoo` MCP server: partners and customer invoices, read from Odoo. Reads only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from daemon import __version__
from daemon.agents.mcp.answers import guarded, lazily
from daemon.agents.mcp.odoo_reads import OdooReads
from daemon.core.audit import Redactor
from daemon.core.settings import Settings

INSTRUCTIONS = (
    "Reads vaultd's Odoo: partners, customer invoices and unpaid invoices. It changes "
    "nothing; to invoice or register a payment, use the vaultd server (create_task_file or "
    "start_skill_run), which goes through approval."
)
READS = ToolAnnotations(read_only_hint=True, open_world_hint=True)

Partner = Annotated[
    str | None, Field(description="only invoices to partners whose name contains this")
]
Limit = Annotated[int, Field(ge=1, le=200, description="at most this many")]


def build_odoo_server(settings: Settings) -> MCPServer:
    """Return the odoo server. Odoo is reached at the first call, so a server without
    settings still starts and each tool says what is missing."""
    server = MCPServer("vaultd-odoo", instructions=INSTRUCTIONS, version=__version__)
    guard = guarded(Redactor(settings.secrets()))
    odoo = lazily(lambda: OdooReads.from_settings(settings), "Odoo")

    @server.tool(annotations=READS)
    @guard
    def partners(
        name: Annotated[str, Field(min_length=1, description="part of the partner's name")],
        limit: Limit = 20,
    ) -> dict[str, Any]:
        """Find Odoo partners (customers) whose name contains this text, any case."""
        return {"partners": odoo().partners(name, limit=limit)}

    @server.tool(annotations=READS)
    @guard
    def invoices(
        partner: Partner = None,
        state: Annotated[
            Literal["draft", "posted", "cancel"] | None, Field(description="the invoice's state")
        ] = None,
        limit: Limit = 20,
    ) -> dict[str, Any]:
        """List recent customer invoices, newest first: number, partner, dates, state,
        payment state, total, amount due, currency and a link into Odoo."""
        return {"invoices": odoo().invoices(partner=partner, state=state, limit=limit)}

    @server.tool(annotations=READS)
    @guard
    def unpaid_invoices(partner: Partner = None, limit: Limit = 50) -> dict[str, Any]:
        """List posted customer invoices that are not (fully) paid, whether each is overdue,
        and the total due per currency."""
        return odoo().unpaid_invoices(partner=partner, limit=limit)

    return server
