"""The one small interface every connector implements.

`describe` returns exactly the request that would be sent; `execute` sends it (or, in
dry-run, records it) and returns what the service answered; `lookup(marker)` finds the
result of an earlier call by the marker vaultd put into it; `check` reports health; `facts`
answers what the policy needs to know before deciding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.models import Action
from daemon.policy import Facts


@dataclass(frozen=True)
class Found:
    """The remote object for the marker exists: the call happened."""

    result: dict[str, Any]


@dataclass(frozen=True)
class Absent:
    """The service proves no object carries the marker: the call did not happen."""


@dataclass(frozen=True)
class Undetermined:
    """Neither could be shown; a human must decide."""

    reason: str


Lookup = Found | Absent | Undetermined


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
