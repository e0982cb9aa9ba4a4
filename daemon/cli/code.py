"""`vaultd code`: the code tasks' worktrees in the state directory; `vaultd code gc` reclaims
the disk of finished tasks where that cannot lose work (daemon/connectors/code_gc.py) and
names everything it leaves alone, and why."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from daemon.cli.common import open_vault
from daemon.connectors.code_gc import Candidate, Report, collect, human
from daemon.core.config import default_config_path, load_config, state_dir_for
from daemon.core.errors import VaultdError
from daemon.core.ledger import Ledger
from daemon.core.quoting import visible
from daemon.lifecycle.app import LEDGER_FILE


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    code = commands.add_parser("code", help="code tasks' worktrees: reclaim what is finished")
    sub = code.add_subparsers(dest="code_command", metavar="CODE_COMMAND", required=True)
    gc = sub.add_parser(
        "gc",
        help="remove finished code tasks' worktrees and branches where nothing is lost",
        description="Per worktree under <state>/worktrees/: reclaim it if its task is done "
        "or rejected, it is clean and its commits stay on a ref (the branch is kept as "
        "refs/vaultd/archive/<task-id>); otherwise name it and say why. The artifacts under "
        "<state>/code/ are never removed.",
    )
    add_vault(gc, config=True, state=True)
    gc.add_argument("--dry-run", action="store_true", help="report only: change nothing")
    gc.add_argument("--json", action="store_true", help="print JSON instead of text")
    gc.set_defaults(func=cmd_gc)


def cmd_gc(args: argparse.Namespace) -> int:
    vault = open_vault(args)
    state = state_dir_for(vault.root, args.state_dir)
    repos = load_config(args.config or default_config_path()).code.repos
    path = state / LEDGER_FILE
    if not path.is_file():
        raise VaultdError(f"{path}: no ledger here (is {state} the vault's state directory?)")
    ledger = Ledger(path, readonly=True)
    try:
        report = collect(state, repos, ledger.task, dry_run=args.dry_run)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _show(report)
    return 0


def _show(report: Report) -> None:
    safe = sum(c.safe for c in report.candidates)
    if report.dry_run:
        head = f"{safe} would be reclaimed, {len(report.candidates) - safe} kept (dry run)"
    else:
        reclaimed = sum(c.reclaimed for c in report.candidates)
        head = f"{reclaimed} reclaimed, {len(report.candidates) - reclaimed} kept"
    print(visible(f"code task worktrees in {report.root}: {head}"))
    for candidate in report.candidates:
        print(visible(f"  {_verdict(candidate, report.dry_run):<16} {candidate.name}"))
        for line in [*candidate.reasons, *candidate.done]:
            print(visible(f"      {line}"))
    if report.dry_run:
        print(
            f"would free about {human(report.reclaimable_bytes)} of "
            f"{human(report.bytes_before)}; artifacts under code/ are kept"
        )
        return
    print(
        f"freed {human(report.freed_bytes)}: {human(report.bytes_before)} before, "
        f"{human(report.bytes_after)} after; artifacts under code/ are kept"
    )


def _verdict(candidate: Candidate, dry_run: bool) -> str:
    if dry_run:
        return "would reclaim" if candidate.safe else "kept"
    if candidate.reclaimed:
        return "reclaimed"
    return "kept (changed)" if candidate.safe else "kept"
