"""Wiring: build the vault, ledger, audit log, connectors, pipeline and skill runs of one vault
(the `App`, daemon/lifecycle/app.py)."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.agents.skills.service import open_runs
from daemon.connectors import dry_run_connectors, live_connectors
from daemon.connectors.breakers import guard
from daemon.connectors.code import CodeConnector
from daemon.core.audit import AuditLog
from daemon.core.config import default_config_path, load_config, state_dir_for
from daemon.core.hints import Hints
from daemon.core.ledger import Ledger
from daemon.core.settings import load_settings
from daemon.core.vault import LOGS, Vault
from daemon.lifecycle.app import LEDGER_FILE, App
from daemon.lifecycle.pipeline import Pipeline


def open_app(
    vault_path: Path,
    *,
    config_path: Path | None = None,
    state_dir: str | Path | None = None,
    dry_run: bool = True,
    env_file: Path | None = None,
) -> App:
    """Given a vault, return everything needed to process it. Raise VaultdError if unusable.

    Live (`dry_run=False`) uses the real connectors, configured from the environment and
    `env_file`; a service that is not configured fails its actions clearly.
    """
    vault = Vault(vault_path)
    vault.check_exists()
    config = load_config(config_path or default_config_path())
    state = state_dir_for(vault.root, state_dir)
    # Named in the commands vaultd suggests only when a person's shell would not find it.
    explicit_state = bool(state_dir or os.environ.get("VAULTD_STATE_DIR"))
    state.mkdir(parents=True, exist_ok=True)
    settings = load_settings(env_file, vault=vault.root)  # before the redactor reads secrets
    audit = AuditLog(vault.folder(LOGS))
    ledger = Ledger(state / LEDGER_FILE, redact=audit.redact)
    if dry_run:
        connectors = dry_run_connectors(state)
    else:
        connectors = guard(live_connectors(settings, ledger), config.breaker, ledger)
    # Code tasks land on local git repos: no credentials, no breaker (issue 16).
    connectors["code"] = CodeConnector(config.code, state)
    pipeline = Pipeline(
        vault,
        ledger,
        audit,
        config.policy,
        connectors,
        dry_run=dry_run,
        limits=config.rate_limits,
        prices=config.costs,
        hints=Hints.for_vault(vault.root, state if explicit_state else None),
    )
    app = App(vault, config, state, ledger, audit, pipeline, settings)
    pipeline.skills = open_runs(app)
    return app
