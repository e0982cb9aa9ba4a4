"""What the dispatcher settles before any stage reads a file: a name that is not UTF-8, an
empty note a writer may still be filling, and a file deleted while it was being handled.
"""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon.core import ledger
from daemon.core.outcome import Outcome
from daemon.lifecycle.context import Context
from daemon.lifecycle.rejection import reject_unreadable
from daemon.lifecycle.steps import log

# How long an empty note must be untouched before vaultd refuses it (see being_written).
EMPTY_QUIET_S = 60.0


def utf8(name: str) -> bool:
    """Return whether a file name is text (a name with bytes that are not UTF-8 is not)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def reject_unsafe_name(context: Context, path: Path) -> Outcome:
    """Given a file whose name is not UTF-8, move it to Rejected/ under a safe form of it."""
    safe = os.fsencode(path.name).decode("utf-8", "backslashreplace")
    return reject_unreadable(
        context, path, "has a file name that is not UTF-8; renamed to this safe form", name=safe
    )


def being_written(context: Context, path: Path) -> Outcome | None:
    """Given a file, return a wait if it is an empty note a writer may still be filling.

    Editors create a note first and fill it after, and a writer may truncate a note and
    pause: an empty file is left alone until it has been untouched for EMPTY_QUIET_S.
    Then it is refused by moving it as it is (the same inode: a writer that still holds
    it open writes into the note in Rejected/), never by rewriting it.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size:
        return None
    quiet_until = info.st_mtime + EMPTY_QUIET_S
    if time.time() < quiet_until:
        return Outcome("waiting", path, retry_at=datetime.fromtimestamp(quiet_until, UTC))
    return reject_unreadable(context, path, f"is empty (untouched for {EMPTY_QUIET_S:.0f} s)")


def vanished(context: Context, path: Path, reason: str) -> Outcome:
    """A file deleted while it was being handled: nothing to move, nothing lost by vaultd.

    A task decided for it but never executed is closed; one whose calls were made keeps
    its state, so the ledger never forgets what reached a service.
    """
    for task in context.ledger.tasks_at(
        context.vault.relative(path), ledger.PENDING, ledger.APPROVED
    ):
        context.ledger.put_task(task.id, state=ledger.REJECTED, error=reason)
    log(context, "vanished", None, None, path, error=reason)
    return Outcome("vanished", None)
