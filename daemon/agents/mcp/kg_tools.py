"""The knowledge graph's tools on the `vaultd` MCP server: kg_neighborhood,
kg_semantic_search and kg_fetch_context, read-only (daemon/agents/kg/reads.py).

The names use underscores: some MCP clients reject dotted names and then hide every tool of
the server. They answer what `GET /api/v1/kg/…` and `vaultd kg … --json` answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from daemon.agents.kg.query import MAX_DEPTH
from daemon.agents.kg.reads import MAX_RESULTS, GraphReads, Hide

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
REF = (
    "what to start from: a note path, a [[link]], a vaultd id, a #tag, a partner's name or "
    "an invoice number"
)


def add_kg_tools(
    server: MCPServer, graph: GraphReads, guard: Callable[[Any], Any], hide: Hide
) -> None:
    """Add the graph's three tools to `server`, each answering through `guard` (answers.py),
    from a graph without the skill runs `hide` names (those this server's caller may not see)."""

    @server.tool(annotations=READS)
    @guard
    def kg_neighborhood(
        ref: Annotated[str, Field(description=REF)],
        depth: Annotated[int, Field(ge=1, le=MAX_DEPTH, description="edges to follow")] = 1,
        edge: Annotated[
            str | None, Field(description="follow only edges of this type (links_to, tagged …)")
        ] = None,
    ) -> dict[str, Any]:
        """What a note, tag or entity is linked to within `depth` edges (either direction):
        nodes and edges, each with its evidence (the note's path, its SHA-256 when it was
        read, the line range and the quoted line; or the ledger row it came from)."""
        return graph.neighborhood(ref, depth=depth, edge=edge, hide=hide)

    @server.tool(annotations=READS)
    @guard
    def kg_semantic_search(
        query: Annotated[str, Field(description="the words to find")],
        limit: Annotated[int, Field(ge=1, le=MAX_RESULTS, description="at most this many")] = 20,
    ) -> dict[str, Any]:
        """Search the vault's notes, best first: each result's node key (for
        kg_fetch_context), path, score and snippet. `ranking` says how they were ranked:
        today full text (FTS5, BM25) over every word of the query, as no embedding model
        is installed; vectors will be fused in when one is."""
        return graph.search(query, limit=limit, hide=hide)

    @server.tool(annotations=READS)
    @guard
    def kg_fetch_context(
        ref: Annotated[str, Field(description=REF)],
        depth: Annotated[int, Field(ge=1, le=MAX_DEPTH, description="edges to follow")] = 1,
    ) -> dict[str, Any]:
        """An entity's neighbours with evidence, every row checked against the vault now:
        `stale: true` when its note (or ledger row) changed since the graph was built, with
        where the quoted line is now. Cite evidence that is not stale."""
        return graph.context(ref, depth=depth, hide=hide)
