"""`vaultd check`: the config, the skills and every file in the pipeline folders, and which
live connectors work."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.agents.skills.registry import load_registry
from daemon.agents.skills.tasks import skill_problems
from daemon.cli.agents import confinement_report
from daemon.cli.common import open_vault
from daemon.connectors import live_connectors
from daemon.connectors.base import ScratchMemory
from daemon.core.audit import Redactor
from daemon.core.config import Config, default_config_path, load_config
from daemon.core.errors import ConfigError, ValidationFailed
from daemon.core.settings import Settings, load_settings
from daemon.core.taskfile import Unreadable, read_task_file, validate_note
from daemon.core.vault import (
    APPROVED,
    NEEDS_ACTION,
    PENDING,
    is_ignored,
    is_sync_conflict,
)

CHECKED_FOLDERS = (NEEDS_ACTION, PENDING, APPROVED)


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    check = commands.add_parser(
        "check", help="validate the config and every file in the pipeline folders"
    )
    add_vault(check, config=True, env=True, state=True)
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    problems: list[str] = []
    config_path = args.config or default_config_path()
    vault = open_vault(args)
    loaded: Config | None = None
    try:
        config = load_config(config_path)
    except ConfigError as error:
        problems += str(error).splitlines()
    else:
        loaded = config
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
    # Who can approve: what the agents' OS user could do (daemon/cli/agents.py).
    confinement = [] if loaded is None else confinement_report(args, vault.root, loaded)
    for problem in confinement:
        print(problem)
    problems += confinement
    _print_connectors(load_settings(args.env_file, vault=vault.root))
    config_text = f"config {config_path}" if config_path else "default config"
    if problems:
        where = [f"{bad_files} of {checked} file(s)"] if bad_files else []
        if config_problems:
            where.append(config_text)
        if confinement:
            where.append("the agents' confinement")
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
