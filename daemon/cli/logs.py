"""`vaultd logs`: the audit log, filtered, one line an entry or JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date
from typing import Any

from daemon.cli.common import open_vault
from daemon.core.audit import parse_since, read_entries
from daemon.core.vault import (
    LOGS,
)
from daemon.reports.status import show_time


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    logs = commands.add_parser("logs", help="query the audit log (Logs/*.json)")
    add_vault(logs)
    logs.add_argument(
        "--since", type=_since, help="from this day on: YYYY-MM-DD, today, or 7d (7 days ago)"
    )
    logs.add_argument(
        "--action", help="only this action type (social_post …) or event (approved …)"
    )
    logs.add_argument(
        "--status",
        help="only this result status (success, error), outcome (done, failed …), event "
        "or approval status",
    )
    logs.add_argument("--json", action="store_true", help="print the entries as JSON lines")
    logs.set_defaults(func=cmd_logs)


def _since(text: str) -> date:
    try:
        return parse_since(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD, today, or a number of days such as 7d"
        ) from None


def cmd_logs(args: argparse.Namespace) -> int:
    vault = open_vault(args)
    shown = 0
    for entry in read_entries(vault.folder(LOGS), args.since):
        if not _log_matches(entry, action=args.action, status=args.status):
            continue
        shown += 1
        if args.json:
            print(json.dumps(entry, ensure_ascii=False))
        else:
            print(log_line(entry))
    if not shown:
        print("no matching log entries", file=sys.stderr)
    return 0


def _log_matches(entry: dict[str, Any], *, action: str | None, status: str | None) -> bool:
    if action and action not in (entry.get("action"), entry.get("event")):
        return False
    if status:
        result = entry.get("result")
        result = result if isinstance(result, dict) else {}
        known = (result.get("status"), result.get("outcome"), entry.get("event"))
        if status not in (*known, entry.get("approval_status")):
            return False
    return True


def log_line(entry: dict[str, Any]) -> str:
    """Return one audit entry on one line: time, event, action, task id, file, error."""
    when = show_time(str(entry.get("timestamp") or ""))
    line = (
        f"{when:<23}  {entry.get('event') or '-':<20} {entry.get('action') or '-':<13} "
        f"{entry.get('task_id') or '-':<16} {entry.get('file') or '-'}"
    )
    if entry.get("error"):
        line += f"  error: {' '.join(str(entry['error']).split())}"
    return line
