"""Timestamps as vaultd writes them: UTC ISO 8601 with a trailing Z."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """Return the current time to the millisecond, as the ledger and audit log record it."""
    return iso_ms(datetime.now(UTC))


def iso_ms(when: datetime) -> str:
    """Return a time to the millisecond, as `now_iso` writes it (so that text order is time
    order among the ledger's timestamps): 2026-11-22T10:00:00.000Z."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso(when: datetime) -> str:
    """Return a time to the second, as notes show it: 2026-11-22T10:00:00Z."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Given a timestamp vaultd wrote, return it as an aware datetime (naive means UTC).

    Raise ValueError if it is not a timestamp.
    """
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)
