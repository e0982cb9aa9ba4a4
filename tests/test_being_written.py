"""Never destroy what a person wrote (issue 12, item 4): an empty note is left alone while a
writer may still fill it, and refused only by moving it as it is."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import files_in, note, parsed

from daemon.lifecycle.guards import EMPTY_QUIET_S
from daemon.service.app import App

POST = {"type": "social_post", "platforms": ["facebook"], "text": "Hello"}


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_an_empty_new_note_waits_a_minute_untouched_before_anything_happens(
    app: App, vault_root: Path
):
    path = vault_root / "Needs_Action/draft.md"
    path.touch()
    inode = path.stat().st_ino

    outcome = app.pipeline.process(path)

    assert outcome.status == "waiting" and outcome.retry_at is not None
    assert path.stat().st_ino == inode and path.read_bytes() == b""
    assert app.ledger.counts() == {}


def test_an_editor_that_fills_a_new_note_after_creating_it_gets_it_processed(
    app: App, vault_root: Path
):
    path = vault_root / "Needs_Action/draft.md"
    path.touch()
    assert app.pipeline.process(path).status == "waiting"
    path.write_text(note(POST))
    assert app.pipeline.process(path).status == "done"


def test_a_writer_that_truncates_an_approved_note_and_pauses_loses_nothing(
    app: App, vault_root: Path
):
    path = vault_root / "Approved/invoice.md"
    path.write_text(note(POST))
    with path.open("r+") as writer:  # truncate, pause longer than the stability window …
        writer.truncate(0)
        outcome = app.pipeline.process(path)
        assert outcome.status == "waiting"
        assert path.exists() and path.read_bytes() == b""
        writer.write(note({**POST, "text": "Hello again"}))  # … then finish writing
    assert "Hello again" in path.read_text()
    assert files_in(vault_root, "Rejected") == []


def test_an_empty_note_untouched_for_a_minute_is_moved_as_it_is_never_rewritten(
    app: App, vault_root: Path
):
    path = vault_root / "Approved/left-empty.md"
    path.touch()
    age(path, EMPTY_QUIET_S + 1)
    inode = path.stat().st_ino

    outcome = app.pipeline.process(path)

    assert outcome.status == "rejected"
    moved = vault_root / "Rejected/left-empty.md"
    assert moved.stat().st_ino == inode and moved.read_bytes() == b""
    beside = parsed(vault_root / "Rejected/left-empty.md.rejected.md")
    assert "is empty" in beside.meta["error"]
