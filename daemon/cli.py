"""The `vaultd` command line. Exit codes: 0 ok, 1 error, 2 usage."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import __version__, notes
from daemon.api import cli as api_cli
from daemon.app import LEDGER_FILE, App, open_app
from daemon.approval import resource_dir
from daemon.audit import Redactor, parse_since, read_entries
from daemon.briefing import last_completed_week, write_briefing
from daemon.config import default_config_path, load_config, state_dir_for
from daemon.connectors import live_connectors
from daemon.connectors.base import ScratchMemory
from daemon.connectors.unavailable import Unavailable
from daemon.dashboard import Dashboard
from daemon.errors import ConfigError, NotFound, ValidationFailed, VaultdError
from daemon.mcp import cli as mcp_cli
from daemon.retention import apply_retention
from daemon.runner import Runner
from daemon.scheduler import Clockwork, next_runs
from daemon.settings import Settings, load_settings
from daemon.skill_tasks import skill_problems
from daemon.skills import cli as skills_cli
from daemon.skills.registry import load_registry
from daemon.skills.runs import Runs
from daemon.status import Snapshot, build_snapshot, open_ledger_readonly, show_time
from daemon.supervisor import Component, Supervisor
from daemon.taskfile import Unreadable, read_task_file, validate_note
from daemon.vault import (
    ALL_FOLDERS,
    APPROVED,
    LOGS,
    NEEDS_ACTION,
    PENDING,
    PIPELINE_FOLDERS,
    REJECTED,
    Vault,
    is_ignored,
    is_sync_conflict,
)
from daemon.weeks import IsoWeek

if TYPE_CHECKING:
    from daemon.api.server import ApiServer

log = logging.getLogger("vaultd")


def _add_vault(
    parser: argparse.ArgumentParser,
    *,
    config: bool = False,
    state: bool = False,
    env: bool = False,
) -> None:
    parser.add_argument(
        "--vault",
        type=Path,
        default=os.environ.get("VAULTD_VAULT"),
        help="the Obsidian vault (default: $VAULTD_VAULT)",
    )
    if config:
        parser.add_argument(
            "--config",
            type=Path,
            help="config file (default: $VAULTD_CONFIG or ~/.config/vaultd/config.toml "
            "if it exists)",
        )
    if env:
        parser.add_argument(
            "--env-file",
            type=Path,
            help="a .env file (outside the vault) with the connectors' settings; "
            "the environment wins over it",
        )
    if state:
        parser.add_argument(
            "--state-dir",
            help="where the ledger lives, outside the vault "
            "(default: $VAULTD_STATE_DIR or ~/.local/state/vaultd/<vault>)",
        )


def _since(text: str) -> date:
    try:
        return parse_since(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD, today, or a number of days such as 7d"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaultd",
        description="An AI Employee that lives in an Obsidian vault: it validates task files, "
        "asks for approval where the policy says so, executes approved actions and records "
        "everything.",
        epilog="Every command but init takes --vault PATH (or $VAULTD_VAULT). "
        "Exit codes: 0 ok, 1 error, 2 usage.",
    )
    parser.add_argument("--version", action="version", version=f"vaultd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = commands.add_parser("init", help="create a vault from the template (never overwrites)")
    init.add_argument("path", type=Path, help="folder to create or complete")
    init.set_defaults(func=cmd_init)

    run = commands.add_parser("run", help="run the daemon (dry-run unless --live)")
    _add_vault(run, config=True, state=True, env=True)
    run.add_argument("--once", action="store_true", help="process what is there, then exit")
    run.add_argument(
        "--live",
        action="store_true",
        default=os.environ.get("VAULTD_LIVE") == "1",
        help="really call the services (default: dry-run; also VAULTD_LIVE=1)",
    )
    run.add_argument(
        "--polling", action="store_true", help="poll instead of using file events (network drives)"
    )
    run.add_argument(
        "--api", action="store_true", help="also serve the REST API (as `vaultd serve` does)"
    )
    run.add_argument(
        "--allow-remote",
        action="store_true",
        help="with --api: allow a non-loopback [api] host (put a TLS proxy in front)",
    )
    run.set_defaults(func=cmd_run)

    status = commands.add_parser(
        "status", help="counts, pending approvals and why, failures, recent actions"
    )
    _add_vault(status, config=True, state=True)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=cmd_status)

    approve = commands.add_parser(
        "approve", help="approve a pending request (same as moving it to Approved/)"
    )
    _add_vault(approve)
    approve.add_argument("id", help="the request's id (a unique prefix is enough)")
    approve.set_defaults(func=cmd_approve)

    reject = commands.add_parser(
        "reject", help="reject a pending request, with a reason, into Rejected/"
    )
    _add_vault(reject)
    reject.add_argument("id", help="the request's id (a unique prefix is enough)")
    reject.add_argument("--reason", required=True, help="why; written into the note")
    reject.set_defaults(func=cmd_reject)

    check = commands.add_parser(
        "check", help="validate the config and every file in the pipeline folders"
    )
    _add_vault(check, config=True, env=True)
    check.set_defaults(func=cmd_check)

    logs = commands.add_parser("logs", help="query the audit log (Logs/*.json)")
    _add_vault(logs)
    logs.add_argument(
        "--since", type=_since, help="from this day on: YYYY-MM-DD, today, or 7d (7 days ago)"
    )
    logs.add_argument(
        "--action", help="only this action type (social_post …) or event (approved …)"
    )
    logs.add_argument(
        "--status", help="only this result status (done, failed …), event or approval status"
    )
    logs.add_argument("--json", action="store_true", help="print the entries as JSON lines")
    logs.set_defaults(func=cmd_logs)

    briefing = commands.add_parser(
        "briefing", help="write the CEO briefing of a week into Briefings/ now"
    )
    _add_vault(briefing, config=True, state=True)
    briefing.add_argument(
        "--week", type=_week, help="an ISO week such as 2026-W47 (default: the last one ended)"
    )
    briefing.set_defaults(func=cmd_briefing)
    skills_cli.register(commands, _add_vault)
    api_cli.register(commands, _add_vault)
    mcp_cli.register(commands, _add_vault)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if hasattr(args, "vault") and args.vault is None:
        parser.error(f"{args.command}: --vault is required (or set VAULTD_VAULT)")
    try:
        return int(args.func(args))
    except VaultdError as error:
        print(f"vaultd: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`vaultd logs | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def cmd_init(args: argparse.Namespace) -> int:
    template = resource_dir("vault_template")
    target: Path = args.path
    created = kept = 0
    for source in sorted(template.rglob("*")):
        relative = source.relative_to(template)
        if source.name == ".gitkeep":
            continue
        destination = target / relative
        if source.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif destination.exists():
            kept += 1
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
            created += 1
    Vault(target).ensure_folders()
    for folder in ALL_FOLDERS:
        (target / folder).mkdir(exist_ok=True)
    print(
        f"vault ready at {target.resolve()}: {created} note(s) created, "
        f"{kept} existing note(s) left untouched"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    app = open_app(
        args.vault,
        config_path=args.config,
        state_dir=args.state_dir,
        dry_run=not args.live,
        env_file=args.env_file,
    )
    dashboard = Dashboard(
        app.vault,
        app.ledger,
        min_interval=app.config.daemon.dashboard_seconds,
        clock=app.pipeline.clock,
    )
    try:
        log.info(
            "vaultd %s watching %s (%s; state in %s)",
            __version__,
            app.vault.root,
            "dry-run" if app.pipeline.dry_run else "LIVE: approved actions reach the services",
            app.state_dir,
        )
        for connector in app.pipeline.connectors.values():
            if isinstance(connector, Unavailable):
                log.warning("%s: %s; its actions will fail", connector.name, connector.reason)
        if args.once:
            # One dashboard write at the end, not one per file.
            once = Runner(app.pipeline, app.config, polling=args.polling)
            once.install_signal_handlers()
            count = once.run_once()
            # A daemon run from cron still writes a briefing whose time has passed.
            Clockwork(app, write_briefing=write_briefing).settle()
            log.info("processed %d file(s)", count)
            return 0
        runs = app.pipeline.skills

        def changed() -> None:
            if runs is not None:
                runs.refresh_waiting()  # a run whose requests all finished, finishes
            dashboard.changed()

        runner = Runner(app.pipeline, app.config, polling=args.polling, on_change=changed)
        runner.install_signal_handlers()
        clockwork = Clockwork(
            app,
            write_briefing=write_briefing,
            on_expire=runner.request_expiry,
            on_dashboard=dashboard.changed,
            apply_retention=_retain_logs,
        )
        components: list[Component] = [runner.watcher, clockwork]
        api = _start_api(app, runs, args) if args.api and runs is not None else None
        if api is not None:
            components.append(api)
        clockwork.start()
        supervisor = Supervisor(
            app.vault,
            app.audit,
            components,
            interval=app.config.daemon.health_seconds,
            on_change=dashboard.changed,
        )
        dashboard.alerts = supervisor.failed
        supervisor.start()
        try:
            runner.run_forever()
        finally:
            supervisor.stop()
            clockwork.stop()
            if api is not None:
                api.stop()
        log.info("stopped")
        return 0
    finally:
        dashboard.close()
        app.close()


# -- status ------------------------------------------------------------------------------


def _retain_logs(app: App, today: date) -> None:
    """The log_retention job: archive old daily logs, and say what was done."""
    done = apply_retention(app.vault.folder(LOGS), app.config.logs, today=today)
    if done.changed:
        app.audit.write(
            "logs_archived",
            action=None,
            task_id=None,
            file=None,
            result={
                "archived": [str(d) for d in done.archived],
                "deleted": [str(d) for d in done.deleted],
            },
        )


def _start_api(app: App, runs: Runs, args: argparse.Namespace) -> ApiServer:
    # Imported here: FastAPI and uvicorn add a quarter second to every other command.
    from daemon.api.server import ApiServer  # noqa: PLC0415

    server = ApiServer(
        app,
        runs,
        allow_remote=args.allow_remote,
        settings=load_settings(args.env_file, vault=app.vault.root),
    )
    server.start()
    log.info("REST API on %s (OpenAPI: %s/docs)", server.url, server.url)
    return server


def cmd_status(args: argparse.Namespace) -> int:
    vault = _open_vault(args)
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
    lines += ["  " + _log_line(asdict(item)) for item in snapshot.recent]
    if not snapshot.recent:
        lines.append("  none yet")
    return "\n".join(lines)


# -- approve and reject ------------------------------------------------------------------


def cmd_approve(args: argparse.Namespace) -> int:
    vault = _open_vault(args)
    task_id, path, meta = find_request(vault, args.id)
    if meta.get("status") == "invalid":
        raise VaultdError(
            f"{task_id} ({vault.relative(path)}) is not valid, so it cannot be approved: "
            f"{meta.get('error')}. Fix the note first."
        )
    moved = vault.move(path, APPROVED)
    print(
        f"approved {task_id}: {vault.relative(path)} → {vault.relative(moved)}. "
        "A running vaultd executes it now; otherwise the next `vaultd run` does."
    )
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    reason = " ".join(str(args.reason).split())
    if not reason:
        raise VaultdError("--reason must say why the request is rejected")
    vault = _open_vault(args)
    task_id, path, _ = find_request(vault, args.id)
    try:
        loaded = read_task_file(path)
    except Unreadable as error:
        raise VaultdError(f"{vault.relative(path)} {error}") from None
    text = notes.render(loaded.note, {**loaded.note.stamps, "rejection_reason": reason})
    if not vault.write(path, text, loaded.signature):
        raise VaultdError(
            f"{vault.relative(path)} changed while it was being rejected; run the command again"
        )
    moved = vault.move(path, REJECTED)
    print(f"rejected {task_id}: {vault.relative(path)} → {vault.relative(moved)} ({reason})")
    return 0


def find_request(vault: Vault, wanted: str) -> tuple[str, Path, dict[str, Any]]:
    """Return (id, path, frontmatter) of the pending request with this id or unique prefix.

    Raise NotFound if none has it (saying where the task is, if it is elsewhere), and
    VaultdError listing the matches if the prefix fits several.
    """
    wanted = wanted.strip()
    if not wanted:
        raise NotFound("give the id of a request (vaultd status lists them)")
    matches = [
        (task_id, path, meta)
        for task_id, path, meta in _notes_with_ids(vault, PENDING)
        if task_id.startswith(wanted)
    ]
    exact = [match for match in matches if match[0] == wanted]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if matches:
        listed = "\n".join(f"  {task_id}  {vault.relative(path)}" for task_id, path, _ in matches)
        raise VaultdError(f"{wanted!r} matches {len(matches)} pending requests:\n{listed}")
    for folder in PIPELINE_FOLDERS:
        if folder == PENDING:
            continue
        for task_id, path, _ in _notes_with_ids(vault, folder):
            if task_id == wanted or (len(wanted) >= 6 and task_id.startswith(wanted)):
                raise NotFound(
                    f"{task_id} is not waiting for approval: it is already at "
                    f"{vault.relative(path)}"
                )
    raise NotFound(
        f"no pending request with id {wanted!r} in {PENDING}/ (vaultd status lists them)"
    )


def _notes_with_ids(vault: Vault, folder: str) -> list[tuple[str, Path, dict[str, Any]]]:
    found = []
    for path in vault.files(folder):
        if is_sync_conflict(path.name) or path.suffix.lower() != ".md":
            continue
        try:
            meta = read_task_file(path).note.meta
        except Unreadable:
            continue
        task_id = meta.get("id")
        if isinstance(task_id, str):
            found.append((task_id, path, meta))
    return found


# -- check -------------------------------------------------------------------------------

CHECKED_FOLDERS = (NEEDS_ACTION, PENDING, APPROVED)


def cmd_check(args: argparse.Namespace) -> int:
    problems: list[str] = []
    config_path = args.config or default_config_path()
    vault = _open_vault(args)
    try:
        config = load_config(config_path)
    except ConfigError as error:
        problems += str(error).splitlines()
    else:
        registry = load_registry(config.skills, vault=vault.root)
        problems += [f"skill {problem}" for problem in registry.problems]
    config_problems = bool(problems)
    checked = 0
    bad_files = 0
    for folder in CHECKED_FOLDERS:
        for entry in sorted(os.scandir(vault.folder(folder)), key=lambda e: e.name):
            relative = f"{folder}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                print(f"skipped {relative}/: a folder (vaultd only looks at files)")
                continue
            if is_ignored(entry.name):
                print(f"skipped {relative}: ignored name (dot-file, temp or backup file)")
                continue
            if is_sync_conflict(entry.name):
                print(f"skipped {relative}: sync-conflict copy, not a task; merge it by hand")
                continue
            checked += 1
            found = check_file(Path(entry.path))
            if found:
                bad_files += 1
                problems += [f"{relative}: {field}: {message}" for field, message in found]
    for problem in problems:
        print(problem)
    _print_connectors(load_settings(args.env_file, vault=vault.root))
    config_text = f"config {config_path}" if config_path else "default config"
    if problems:
        where = [f"{bad_files} of {checked} file(s)"] if bad_files else []
        if config_problems:
            where.append(config_text)
        print(f"{len(problems)} problem(s) in {' and '.join(where)}", file=sys.stderr)
        return 1
    print(f"all {checked} files valid ({config_text} ok)")
    return 0


def _print_connectors(settings: Settings) -> None:
    """Print what each live connector would do: its health, or what it is missing."""
    print("connectors (used with --live):")
    redact = Redactor(settings.secrets())
    for name, connector in live_connectors(settings, ScratchMemory()).items():
        health = connector.check()
        print(f"  {name:<10} {'ok  ' if health.ok else 'NOT '} {redact(health.detail)}")


def check_file(path: Path) -> list[tuple[str, str]]:
    """Return every (field, message) problem of one task file; [] if it is valid."""
    try:
        loaded = read_task_file(path)
    except Unreadable as error:
        return [("(file)", str(error))]
    kind = loaded.note.meta.get("type")
    if kind == "alert":
        return []  # vaultd's own note for the human
    if kind == "skill":
        found = (problem.partition(": ") for problem in skill_problems(loaded.note.user_meta))
        return [(field, message) for field, _, message in found]
    try:
        validate_note(loaded.note)
    except ValidationFailed as error:
        return list(error.problems)
    return []


# -- logs --------------------------------------------------------------------------------


def cmd_logs(args: argparse.Namespace) -> int:
    vault = _open_vault(args)
    shown = 0
    for entry in read_entries(vault.folder(LOGS), args.since):
        if not _log_matches(entry, action=args.action, status=args.status):
            continue
        shown += 1
        if args.json:
            print(json.dumps(entry, ensure_ascii=False))
        else:
            print(_log_line(entry))
    if not shown:
        print("no matching log entries", file=sys.stderr)
    return 0


def _log_matches(entry: dict[str, Any], *, action: str | None, status: str | None) -> bool:
    if action and action not in (entry.get("action"), entry.get("event")):
        return False
    if status:
        result = entry.get("result")
        result_status = result.get("status") if isinstance(result, dict) else None
        if status not in (result_status, entry.get("event"), entry.get("approval_status")):
            return False
    return True


def _log_line(entry: dict[str, Any]) -> str:
    """Return one audit entry on one line: time, event, action, task id, file, error."""
    when = show_time(str(entry.get("timestamp") or ""))
    line = (
        f"{when:<23}  {entry.get('event') or '-':<20} {entry.get('action') or '-':<13} "
        f"{entry.get('task_id') or '-':<16} {entry.get('file') or '-'}"
    )
    if entry.get("error"):
        line += f"  error: {' '.join(str(entry['error']).split())}"
    return line


def _open_vault(args: argparse.Namespace) -> Vault:
    vault = Vault(args.vault)
    vault.check_exists()
    return vault
