"""`vaultd mcp`: serve one MCP server over stdio, or print the `.mcp.json` block for Claude Code.

    vaultd mcp --vault V [--service vault|odoo|social] [--config C] [--state-dir S]
               [--env-file E] [--group G ...]
    vaultd mcp config --vault V [--env-file E] [--config C] [--state-dir S] [--group G ...]
                      [--output FILE [--force]]

While serving, stdout carries MCP messages only: vaultd logs to stderr. `mcp config` prints
the block on stdout, or with --output writes FILE only once every check passed (see
config_file.py), so a failure never leaves an empty `.mcp.json` as `> .mcp.json` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.agents.api.run_access import mcp_caller
from daemon.agents.mcp.config_file import check_output, write_output
from daemon.agents.skills.service import open_runs
from daemon.core.errors import ConfigError, VaultdError
from daemon.core.settings import load_settings
from daemon.core.vault import Vault, inside
from daemon.service.app import open_app

SERVICES = ("vault", "odoo", "social")
# The names the servers get in .mcp.json, by service.
SERVER_NAMES = {"vault": "vaultd", "odoo": "vaultd-odoo", "social": "vaultd-social"}
# What a missing env file should hold, told to whoever named it.
ENV_FILE_HELP = (
    "The MCP servers read their settings from it each time they start, so create it first, "
    "outside the vault (it holds secrets: chmod 600 it), one NAME=value per line: "
    "ODOO_URL, ODOO_DB, ODOO_USERNAME and ODOO_PASSWORD for vaultd-odoo; FACEBOOK_PAGE_ID, "
    "FACEBOOK_PAGE_TOKEN, TWITTER_API_KEY, TWITTER_API_SECRET, TWITTER_ACCESS_TOKEN and "
    'TWITTER_ACCESS_SECRET for vaultd-social (README, "Going live", lists them all). '
    "For example:\n    ODOO_URL=https://mycompany.odoo.com\n"
    "`vaultd check --vault V --env-file F` then says what works."
)


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
        help="config: print the .mcp.json block for Claude Code instead of serving (or "
        "write it with --output FILE)",
    )
    add_vault(mcp, config=True, state=True, env=True)
    mcp.add_argument("--service", choices=SERVICES, default="vault", help="default: vault")
    mcp.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group the agent counts as in (repeatable): skills with required_groups "
        "refuse its runs and task files otherwise, and it reads only runs of callers "
        "sharing one of its groups",
    )
    mcp.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="config: write the block to FILE (such as .mcp.json) instead of stdout, only "
        "once every check passed, atomically (a temporary file renamed), so a failure "
        "leaves no file; use it rather than `> .mcp.json`, which the shell creates, empty, "
        "even when vaultd fails. Refused inside the vault, through a symbolic link, and "
        "over an existing file unless --force",
    )
    mcp.add_argument(
        "--force",
        action="store_true",
        help="config: with --output, replace FILE if it exists (never the env or config file)",
    )
    mcp.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    if args.what == "config":
        return cmd_mcp_config(args)
    if args.output is not None or args.force:
        raise ConfigError("--output and --force go with `vaultd mcp config`")
    # Imported here: the MCP SDK and the live connectors cost every other vaultd command
    # a second and 50 MB.
    from daemon.agents.mcp.odoo_server import build_odoo_server  # noqa: PLC0415
    from daemon.agents.mcp.social_server import build_social_server  # noqa: PLC0415
    from daemon.agents.mcp.vault_server import build_vault_server  # noqa: PLC0415

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
    """Given `mcp config`'s arguments, print the .mcp.json block or write it to --output.

    Return 0; raise VaultdError (exit 1) naming what is wrong, with nothing written, if the
    vault, the env file or the output is not usable. Without --output the error also says
    to use it instead of a shell redirection.
    """
    try:
        return _mcp_config(args)
    except VaultdError as error:
        if args.output is not None:
            raise
        raise ConfigError(f"{error}\n{_redirect_hint()}") from None


def _mcp_config(args: argparse.Namespace) -> int:
    vault = Vault(args.vault)
    vault.check_exists()
    if args.force and args.output is None:
        raise ConfigError("--force goes with --output FILE")
    target = None
    if args.output is not None:
        keep = (args.env_file, args.config)
        target = check_output(args.output, vault=vault.root, force=args.force, keep=keep)
    if args.env_file is not None:
        _check_env_file(args.env_file, vault, output=args.output)
    mcp_caller(args.group)  # a bad --group fails here, not when Claude Code starts it
    block = mcp_config(
        vault.root,
        env_file=args.env_file,
        config=args.config,
        state_dir=args.state_dir,
        groups=args.group,
    )
    if target is None:
        print(json.dumps(block, indent=2))
        print(
            "vaultd: save this as .mcp.json at your project's root (or merge its servers "
            "into an existing one); settings and secrets stay in the env file, not here",
            file=sys.stderr,
        )
        return 0
    write_output(target, block, force=args.force)
    print(
        f"vaultd: wrote {args.output} ({', '.join(block['mcpServers'])}); start Claude Code "
        f"in {target.parent}. Settings and secrets stay in the env file, not here",
        file=sys.stderr,
    )
    return 0


def _check_env_file(env_file: Path, vault: Vault, *, output: Path | None) -> None:
    """Given the --env-file path, return if the servers can use it (it is read only when
    they start); raise ConfigError naming it and saying how to make it if it is missing or
    inside the vault."""
    resolved = env_file.expanduser().resolve()
    after = f"Nothing was written to {output}." if output is not None else ""
    if inside(resolved, vault.root):
        raise ConfigError(
            f"{env_file}: the env file must be outside the vault (it holds secrets, and the "
            f"vault may be synced and is written to by agents); move it out. {after}".strip()
        )
    if not resolved.is_file():
        named = env_file if str(env_file) == str(resolved) else f"{env_file} ({resolved})"
        raise ConfigError(f"{named}: env file not found. {ENV_FILE_HELP} {after}".strip())


def _redirect_hint() -> str:
    """Return the advice for a failure whose stdout may have been redirected to a file."""
    hint = (
        "Use --output .mcp.json instead of `> .mcp.json`: the shell creates that file before "
        "vaultd starts, so a failure leaves it empty, where --output writes nothing."
    )
    try:
        descriptor = sys.stdout.fileno()
        status = os.fstat(descriptor)
    except (OSError, ValueError):  # not a real file (captured, closed)
        return hint
    if stat.S_ISREG(status.st_mode) and status.st_size == 0:
        try:
            where = str(Path(f"/proc/self/fd/{descriptor}").readlink())
        except OSError:
            where = "the file standard output goes to"
        hint += f" Your shell has already created {where}, empty: delete it."
    return hint


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
