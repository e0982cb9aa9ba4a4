"""Task files written for an agent: validated first, into Needs_Action/ only, under a safe name.

The file is checked exactly as the pipeline will read it (`taskfile.task_note`: rendered,
parsed back, validated), so what lands in Needs_Action/ is what was checked. From there it
follows the lifecycle: the policy approves it or a person must. An invalid task is refused
with every field problem and nothing is written.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.errors import ValidationFailed, VaultdError
from daemon.models import Action
from daemon.taskfile import task_note
from daemon.vault import MAX_NOTE_BYTES, NEEDS_ACTION, Vault, is_ignored, is_sync_conflict

# Letters, digits, spaces, "-", "_" and "."; no folders, no leading dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*")
MAX_NAME_CHARS = 120


class TaskRefused(VaultdError):
    """The task file was not written; the message says why, naming each field."""


@dataclass(frozen=True)
class Written:
    path: Path
    action: Action


def safe_name(wanted: str | None, kind: str, now: datetime) -> str:
    """Return the file name to use: `wanted` (with .md) if it is a plain, safe name.

    Raise TaskRefused for anything that names a folder, climbs out of one, hides the file
    or is a name vaultd ignores. No name: one made of the type and the time.
    """
    if wanted is None or not wanted.strip():
        return f"{kind}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}.md"
    name = wanted.strip()
    stem = name[:-3] if name.lower().endswith(".md") else name
    final = f"{stem}.md"
    if (
        not _NAME.fullmatch(stem)
        or ".." in name
        or len(stem) > MAX_NAME_CHARS
        or is_ignored(final)
        or is_sync_conflict(final)
    ):
        raise TaskRefused(
            f"name {wanted!r} is not allowed: use up to {MAX_NAME_CHARS} letters, digits, "
            "spaces, '-', '_' and '.', starting with a letter or digit, no folders and no "
            "'..'; the file always goes into Needs_Action/"
        )
    return final


def write_task_file(
    vault: Vault,
    kind: str,
    fields: dict[str, Any],
    *,
    body: str = "",
    name: str | None = None,
    now: datetime | None = None,
) -> Written:
    """Validate a task and write it into Needs_Action/; return where it landed and its action.

    Raise TaskRefused listing every problem if the task is not valid (nothing is written).
    """
    now = now or datetime.now(UTC)
    if fields.get("type", kind) != kind:
        raise TaskRefused(f"type: given twice, as {kind!r} and as {fields['type']!r}")
    data = {"type": kind, **{key: value for key, value in fields.items() if key != "type"}}
    intro = f"Written by an agent through vaultd's MCP server on {now:%Y-%m-%d %H:%M} UTC.\n"
    try:
        text, checked = task_note(
            data, intro=intro + (f"\n{body.rstrip()}\n" if body.strip() else "")
        )
    except ValidationFailed as error:
        raise TaskRefused(f"task refused, nothing written: {error}") from None
    file_name = safe_name(name, kind, now)
    if len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise TaskRefused(f"task refused: the note would pass {MAX_NOTE_BYTES:,} bytes")
    path = vault.create(NEEDS_ACTION, file_name, text)
    return Written(path, checked)
