"""What processing one file did: the pipeline's answer to the runner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """What processing did: `status` in words, where the file is now, and when to look again."""

    status: str
    path: Path | None
    retry_at: datetime | None = None
