"""ISO weeks, as the weekly briefing counts them: "2026-W47", Monday to Sunday."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, order=True)
class IsoWeek:
    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        """Given "2026-W47", return the week. Raise ValueError if it is not one."""
        match = _WEEK.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not an ISO week such as 2026-W47")
        week = cls(int(match.group(1)), int(match.group(2)))
        week.monday()  # raises ValueError for a week the year does not have
        return week

    @classmethod
    def of(cls, day: date) -> IsoWeek:
        year, week, _ = day.isocalendar()
        return cls(year, week)

    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    def sunday(self) -> date:
        return self.monday() + timedelta(days=6)

    def briefing_date(self) -> date:
        """The Monday after the week: the day its briefing is for."""
        return self.monday() + timedelta(days=7)

    def previous(self) -> IsoWeek:
        return IsoWeek.of(self.monday() - timedelta(days=7))

    def next(self) -> IsoWeek:
        return IsoWeek.of(self.monday() + timedelta(days=7))

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"


def briefing_path(briefings_folder: Path, week: IsoWeek) -> Path:
    """Return where a week's briefing lives: Briefings/YYYY-MM-DD_Monday_Briefing.md."""
    return briefings_folder / f"{week.briefing_date().isoformat()}_Monday_Briefing.md"
