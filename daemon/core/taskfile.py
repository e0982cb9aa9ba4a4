"""Reading one task file from disk, safely, and validating it into an action; and writing
the text of one that vaultd itself files for an agent.

Shared by the pipeline and `vaultd check`, so both judge a file the same way.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from daemon.core import notes
from daemon.core.errors import NoteError, ValidationFailed
from daemon.core.models import Action, parse_action
from daemon.core.vault import MAX_NOTE_BYTES, NEEDS_ACTION, Signature

# What vaultd adds to a note (stamps, the approval request's table of invoice lines, the
# result with the request as sent) can make it a few times longer than it arrived.
STAMPED_NOTE_BYTES = 4 * MAX_NOTE_BYTES


@dataclass
class Loaded:
    """A task file read from disk: its text parsed, and the signature it had when read."""

    path: Path
    note: notes.Note
    signature: Signature | None
    # For a note vaultd has just written and moved (steps.write_and_move_loaded): its
    # ctime then. A write in place changes a file's ctime, which no one can set back, so
    # an edit of the same size with its mtime set back shows in it; the signature alone
    # (inode, size, mtime) does not tell it.
    ctime_ns: int | None = None


class Unreadable(Exception):
    """The file cannot be parsed as a note; it is moved without being changed."""


def read_task_file(path: Path) -> Loaded:
    """Given a path, return the parsed note. Raise Unreadable, saying why, if it cannot be.

    Symlinks are refused without being followed, and files over the size limit are refused
    without being read: MAX_NOTE_BYTES for a file dropped into Needs_Action/, and
    STAMPED_NOTE_BYTES for one further along, which vaultd has made longer with its request
    and result (a task of exactly MAX_NOTE_BYTES must not be refused after its approval).
    """
    limit = MAX_NOTE_BYTES if path.parent.name == NEEDS_ACTION else STAMPED_NOTE_BYTES
    try:
        info = path.lstat()  # one look, for the link test and the signature
    except (FileNotFoundError, NotADirectoryError):  # gone: the open below says so
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise Unreadable("is a symbolic link; vaultd never follows links")
    if path.suffix.lower() != ".md":
        raise Unreadable("is not a Markdown (.md) file")
    signature = Signature.from_stat(info) if info is not None else None
    if signature and signature.size > limit:
        raise Unreadable(
            f"is {signature.size:,} bytes; task files may be at most {limit:,} "
            "bytes (it was not read)"
        )
    try:
        # O_NONBLOCK: a named pipe called "x.md" must not hang the daemon on open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise Unreadable("is not a regular file")
            data = handle.read(limit + 1)
    except OSError as error:
        raise Unreadable(f"cannot be read: {error.strerror}") from None
    if len(data) > limit:
        raise Unreadable(f"grew past {limit:,} bytes while being read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Unreadable(f"is not UTF-8 text (byte {error.start})") from None
    try:
        note = notes.parse(text)
    except NoteError as error:
        field = f" (field {error.field})" if error.field else ""
        raise Unreadable(f"frontmatter cannot be read{field}: {error}") from None
    return Loaded(path, note, signature)


def validate_note(note: notes.Note) -> Action:
    """Given a parsed note, return its action. Raise ValidationFailed listing every problem."""
    if note.frontmatter is None:
        if not note.body.strip():
            raise ValidationFailed([("(file)", "the file is empty")])
        raise ValidationFailed(
            [
                (
                    "(frontmatter)",
                    "no frontmatter; a task file starts with a --- line, then "
                    "`type: social_post` (or odoo_invoice, odoo_payment) and its fields",
                )
            ]
        )
    return parse_action(note.user_meta, prepared=note.meta.get("code"))


def task_note(
    data: dict[str, Any], *, intro: str, stamps: dict[str, Any] | None = None
) -> tuple[str, Action]:
    """Given a task's `type` and fields, return the text of its note and its action.

    The text is checked as the pipeline will read it (parsed back and validated), so a file
    written with it holds exactly what was checked. `stamps` are vaultd's own keys (an
    origin, say), never part of the payload. Raise ValidationFailed naming every problem.
    """
    action = parse_action(data)
    front = yaml.safe_dump(
        {**data, **(stamps or {})}, sort_keys=False, allow_unicode=True, width=1000
    )
    text = f"---\n{front}---\n{intro}"
    try:
        checked = validate_note(notes.parse(text))
    except NoteError as error:
        raise ValidationFailed([(error.field or "(frontmatter)", str(error))]) from None
    if checked.payload_hash() != action.payload_hash():
        raise ValidationFailed([("(file)", "it would not read back as the same task")])
    return text, checked
