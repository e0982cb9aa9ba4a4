"""create_api(): the FastAPI application of one vault's run service."""

from __future__ import annotations

import os

from fastapi import FastAPI

from daemon import __version__
from daemon.agents.api import errors
from daemon.agents.api.auth import Authenticator
from daemon.agents.api.keys import ApiKeyStore
from daemon.agents.api.kg_routes import router as kg_router
from daemon.agents.api.limits import BodyLimit
from daemon.agents.api.routes import ApiState, router
from daemon.agents.api.run_access import RunAccess
from daemon.agents.kg.reads import GraphReads
from daemon.agents.skills.runs import Runs
from daemon.core.settings import Settings
from daemon.lifecycle.app import App

DESCRIPTION = """\
Agents discover vaultd's skills and request runs. A run's world-changing requests become
task files in the vault and go through the approval lifecycle: nothing here can approve.
Authenticate with `Authorization: Bearer <API key or JWT>` or `X-API-Key: <API key>`.

A skill's inputs are described by `input_schema`, a run is named by `run_id`. The old
names `parameters` and `id` are still given, with the same values, for one release only.
"""


def create_api(app: App, runs: Runs, *, settings: Settings | None = None) -> FastAPI:
    """Given a vault's app and run service, return the REST API (auth per `[api]`).

    `settings` holds the JWT secret (default: this process's environment). Raise
    ConfigError if that secret is too short for the pinned algorithm.
    """
    auth = Authenticator(
        ApiKeyStore(app.ledger), app.config.api, settings or Settings(dict(os.environ))
    )
    api = FastAPI(title="vaultd", version=__version__, description=DESCRIPTION)
    api.state.vaultd = ApiState(
        runs=runs,
        auth=auth,
        access=RunAccess(runs, app.config.queue),
        webhook_hosts=tuple(app.config.webhooks.allowed_hosts),
        graph=GraphReads.of_app(app),
    )
    api.include_router(router)
    api.include_router(kg_router)
    api.add_middleware(BodyLimit)
    errors.install(api)
    return api
