"""`vaultd agents claude-settings`: a `.claude/settings.json` block that keeps Claude Code
away from what approves.

Key names follow Claude Code's published settings schema (SchemaStore's
`claude-code-settings.json`):

- `permissions.deny`: `Edit(...)` on every entry of the vault but `Needs_Action/` and
  `Plans/` (Edit rules cover every built-in tool that writes files, Write included; a
  `Write(path)` rule is not consulted for paths), and `Read(...)`/`Edit(...)` on the state
  directory and the env file. `//` starts an absolute path in a rule (gitignore syntax).
- `sandbox`: on, a hard failure when it cannot start (`failIfUnavailable`), no escape
  hatch (`allowUnsandboxedCommands: false`), and `filesystem.denyWrite` / `denyRead` for
  the same paths, written with the `//` absolute prefix too; `allowWrite` opens
  `Needs_Action/` and `Plans/` to the commands it runs.

What it does not cover: MCP servers and hooks run outside the sandbox and the permission
rules (vaultd's own MCP servers cannot approve), and a person's own `!` commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from daemon.agents.check import AGENT_FOLDERS
from daemon.core.errors import ConfigError
from daemon.core.vault import ALL_FOLDERS

SCHEMA_URL = "https://json.schemastore.org/claude-code-settings.json"
# Denied even before they exist: Obsidian's settings and plugins (code Obsidian runs as the
# person) and vaultd's own folder in the vault.
ALWAYS = (".obsidian", ".vaultd")
# Characters that mean something in a gitignore pattern or end a rule early.
_SPECIAL = set("()*?[]\\!#")


def absolute(path: Path) -> str:
    """Given an absolute path, return it as a rule path: `//` then the path without its `/`.

    Raise ConfigError if it holds a character that a rule would read as a pattern.
    """
    text = str(path)
    if not path.is_absolute():
        raise ConfigError(f"{text}: expected an absolute path")
    found = sorted(_SPECIAL & set(text))
    if found:
        raise ConfigError(
            f"{text}: holds {' '.join(found)}, which Claude Code's path rules read as a "
            "pattern; move it to a path without them"
        )
    return "/" + text


def protected_entries(vault: Path) -> list[tuple[Path, bool]]:
    """Given a vault, return (path, is a folder) for every entry agents must not change:
    vaultd's folders but Needs_Action/ and Plans/, and whatever else is at its top."""
    names = {name: True for name in (*ALL_FOLDERS, *ALWAYS) if name not in AGENT_FOLDERS}
    if vault.is_dir():
        for entry in os.scandir(vault):
            if entry.name not in AGENT_FOLDERS:
                names.setdefault(entry.name, entry.is_dir())
    return [(vault / name, folder) for name, folder in sorted(names.items())]


def claude_settings(
    vault: Path,
    state_dir: Path,
    env_file: Path | None = None,
    config: Path | None = None,
) -> dict[str, Any]:
    """Given the vault and vaultd's state directory, env file and config (all absolute),
    return the settings block. Raise ConfigError if a path cannot be written as a rule."""
    vault_rules = [
        absolute(path) + ("/**" if folder else "") for path, folder in protected_entries(vault)
    ]
    vault_rules.append(absolute(vault) + "/*.md")  # notes made at the top later (Dashboard.md)
    secret = [absolute(state_dir) + "/**"]
    if env_file is not None:
        secret.append(absolute(env_file))
    unwritable = [*secret, *([absolute(config)] if config is not None else [])]
    deny = [f"Edit({rule})" for rule in [*vault_rules, *unwritable]]
    deny += [f"Read({rule})" for rule in secret]
    secret_paths = [absolute(state_dir), *([absolute(env_file)] if env_file else [])]
    config_path = [absolute(config)] if config is not None else []
    return {
        "$schema": SCHEMA_URL,
        "permissions": {"deny": deny},
        "sandbox": {
            "enabled": True,
            "failIfUnavailable": True,
            "allowUnsandboxedCommands": False,
            "filesystem": {
                "allowWrite": [absolute(vault / folder) for folder in AGENT_FOLDERS],
                "denyWrite": [
                    *(absolute(path) for path, _ in protected_entries(vault)),
                    *secret_paths,
                    *config_path,
                ],
                "denyRead": secret_paths,
            },
        },
    }
