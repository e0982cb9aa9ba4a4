"""The REST API (`vaultd serve`): agents discover skills and request runs over HTTP.

    keys    API keys: created once, stored as SHA-256 hashes in the ledger
    auth    who is calling: an API key or a JWT (one pinned algorithm), and their groups
    routes  /api/v1/skills and /api/v1/runs, on top of the run service (daemon/agents/skills/runs)
    errors  every error as JSON: {"error": message, ...} with the fitting status
    limits  a cap on request bodies (1 MiB), checked before anything reads them
    app     create_api(): the FastAPI application
    server  ApiServer: uvicorn in a background thread, loopback unless allowed otherwise
    cli     `vaultd serve` and `vaultd apikey ...`

Nothing here can approve: a run's world-changing requests become task files, and the
approval lifecycle decides, exactly as for every other interface.
"""
