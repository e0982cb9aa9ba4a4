"""`vaultd briefing`: write the CEO briefing of a week now."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from daemon.app import open_app
from daemon.briefing import last_completed_week, write_briefing
from daemon.weeks import IsoWeek


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    briefing = commands.add_parser(
        "briefing", help="write the CEO briefing of a week into Briefings/ now"
    )
    add_vault(briefing, config=True, state=True)
    briefing.add_argument(
        "--week", type=_week, help="an ISO week such as 2026-W47 (default: the last one ended)"
    )
    briefing.set_defaults(func=cmd_briefing)


def _week(text: str) -> IsoWeek:
    try:
        return IsoWeek.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_briefing(args: argparse.Namespace) -> int:
    app = open_app(args.vault, config_path=args.config, state_dir=args.state_dir)
    try:
        now = datetime.now(UTC)
        week = args.week or last_completed_week(now, app.config.schedule.zone())
        print(write_briefing(app, week, now=now))
        return 0
    finally:
        app.close()
