"""`vaultd briefing`: write the CEO briefing of a week now."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from daemon.core.errors import VaultdError
from daemon.core.schedule_config import Schedule
from daemon.core.weeks import IsoWeek
from daemon.reports import briefing as reports
from daemon.reports.briefing.week import week_ends_at
from daemon.service.app import open_app


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    briefing = commands.add_parser(
        "briefing", help="write the CEO briefing of a week into Briefings/ now"
    )
    add_vault(briefing, config=True, state=True)
    briefing.add_argument(
        "--week", type=_week, help="an ISO week such as 2026-W47 (default: the last one ended)"
    )
    briefing.add_argument(
        "--partial",
        action="store_true",
        help="write it even if the week is not over yet, marked partial",
    )
    briefing.set_defaults(func=cmd_briefing)


def _week(text: str) -> IsoWeek:
    try:
        return IsoWeek.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def clock() -> datetime:
    """Return the time now, in UTC."""
    return datetime.now(UTC)


def cmd_briefing(args: argparse.Namespace) -> int:
    app = open_app(args.vault, config_path=args.config, state_dir=args.state_dir)
    try:
        now = clock()
        week = args.week or reports.last_completed_week(now, app.config.schedule.zone())
        partial = not week_is_over(app.config.schedule, week, now, partial=args.partial)
        print(reports.write_briefing(app, week, now=now, partial=partial))
        return 0
    finally:
        app.close()


def week_is_over(schedule: Schedule, week: IsoWeek, now: datetime, *, partial: bool) -> bool:
    """Given a week, return whether it is over for its briefing at `now` (see briefing.week).

    Raise VaultdError if it is not, naming when it will be, unless `partial` allows it.
    """
    ends = week_ends_at(schedule, week)
    if now >= ends:
        return True
    if not partial:
        raise VaultdError(
            f"week {week} is not over: it ends for its briefing at "
            f"{ends.strftime('%Y-%m-%d %H:%M')} ({ends.tzinfo}); "
            "pass --partial to write a briefing of it so far, marked partial"
        )
    return False
