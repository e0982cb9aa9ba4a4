"""`vaultd agents setup` and `vaultd agents claude-settings`: confine the agents; and the
confinement lines of `vaultd check` and the refusal of `vaultd run --live`.

Without confinement any process running as the person's OS user can approve (move a note
into Approved/, or run `vaultd approve`). `[agents] user` in the config names the OS user
the agents run as; then `vaultd check` lists every path that user could write or read but
must not, and `vaultd run --live` will not start while there is one.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import daemon
from daemon.agents.check import Scope, agent_cannot_work, find_problems, group_name, user_info
from daemon.agents.claude_settings import claude_settings
from daemon.agents.setup import people, setup
from daemon.cli.common import hints_of, open_vault
from daemon.core.config import Config, default_config_path, load_config, state_dir_for
from daemon.core.errors import ConfigError, VaultdError
from daemon.core.vault import Vault


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    agents = commands.add_parser(
        "agents", help="confine the agents: an OS user of their own, or Claude Code settings"
    )
    sub = agents.add_subparsers(dest="agents_command", metavar="SUBCOMMAND")
    make = sub.add_parser(
        "setup",
        help="owners and modes so that the agents' OS user can write only Needs_Action/ and "
        "Plans/ and cannot read the state directory or the env file",
    )
    add_vault(make, config=True, state=True, env=True)
    make.add_argument("--user", required=True, help="the OS user the agents run as")
    make.set_defaults(func=cmd_setup)
    settings = sub.add_parser(
        "claude-settings",
        help="print a .claude/settings.json block: deny rules and a sandbox for Claude Code",
    )
    add_vault(settings, config=True, state=True, env=True)
    settings.set_defaults(func=cmd_claude_settings)

    def usage(_args: argparse.Namespace) -> int:
        agents.print_help()
        return 2

    agents.set_defaults(func=usage)


def scope_of(args: argparse.Namespace, vault: Path, config: Config | None = None) -> Scope:
    """Return what the agents must not touch: the vault, the state directory, the env file,
    the config, the skill folders and vaultd's own code."""
    config_path = getattr(args, "config", None) or default_config_path()
    code = [Path(daemon.__file__).parent, Path(sys.executable)]
    if config is not None:
        code += config.skills.dirs
    env_file = getattr(args, "env_file", None)
    return Scope(
        vault.resolve(),
        state_dir_for(vault, getattr(args, "state_dir", None)),
        env_file.expanduser().resolve() if env_file else None,
        config_path.expanduser().resolve() if config_path else None,
        tuple(code),
    )


def cmd_setup(args: argparse.Namespace) -> int:
    vault = open_vault(args)
    config_path = args.config or default_config_path()
    config = load_config(config_path)
    who = people(vault.root, args.user)
    done = setup(who, scope_of(args, vault.root, config))
    for change in done.changes:
        print(f"changed {change}")
    if not done.changes:
        print("nothing to change")
    for note in done.notes:
        print(f"note: {note}; it is confined, but cannot hand vaultd work")
    if done.problems:
        print(f"{len(done.problems)} path(s) still let {args.user} through:", file=sys.stderr)
        for problem in done.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(
        f"{args.user} can now write only Needs_Action/ and Plans/ (group "
        f"{group_name(who.agent_gid)}, sticky), read the rest of the vault, and not read the "
        f"state directory or the env file; {_name(who.person)} keeps full access"
    )
    if config.agents.user != args.user:
        where = config_path or "~/.config/vaultd/config.toml"
        print(
            f'Add to {where}:\n[agents]\nuser = "{args.user}"\n'
            "so that `vaultd check` and `vaultd run --live` hold vaultd to it"
        )
    return 0


def cmd_claude_settings(args: argparse.Namespace) -> int:
    vault = open_vault(args)
    scope = scope_of(args, vault.root)
    block = claude_settings(scope.vault, scope.state_dir, scope.env_file, scope.config)
    print(json.dumps(block, indent=2))
    print(
        "Merge this into .claude/settings.json of the project the agents work in. It binds "
        "Claude Code's own tools and the commands it runs; MCP servers and hooks run outside "
        "it (vaultd's own MCP servers cannot approve).",
        file=sys.stderr,
    )
    return 0


def confinement_report(args: argparse.Namespace, vault: Path, config: Config) -> list[str]:
    """Print what `vaultd check` says about who can approve; return the problems found."""
    name = config.agents.user
    if name is None:
        me = _name(os.geteuid())
        print(
            f"agents: no [agents] user in the config, so any process running as {me} can "
            "approve: move a note into Approved/ or run `vaultd approve`. Confine the agents "
            f"with `{hints_of(args, Vault(vault)).command('agents setup', '--user NAME')}` "
            "(see Who can approve in the README)"
        )
        return []
    try:
        user = user_info(name)
    except ConfigError as error:
        return [f"agents: [agents] user: {error}"]
    scope = scope_of(args, vault, config)
    problems = [str(p) for p in find_problems(user, scope, daemon_uid=os.geteuid())]
    if problems:
        return [f"agents: {problem}" for problem in problems]
    print(
        f"agents: {name} can write only Needs_Action/ and Plans/, and cannot read the state "
        "directory or the env file"
    )
    for note in agent_cannot_work(user, vault):
        print(f"agents: note: {note}")
    return []


def refuse_unconfined(args: argparse.Namespace, vault: Path) -> None:
    """Raise VaultdError listing every path the agents' user could misuse, when the config
    names one; do nothing when it names none."""
    config = load_config(args.config or default_config_path())
    name = config.agents.user
    if name is None:
        return
    problems = find_problems(
        user_info(name), scope_of(args, vault, config), daemon_uid=os.geteuid()
    )
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise VaultdError(
            f"not starting live: [agents] user {name} could get past the approval through "
            f"{len(problems)} path(s):\n{listed}\nRun `vaultd agents setup --user {name}` "
            "(with the same --vault, --state-dir and --env-file), then start again"
        )


def _name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
