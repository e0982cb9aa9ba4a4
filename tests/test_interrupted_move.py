"""A crash between a move's link and its unlink leaves one note with two names; the next
look finishes the move and never makes a second copy (found by the random kill -9 test,
seed 2215385157: `rk-0077-multi (2).md`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import files_in, note, outbox, parsed

from daemon.core import vault as vault_module
from daemon.service.app import App

POST = {"type": "social_post", "platforms": ["facebook"], "text": "Once"}


class Crash(Exception):
    """Stands for SIGKILL at the failpoint."""


def test_a_crash_between_link_and_unlink_into_done_finishes_the_move_without_a_copy(
    app: App, vault_root: Path, monkeypatch: pytest.MonkeyPatch
):
    real_unlink = vault_module._unlink_moved
    moves: list[Path] = []

    def crash_on_the_move_into_done(source: Path) -> None:
        moves.append(source)
        if source.parent.name == "Approved":
            raise Crash
        real_unlink(source)

    monkeypatch.setattr(vault_module, "_unlink_moved", crash_on_the_move_into_done)
    (vault_root / "Needs_Action/post.md").write_text(note(POST))
    with pytest.raises(Crash):
        app.pipeline.process(vault_root / "Needs_Action/post.md")
    assert (vault_root / "Approved/post.md").samefile(vault_root / "Done/post.md")
    monkeypatch.setattr(vault_module, "_unlink_moved", real_unlink)

    outcome = app.pipeline.process(vault_root / "Approved/post.md")

    assert outcome.status == "done"
    assert files_in(vault_root, "Done") == ["post.md"]
    assert files_in(vault_root, "Approved") == []
    assert parsed(vault_root / "Done/post.md").meta["status"] == "done"
    assert len(outbox(app.state_dir)) == 1
