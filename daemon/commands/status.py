"""`vaultd status`: counts, requests waiting and why, failures, jobs, recent actions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from daemon.app import LEDGER_FILE
from daemon.commands.common import open_vault
from daemon.commands.logs import log_line
from daemon.config import default_config_path, load_config, state_dir_for
from daemon.scheduler import next_runs
from daemon.status import Snapshot, build_snapshot, open_ledger_readonly, show_time


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    status = commands.add_parser(
        "status", help="counts, pending approvals and why, failures, recent actions"
    )
    add_vault(status, config=True, state=True)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    vault = open_vault(args)
    config = load_config(args.config or default_config_path())
    state_dir = state_dir_for(vault.root, args.state_dir)
    ledger, why = open_ledger_readonly(state_dir / LEDGER_FILE)
    try:
        snapshot = build_snapshot(vault, ledger, ledger_note=why)
    finally:
        if ledger is not None:
            ledger.close()
    snapshot.jobs = [
        {"id": job, "next_run": when.isoformat() if when else None}
        for job, when in next_runs(state_dir, config.schedule)
    ]
    if args.json:
        print(json.dumps(snapshot.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_status(snapshot))
    return 0


def format_status(snapshot: Snapshot) -> str:
    """Return the snapshot as text for a person at a terminal."""
    lines = [f"vault {snapshot.vault}"]
    if snapshot.ledger_note:
        lines.append(f"  note: {snapshot.ledger_note}")
    lines += ["", "Folders"]
    width = max(len(name) for name in snapshot.counts)
    lines += [f"  {name:<{width}}  {count:>4}" for name, count in snapshot.counts.items()]

    lines += ["", f"Waiting for approval: {len(snapshot.pending) + snapshot.pending_more}"]
    for item in snapshot.pending:
        lines.append(f"  {item.id or '(no id yet)'}  {item.file}")
        what = ", ".join(filter(None, [item.type, item.amount, f"waiting {item.age}"]))
        if item.expires_at:
            what += f"; expires {show_time(item.expires_at, seconds=False)} ({item.expires_in})"
        lines.append(f"    {what}")
        if item.rule:
            lines.append(f"    rule {item.rule}: {item.reason}")
        else:
            lines.append("    not yet processed by vaultd (is the daemon running?)")
        if item.error:
            lines.append(f"    problem: {item.error}")
    if snapshot.pending_more:
        lines.append(f"  … and {snapshot.pending_more} more in Pending_Approval/")
    if snapshot.pending:
        lines.append("  decide: vaultd approve ID  |  vaultd reject ID --reason TEXT")

    problems = len(snapshot.problems) + snapshot.problems_more
    lines += ["", f"Failed or outcome unknown: {problems}"]
    for problem in snapshot.problems:
        state = problem.state.replace("_", " ")
        lines.append(f"  {problem.id or '(no id)'}  {problem.file}  [{state}]")
        lines.append(f"    {' '.join((problem.error or 'no error recorded').split())}")
    if snapshot.problems_more:
        lines.append(f"  … and {snapshot.problems_more} more in Failed/")

    if snapshot.jobs:
        lines += ["", "Scheduled jobs (next run, in the configured time zone):"]
        for job in snapshot.jobs:
            when = job["next_run"]
            shown = datetime.fromisoformat(when).strftime("%Y-%m-%d %H:%M %Z") if when else "paused"
            lines.append(f"  {job['id']:<18} {shown}")

    for breaker in snapshot.breakers:
        lines += [
            "",
            f"Circuit breaker {breaker['name']}: {breaker['state']} since "
            f"{show_time(breaker['changed_at'])}; its actions wait in Approved/",
        ]

    if snapshot.sync_conflicts:
        lines += [
            "",
            f"Sync-conflict copies (ignored; merge by hand): {len(snapshot.sync_conflicts)}",
        ]
        lines += [f"  {name}" for name in snapshot.sync_conflicts]

    lines += ["", f"Recent actions: {len(snapshot.recent)}"]
    lines += ["  " + log_line(asdict(item)) for item in snapshot.recent]
    if not snapshot.recent:
        lines.append("  none yet")
    return "\n".join(lines)
