"""What the commands share: the --vault option and its friends, and opening the vault."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from daemon.core.config import state_dir_for
from daemon.core.hints import Hints
from daemon.core.vault import Vault


def add_vault(
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


def open_vault(args: argparse.Namespace) -> Vault:
    vault = Vault(args.vault)
    vault.check_exists()
    return vault


def hints_of(args: argparse.Namespace, vault: Vault) -> Hints:
    """Return how the commands this command suggests name vaultd, the vault and (when not
    the default) the state directory."""
    asked = getattr(args, "state_dir", None) or os.environ.get("VAULTD_STATE_DIR")
    return Hints.for_vault(vault.root, state_dir_for(vault.root, asked) if asked else None)
