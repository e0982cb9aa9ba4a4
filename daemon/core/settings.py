"""Connector settings: the environment, or a `.env` file outside the vault (`--env-file`).

Credentials never come from the vault, which may be synced and which agents write to.
Values already in the environment win over the file, as with docker and python-dotenv.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core.errors import ConfigError, NotConfigured
from daemon.core.vault import inside

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|_KEY$", re.I)


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return value if value else default

    def missing(self, *names: str) -> list[str]:
        """Return which of these settings are unset or empty."""
        return [name for name in names if not self.values.get(name)]

    def require(self, *names: str) -> None:
        """Raise NotConfigured naming every setting of these that is unset or empty."""
        missing = self.missing(*names)
        if missing:
            raise NotConfigured(f"missing {', '.join(missing)}")

    def call_timeout(self) -> float | None:
        """Return VAULTD_CALL_TIMEOUT: how many seconds to wait for any service's answer.

        None when unset (each connector's own default: 15 s for the Graph API, 30 s for X
        and Odoo). Raise ConfigError naming it if it is not a number of seconds above 0.
        """
        text = self.get("VAULTD_CALL_TIMEOUT")
        if text is None:
            return None
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds < 3600:
            raise ConfigError(
                f"VAULTD_CALL_TIMEOUT={text!r}: expected seconds to wait for a service's "
                "answer, above 0 and under 3600"
            )
        return seconds

    def secrets(self) -> list[str]:
        """Return the values of secret-looking settings, for redaction."""
        return [v for k, v in self.values.items() if _SECRET_NAME.search(k) and len(v) >= 6]


def load_settings(env_file: Path | None = None, *, vault: Path | None = None) -> Settings:
    """Return the environment, completed by `env_file` if given.

    The file's values are added to this process's environment (values already there win),
    so everything that reads settings, including secret redaction, sees the same ones.
    Raise ConfigError if the file is missing, inside the vault, or has a line that is not
    NAME=value (naming the line).
    """
    values: dict[str, str] = {}
    if env_file is not None:
        resolved = env_file.expanduser().resolve()
        if vault is not None and inside(resolved, vault):
            raise ConfigError(f"{env_file}: the env file must be outside the vault")
        try:
            text = resolved.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{env_file}: env file not found") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            match = _LINE.match(line)
            if not match:
                raise ConfigError(f"{env_file}:{number}: expected NAME=value")
            name, value = match.groups()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
    for name, value in values.items():
        os.environ.setdefault(name, value)
    return Settings(dict(os.environ))
