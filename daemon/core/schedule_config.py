"""The config tables of vaultd's sense of time: `[schedule]`, `[briefing]` and `[logs]`."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from pydantic import BaseModel, ConfigDict, Field, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # IANA time zone for every job, e.g. "Europe/Berlin"; None means the system's.
    timezone: str | None = None
    briefing_day: str = "sun"
    briefing_hour: int = Field(default=22, ge=0, le=23)
    briefing_minute: int = Field(default=0, ge=0, le=59)
    # A briefing missed by less than this (a laptop asleep) still runs, once, on wake-up.
    misfire_grace_hours: float = Field(default=12, gt=0)
    # How often expired approval requests are moved to Rejected/.
    expiry_minutes: float = Field(default=5, gt=0)
    # How often Dashboard.md is refreshed even when nothing changed (its ages move on).
    dashboard_minutes: float = Field(default=5, gt=0)

    def zone(self) -> tzinfo:
        """Return the configured time zone, or the system's (DST-aware either way)."""
        return zone(self.timezone)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{zone!r} is not a time zone (e.g. Europe/Berlin)") from None
        return zone

    @field_validator("briefing_day")
    @classmethod
    def _day(cls, day: str) -> str:
        if day.lower() not in DAYS:
            raise ValueError(f"{day!r} is not a day; use one of {', '.join(DAYS)}")
        return day.lower()


class Briefing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A folder of templates that override vaultd's own by name (ceo_briefing.md.j2 ...).
    templates_dir: Path | None = None


class Logs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Daily log files older than this are gzipped into Logs/archive/ (kept at least 90 days).
    archive_after_days: int = Field(default=90, ge=90)
    # Archived files older than this are deleted; None (the default) never deletes.
    delete_after_days: int | None = Field(default=None, ge=90)


def zone(name: str | None) -> tzinfo:
    """Return the named IANA time zone, or the system's when none is named."""
    return ZoneInfo(name) if name else tzlocal.get_localzone()
