"""Rate limits of our own, per connector or per action type, counted from the ledger.

`[rate_limits] per_hour = { odoo_payment = 3, facebook = 10 }` means: at most 3 payment
calls and 10 Facebook calls in any 60 minutes. Over the limit the action waits in Approved/
until the window has room. Calls are counted from the ledger, so a restart forgets nothing,
and a call whose outcome is unknown counts as made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from daemon.core.ledger import Ledger
from daemon.core.models import ACTION_TYPES
from daemon.core.timestamps import iso, parse_time

WINDOW = timedelta(hours=1)
TARGETS = ("facebook", "instagram", "twitter", "odoo")


class RateLimits(BaseModel):
    """The `[rate_limits]` table of the config file."""

    model_config = ConfigDict(extra="forbid")

    per_hour: dict[str, int] = Field(default_factory=dict)

    @field_validator("per_hour")
    @classmethod
    def _known_names(cls, limits: dict[str, int]) -> dict[str, int]:
        for name, limit in limits.items():
            if name not in TARGETS + ACTION_TYPES:
                known = ", ".join(TARGETS + ACTION_TYPES)
                raise ValueError(f"{name!r} is neither a connector nor an action type ({known})")
            if limit < 1:
                raise ValueError(f"{name}: a limit must be at least 1 call per hour")
        return limits


class Limiter:
    def __init__(self, limits: RateLimits, ledger: Ledger) -> None:
        self.limits = limits
        self.ledger = ledger

    def wait(self, action_type: str, target: str) -> tuple[str, datetime] | None:
        """Return (why, until when) if a call to `target` for `action_type` must wait."""
        now = datetime.now(UTC)
        since = iso(now - WINDOW)
        for name in (target, action_type):
            limit = self.limits.per_hour.get(name)
            if limit is None:
                continue
            if name == target:
                made = self.ledger.call_times(since, target=target)
            else:
                made = self.ledger.call_times(since, action_type=action_type)
            if len(made) >= limit:
                # Room opens when the oldest call that fills the window leaves it.
                until = parse_time(made[-limit]) + WINDOW
                return f"rate limit: {limit} {name} call(s) per hour reached", until
        return None
