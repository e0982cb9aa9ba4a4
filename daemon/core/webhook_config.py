"""The `[webhooks]` config: who is told when a run ends, where vaultd may send it, how it
retries; and the one check every webhook URL passes (`check_url`), from the config or from
a run's `webhook`.

    [webhooks]
    allowed_hosts = ["hooks.example.com"]   # beyond loopback, allowed by name
    max_attempts = 8                         # then the delivery is given up, in the log
    [[webhooks.subscriptions]]
    url = "http://127.0.0.1:9000/hook"
    events = ["run.succeeded", "run.failed"]

A URL goes to a loopback address (127.0.0.0/8, ::1, `localhost`) unless its host is named
in `allowed_hosts`: an agent that may start runs must not make vaultd post to any address it
likes, inside the network or out. The signing secret is `VAULTD_WEBHOOK_SECRET` (from the
environment or `--env-file`), never the config or the vault.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

EVENTS = ("run.succeeded", "run.failed", "run.awaiting_approval", "batch.finished")
Event = Literal["run.succeeded", "run.failed", "run.awaiting_approval", "batch.finished"]
SECRET_ENV = "VAULTD_WEBHOOK_SECRET"  # noqa: S105 (the name, not the secret)
MAX_URL = 2048


def check_url(url: str, allowed_hosts: list[str] | tuple[str, ...] = ()) -> str:
    """Given a webhook URL and the hosts allowed beyond loopback, return the URL; raise
    ValueError saying what is wrong with it if vaultd may not post to it."""
    if not isinstance(url, str) or not url:
        raise ValueError("a webhook URL must be a non-empty text")
    if len(url) > MAX_URL:
        raise ValueError(f"a webhook URL may be at most {MAX_URL} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("a webhook URL may not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in range
    except ValueError as error:
        raise ValueError(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"a webhook URL must start with http:// or https://, not {url!r}")
    if parts.username or parts.password:
        raise ValueError("a webhook URL may not carry a user name or password")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"a webhook URL needs a host: {url!r}")
    if port == 0:
        raise ValueError("a webhook URL may not use port 0")
    if _loopback(host) or host in {h.lower() for h in allowed_hosts}:
        return url
    raise ValueError(
        f"webhooks go to loopback addresses only, and {host!r} is not one; "
        'to allow it, add it to [webhooks] allowed_hosts = ["' + host + '"] in the config'
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    events: list[Event] = Field(min_length=1)


class WebhooksConfig(BaseModel):
    """Completion webhooks (daemon/agents/webhooks/): subscriptions, allowed hosts, retries."""

    model_config = ConfigDict(extra="forbid")

    subscriptions: list[Subscription] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)
    max_attempts: int = Field(default=8, ge=1, le=50)
    # The first retry comes after about this long, each next one after twice as long
    # (with jitter), never after more than `max_backoff_seconds`.
    backoff_seconds: float = Field(default=10.0, gt=0, le=86_400)
    max_backoff_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _urls_allowed(self) -> WebhooksConfig:
        for number, subscription in enumerate(self.subscriptions):
            try:
                check_url(subscription.url, self.allowed_hosts)
            except ValueError as error:
                raise ValueError(f"subscriptions[{number}].url: {error}") from None
        return self

    def subscribers(self, event: str) -> list[str]:
        """Given an event, return the URLs subscribed to it, in the config's order."""
        return [s.url for s in self.subscriptions if event in s.events]
