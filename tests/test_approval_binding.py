"""Approval is bound to content (design §3): only what vaultd asked about, unchanged, runs.

Every test here tries to get something executed that a person never approved, and checks
that the dry-run outbox (what would have been sent) has no new record, where the file went,
what the note now says, and what the audit log recorded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import Clock, audit, files_in, move, outbox, parsed, read_tree, write_note

from daemon.core import ledger
from daemon.service.app import App

BODY = "Please check the hours first.\n\n  trailing   \n---\nlast line"

INVOICE_FM = (
    "# drafted by the billing agent\n"
    "type: odoo_invoice\n"
    "partner: Acme Corp\n"
    "lines:\n"
    "  - product: Consulting\n"
    "    quantity: 3\n"
    "    price_unit: 50\n"
)

POST_FM = "type: social_post\nplatforms: [facebook]\ntext: Hello from vaultd\n"


# -- helpers ---------------------------------------------------------------------------


def request_invoice(app: App, root: Path, name: str = "acme.md") -> tuple[Path, str]:
    """Drop an invoice over the threshold and return its pending request and task id."""
    outcome = app.pipeline.process(write_note(root, f"Needs_Action/{name}", INVOICE_FM, BODY))
    assert outcome.status == "pending_approval"
    assert outcome.path is not None
    return outcome.path, parsed(outcome.path).meta["id"]


def execute_post(app: App, root: Path, name: str = "hello.md") -> tuple[Path, str]:
    """Drop a post, let it run (auto-approved), return its Done file and task id."""
    outcome = app.pipeline.process(write_note(root, f"Needs_Action/{name}", POST_FM, BODY))
    assert outcome.status == "done"
    assert outcome.path is not None
    return outcome.path, parsed(outcome.path).meta["id"]


# -- a file from nowhere -----------------------------------------------------------------


def test_a_file_written_straight_into_approved_is_not_executed_but_asked_about(
    app: App, vault_root: Path
):
    path = write_note(vault_root, "Approved/hello.md", POST_FM, BODY)

    outcome = app.pipeline.process(path)

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert read_tree(vault_root).keys() == {"Pending_Approval/hello.md"}
    note = parsed(vault_root / "Pending_Approval" / "hello.md")
    assert note.meta["status"] == "pending_approval"
    assert "vaultd never issued an approval request for it" in note.meta["note"]
    assert "vaultd never issued an approval request for it" in note.block
    assert note.meta["approval"]["rule"] == "unrequested"  # even a post policy would allow
    assert note.body == BODY
    task = app.ledger.task(note.meta["id"])
    assert task is not None
    assert task.state == ledger.PENDING
    refused, requested = audit(vault_root)
    assert refused["event"] == "approval_refused"
    assert refused["file"] == "Approved/hello.md"
    assert "never issued an approval request" in refused["error"]
    assert requested["event"] == "approval_requested"


def test_a_forged_id_status_and_approval_block_do_not_make_a_file_approved(
    app: App, vault_root: Path
):
    forged = (
        INVOICE_FM + "id: 20261122-abcdef\n"
        "status: approved\n"
        "approval:\n"
        "  by: policy\n"
        "  rule: small_recurring\n"
        "  payload_hash: sha256:0000\n"
    )
    path = write_note(vault_root, "Approved/acme.md", forged, BODY)

    outcome = app.pipeline.process(path)

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Approved") == []
    note = parsed(vault_root / "Pending_Approval" / "acme.md")
    assert note.meta["id"] != "20261122-abcdef"  # a fresh request, not the forged one
    assert note.meta["status"] == "pending_approval"
    assert note.meta["approval"]["rule"] == "amount_threshold"
    assert note.meta["approval"]["payload_hash"] != "sha256:0000"
    assert "vaultd never issued an approval request" in note.meta["note"]
    assert note.body == BODY
    assert app.ledger.task("20261122-abcdef") is None
    assert [e["event"] for e in audit(vault_root)] == ["approval_refused", "approval_requested"]

    # The fresh request can then be approved as usual.
    done = app.pipeline.process(
        move(vault_root, vault_root / "Pending_Approval/acme.md", "Approved")
    )
    assert done.status == "done"
    assert len(outbox(app.state_dir)) == 1


def test_a_forged_id_borrowed_from_a_real_pending_request_is_not_executed(
    app: App, vault_root: Path
):
    pending, task_id = request_invoice(app, vault_root)
    forged = INVOICE_FM.replace("quantity: 3", "quantity: 300") + f"id: {task_id}\n"
    path = write_note(vault_root, "Approved/sneaky.md", forged, BODY)

    outcome = app.pipeline.process(path)

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Approved") == []
    assert parsed(pending).meta["id"] == task_id  # the real request is untouched
    sneaky = parsed(vault_root / "Pending_Approval" / "sneaky.md")
    assert sneaky.meta["id"] != task_id
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.file) == (ledger.PENDING, "Pending_Approval/acme.md")


# -- changed after the request ------------------------------------------------------------


def test_a_request_edited_and_then_moved_to_approved_is_not_executed(app: App, vault_root: Path):
    pending, task_id = request_invoice(app, vault_root)
    old_hash = parsed(pending).meta["approval"]["payload_hash"]
    pending.write_text(
        pending.read_text(encoding="utf-8").replace("price_unit: 50", "price_unit: 5000"),
        encoding="utf-8",
    )

    outcome = app.pipeline.process(move(vault_root, pending, "Approved"))

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert read_tree(vault_root).keys() == {"Pending_Approval/acme.md"}
    note = parsed(vault_root / "Pending_Approval" / "acme.md")
    assert note.meta["id"] == task_id
    new_hash = note.meta["approval"]["payload_hash"]
    assert new_hash != old_hash
    assert "changed after its approval request" in note.meta["note"]
    assert "changed after its approval request" in note.block
    assert "15,000.00 USD" in note.block  # the request now shows the edited version
    assert new_hash in note.block
    assert note.body == BODY
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.payload_hash) == (ledger.PENDING, new_hash)
    refused = [e for e in audit(vault_root) if e["event"] == "approval_refused"]
    assert len(refused) == 1
    assert refused[0]["task_id"] == task_id
    assert "payload changed" in refused[0]["error"]

    # Approving the version now shown executes exactly that.
    done = app.pipeline.process(
        move(vault_root, vault_root / "Pending_Approval/acme.md", "Approved")
    )
    assert done.status == "done"
    [sent] = outbox(app.state_dir)
    assert "5000" in json.dumps(sent["request"])


def test_a_copy_of_a_pending_request_moved_to_approved_is_not_executed(app: App, vault_root: Path):
    pending, task_id = request_invoice(app, vault_root)
    copy = vault_root / "Approved" / "acme copy.md"
    shutil.copyfile(pending, copy)

    outcome = app.pipeline.process(copy)

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Approved") == []
    assert files_in(vault_root, "Pending_Approval") == ["acme copy.md", "acme.md"]
    assert parsed(pending).meta["id"] == task_id
    the_copy = parsed(vault_root / "Pending_Approval" / "acme copy.md")
    assert the_copy.meta["id"] != task_id
    assert "never issued an approval request" in the_copy.meta["note"]
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.file) == (ledger.PENDING, "Pending_Approval/acme.md")
    refused = [e for e in audit(vault_root) if e["event"] == "approval_refused"]
    assert [e["file"] for e in refused] == ["Approved/acme copy.md"]


def test_a_same_named_copy_of_a_pending_request_in_approved_is_not_executed(
    app: App, vault_root: Path
):
    pending, task_id = request_invoice(app, vault_root)
    original = pending.read_bytes()
    shutil.copyfile(pending, vault_root / "Approved" / "acme.md")

    outcome = app.pipeline.process(vault_root / "Approved" / "acme.md")

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Pending_Approval") == ["acme (2).md", "acme.md"]
    assert pending.read_bytes() == original  # never overwritten
    task = app.ledger.task(task_id)
    assert task is not None
    assert task.file == "Pending_Approval/acme.md"


# -- replays -------------------------------------------------------------------------------


def test_a_done_file_moved_back_to_approved_is_rejected_as_already_executed(
    app: App, vault_root: Path
):
    done, task_id = execute_post(app, vault_root)
    assert len(outbox(app.state_dir)) == 1

    outcome = app.pipeline.process(move(vault_root, done, "Approved"))

    assert outcome.status == "rejected"
    assert len(outbox(app.state_dir)) == 1
    assert read_tree(vault_root).keys() == {"Rejected/hello.md"}
    note = parsed(vault_root / "Rejected" / "hello.md")
    assert note.meta["status"] == "rejected"
    assert "already executed" in note.meta["error"]
    assert task_id in note.meta["error"]
    assert note.body == BODY
    original = app.ledger.task(task_id)
    assert original is not None
    assert original.state == ledger.DONE  # the executed task stays executed
    replay = audit(vault_root)[-1]
    assert replay["event"] == "replay_refused"
    assert "already executed" in replay["error"]


def test_a_done_file_copied_back_to_approved_is_rejected_and_the_original_kept(
    app: App, vault_root: Path
):
    done, task_id = execute_post(app, vault_root)
    original = done.read_bytes()
    shutil.copyfile(done, vault_root / "Approved" / "hello again.md")

    outcome = app.pipeline.process(vault_root / "Approved" / "hello again.md")

    assert outcome.status == "rejected"
    assert len(outbox(app.state_dir)) == 1
    assert files_in(vault_root, "Rejected") == ["hello again.md"]
    assert done.read_bytes() == original
    assert "already executed" in parsed(vault_root / "Rejected" / "hello again.md").meta["error"]
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.file) == (ledger.DONE, "Done/hello.md")
    assert audit(vault_root)[-1]["event"] == "replay_refused"


def test_a_done_file_dropped_back_into_needs_action_needs_approval_as_a_repeat(
    app: App, vault_root: Path
):
    done, task_id = execute_post(app, vault_root)

    outcome = app.pipeline.process(move(vault_root, done, "Needs_Action"))

    assert outcome.status == "pending_approval"
    assert len(outbox(app.state_dir)) == 1
    assert read_tree(vault_root).keys() == {"Pending_Approval/hello.md"}
    note = parsed(vault_root / "Pending_Approval" / "hello.md")
    assert note.meta["id"] != task_id
    assert note.meta["approval"]["rule"] == "repeat"
    assert task_id in note.meta["approval"]["reason"]
    assert "result" not in note.meta  # the old run's result is not carried into the request
    assert "repeat" in note.block
    assert note.body == BODY
    original = app.ledger.task(task_id)
    assert original is not None
    assert original.state == ledger.DONE
    assert audit(vault_root)[-1]["result"]["rule"] == "repeat"


def test_a_done_file_copied_into_needs_action_needs_approval_as_a_repeat(
    app: App, vault_root: Path
):
    done, task_id = execute_post(app, vault_root)
    shutil.copyfile(done, vault_root / "Needs_Action" / "hello.md")

    outcome = app.pipeline.process(vault_root / "Needs_Action" / "hello.md")

    assert outcome.status == "pending_approval"
    assert len(outbox(app.state_dir)) == 1
    assert files_in(vault_root, "Done") == ["hello.md"]
    note = parsed(vault_root / "Pending_Approval" / "hello.md")
    assert note.meta["approval"]["rule"] == "repeat"
    assert note.meta["id"] != task_id


def test_a_repeat_a_person_approves_runs_again_exactly_once(app: App, vault_root: Path):
    done, _ = execute_post(app, vault_root)
    app.pipeline.process(move(vault_root, done, "Needs_Action"))

    outcome = app.pipeline.process(
        move(vault_root, vault_root / "Pending_Approval" / "hello.md", "Approved")
    )

    assert outcome.status == "done"
    assert len(outbox(app.state_dir)) == 2
    assert app.pipeline.process(vault_root / "Done" / "hello.md").status == "unchanged"
    assert len(outbox(app.state_dir)) == 2


# -- late approval ---------------------------------------------------------------------------


def test_a_request_approved_after_it_expired_is_not_executed(
    app: App, vault_root: Path, clock: Clock
):
    pending, task_id = request_invoice(app, vault_root)
    clock.advance(hours=49)

    outcome = app.pipeline.process(move(vault_root, pending, "Approved"))

    assert outcome.status == "expired"
    assert outbox(app.state_dir) == []
    assert read_tree(vault_root).keys() == {"Rejected/acme.md"}
    note = parsed(vault_root / "Rejected" / "acme.md")
    assert note.meta["status"] == "expired"
    assert "expired" in note.meta["error"]
    assert note.body == BODY
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.approval) == (ledger.REJECTED, "expired")
    assert audit(vault_root)[-1]["event"] == "expired"

    # Moving the expired request to Approved/ once more still runs nothing.
    again = app.pipeline.process(move(vault_root, vault_root / "Rejected/acme.md", "Approved"))
    assert again.status == "pending_approval"
    assert outbox(app.state_dir) == []


def test_a_rejected_request_moved_to_approved_is_not_executed(app: App, vault_root: Path):
    pending, task_id = request_invoice(app, vault_root)
    app.pipeline.process(move(vault_root, pending, "Rejected"))

    outcome = app.pipeline.process(
        move(vault_root, vault_root / "Rejected" / "acme.md", "Approved")
    )

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    note = parsed(vault_root / "Pending_Approval" / "acme.md")
    assert note.meta["id"] != task_id
    assert "rejected before" in note.meta["note"]
    task = app.ledger.task(task_id)
    assert task is not None
    assert task.state == ledger.REJECTED


def test_an_invalid_file_in_approved_is_rejected_not_executed(app: App, vault_root: Path):
    path = write_note(
        vault_root, "Approved/bad.md", "type: social_post\nplatforms: [facebook]\n", BODY
    )

    outcome = app.pipeline.process(path)

    assert outcome.status == "rejected"
    assert outbox(app.state_dir) == []
    note = parsed(vault_root / "Rejected" / "bad.md")
    assert "text: missing" in note.meta["error"]
    assert note.body == BODY


def test_a_tampered_request_block_is_rendered_again_so_the_approver_sees_the_truth(
    app: App, vault_root: Path
):
    pending, task_id = request_invoice(app, vault_root)
    honest = pending.read_text(encoding="utf-8")
    assert "150.00 USD" in honest
    pending.write_text(honest.replace("150.00 USD", "1.50 USD"), encoding="utf-8")

    assert app.pipeline.process(pending).status == "restored"

    assert pending.read_text(encoding="utf-8") == honest
    restored = audit(vault_root)[-1]
    assert (restored["event"], restored["task_id"]) == ("request_restored", task_id)
    task = app.ledger.task(task_id)
    assert task is not None
    assert task.state == ledger.PENDING
    assert outbox(app.state_dir) == []
    # Once restored, looking again is a no-op.
    assert app.pipeline.process(pending).status == "unchanged"
    assert pending.read_text(encoding="utf-8") == honest


def test_a_reason_added_by_the_reviewer_survives_the_restored_request(app: App, vault_root: Path):
    pending, _ = request_invoice(app, vault_root)
    text = pending.read_text(encoding="utf-8")
    pending.write_text(
        text.replace("status: pending_approval\n", "rejection_reason: too dear\nstatus: x\n"),
        encoding="utf-8",
    )

    assert app.pipeline.process(pending).status == "restored"

    note = parsed(pending)
    assert (note.meta["status"], note.meta["rejection_reason"]) == ("pending_approval", "too dear")
    assert note.body == BODY
