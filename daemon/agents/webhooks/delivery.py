"""Sending what the webhook outbox owes: each delivery signed as the Standard Webhooks spec
says, POSTed once per attempt, and its answer recorded in the outbox and the audit log.

Headers: `webhook-id` (the delivery's, the same on every attempt), `webhook-timestamp`
(seconds, this attempt's) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` of
`id.timestamp.body` with the secret `whsec_…` from `VAULTD_WEBHOOK_SECRET`), signed by the
`standardwebhooks` library. A redirect is never followed (it could lead past the URL check
to any host); it counts as a failed attempt. The URL is checked again before each attempt,
against the config as it is now.

Answers: 2xx delivered; 410 disables the URL; anything else, or no answer, is tried again
after an exponential backoff with jitter (`backoff_seconds`, doubling, at most
`max_backoff_seconds`), and given up after `max_attempts`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from daemon import __version__
from daemon.agents.webhooks.outbox import Delivery, Outbox
from daemon.core.audit import AuditLog
from daemon.core.settings import Settings
from daemon.core.timestamps import iso_ms
from daemon.core.webhook_config import SECRET_ENV, WebhooksConfig, check_url

log = logging.getLogger(__name__)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


# No proxy from the environment either (http_proxy): it would carry a delivery that
# check_url allowed for loopback to wherever the proxy is.
def _build_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)


_opener = _build_opener()


@dataclass(frozen=True)
class Answer:
    """What one attempt got back: the HTTP status (None if no answer) and why it failed."""

    status: int | None
    error: str | None = None


def post(url: str, body: str, headers: dict[str, str], timeout: float) -> Answer:
    """POST a body; return the answer, never raising for what the network does."""
    # The URL passed check_url (http or https, an allowed host) just before.
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Answer(int(response.status))
    except urllib.error.HTTPError as error:
        error.close()
        return Answer(int(error.code), f"the receiver answered {error.code}")
    except (OSError, ValueError) as error:  # refused, reset, timed out, DNS
        reason = getattr(error, "reason", None) or error
        return Answer(None, f"no answer: {reason}")


@dataclass
class Deliverer:
    """Delivers what is due in one outbox."""

    outbox: Outbox
    config: WebhooksConfig
    settings: Settings
    audit: AuditLog
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    send: Callable[[str, str, dict[str, str], float], Answer] = post
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0.5, 1.0))  # noqa: S311
    _warned: set[str] = field(default_factory=set)

    def deliver_due(self, limit: int = 20) -> int:
        """Try every delivery that is due (up to `limit`); return how many were tried."""
        due = self.outbox.due(iso_ms(self.clock()), limit)
        for delivery in due:
            self.attempt(delivery)
        return len(due)

    def attempt(self, delivery: Delivery) -> None:
        """Make one attempt of one delivery and record how it went."""
        try:
            check_url(delivery.url, self.config.allowed_hosts)
        except ValueError as error:
            self._give_up(delivery, None, f"no longer allowed: {error}", 0)
            return
        signer = self._signer()
        if isinstance(signer, str):
            self._warn(signer)
            self._retry(delivery, None, signer, 0)
            return
        # The receiver checks the timestamp against its own clock: the real time, always.
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": f"vaultd/{__version__}",
            "webhook-id": delivery.msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(delivery.msg_id, now, delivery.body),
        }
        started = time.monotonic()
        answer = self.send(delivery.url, delivery.body, headers, self.config.timeout_seconds)
        took = int((time.monotonic() - started) * 1000)
        if answer.status is not None and 200 <= answer.status < 300:
            self.outbox.delivered(delivery, answer.status)
            self._log("webhook_delivered", delivery, answer.status, took)
        elif answer.status == 410:
            dropped = self.outbox.disable(delivery, answer.status)
            self._log("webhook_disabled", delivery, answer.status, took, answer.error, dropped)
        elif delivery.attempts + 1 >= self.config.max_attempts:
            why = f"{answer.error}; given up after {delivery.attempts + 1} attempts"
            self._give_up(delivery, answer.status, why, took)
        else:
            self._retry(delivery, answer.status, answer.error or "failed", took)

    def backoff(self, attempts: int) -> float:
        """Given how many attempts failed, return the seconds until the next one."""
        base = self.config.backoff_seconds * 2 ** min(attempts - 1, 30)
        return min(self.config.max_backoff_seconds, base) * self.jitter()

    def _signer(self) -> Webhook | str:
        secret = self.settings.get(SECRET_ENV)
        if not secret:
            return f"{SECRET_ENV} is not set (in the environment or --env-file)"
        # Checked strictly here: the library's decoding skips what is not base64, so a
        # mistyped secret would sign with some other key. Never name the value: it is secret.
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not secret.startswith("whsec_") or len(key) < 16:
            return f"{SECRET_ENV} is not a whsec_… secret (base64 of at least 16 bytes)"
        return Webhook(secret)

    def _retry(self, delivery: Delivery, status: int | None, error: str, took: int) -> None:
        wait = self.backoff(delivery.attempts + 1)
        at = iso_ms(self.clock() + timedelta(seconds=wait))
        self.outbox.retry(delivery, status, error, at)
        self._log("webhook_retrying", delivery, status, took, f"{error}; next attempt at {at}")

    def _give_up(self, delivery: Delivery, status: int | None, error: str, took: int) -> None:
        self.outbox.give_up(delivery, status, error)
        self._log("webhook_failed", delivery, status, took, error)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("webhooks: %s; deliveries wait until it is", message)

    def _log(  # noqa: PLR0917 (one audit entry's fields)
        self,
        event: str,
        delivery: Delivery,
        status: int | None,
        took: int,
        error: str | None = None,
        dropped: int | None = None,
    ) -> None:
        result: dict[str, Any] = {"http_status": status, "attempt": delivery.attempts + 1}
        if dropped is not None:
            result["dropped"] = dropped
        self.audit.write(
            event,
            action=None,
            task_id=None,
            file=None,
            parameters={
                "url": delivery.url,
                "event": delivery.event,
                "subject": delivery.subject,
                "webhook_id": delivery.msg_id,
            },
            result=result,
            duration_ms=took,
            error=error,
        )
