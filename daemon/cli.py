"""The `vaultd` command line. Exit codes: 0 ok, 1 error, 2 usage."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon import __version__
from daemon.app import open_app
from daemon.approval import resource_dir
from daemon.errors import VaultdError
from daemon.runner import Runner
from daemon.vault import ALL_FOLDERS, Vault

log = logging.getLogger("vaultd")


def _add_vault(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vault",
        type=Path,
        default=os.environ.get("VAULTD_VAULT"),
        help="the Obsidian vault (default: $VAULTD_VAULT)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: $VAULTD_CONFIG or ~/.config/vaultd/config.toml if it exists)",
    )
    parser.add_argument(
        "--state-dir",
        help="where the ledger lives, outside the vault "
        "(default: $VAULTD_STATE_DIR or ~/.local/state/vaultd/<vault>)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaultd",
        description="An AI Employee that lives in an Obsidian vault: it validates task files, "
        "asks for approval where the policy says so, executes approved actions and records "
        "everything.",
    )
    parser.add_argument("--version", action="version", version=f"vaultd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = commands.add_parser("init", help="create a vault from the template (never overwrites)")
    init.add_argument("path", type=Path, help="folder to create or complete")
    init.set_defaults(func=cmd_init)

    run = commands.add_parser("run", help="run the daemon (dry-run unless --live)")
    _add_vault(run)
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
    run.set_defaults(func=cmd_run)
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
    if args.live:
        print(
            "vaultd: --live needs the live connectors (Odoo, Facebook, Instagram, X), which "
            "this version does not have yet; run without --live to use dry-run.",
            file=sys.stderr,
        )
        return 1
    app = open_app(args.vault, config_path=args.config, state_dir=args.state_dir, dry_run=True)
    try:
        runner = Runner(app.pipeline, app.config, polling=args.polling)
        log.info(
            "vaultd %s watching %s (dry-run; state in %s)",
            __version__,
            app.vault.root,
            app.state_dir,
        )
        if args.once:
            count = runner.run_once()
            log.info("processed %d file(s)", count)
            return 0
        runner.install_signal_handlers()
        runner.run_forever()
        log.info("stopped")
        return 0
    finally:
        app.close()
