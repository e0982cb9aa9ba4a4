"""`vaultd serve` and `vaultd apikey ...`: the REST API and the keys that open it.

vaultd serve --vault V [--host H] [--port P] [--allow-remote]
vaultd apikey create NAME [--group G ...] | list [--json] | revoke NAME
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from daemon.agents.api.keys import ApiKeyStore
from daemon.core.config import state_dir_for
from daemon.core.ledger import Ledger
from daemon.core.settings import load_settings
from daemon.core.vault import Vault
from daemon.service.app import LEDGER_FILE, open_app

log = logging.getLogger("vaultd")

# How often `vaultd serve` checks that its server thread still runs.
WATCH_INTERVAL_S = 1.0


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    """Add the `serve` and `apikey` commands to the `vaultd` parser."""
    serve = commands.add_parser(
        "serve", help="serve the REST API (/api/v1/skills, /api/v1/runs) on loopback"
    )
    add_vault(serve, config=True, state=True, env=True)
    serve.add_argument("--host", help="address to listen on (default: [api] host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: [api] port, 8765; 0: any free)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (plain HTTP: put a TLS proxy in front)",
    )
    serve.set_defaults(func=cmd_serve)

    apikey = commands.add_parser("apikey", help="API keys for the REST API")
    key_commands = apikey.add_subparsers(dest="apikey_command", metavar="SUBCOMMAND")
    create = key_commands.add_parser("create", help="create a key and print it, once")
    add_vault(create, state=True)
    create.add_argument("name", help="who or what uses the key (shown as apikey:NAME)")
    create.add_argument(
        "--group",
        action="append",
        default=[],
        help="a group the key's caller belongs to (repeat for several)",
    )
    create.set_defaults(func=cmd_apikey_create)
    listing = key_commands.add_parser("list", help="every key: name, groups, created, revoked")
    add_vault(listing, state=True)
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(func=cmd_apikey_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key; it stops working at once")
    add_vault(revoke, state=True)
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_apikey_revoke)

    def usage(_args: argparse.Namespace) -> int:
        apikey.print_help()
        return 2

    apikey.set_defaults(func=usage)


# -- serve -------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here: FastAPI and uvicorn add a quarter second to every other command.
    from daemon.agents.api.server import ApiServer  # noqa: PLC0415
    from daemon.agents.skills.service import open_runs  # noqa: PLC0415

    app = open_app(
        args.vault, config_path=args.config, state_dir=args.state_dir, env_file=args.env_file
    )
    try:
        runs = open_runs(app)
        for problem in runs.registry.problems:
            log.warning("skill skipped: %s", problem)
        server = ApiServer(
            app,
            runs,
            host=args.host,
            port=args.port,
            allow_remote=args.allow_remote,
            settings=load_settings(args.env_file, vault=app.vault.root),
        )
        with _stop_on_signals() as stop:
            server.start()
            log.info(
                "vaultd API on %s for %s (OpenAPI: %s/docs; JWT %s); Ctrl-C stops it",
                server.url,
                app.vault.root,
                server.url,
                app.config.api.jwt_algorithm if server.jwt_enabled else "off",
            )
            log.info(
                "runs it enqueues wait for the workers of `vaultd run`, and their task files "
                "for its pipeline"
            )
            while not stop.wait(WATCH_INTERVAL_S):
                if not server.running():
                    log.error("the API server stopped unexpectedly")
                    return 1
            server.stop()
        log.info("stopped")
        return 0
    finally:
        app.close()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Yield an event that SIGTERM and SIGINT set; restore the old handlers afterwards."""
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- apikey ------------------------------------------------------------------------------


@contextmanager
def _keys(args: argparse.Namespace) -> Iterator[ApiKeyStore]:
    vault = Vault(args.vault)
    vault.check_exists()
    ledger = Ledger(state_dir_for(vault.root, args.state_dir) / LEDGER_FILE)
    try:
        yield ApiKeyStore(ledger)
    finally:
        ledger.close()


def cmd_apikey_create(args: argparse.Namespace) -> int:
    with _keys(args) as keys:
        key = keys.create(args.name, args.group)
    groups = ", ".join(sorted(set(args.group))) or "none"
    # The key alone on stdout, so `KEY=$(vaultd apikey create NAME)` works.
    print(key)
    print(
        f"API key {args.name!r} created (groups: {groups}). This is the only time it is "
        "shown: vaultd keeps only its hash. Send it as 'Authorization: Bearer KEY' or "
        "'X-API-Key: KEY'.",
        file=sys.stderr,
    )
    return 0


def cmd_apikey_list(args: argparse.Namespace) -> int:
    with _keys(args) as keys:
        listed = keys.listed()
    if args.json:
        rows = [
            {
                "name": key.name,
                "groups": key.groups,
                "created_at": key.created_at,
                "revoked": key.revoked,
                "revoked_at": key.revoked_at,
            }
            for key in listed
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not listed:
        print("no API keys (vaultd apikey create NAME makes one)")
    for key in listed:
        state = f"revoked {key.revoked_at}" if key.revoked else "active"
        groups = ",".join(key.groups) or "-"
        print(f"{key.name:<24} {state:<36} groups {groups:<20} created {key.created_at}")
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    with _keys(args) as keys:
        revoked = keys.revoke(args.name)
    print(f"revoked API key {revoked.name!r}; it stops working at once")
    return 0
