"""The `App`: everything vaultd holds open for one vault (built by daemon/service/app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from daemon.core.audit import AuditLog
from daemon.core.config import Config
from daemon.core.ledger import Ledger
from daemon.core.settings import Settings
from daemon.core.vault import Vault
from daemon.lifecycle.pipeline import Pipeline

# The ledger's file name inside the state directory.
LEDGER_FILE = "ledger.sqlite3"


@dataclass
class App:
    vault: Vault
    config: Config
    state_dir: Path
    ledger: Ledger
    audit: AuditLog
    pipeline: Pipeline
    # The environment and --env-file: credentials and secrets, never from the vault.
    settings: Settings = field(default_factory=Settings)

    def close(self) -> None:
        self.ledger.close()
        self.audit.close()
