"""`vaultd status`: counts, requests waiting and why, failures, jobs, recent actions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.cli.common import hints_of, open_vault
from daemon.cli.logs import log_line
from daemon.core.config import default_config_path, load_config, state_dir_for
from daemon.core.daemon_lock import Holder, holder_of
from daemon.core.hints import Hints
from daemon.core.lease import LeaseProblem, LeaseRecord, machine_id
from daemon.reports.status import Snapshot, build_snapshot, open_ledger_readonly, show_time
from daemon.service.app import LEDGER_FILE
from daemon.service.scheduler import next_briefing_time, next_runs


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
    holder = holder_of(state_dir)
    snapshot.daemon = {"running": holder is not None, **(holder.to_json() if holder else {})}
    if snapshot.executor is not None:
        snapshot.executor["this_machine"] = _this_machine(state_dir, snapshot.executor)
    standby = snapshot.executor is not None and not snapshot.executor["this_machine"]
    if holder is not None and standby:
        pass  # a daemon that is not the executor runs no job
    elif holder is not None:
        snapshot.jobs = [
            {"id": job, "next_run": when.isoformat() if when else None}
            for job, when in next_runs(state_dir, config.schedule)
        ]
    else:
        # The job store's times are only true while a daemon runs them.
        due = next_briefing_time(config.schedule, datetime.now(UTC))
        snapshot.next_briefing = due.isoformat()
    if args.json:
        print(json.dumps(snapshot.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_status(snapshot, hints_of(args, vault)))
    return 0


def _run_lines(snapshot: Snapshot) -> list[str]:
    """Return the run queue by channel and the runs waiting for approval or latest."""
    if not snapshot.queue and not snapshot.runs:
        return []
    lines = ["", "Run queue:" if snapshot.queue else "Run queue: empty"]
    for channel, counts in snapshot.queue.items():
        lines.append(f"  {channel:<12} {counts['running']} running, {counts['queued']} queued")
    if snapshot.webhooks:
        told = ", ".join(
            f"{snapshot.webhooks[state]} {state}"
            for state in ("pending", "delivered", "failed", "disabled")
            if snapshot.webhooks.get(state)
        )
        lines.append(f"Webhooks: {told} (each attempt is in the audit log)")
    lines.append("Skill runs (waiting for approval, then the latest):")
    for run in snapshot.runs:
        error = f": {' '.join(run['error'].split())[:120]}" if run["error"] else ""
        lines.append(f"  {run['id']}  {run['skill']}  {run['state']}{error}")
    return lines


def format_status(snapshot: Snapshot, hints: Hints | None = None) -> str:
    """Return the snapshot as text for a person at a terminal; `hints` names vaultd and the
    vault in the commands it suggests."""
    hints = hints or Hints.for_vault(Path(snapshot.vault))
    lines = [f"vault {snapshot.vault}", _daemon_line(snapshot, hints)]
    lines += _executor_lines(snapshot, hints)
    if snapshot.ledger_note:
        lines.append(f"  note: {snapshot.ledger_note}")
    lines += ["", "Folders"]
    width = max(len(name) for name in snapshot.counts)
    lines += [f"  {name:<{width}}  {count:>4}" for name, count in snapshot.counts.items()]

    lines += ["", f"Waiting for approval: {len(snapshot.pending) + snapshot.pending_more}"]
    for item in snapshot.pending:
        lines.append(f"  {item.ref or item.id or '(no id yet)'}  {item.file}")
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
        lines.append(f"  approve: {hints.command('approve', 'ID')}")
        lines.append(f"  reject:  {hints.command('reject', 'ID --reason TEXT')}")

    problems = len(snapshot.problems) + snapshot.problems_more
    lines += ["", f"Failed or outcome unknown: {problems}"]
    for problem in snapshot.problems:
        state = problem.state.replace("_", " ")
        lines.append(f"  {problem.id or '(no id)'}  {problem.file}  [{state}]")
        lines.append(f"    {' '.join((problem.error or 'no error recorded').split())}")
    if snapshot.problems_more:
        lines.append(f"  … and {snapshot.problems_more} more in Failed/")

    lines += _run_lines(snapshot)
    if snapshot.next_briefing:
        due = datetime.fromisoformat(snapshot.next_briefing).strftime("%a %Y-%m-%d %H:%M %Z")
        lines += ["", f"Next CEO briefing: {due}, written by the daemon when it runs then"]
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


def _daemon_line(snapshot: Snapshot, hints: Hints) -> str:
    """Return whether a daemon runs on the vault, and how to start one if none does."""
    daemon = snapshot.daemon
    if daemon is None:
        return "daemon: unknown"
    if daemon["running"]:
        holder = Holder(
            daemon.get("pid"), daemon.get("since"), daemon.get("mode"), daemon.get("host")
        )
        return f"daemon: running ({holder.describe()})"
    return (
        "daemon: not running on this vault: nothing is processed, executed or scheduled "
        f"until `{hints.command('run')}` runs"
    )


def _this_machine(state_dir: Path, lease: dict[str, Any]) -> bool:
    """Return whether the lease names the machine of this state directory."""
    try:
        mine = machine_id(state_dir, create=False)
    except LeaseProblem:
        return False
    return mine is not None and lease.get("machine_id") == mine


def _executor_lines(snapshot: Snapshot, hints: Hints) -> list[str]:
    """Return who executes on the vault, by its lease; [] if it has none yet."""
    lease = snapshot.executor
    if lease is None:
        return []
    running = bool(snapshot.daemon and snapshot.daemon.get("running"))
    record = LeaseRecord(**{k: v for k, v in lease.items() if k != "this_machine"})
    take_over = f"`{hints.command('run', '--take-over')}`"
    if lease.get("this_machine"):
        beat = show_time(record.heartbeat) if record.heartbeat else "none yet"
        if running:
            return [f"  the executor of this vault (heartbeat {beat})"]
        return [
            f"  executor: this machine holds the lease (last heartbeat {beat}); a daemon "
            "started here takes it again"
        ]
    if record.problem:
        return [
            f"  executor: unknown: the lease .vaultd/executor.json cannot be read "
            f"({record.problem}); no daemon executes until {take_over} takes it"
        ]
    holder = record.describe(show_time)
    if running:
        return [
            f"  not the executor: {holder} holds the lease; stop this daemon, then "
            f"{take_over} to take it"
        ]
    return [
        f"  executor: {holder} holds the lease: a daemon started here would execute "
        f"nothing; {take_over} to take it"
    ]
