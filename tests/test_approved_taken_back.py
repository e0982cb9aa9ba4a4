"""An approved note whose call went out, moved back to Pending_Approval/ by a person.

Its call may have reached the service and cannot be taken back. Found by the model test
(a lost answer, a lookup that cannot tell yet, then the note dragged back): vaultd used to
let the request expire into Rejected/ "without a decision", although a person had decided
and the call had gone out. It now goes back to Approved/ and is settled there as ever.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from conftest import Clock
from test_model_state import Remote, Service, _open

from daemon.core import notes
from daemon.core.audit import read_entries
from daemon.core.vault import LOGS, Vault

REPLY = (
    "---\ntype: social_post\nplatforms: [twitter]\nkind: reply\nin_reply_to: '123'\n"
    "text: Hi\n---\nbody\n"
)


def test_a_note_taken_back_after_its_call_went_out_is_finished_not_expired(
    vault_root: Path, state_dir: Path
) -> None:
    clock = Clock()
    app = _open(vault_root, state_dir, clock)
    remote = Remote(lose=Counter({"twitter": 1}), blind_lookups=5)
    for name, connector in list(app.pipeline.connectors.items()):
        app.pipeline.connectors[name] = Service(connector, remote)
    try:
        (vault_root / "Needs_Action" / "r.md").write_text(REPLY, encoding="utf-8")
        assert app.pipeline.process(vault_root / "Needs_Action" / "r.md").status == (
            "pending_approval"
        )
        (vault_root / "Pending_Approval" / "r.md").rename(vault_root / "Approved" / "r.md")
        assert app.pipeline.process(vault_root / "Approved" / "r.md").status == "deferred"
        assert len(remote.calls) == 1  # it went out; the answer was lost

        # A person takes it back, and days pass: it must not expire.
        (vault_root / "Approved" / "r.md").rename(vault_root / "Pending_Approval" / "r.md")
        clock.now += timedelta(days=3)
        outcome = app.pipeline.process(vault_root / "Pending_Approval" / "r.md")

        assert outcome.status == "approval_kept"
        assert outcome.path == vault_root / "Approved" / "r.md"
        assert list((vault_root / "Rejected").iterdir()) == []
        stamps = notes.parse(outcome.path.read_text(encoding="utf-8")).stamps
        assert stamps["status"] != "expired"
        task = app.ledger.task(str(stamps["id"]))
        assert task is not None and task.state == "approved" and task.file == "Approved/r.md"
        events = [e["event"] for e in read_entries(Vault(vault_root).folder(LOGS))]
        assert "approval_kept" in events and "expired" not in events
        assert len(remote.calls) == 1  # and nothing was sent again
    finally:
        app.close()
