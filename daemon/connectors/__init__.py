"""Connectors by name, and which connectors an action needs."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from daemon.connectors.base import Connector, Memory
from daemon.connectors.dry_run import DryRunConnector
from daemon.connectors.odoo import odoo_request
from daemon.connectors.outbox import Outbox
from daemon.connectors.social import facebook_request, instagram_request, twitter_request
from daemon.connectors.unavailable import Unavailable
from daemon.core.errors import NotConfigured
from daemon.core.models import Action, CodeTask, OdooInvoice, OdooPayment, SocialPost
from daemon.core.settings import Settings

REQUEST_BUILDERS = {
    "facebook": facebook_request,
    "instagram": instagram_request,
    "twitter": twitter_request,
    "odoo": odoo_request,
}


def targets(action: Action) -> list[str]:
    """Return the connectors an action calls, in order; each call is one ledger step."""
    if isinstance(action, SocialPost):
        return list(action.platforms)
    if isinstance(action, OdooInvoice | OdooPayment):
        return ["odoo"]
    if isinstance(action, CodeTask):
        return ["code"]  # daemon/connectors/code.py, wired with the config by open_app
    raise TypeError(f"no connector handles {type(action).__name__}")


def dry_run_connectors(state_dir: Path) -> dict[str, Connector]:
    """Return one dry-run connector per service, sharing the outbox in the state dir."""
    outbox = Outbox(state_dir / "dry_run_outbox.jsonl")
    return {name: DryRunConnector(name, build, outbox) for name, build in REQUEST_BUILDERS.items()}


# Each live connector is a module with `connect(settings, memory) -> Connector`, which
# raises NotConfigured (naming the missing settings) when it cannot be used.
LIVE_MODULES = {
    "facebook": "daemon.connectors.facebook_live",
    "instagram": "daemon.connectors.instagram_live",
    "twitter": "daemon.connectors.twitter_live",
    "odoo": "daemon.connectors.odoo_live",
}


def live_connectors(settings: Settings, memory: Memory) -> dict[str, Connector]:
    """Return one live connector per service; an Unavailable one where it cannot be used."""
    connectors: dict[str, Connector] = {}
    for name, module_name in LIVE_MODULES.items():
        if importlib.util.find_spec(module_name) is None:
            connectors[name] = Unavailable(
                name, "no live connector for it in this version of vaultd"
            )
            continue
        module = importlib.import_module(module_name)
        try:
            connectors[name] = module.connect(settings, memory)
        except NotConfigured as error:
            connectors[name] = Unavailable(name, str(error))
    return connectors
