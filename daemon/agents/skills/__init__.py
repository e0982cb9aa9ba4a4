"""Skills for agents: `skill.json` + `execute.py` folders (registry), and their runs.

`daemon.agents.skills.service.open_runs(app)` wires them to one vault; every interface (the CLI,
the REST API, the MCP servers, `type: skill` task files) goes through it.
"""
