"""The connector used in live mode when the real one cannot be: it never pretends."""

from __future__ import annotations

from typing import Any

from daemon.connectors.base import Health, Lookup, Undetermined
from daemon.core.errors import NotConfigured
from daemon.core.models import Action
from daemon.core.policy import Facts


class Unavailable:
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return {"unavailable": self.reason}

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        raise NotConfigured(self.reason)

    def lookup(self, marker: str) -> Lookup:
        return Undetermined(self.reason, lasting=True)

    def check(self) -> Health:
        return Health(False, self.reason)

    def facts(self, action: Action) -> Facts:
        return Facts()
