"""Reading one task file from disk, safely, and validating it into an action.

Shared by the pipeline and `vaultd check`, so both judge a file the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from daemon import notes
from daemon.errors import NoteError, ValidationFailed
from daemon.models import Action, parse_action
from daemon.vault import MAX_NOTE_BYTES, Signature


@dataclass
class Loaded:
    """A task file read from disk: its text parsed, and the signature it had when read."""

    path: Path
    note: notes.Note
    signature: Signature | None


class Unreadable(Exception):
    """The file cannot be parsed as a note; it is moved without being changed."""


def read_task_file(path: Path) -> Loaded:
    """Given a path, return the parsed note. Raise Unreadable, saying why, if it cannot be.

    Symlinks are refused without being followed, and files over MAX_NOTE_BYTES are refused
    without being read.
    """
    if path.is_symlink():
        raise Unreadable("is a symbolic link; vaultd never follows links")
    if path.suffix.lower() != ".md":
        raise Unreadable("is not a Markdown (.md) file")
    signature = Signature.of(path)
    if signature and signature.size > MAX_NOTE_BYTES:
        raise Unreadable(
            f"is {signature.size:,} bytes; task files may be at most {MAX_NOTE_BYTES:,} "
            "bytes (it was not read)"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_NOTE_BYTES + 1)
    except OSError as error:
        raise Unreadable(f"cannot be read: {error.strerror}") from None
    if len(data) > MAX_NOTE_BYTES:
        raise Unreadable(f"grew past {MAX_NOTE_BYTES:,} bytes while being read")
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
    return parse_action(note.user_meta)
