"""Task files written for an agent: guarded and validated first, into Needs_Action/ only,
under a safe name.

The task obeys the skill behind its action type (daemon/agents/mcp/task_guard.py): the caller's
groups, the skill's guardrails, and a person's approval where the skill or the door
demands it, recorded with the task's origin in the ledger before the file exists
(daemon/core/origin.py). The file is checked exactly as the pipeline will read it
(`taskfile.task_note`: rendered, parsed back, validated), so what lands in Needs_Action/
is what was checked. From there it follows the lifecycle: the policy approves it or a
person must. A refused task is refused with every problem, and nothing is written.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.agents.mcp.task_guard import TaskGuard, TaskRefused
from daemon.core import origin
from daemon.core.errors import ValidationFailed
from daemon.core.models import Action
from daemon.core.taskfile import task_note
from daemon.core.vault import MAX_NOTE_BYTES, NEEDS_ACTION, Vault, is_ignored, is_sync_conflict

# Letters, digits, spaces, "-", "_" and "."; no folders, no leading dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*")
MAX_NAME_CHARS = 120


@dataclass(frozen=True)
class Written:
    path: Path
    action: Action
    approval_required: bool  # a person approves it, whatever the policy says


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
    guard: TaskGuard,
    body: str = "",
    name: str | None = None,
    now: datetime | None = None,
) -> Written:
    """Given a task's type and fields and the guard of the caller's door, write it into
    Needs_Action/ with its origin; return where it landed, its action and whether a person
    must approve it.

    Raise TaskRefused saying why if the caller lacks the skill's group, the task is not
    valid (listing every problem) or a guardrail forbids it; nothing is written then.
    """
    now = now or datetime.now(UTC)
    if fields.get("type", kind) != kind:
        raise TaskRefused(f"type: given twice, as {kind!r} and as {fields['type']!r}")
    admitted = guard.admit(kind)
    data = {"type": kind, **{key: value for key, value in fields.items() if key != "type"}}
    intro = (
        f"Written by an agent ({guard.door.caller}) through vaultd's MCP server on "
        f"{now:%Y-%m-%d %H:%M} UTC.\n"
    )
    stamp = admitted.stamp(guard.door)
    try:
        text, checked = task_note(
            data,
            intro=intro + (f"\n{body.rstrip()}\n" if body.strip() else ""),
            stamps={"origin": stamp},
        )
    except ValidationFailed as error:
        raise TaskRefused(f"task refused, nothing written: {error}") from None
    guard.check(admitted, checked)
    file_name = safe_name(name, kind, now)
    if len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise TaskRefused(f"task refused: the note would pass {MAX_NOTE_BYTES:,} bytes")
    # Recorded (durably) before the file exists, so the file never goes without it.
    origin.issue(guard.ledger, stamp, admitted.demand, file_name)
    path = vault.create(NEEDS_ACTION, file_name, text)
    if path.name != file_name:
        origin.written_as(guard.ledger, stamp, path.name)
    return Written(path, checked, admitted.demand is not None)
