"""Dry-run connectors: they send nothing and record exactly what they would send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.connectors.base import Absent, Found, Health, Lookup
from daemon.connectors.outbox import Outbox
from daemon.core.errors import ConnectorError
from daemon.core.models import Action
from daemon.core.policy import Facts

Describe = Callable[[Action, str], dict[str, Any]]


class DryRunConnector:
    # The outbox is the whole of the "remote" side: a lookup always finds a call that was
    # made and proves absent one that was not (daemon/lifecycle/execution.py relies on it).
    lookup_settles = True

    def __init__(self, name: str, describe: Describe, outbox: Outbox) -> None:
        self.name = name
        self._describe = describe
        self._outbox = outbox

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return self._describe(action, marker)

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        if not dry_run:
            raise ConnectorError(f"{self.name}: no live connector yet; only dry-run is available")
        request = self.describe(action, marker=marker)
        record = self._outbox.append(self.name, marker, request)
        return {"dry_run": True, "recorded_at": record["at"], "request": request}

    def lookup(self, marker: str) -> Lookup:
        record = self._outbox.find(marker)
        if record is None:
            return Absent()
        return Found({"dry_run": True, "recorded_at": record["at"], "request": record["request"]})

    def check(self) -> Health:
        return Health(True, "dry-run: requests are recorded, nothing is sent")

    def facts(self, action: Action) -> Facts:
        # A dry run cannot ask Odoo whether a partner or invoice exists: say so.
        return Facts()
