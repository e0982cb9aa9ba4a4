"""MCP servers for agents such as Claude Code: one per service (research note §6).

    vault   skills, runs, task files, approvals waiting, status   vault_server.py
    odoo    partners, invoices, unpaid invoices (reads only)      odoo_server.py
    social  recent Facebook Page posts and X posts (reads only)   social_server.py

`vaultd mcp --vault V [--service S]` serves one of them over stdio (cli.py). No tool
approves, moves a note out of Pending_Approval/ or asks a service to change anything: an
agent changes the world only by writing a task file or starting a skill run, and both go
through the approval lifecycle like everything else.
"""
