"""Who calls the API or an MCP server: their name for the audit trail and their groups.

Kept apart from daemon/agents/api/auth.py so that what only needs the caller (the MCP servers,
run access) does not import the JWT library at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: who asks (for the audit trail) and their groups."""

    requested_by: str
    groups: frozenset[str]
