"""Which ISO week a scheduled briefing reports on, and when a week is over for its briefing.

A week is over, for its briefing, at its scheduled briefing time when that falls within the
week (the default Sunday 22:00 in the configured time zone), else when the ISO week ends
(Monday 00:00 after it). So the scheduled Sunday-22:00 briefing is the regular, complete
briefing of its week, although the last two hours of the week are still to come: it is
never refused and never marked partial, and neither is `vaultd briefing` for that week
from 22:00 on. Before that time, a briefing of the week is partial: `vaultd briefing`
refuses it unless given `--partial`, and marks it `partial: true`. A briefing scheduled on
another day (say Monday 07:00) reports on the week before, which is over at Monday 00:00.

`window` gives the span of time a briefing's figures cover, in the configured time zone: the
log-based figures are "as of" the end of the week (or now, if the week is not over), so a
briefing written again later says the same about its week. A scheduled briefing counts
from the week before's briefing time (`briefing_span`): the last two hours of a Sunday are
in the next week's briefing, never in none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

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


def last_completed_week(now: datetime, tz: tzinfo) -> IsoWeek:
    """Return the most recent ISO week that has ended, in a time zone."""
    return IsoWeek.of(now.astimezone(tz).date()).previous()


@dataclass
class Window:
    """The times a briefing's figures are counted between, local to its time zone."""

    tz: tzinfo
    week_start: datetime  # Monday 00:00 local
    week_end: datetime  # when the week is over for its briefing (or the next Monday 00:00)
    month_start: datetime
    scan_start: datetime  # the earliest time parsed in full
    as_of: datetime
    counted_from: datetime  # the week before's end for its briefing (or Monday 00:00)

    def in_week(self, when: datetime) -> bool:
        return self.counted_from <= when < self.week_end


def window(
    week: IsoWeek, tz: tzinfo, now: datetime, *, span: tuple[datetime, datetime] | None = None
) -> Window:
    """Given a week, a time zone and now, return the window its briefing's figures cover:
    the ISO week, or `span` (from the week before's briefing time to this week's, so that
    what happened after one briefing was written is in the next: briefing_span)."""

    def local(day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=tz)

    week_start = local(week.monday())
    counted_from, week_end = span or (week_start, local(week.briefing_date()))
    counted_from, week_end = counted_from.astimezone(tz), week_end.astimezone(tz)
    month_start = local(week.sunday().replace(day=1))
    as_of = min(now.astimezone(tz), week_end)
    # The week before is read in full too: approvals requested then and decided this week.
    scan_start = min(month_start, counted_from - timedelta(days=7))
    return Window(tz, week_start, week_end, month_start, scan_start, as_of, counted_from)


def briefing_span(schedule: Schedule, week: IsoWeek) -> tuple[datetime, datetime]:
    """The span a week's briefing counts: from when the week before was over for its
    briefing (Sunday 22:00 by default) to when this one is. Nothing falls between two
    briefings, and a briefing written again later counts the same."""
    return week_ends_at(schedule, week.previous()), week_ends_at(schedule, week)
