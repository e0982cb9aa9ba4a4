"""The one small interface every connector implements.

`describe` returns exactly the request that would be sent; `execute` sends it (or, in
dry-run, records it) and returns what the service answered; `lookup(marker)` finds the
result of an earlier call by the marker vaultd put into it; `check` reports health; `facts`
answers what the policy needs to know before deciding.

A lookup answers Found (the call happened), Absent (it did not: safe to call), Unfinished
(the call began a remote object and stopped before finishing it, as an Odoo draft invoice
not yet posted: `execute` with the same action and marker finishes it) or Undetermined
(it cannot tell; `lasting` when asking again cannot tell either, as for a sent DM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.core.models import Action
from daemon.core.policy import Facts


@dataclass(frozen=True)
class Found:
    """The remote object for the marker exists: the call happened."""

    result: dict[str, Any]


@dataclass(frozen=True)
class Absent:
    """The service proves no object carries the marker: the call did not happen."""


@dataclass(frozen=True)
class Unfinished:
    """The service holds the object the call began, not finished (an Odoo draft invoice with
    the marker, not posted). Calling `execute` again with the same action and marker finishes
    that object, once it has checked the object is what was approved, and never makes a
    second one; anything else about it is for a person."""

    reason: str


@dataclass(frozen=True)
class Undetermined:
    """Neither could be shown. `lasting`: asking again cannot tell either (the service offers
    no lookup for it, or a person changed the object), so a person decides at once; otherwise
    vaultd looks it up again for a while first (daemon/lifecycle/execution.py, LookupSchedule)."""

    reason: str
    lasting: bool = False


Lookup = Found | Absent | Unfinished | Undetermined


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)


class Memory(Protocol):
    """Where a live connector keeps progress inside one call (the ledger implements it)."""

    def remember(self, marker: str, key: str, value: Any) -> None: ...

    def recall(self, marker: str) -> dict[str, Any]: ...


class ScratchMemory:
    """A Memory that forgets on exit: for `vaultd check`, which sends nothing."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, Any]] = {}

    def remember(self, marker: str, key: str, value: Any) -> None:
        self._values.setdefault(marker, {})[key] = value

    def recall(self, marker: str) -> dict[str, Any]:
        return dict(self._values.get(marker, {}))


class Connector(Protocol):
    name: str

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]: ...

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]: ...

    def lookup(self, marker: str) -> Lookup: ...

    def check(self) -> Health: ...

    def facts(self, action: Action) -> Facts: ...
