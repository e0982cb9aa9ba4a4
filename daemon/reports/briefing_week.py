"""Which ISO week a scheduled briefing reports on, and when a week is over for its briefing.

A week is over, for its briefing, at its scheduled briefing time when that falls within the
week (the default Sunday 22:00 in the configured time zone), else when the ISO week ends
(Monday 00:00 after it). So the scheduled Sunday-22:00 briefing is the regular, complete
briefing of its week, although the last two hours of the week are still to come: it is
never refused and never marked partial, and neither is `vaultd briefing` for that week
from 22:00 on. Before that time, a briefing of the week is partial: `vaultd briefing`
refuses it unless given `--partial`, and marks it `partial: true`. A briefing scheduled on
another day (say Monday 07:00) reports on the week before, which is over at Monday 00:00.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from daemon.core.schedule_config import DAYS, Schedule
from daemon.core.weeks import IsoWeek


def week_of_briefing(schedule: Schedule, scheduled: datetime) -> IsoWeek:
    """Given a scheduled briefing time, return the week it reports on: the last one over.

    On a Sunday evening that is the week ending that day.
    """
    day = scheduled.date()
    return IsoWeek.of(day) if schedule.briefing_day == "sun" else IsoWeek.of(day).previous()


def week_ends_at(schedule: Schedule, week: IsoWeek) -> datetime:
    """Given a week, return when it is over for its briefing, in the configured time zone."""
    tz = schedule.zone()
    day = week.monday() + timedelta(days=DAYS.index(schedule.briefing_day))
    at = time(schedule.briefing_hour, schedule.briefing_minute)
    scheduled = datetime.combine(day, at, tz)
    if week_of_briefing(schedule, scheduled) == week:
        return scheduled
    return datetime.combine(week.briefing_date(), time(), tz)
