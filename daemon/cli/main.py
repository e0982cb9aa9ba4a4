"""The `vaultd` command line. Exit codes: 0 ok, 1 error, 2 usage."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.agents.kg.reads import GraphReads
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.runs import Runs
from daemon.cli import agents, briefing, check, code, decide, kg, logs, status
from daemon.cli import api as api_cli
from daemon.cli import mcp as mcp_cli
from daemon.cli import skills as skills_cli
from daemon.cli.common import add_vault, hints_of, open_vault
from daemon.connectors.unavailable import Unavailable
from daemon.core.config import default_config_path, load_config, state_dir_for
from daemon.core.daemon_lock import DaemonLock
from daemon.core.errors import VaultdError
from daemon.core.lease import ExecutorLease
from daemon.core.settings import load_settings
from daemon.core.vault import ALL_FOLDERS, LOGS, Vault
from daemon.core.weeks import IsoWeek
from daemon.lifecycle.approval import resource_dir
from daemon.lifecycle.code_background import Preparations
from daemon.reports import briefing as reports_briefing
from daemon.reports.briefing import history
from daemon.reports.dashboard import Dashboard
from daemon.service.app import App, open_app
from daemon.service.graph_keeper import GraphKeeper
from daemon.service.retention import apply_retention
from daemon.service.runner import Runner, stop_on_signals
from daemon.service.scheduler import Clockwork
from daemon.service.supervisor import Component, Supervisor
from daemon.service.webhooks import webhook_worker

if TYPE_CHECKING:
    from daemon.agents.api.server import ApiServer

log = logging.getLogger("vaultd")


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
    add_vault(run, config=True, state=True, env=True)
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
    run.add_argument(
        "--take-over",
        action="store_true",
        help="become the vault's executor although another machine holds its lease "
        "(.vaultd/executor.json); that machine stops executing. Only a person decides "
        "this: no daemon takes a lease over because its heartbeat is old",
    )
    run.set_defaults(func=cmd_run)

    for module in (status, decide, check, logs, briefing, agents, kg, code):
        module.register(commands, add_vault)
    skills_cli.register(commands, add_vault)
    api_cli.register(commands, add_vault)
    mcp_cli.register(commands, add_vault)
    return parser


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
    vault = open_vault(args)
    if args.live:
        agents.refuse_unconfined(args, vault.root)  # [agents] user set: nothing lets it approve
    # The lock comes first: the ledger's schema and the job store are created under it, so
    # two daemons started at once never race to create them.
    state, mode = state_dir_for(vault.root, args.state_dir), "live" if args.live else "dry-run"
    lock = DaemonLock.acquire(state, mode=mode)
    try:
        # Then the vault's executor lease (daemon/core/lease.py): while another machine holds
        # it, this daemon processes nothing and writes nothing into the vault.
        lease = ExecutorLease(
            vault.root,
            state,
            mode=mode,
            heartbeat_seconds=load_config(
                args.config or default_config_path()
            ).daemon.lease_heartbeat_seconds,
            take_over_hint=hints_of(args, vault).command("run", "--take-over"),
        )
        stop = threading.Event()
        stop_on_signals(stop)
        take_over = args.take_over
        while lease.wait_for_turn(stop, take_over=take_over, wait=not args.once):
            take_over = False  # a person's --take-over counts once: a later loss stands
            try:
                code = _run(args, vault, lease, stop)
            finally:
                lease.stop_heartbeat()
            if not lease.lost.is_set():
                return code
        return 0
    finally:
        lock.release()


def _run(
    args: argparse.Namespace, vault: Vault, lease: ExecutorLease, stop: threading.Event
) -> int:
    app = open_app(
        vault.root,
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
        may_write=lease.holds,
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
        # The skill run service open_app plugged into the pipeline (a Runs), if any.
        runs = app.pipeline.skills if isinstance(app.pipeline.skills, Runs) else None
        workers = Workers(runs, app.config.queue, may_work=lease.holds) if runs else None
        hooks = webhook_worker(app, runs) if runs else None  # completion webhooks
        if args.once:
            # The queue's due runs first: the requests they write are then taken in.
            worked = workers.drain() if workers is not None and lease.holds() else 0
            # One dashboard write at the end, not one per file.
            once = Runner(app.pipeline, app.config, polling=args.polling, stop=stop, lease=lease)
            count = once.run_once()
            if worked:
                log.info("worked %d queued run(s)", worked)
            if hooks is not None and lease.holds():
                hooks.run_once()  # what the runs' ends owe their receivers, tried once
            # A daemon run from cron still writes a briefing whose time has passed.
            if lease.holds():
                Clockwork(app, write_briefing=_write_briefing).settle()
            log.info("processed %d file(s)", count)
            return 0
        # Code tasks' agents run off the pipeline's thread, as many as the `code` channel has.
        preparations = Preparations(app.config.queue.channels.get("code", 1))
        app.pipeline.code_preparations = preparations
        if runs is not None:
            # A run whose requests all finished finishes: checked as often as the dashboard
            # is written (not after every file of a burst), and before it shows the runs.
            dashboard.before_write = runs.refresh_waiting
        runner = Runner(
            app.pipeline,
            app.config,
            polling=args.polling,
            on_change=dashboard.changed,
            stop=stop,
            lease=lease,
        )
        clockwork = Clockwork(
            app,
            write_briefing=_write_briefing,
            on_expire=runner.request_expiry,
            on_dashboard=dashboard.changed,
            apply_retention=_retain_logs,
        )
        components: list[Component] = [runner.watcher, clockwork]
        if workers is not None:
            workers.start()
            components.append(workers)
        if hooks is not None:
            hooks.start()
            components.append(hooks)
        keeper = _graph_keeper(app, lease)  # keeps a built knowledge graph current
        if keeper is not None:
            components.append(keeper)
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
            status_command=app.pipeline.hints.command("status"),
        )
        dashboard.alerts = supervisor.failed
        supervisor.start()
        try:
            runner.run_forever()
        finally:
            supervisor.stop()
            if workers is not None:
                workers.stop()
            if hooks is not None:
                hooks.stop()
            clockwork.stop()
            if keeper is not None:
                keeper.stop()
            preparations.stop()
            if api is not None:
                api.stop()
        log.info("stopped")
        return 0
    finally:
        dashboard.close()
        app.close()


def _graph_keeper(app: App, lease: ExecutorLease) -> GraphKeeper | None:
    if app.config.kg.refresh_seconds <= 0:
        return None
    keeper = GraphKeeper(
        GraphReads.of_app(app), app.config.kg.refresh_seconds, may_write=lease.holds
    )
    keeper.start()
    return keeper


def _write_briefing(app: App, week: IsoWeek, **options: Any) -> Path:
    """The scheduler's briefing writer, imported when a briefing is due, not at start-up."""
    return reports_briefing.write_briefing(app, week, **options)


def _retain_logs(app: App, today: date) -> None:
    """The log_retention job: archive old daily logs, and say what was done; then summarize
    the days a briefing will read only in summary (reports/briefing/history.py)."""
    done = apply_retention(app.vault.folder(LOGS), app.config.logs, today=today)
    history.keep_summaries(
        app.vault.folder(LOGS),
        app.state_dir / history.FOLDER,
        before=today - timedelta(days=history.READ_IN_FULL_DAYS),
    )
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
    from daemon.agents.api.server import ApiServer  # noqa: PLC0415

    server = ApiServer(
        app,
        runs,
        allow_remote=args.allow_remote,
        settings=load_settings(args.env_file, vault=app.vault.root),
    )
    server.start()
    log.info("REST API on %s (OpenAPI: %s/docs)", server.url, server.url)
    return server
