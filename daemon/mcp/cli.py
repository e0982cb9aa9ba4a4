"""`vaultd mcp`: serve one MCP server over stdio, or print the `.mcp.json` block for Claude Code.

    vaultd mcp --vault V [--service vault|odoo|social] [--config C] [--state-dir S]
               [--env-file E] [--group G ...]
    vaultd mcp config --vault V [--env-file E] [--config C] [--state-dir S] [--group G ...]

While serving, stdout carries MCP messages only: vaultd logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.app import open_app
from daemon.errors import ConfigError
from daemon.settings import load_settings
from daemon.skills.service import open_runs
from daemon.vault import Vault, inside

SERVICES = ("vault", "odoo", "social")
# The names the servers get in .mcp.json, by service.
SERVER_NAMES = {"vault": "vaultd", "odoo": "vaultd-odoo", "social": "vaultd-social"}


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    """Add the `mcp` command to the `vaultd` parser."""
    mcp = commands.add_parser(
        "mcp",
        help="serve an MCP server over stdio for Claude Code and other agents "
        "(`vaultd mcp config` prints the .mcp.json block)",
        description="Serve one of vaultd's MCP servers over stdio: vault (skills, runs, task "
        "files, approvals, status), odoo or social (reads only). No tool approves anything. "
        "`vaultd mcp config` prints the .mcp.json block naming all three.",
    )
    mcp.add_argument(
        "what",
        nargs="?",
        choices=["config"],
        help="config: print the .mcp.json block for Claude Code instead of serving",
    )
    add_vault(mcp, config=True, state=True, env=True)
    mcp.add_argument("--service", choices=SERVICES, default="vault", help="default: vault")
    mcp.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group the agent's skill runs count as in (repeatable); skills with "
        "required_groups refuse runs otherwise",
    )
    mcp.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    if args.what == "config":
        return cmd_mcp_config(args)
    # Imported here: the MCP SDK and the live connectors cost every other vaultd command
    # a second and 50 MB.
    from daemon.mcp.odoo_server import build_odoo_server  # noqa: PLC0415
    from daemon.mcp.social_server import build_social_server  # noqa: PLC0415
    from daemon.mcp.vault_server import build_vault_server  # noqa: PLC0415

    # The SDK's own request logging would drown vaultd's on stderr.
    if not args.verbose:
        logging.getLogger("mcp").setLevel(logging.WARNING)
    if args.service == "vault":
        app = open_app(
            args.vault, config_path=args.config, state_dir=args.state_dir, env_file=args.env_file
        )
        try:
            build_vault_server(app, open_runs(app), groups=set(args.group)).run("stdio")
        finally:
            app.close()
        return 0
    vault = Vault(args.vault)
    vault.check_exists()
    settings = load_settings(args.env_file, vault=vault.root)
    if args.service == "odoo":
        build_odoo_server(settings).run("stdio")
    else:
        build_social_server(settings).run("stdio")
    return 0


def cmd_mcp_config(args: argparse.Namespace) -> int:
    vault = Vault(args.vault)
    vault.check_exists()
    if args.env_file is not None:
        _check_env_file(args.env_file, vault)
    block = mcp_config(
        vault.root,
        env_file=args.env_file,
        config=args.config,
        state_dir=args.state_dir,
        groups=args.group,
    )
    print(json.dumps(block, indent=2))
    print(
        "vaultd: save this as .mcp.json at your project's root (or merge its servers into "
        "an existing one); settings and secrets stay in the env file, not here",
        file=sys.stderr,
    )
    return 0


def _check_env_file(env_file: Path, vault: Vault) -> None:
    """Refuse an env file the servers could not use (read only when they start)."""
    resolved = env_file.expanduser().resolve()
    if inside(resolved, vault.root):
        raise ConfigError(f"{env_file}: the env file must be outside the vault")
    if not resolved.is_file():
        raise ConfigError(f"{env_file}: env file not found")


def mcp_config(
    vault: Path,
    *,
    env_file: Path | None = None,
    config: Path | None = None,
    state_dir: str | None = None,
    groups: list[str] | None = None,
) -> dict[str, Any]:
    """Return the `mcpServers` block naming the three servers, with absolute paths only.

    No setting's value goes in: the servers read them from `env_file` when they start.
    """
    command, *prefix = vaultd_command()
    common = ["mcp", "--vault", str(vault)]
    if env_file is not None:
        common += ["--env-file", str(env_file.expanduser().absolute())]
    servers: dict[str, Any] = {}
    for service in SERVICES:
        args = [*prefix, *common]
        if service == "vault":
            if config is not None:
                args += ["--config", str(config.expanduser().absolute())]
            if state_dir is not None:
                args += ["--state-dir", str(Path(state_dir).expanduser().absolute())]
            for group in groups or []:
                args += ["--group", group]
        else:
            args += ["--service", service]
        servers[SERVER_NAMES[service]] = {"type": "stdio", "command": command, "args": args}
    return {"mcpServers": servers}


def vaultd_command() -> list[str]:
    """Return the command that starts this vaultd: its `vaultd` script, else python -m daemon."""
    script = Path(sys.argv[0])
    if script.name == "vaultd" and script.is_file():
        return [str(script.absolute())]
    beside = Path(sys.executable).parent / "vaultd"
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "daemon"]
