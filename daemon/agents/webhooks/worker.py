"""The webhook worker of `vaultd run`: one thread that turns run events into deliveries and
delivers what the outbox owes. It looks for new events every `poll_seconds` (half a second:
a run's state may change in any process, and the look is one indexed query), at once when
woken (`wake`), and when the next retry is due. Supervised like the watcher
(daemon/service/supervisor.py): `healthy` while its thread lives, `restart` starts a new one.

A delivery is marked delivered only after its receiver answered 2xx, so a daemon killed
mid-delivery delivers it again after its restart, with the same `webhook-id`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from daemon.agents.webhooks.delivery import Deliverer
from daemon.core.timestamps import parse_time

log = logging.getLogger(__name__)


class WebhookWorker:
    name = "webhooks"

    def __init__(
        self,
        deliverer: Deliverer,
        *,
        expand: Callable[[], int] = lambda: 0,
        poll_seconds: float = 0.5,
    ) -> None:
        self.deliverer = deliverer
        # Turns the events written since (daemon/agents/webhooks/events.py) into deliveries.
        self.expand = expand
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vaultd-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.deliverer.config.timeout_seconds + 5)

    def wake(self) -> None:
        """Deliver what is due now (a delivery was just written)."""
        self._wake.set()

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart(self) -> None:
        self.stop()
        self.start()

    def run_once(self) -> None:
        """Expand the events written so far and try what is due, once (`vaultd run --once`)."""
        while self.expand():
            pass  # a full batch: there may be more events
        while self.deliverer.deliver_due() and not self._stop.is_set():
            pass  # a full batch: there may be more due

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except Exception:  # a bug must not end the deliveries; the supervisor sees the rest
                log.exception("webhooks: delivering failed; trying again later")
            self._wake.wait(self._until_next())

    def _until_next(self) -> float:
        """Return the seconds until the next retry is due (at most `poll_seconds`)."""
        try:
            at = self.deliverer.outbox.next_due()
        except Exception:  # noqa: BLE001 - the ledger is busy or closing: poll again later
            return self.poll_seconds
        if at is None:
            return self.poll_seconds
        wait = (parse_time(at) - datetime.now(UTC)).total_seconds()
        return min(self.poll_seconds, max(0.05, wait))
