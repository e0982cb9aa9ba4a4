"""The `social` MCP server: recent posts of the Facebook Page and of the X account. Reads only."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from daemon import __version__
from daemon.agents.mcp.answers import guarded, lazily
from daemon.agents.mcp.social_reads import FacebookReads, XReads
from daemon.core.audit import Redactor
from daemon.core.settings import Settings

INSTRUCTIONS = (
    "Reads vaultd's social accounts: recent Facebook Page posts and recent X posts. It posts "
    "nothing; to post, use the vaultd server (create_task_file or start_skill_run with "
    "post-social-media), which goes through approval."
)
READS = ToolAnnotations(read_only_hint=True, open_world_hint=True)
Limit = Annotated[int, Field(ge=1, le=100, description="at most this many posts")]


def build_social_server(settings: Settings) -> MCPServer:
    """Return the social server. Each service is reached at its first call, so a server
    without settings still starts and each tool says what is missing."""
    server = MCPServer("vaultd-social", instructions=INSTRUCTIONS, version=__version__)
    guard = guarded(Redactor(settings.secrets()))
    facebook_client = lazily(lambda: FacebookReads.from_settings(settings), "Facebook")
    x_client = lazily(lambda: XReads.from_settings(settings), "X")

    @server.tool(annotations=READS)
    @guard
    def facebook_posts(limit: Limit = 10) -> dict[str, Any]:
        """List the latest posts of the Facebook Page, newest first: id, message, time and
        link."""
        reads = facebook_client()
        return {"page_id": reads.page_id, "posts": reads.recent_posts(limit)}

    @server.tool(annotations=READS)
    @guard
    def x_posts(limit: Limit = 10) -> dict[str, Any]:
        """List the latest posts of the X account, newest first: id, text, time and link."""
        return x_client().recent_posts(limit)

    return server
