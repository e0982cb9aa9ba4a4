"""An auto-approved note is not read back from Approved/ right after vaultd wrote it there.

What vaultd wrote is what is there, unless a person's edit won the write: then the note is
read from disk and checked as any other (daemon/lifecycle/steps.py, write_and_move_loaded).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import files_in, make_files, note, outbox

from daemon.core import failpoints
from daemon.core.vault import PENDING
from daemon.lifecycle import approved
from daemon.service.app import open_app
from daemon.service.runner import Runner

POST = note({"type": "social_post", "platforms": ["facebook", "twitter"], "text": "Hello"})
EDITED = note({"type": "social_post", "platforms": ["facebook", "twitter"], "text": "Edited!"})


def _run(vault_root: Path, state_dir: Path) -> None:
    app = open_app(vault_root, state_dir=state_dir)
    try:
        Runner(app.pipeline, app.config, polling=True).run_once()
    finally:
        app.close()


def test_an_auto_approved_note_is_executed_without_reading_it_again(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    reads: list[Path] = []
    read = approved.read_task_file
    monkeypatch.setattr(approved, "read_task_file", lambda path: reads.append(path) or read(path))
    make_files(vault_root, {"Needs_Action/post.md": POST})
    _run(vault_root, state_dir)
    assert reads == []
    assert files_in(vault_root, "Done") == ["post.md"]
    text = (vault_root / "Done" / "post.md").read_text(encoding="utf-8")
    assert "status: done" in text
    assert text.endswith("---\nContext for the reviewer.\n")
    assert len(outbox(state_dir)) == 2


def test_a_persons_edit_that_wins_the_write_is_read_and_never_executed_unseen(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """An edit landing between vaultd's read and its write wins: the note moves unstamped,
    is read from disk in Approved/, and its new payload, which nobody approved, is not
    sent; the person's text is kept."""
    make_files(vault_root, {"Needs_Action/post.md": POST})
    app = open_app(vault_root, state_dir=state_dir)
    settle = app.pipeline.vault.settle_interrupted_move

    def edit_first(path: Path, folder: str) -> Path | None:
        if path.parent.name == "Needs_Action":
            path.write_text(EDITED, encoding="utf-8")  # the person's save, just in time
        return settle(path, folder)

    monkeypatch.setattr(app.pipeline.vault, "settle_interrupted_move", edit_first)
    try:
        Runner(app.pipeline, app.config, polling=True).run_once()
    finally:
        app.close()
    assert outbox(state_dir) == []
    (name,) = files_in(vault_root, PENDING)
    assert "Edited!" in (vault_root / PENDING / name).read_text(encoding="utf-8")


def test_a_crash_after_the_unread_note_was_announced_is_settled_on_restart(
    vault_root: Path, state_dir: Path
):
    """The note executed from memory is the one on disk: a crash after its INTENTs leaves
    it in Approved/, where the restart reads it, settles both calls and files it."""
    make_files(vault_root, {"Needs_Action/post.md": POST})
    app = open_app(vault_root, state_dir=state_dir)
    failpoints.arm(["after-intent"])
    try:
        with pytest.raises(failpoints.Crashed):
            Runner(app.pipeline, app.config, polling=True).run_once()
    finally:
        failpoints.disarm()
        app.ledger.close()
    assert files_in(vault_root, "Approved") == ["post.md"]
    assert outbox(state_dir) == []

    _run(vault_root, state_dir)
    assert files_in(vault_root, "Done") == ["post.md"]
    assert sorted(r["marker"].rsplit(":", 1)[1] for r in outbox(state_dir)) == [
        "facebook",
        "twitter",
    ]


def _between_the_write_and_the_move(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[], object]
) -> None:
    """Run `change` on the note in Needs_Action/ after vaultd's write, before its move
    (the first move only)."""
    original = failpoints.hit
    done: list[bool] = []

    def hit(point: str, key: str = "") -> None:
        if point == "mid-move" and not done:
            done.append(True)
            change()
        original(point, key)

    monkeypatch.setattr(failpoints, "hit", hit)


def test_an_edit_after_the_write_is_read_and_the_old_text_never_sent(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """An edit landing after vaultd's write, before the note is executed: what is in
    Approved/ is no longer what was written, so it is read from disk and checked as any
    other; the text the person replaced is not sent."""
    make_files(vault_root, {"Needs_Action/post.md": POST})
    here = vault_root / "Needs_Action" / "post.md"
    _between_the_write_and_the_move(monkeypatch, lambda: here.write_text(EDITED, encoding="utf-8"))
    _run(vault_root, state_dir)
    assert outbox(state_dir) == []
    assert files_in(vault_root, "Needs_Action") == []
    (name,) = files_in(vault_root, PENDING)
    assert "Edited!" in (vault_root / PENDING / name).read_text(encoding="utf-8")


def test_a_note_swapped_for_a_symlink_after_the_write_is_not_executed(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """A symlink put in the note's place after vaultd's write: vaultd never follows links,
    and the note it would execute is not the one in Approved/."""
    make_files(vault_root, {"Needs_Action/post.md": POST})
    here = vault_root / "Needs_Action" / "post.md"
    elsewhere = vault_root.parent / "elsewhere.md"

    def swap() -> None:
        elsewhere.write_text(POST, encoding="utf-8")
        link = here.with_name("link.tmp")
        link.symlink_to(elsewhere)
        link.replace(here)

    _between_the_write_and_the_move(monkeypatch, swap)
    _run(vault_root, state_dir)
    assert outbox(state_dir) == []
    assert files_in(vault_root, "Done") == []
    assert (vault_root / "Rejected" / "post.md").is_symlink()  # refused, never followed


def test_an_in_place_edit_with_its_mtime_put_back_is_kept(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    make_files(vault_root, {"Needs_Action/post.md": POST})
    here = vault_root / "Needs_Action" / "post.md"

    def forge() -> None:
        before = os.lstat(here)
        data = here.read_bytes().replace(b"Hello", b"HACKD")
        fd = os.open(here, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.utime(here, ns=(before.st_atime_ns, before.st_mtime_ns))

    _between_the_write_and_the_move(monkeypatch, forge)
    _run(vault_root, state_dir)
    assert all("HACKD" not in str(record) for record in outbox(state_dir))  # holds
    texts = [p.read_text(encoding="utf-8") for p in vault_root.glob("*/post*.md")]
    assert any("HACKD" in text for text in texts)  # the edit is kept: its ctime told it
