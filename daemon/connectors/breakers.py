"""A circuit breaker per live connector: stop hammering a service that keeps failing.

After `fail_max` consecutive failed calls the breaker opens: calls are not made, and the
action waits in Approved/ (Deferred) until `reset_seconds` have passed. Then one call is let
through (half-open); `success_threshold` successes close it again. Only calls that say
something about the service's health count: a validation error or a rate limit does not.
Each change of state is written to the ledger, so `vaultd status` and Dashboard.md show it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker

from daemon.connectors.base import Connector, Health, Lookup
from daemon.connectors.unavailable import Unavailable
from daemon.core.config import BreakerConfig
from daemon.core.errors import Deferred, NotConfigured, PermanentError
from daemon.core.ledger import Ledger
from daemon.core.models import Action
from daemon.core.policy import Facts


class _Record(pybreaker.CircuitBreakerListener):
    """Writes each change of state to the ledger and remembers when the breaker opened."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.opened_at = datetime.now(UTC)

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        if new_state.name == pybreaker.STATE_OPEN:
            self.opened_at = datetime.now(UTC)
        self.ledger.set_breaker(cb.name, new_state.name, cb.fail_counter)


class Guarded:
    """A connector whose calls go through a circuit breaker; everything else passes through."""

    def __init__(self, connector: Connector, config: BreakerConfig, ledger: Ledger) -> None:
        self.connector = connector
        self.name = connector.name
        self._record = _Record(ledger)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=config.fail_max,
            reset_timeout=config.reset_seconds,
            success_threshold=config.success_threshold,
            exclude=[PermanentError, Deferred, NotConfigured],
            listeners=[self._record],
            name=connector.name,
            throw_new_error_on_trip=False,
        )
        ledger.set_breaker(self.name, pybreaker.STATE_CLOSED, 0)

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return self.connector.describe(action, marker=marker)

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.breaker.call(
                self.connector.execute, action, marker=marker, dry_run=dry_run
            )
        except pybreaker.CircuitBreakerError:
            # Nothing was sent: waiting and trying again is safe.
            retry_at = self._record.opened_at + timedelta(seconds=self.breaker.reset_timeout)
            raise Deferred(
                f"{self.name} failed {self.breaker.fail_max} times in a row; circuit open, "
                f"not called until {retry_at.strftime('%H:%M:%S UTC')}",
                retry_at,
            ) from None
        return result

    def lookup(self, marker: str) -> Lookup:
        return self.connector.lookup(marker)

    @property
    def lookup_settles(self) -> bool:
        """Whether the connector's lookup always finds a call made and proves one absent."""
        return bool(getattr(self.connector, "lookup_settles", False))

    def check(self) -> Health:
        return self.connector.check()

    def facts(self, action: Action) -> Facts:
        return self.connector.facts(action)


def guard(
    connectors: dict[str, Connector], config: BreakerConfig, ledger: Ledger
) -> dict[str, Connector]:
    """Return the connectors, each behind its own circuit breaker (those that can call out)."""
    return {
        name: connector
        if isinstance(connector, Unavailable)
        else Guarded(connector, config, ledger)
        for name, connector in connectors.items()
    }
