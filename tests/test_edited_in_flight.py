"""A note edited while its call is in flight (issue 12, item 6): the Done note says what was
sent, keeps the edit, and its status is final."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import StandInService, files_in, note, parsed

from daemon.core.models import Action
from daemon.service.app import App

POST = {"type": "social_post", "platforms": ["facebook"], "text": "Sent as approved"}


class EditedMeanwhile(StandInService):
    """A service that answers slowly enough for a person to edit the note meanwhile."""

    def __init__(self, note_path: Path) -> None:
        super().__init__("facebook")
        self.note_path = note_path

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        text = self.note_path.read_text()
        self.note_path.write_text(text.replace("Sent as approved", "Never sent") + "More.\n")
        return super().execute(action, marker=marker, dry_run=dry_run)


def test_a_note_edited_while_its_call_is_in_flight_says_what_was_sent_and_is_final(
    app: App, vault_root: Path
):
    approved = vault_root / "Approved/post.md"
    app.pipeline.connectors["facebook"] = EditedMeanwhile(approved)
    (vault_root / "Needs_Action/post.md").write_text(note(POST))

    outcome = app.pipeline.process(vault_root / "Needs_Action/post.md")

    assert outcome.status == "done"
    assert files_in(vault_root, "Done") == ["post.md"]
    done = parsed(vault_root / "Done/post.md")
    assert done.meta["status"] == "done"
    assert done.meta["result"]["sent"]["text"] == "Sent as approved"
    assert done.meta["result"]["facebook"] == {"id": "facebook-1"}
    assert "edited while it was being executed" in done.meta["note"]
    assert done.meta["text"] == "Never sent" and done.body.endswith("More.\n")  # kept
    assert app.ledger.task(done.meta["id"]).state == "done"
