"""Keeping `vaultd run`'s parts alive: the file watcher, the scheduler, the API server.

Every `interval` seconds each component is asked whether it is healthy. One that is not is
restarted, up to `max_restarts` times in a row; then vaultd gives up on it and tells the
human: an alert note in Needs_Action/ (vaultd leaves `type: alert` notes where they are),
a red line in Dashboard.md, and an audit log entry. A component that recovers starts its
count again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from daemon.core.audit import AuditLog
from daemon.core.timestamps import now_iso
from daemon.core.vault import NEEDS_ACTION, Vault

log = logging.getLogger(__name__)

MAX_RESTARTS = 3


class Component(Protocol):
    name: str

    def healthy(self) -> bool: ...

    def restart(self) -> None: ...


@dataclass
class Health:
    """What the supervisor knows of one component."""

    restarts: int = 0
    given_up: bool = False
    last_error: str | None = None


@dataclass
class Supervisor:
    vault: Vault
    audit: AuditLog
    components: list[Component]
    interval: float = 30.0
    max_restarts: int = MAX_RESTARTS
    on_change: Callable[[], None] = lambda: None
    # The command the alert note suggests, as the person would type it.
    status_command: str = "vaultd status"
    health: dict[str, Health] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="vaultd-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def failed(self) -> list[str]:
        """Return the components vaultd gave up on, for the dashboard."""
        return [name for name, health in self.health.items() if health.given_up]

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self) -> None:
        """Look at every component once; restart or give up on the unhealthy ones."""
        for component in self.components:
            health = self.health.setdefault(component.name, Health())
            if health.given_up:
                continue
            try:
                ok = component.healthy()
            except Exception as error:  # noqa: BLE001 - a failing check is a failed component
                ok, health.last_error = False, f"{type(error).__name__}: {error}"
            if ok:
                health.restarts = 0
                continue
            self._recover(component, health)

    def _recover(self, component: Component, health: Health) -> None:
        if health.restarts >= self.max_restarts:
            health.given_up = True
            self._alert(component.name, health)
            self.on_change()
            return
        health.restarts += 1
        log.warning(
            "%s is not healthy: restarting it (%d of %d)",
            component.name,
            health.restarts,
            self.max_restarts,
        )
        try:
            component.restart()
        except Exception as error:  # noqa: BLE001 - recorded; the next check sees it
            health.last_error = f"{type(error).__name__}: {error}"
            log.warning("%s could not be restarted: %s", component.name, health.last_error)
        self.audit.write(
            "component_restarted",
            action=None,
            task_id=None,
            file=None,
            result={"component": component.name, "restart": health.restarts},
            error=health.last_error,
        )

    def _alert(self, name: str, health: Health) -> None:
        reason = (
            f"vaultd's {name} failed and did not recover after {self.max_restarts} restarts"
            + (f" (last error: {health.last_error})" if health.last_error else "")
        )
        log.error("%s; it stays off until vaultd is restarted", reason)
        self.audit.write(
            "component_failed",
            action=None,
            task_id=None,
            file=None,
            result={"component": name},
            error=reason,
        )
        text = (
            "---\n"
            "type: alert\n"
            f"component: {name}\n"
            f"raised_at: {now_iso()}\n"
            "---\n"
            f"# vaultd alert: {name} is down\n\n"
            f"{reason}. It stays off until vaultd is restarted.\n\n"
            f"What to do: look at the daemon's output and `{self.status_command}`, fix the "
            "cause, "
            "restart `vaultd run`, then delete this note. vaultd leaves it where it is.\n"
        )
        try:
            self.vault.create(NEEDS_ACTION, f"vaultd alert - {name}.md", text)
        except OSError as error:  # the vault itself may be the problem
            log.error("the alert note could not be written: %s", error)
