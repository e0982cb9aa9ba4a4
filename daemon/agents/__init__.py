"""The agents layer: what agents use and how they are confined (skills and their runs, the
REST API, the MCP servers, Claude Code's settings)."""
