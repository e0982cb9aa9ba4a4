"""Connectors by name, and which connectors an action needs."""

from __future__ import annotations

from pathlib import Path

from daemon.connectors.base import Connector
from daemon.connectors.dry_run import DryRunConnector
from daemon.connectors.odoo import odoo_request
from daemon.connectors.outbox import Outbox
from daemon.connectors.social import facebook_request, instagram_request, twitter_request
from daemon.models import Action, OdooInvoice, OdooPayment, SocialPost

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
    raise TypeError(f"no connector handles {type(action).__name__}")


def dry_run_connectors(state_dir: Path) -> dict[str, Connector]:
    """Return one dry-run connector per service, sharing the outbox in the state dir."""
    outbox = Outbox(state_dir / "dry_run_outbox.jsonl")
    return {name: DryRunConnector(name, build, outbox) for name, build in REQUEST_BUILDERS.items()}
