"""The lifecycle of one file (design §3), driven through the real pipeline on a real vault.

Each test drops a task file, lets `app.pipeline.process` do one step at a time, moves files
with `os.rename` as a person does in Obsidian, and reads back the vault tree, the ledger, the
audit log and the dry-run outbox.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import (
    Clock,
    StandInService,
    audit,
    files_in,
    move,
    outbox,
    parsed,
    read_tree,
    write_note,
)

from daemon.connectors.base import Undetermined
from daemon.core import ledger
from daemon.service.app import App

# A body a careless rewrite would damage: trailing spaces, blank lines, a `---` line,
# text that looks like frontmatter, non-ASCII, and no newline at the very end.
BODY = (
    "Context for the reviewer.\n"
    "\n"
    "  indented, with trailing spaces   \n"
    "---\n"
    "id: not-a-real-id\n"
    "status: approved\n"
    "\n\n"
    "Grüße — ✓ 数字\n"
    "last line without newline"
)

POST_FM = (
    "# written by the marketing agent\n"
    "type: social_post\n"
    "platforms: [facebook, twitter]  # both accounts\n"
    "text: 'Our Q1 launch is live: come and see'\n"
    "link: https://example.com/launch\n"
)

INVOICE_FM = (
    "# invoice drafted by the billing agent\n"
    "type: odoo_invoice\n"
    "partner: Acme Corp   # the big one\n"
    "lines:\n"
    "  - product: Consulting\n"
    "    quantity: 2\n"
    "    price_unit: 75\n"
    "    description: 'March, week 1'\n"
    "currency: USD\n"
)


# -- helpers ---------------------------------------------------------------------------


def events(root: Path, task_id: str | None = None) -> list[str]:
    return [e["event"] for e in audit(root) if task_id is None or e["task_id"] == task_id]


def request_acme_invoice(app: App, root: Path) -> Path:
    """Drop the Acme invoice (over the threshold) and return its request in Pending_Approval/."""
    pending = app.pipeline.process(write_note(root, "Needs_Action/acme.md", INVOICE_FM, BODY)).path
    assert pending is not None
    return pending


def assert_user_text_intact(path: Path, frontmatter: str, body: str = BODY) -> None:
    """The user's frontmatter lines (comments included) open the note; the body is exact."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n" + frontmatter), text
    assert parsed(path).body == body
    assert text.endswith(body)


# -- Needs_Action → Approved → Done (auto-approved) ------------------------------------


def test_an_auto_approved_post_is_executed_and_lands_in_done_with_its_result(
    app: App, vault_root: Path
):
    path = write_note(vault_root, "Needs_Action/launch.md", POST_FM, BODY)

    outcome = app.pipeline.process(path)

    assert outcome.status == "done"
    assert outcome.path == vault_root / "Done" / "launch.md"
    assert read_tree(vault_root).keys() == {"Done/launch.md"}
    done = parsed(outcome.path)
    task_id = done.meta["id"]
    assert done.meta["status"] == "done"
    assert done.meta["approval"]["by"] == "policy"
    assert done.meta["approval"]["rule"] == "scheduled_post"
    assert done.meta["result"]["dry_run"] is True
    assert set(done.meta["result"]) == {"dry_run", "facebook", "twitter", "estimated_cost_usd"}
    assert done.meta["result"]["estimated_cost_usd"] == "0.20"  # X bills a post with a link
    assert "error" not in done.meta
    assert done.block == ""
    assert_user_text_intact(outcome.path, POST_FM)

    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.approval, task.rule, task.file) == (
        ledger.DONE,
        "auto_approved",
        "scheduled_post",
        "Done/launch.md",
    )
    sent = outbox(app.state_dir)
    assert [r["target"] for r in sent] == ["facebook", "twitter"]
    assert {r["marker"] for r in sent} == {
        f"vaultd:{task_id}:facebook",
        f"vaultd:{task_id}:twitter",
    }
    assert events(vault_root, task_id) == ["auto_approved", "executed"]
    executed = audit(vault_root)[-1]
    assert executed["approval_status"] == "auto_approved"
    assert executed["parameters"]["content_hash"] == task.payload_hash
    assert executed["file"] == "Done/launch.md"


def test_processing_a_done_file_again_changes_nothing(app: App, vault_root: Path):
    outcome = app.pipeline.process(write_note(vault_root, "Needs_Action/launch.md", POST_FM, BODY))
    before = read_tree(vault_root)
    log_lines = len(audit(vault_root))

    again = app.pipeline.process(outcome.path)

    assert again.status == "unchanged"
    assert read_tree(vault_root) == before
    assert len(audit(vault_root)) == log_lines
    assert len(outbox(app.state_dir)) == 2


# -- Needs_Action → Pending_Approval ----------------------------------------------------


def test_an_invoice_of_100_dollars_or_more_waits_for_approval_with_a_readable_request(
    app: App, vault_root: Path, clock: Clock
):
    outcome = app.pipeline.process(write_note(vault_root, "Needs_Action/acme.md", INVOICE_FM, BODY))

    assert outcome.status == "pending_approval"
    assert outcome.path == vault_root / "Pending_Approval" / "acme.md"
    assert read_tree(vault_root).keys() == {"Pending_Approval/acme.md"}
    pending = parsed(outcome.path)
    task_id = pending.meta["id"]
    assert pending.meta["status"] == "pending_approval"
    assert pending.meta["approval"]["rule"] == "amount_threshold"
    assert_user_text_intact(outcome.path, INVOICE_FM)

    request = pending.block
    assert "odoo_invoice" in request  # what
    assert "create and post a customer invoice to `Acme Corp`" in request
    assert "Odoo" in request  # where
    assert "150.00 USD" in request  # amount, computed from the lines
    assert "amount_threshold" in request  # the rule that asked
    assert "at or over the 100.00 USD threshold" in request  # and why
    expiry = clock() + timedelta(hours=48)
    assert expiry.strftime("%Y-%m-%d %H:%M UTC") in request  # when it expires
    assert "move this note to `Approved/`" in request  # how to approve
    assert re.search(
        rf"vaultd approve --vault \S+ --state-dir \S+ {task_id}@[0-9a-f]{{12}}`", request
    )
    assert "move it to `Rejected/`" in request  # how to reject
    assert re.search(rf"vaultd reject --vault \S+ --state-dir \S+ {task_id}@\w{{12}} --", request)

    task = app.ledger.task(task_id)
    assert task is not None
    assert task.state == ledger.PENDING
    assert task.rule == "amount_threshold"
    assert (task.amount, task.currency) == ("150", "USD")
    assert task.payload_hash == pending.meta["approval"]["payload_hash"]
    assert task.payload_hash in request
    assert outbox(app.state_dir) == []
    assert events(vault_root, task_id) == ["approval_requested"]


def test_a_person_moving_a_request_to_approved_gets_it_executed_into_done(
    app: App, vault_root: Path
):
    pending = request_acme_invoice(app, vault_root)
    task_id = parsed(pending).meta["id"]

    outcome = app.pipeline.process(move(vault_root, pending, "Approved"))

    assert outcome.status == "done"
    assert read_tree(vault_root).keys() == {"Done/acme.md"}
    done = parsed(vault_root / "Done" / "acme.md")
    assert done.meta["id"] == task_id
    assert done.meta["status"] == "done"
    assert done.meta["result"]["odoo"]["request"]["calls"][0]["model"] == "account.move"
    assert done.block == ""  # the request was for the decision, which is made
    assert_user_text_intact(vault_root / "Done" / "acme.md", INVOICE_FM)

    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.approval) == (ledger.DONE, "human_approved")
    assert [r["marker"] for r in outbox(app.state_dir)] == [f"vaultd:{task_id}:odoo"]
    assert events(vault_root, task_id) == ["approval_requested", "approved", "executed"]
    approved = next(e for e in audit(vault_root) if e["event"] == "approved")
    assert approved["actor"] == "human"
    assert approved["approval_status"] == "human_approved"


def test_a_person_moving_a_request_to_rejected_is_recorded_as_human_rejected(
    app: App, vault_root: Path
):
    pending = request_acme_invoice(app, vault_root)
    task_id = parsed(pending).meta["id"]

    rejected = move(vault_root, pending, "Rejected")
    outcome = app.pipeline.process(rejected)

    assert outcome.status == "rejected"
    assert read_tree(vault_root).keys() == {"Rejected/acme.md"}
    note = parsed(rejected)
    assert note.meta["status"] == "rejected"
    assert note.meta["error"] == "moved to Rejected/ by a person"
    assert_user_text_intact(rejected, INVOICE_FM)
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.approval, task.file) == (
        ledger.REJECTED,
        "human_rejected",
        "Rejected/acme.md",
    )
    last = audit(vault_root)[-1]
    assert (last["event"], last["actor"], last["approval_status"]) == (
        "rejected",
        "human",
        "human_rejected",
    )
    assert outbox(app.state_dir) == []

    # Seeing the file again records nothing new.
    before = read_tree(vault_root)
    assert app.pipeline.process(rejected).status == "unchanged"
    assert read_tree(vault_root) == before
    assert events(vault_root, task_id) == ["approval_requested", "rejected"]


def test_a_rejection_reason_written_by_the_person_is_kept(app: App, vault_root: Path):
    pending = request_acme_invoice(app, vault_root)
    text = pending.read_text(encoding="utf-8")
    pending.write_text(
        text.replace("currency: USD\n", "currency: USD\nrejection_reason: wrong customer\n", 1),
        encoding="utf-8",
    )

    rejected = move(vault_root, pending, "Rejected")
    app.pipeline.process(rejected)

    note = parsed(rejected)
    assert note.meta["error"] == "wrong customer"
    task = app.ledger.task(note.meta["id"])
    assert task is not None
    assert (task.state, task.error) == (ledger.REJECTED, "wrong customer")
    assert audit(vault_root)[-1]["error"] == "wrong customer"


# -- Pending_Approval → Rejected (expiry) -----------------------------------------------


def test_a_request_nobody_decided_on_expires_into_rejected_after_48_hours(
    app: App, vault_root: Path, clock: Clock
):
    pending = request_acme_invoice(app, vault_root)
    task_id = parsed(pending).meta["id"]

    clock.advance(hours=47)
    assert app.pipeline.expire_due() == []
    assert files_in(vault_root, "Pending_Approval") == ["acme.md"]

    clock.advance(hours=2)
    outcomes = app.pipeline.expire_due()

    assert [o.status for o in outcomes] == ["expired"]
    assert read_tree(vault_root).keys() == {"Rejected/acme.md"}
    note = parsed(vault_root / "Rejected" / "acme.md")
    assert note.meta["status"] == "expired"
    assert "expired" in note.meta["error"]
    assert "without a decision" in note.meta["error"]
    assert_user_text_intact(vault_root / "Rejected" / "acme.md", INVOICE_FM)
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.approval, task.file) == (
        ledger.REJECTED,
        "expired",
        "Rejected/acme.md",
    )
    last = audit(vault_root)[-1]
    assert (last["event"], last["approval_status"]) == ("expired", "expired")
    assert "expired" in last["error"]
    assert outbox(app.state_dir) == []
    assert app.pipeline.expire_due() == []


def test_an_expired_request_is_rejected_when_it_is_next_processed(
    app: App, vault_root: Path, clock: Clock
):
    pending = request_acme_invoice(app, vault_root)

    clock.advance(hours=49)
    outcome = app.pipeline.process(pending)

    assert outcome.status == "expired"
    assert files_in(vault_root, "Rejected") == ["acme.md"]
    assert files_in(vault_root, "Pending_Approval") == []


# -- Approved, scheduled for later ------------------------------------------------------


def test_a_post_scheduled_for_later_waits_in_approved_and_runs_once_when_due(
    app: App, vault_root: Path, clock: Clock
):
    when = (clock() + timedelta(hours=2)).replace(microsecond=0)
    frontmatter = POST_FM + f"scheduled_for: {when.isoformat()}\n"
    path = write_note(vault_root, "Needs_Action/later.md", frontmatter, BODY)

    outcome = app.pipeline.process(path)

    assert outcome.status == "scheduled"
    assert outcome.retry_at == when
    assert outcome.path == vault_root / "Approved" / "later.md"
    assert parsed(outcome.path).meta["status"] == "scheduled"
    assert_user_text_intact(outcome.path, frontmatter)
    assert outbox(app.state_dir) == []

    # Looking again before it is due changes nothing.
    before = read_tree(vault_root)
    clock.advance(hours=1)
    again = app.pipeline.process(outcome.path)
    assert (again.status, again.retry_at) == ("scheduled", when)
    assert read_tree(vault_root) == before
    assert outbox(app.state_dir) == []

    clock.advance(hours=1, seconds=1)
    due = app.pipeline.process(outcome.path)

    assert due.status == "done"
    assert read_tree(vault_root).keys() == {"Done/later.md"}
    assert len(outbox(app.state_dir)) == 2
    assert_user_text_intact(vault_root / "Done" / "later.md", frontmatter)
    assert app.pipeline.process(vault_root / "Done" / "later.md").status == "unchanged"
    assert len(outbox(app.state_dir)) == 2


# -- edits while pending -----------------------------------------------------------------


def test_an_edit_while_pending_re_renders_and_re_hashes_the_request(
    app: App, vault_root: Path, clock: Clock
):
    pending = request_acme_invoice(app, vault_root)
    first = parsed(pending)
    task_id = first.meta["id"]
    old_hash = first.meta["approval"]["payload_hash"]
    expires = first.meta["approval"]["expires_at"]

    clock.advance(hours=1)
    edited_fm = INVOICE_FM.replace("price_unit: 75", "price_unit: 80")
    pending.write_text(
        pending.read_text(encoding="utf-8").replace(INVOICE_FM, edited_fm), encoding="utf-8"
    )
    outcome = app.pipeline.process(pending)

    assert outcome.status == "pending_approval"
    assert outcome.path == pending
    second = parsed(pending)
    new_hash = second.meta["approval"]["payload_hash"]
    assert new_hash != old_hash
    assert second.meta["id"] == task_id  # the same request, re-rendered
    assert second.meta["approval"]["expires_at"] == expires  # an edit does not extend it
    assert new_hash in second.block
    assert old_hash not in second.block
    assert "160.00 USD" in second.block
    assert "150.00" not in second.block
    assert_user_text_intact(pending, edited_fm)
    task = app.ledger.task(task_id)
    assert task is not None
    assert (task.state, task.payload_hash, task.amount) == (ledger.PENDING, new_hash, "160")
    assert events(vault_root, task_id) == ["approval_requested", "approval_requested"]

    # The re-rendered version is the one that can be approved.
    done = app.pipeline.process(move(vault_root, pending, "Approved"))
    assert done.status == "done"
    sent = outbox(app.state_dir)
    assert len(sent) == 1
    line = sent[0]["request"]["calls"][0]["args"][0][0]["invoice_line_ids"][0][2]
    assert line["price_unit"] == "80"


def test_processing_an_unchanged_pending_request_again_is_a_no_op(app: App, vault_root: Path):
    pending = request_acme_invoice(app, vault_root)
    before = pending.read_bytes()
    log_lines = len(audit(vault_root))

    for _ in range(3):
        assert app.pipeline.process(pending).status == "unchanged"

    assert pending.read_bytes() == before
    assert len(audit(vault_root)) == log_lines


def test_an_edit_to_the_body_of_a_pending_request_is_kept_and_needs_no_new_request(
    app: App, vault_root: Path
):
    pending = request_acme_invoice(app, vault_root)
    edited = pending.read_text(encoding="utf-8") + "\n\nReviewer: checked the hours.\n"
    pending.write_text(edited, encoding="utf-8")

    assert app.pipeline.process(pending).status == "unchanged"

    assert pending.read_text(encoding="utf-8") == edited
    done = app.pipeline.process(move(vault_root, pending, "Approved"))
    assert done.status == "done"
    assert parsed(vault_root / "Done" / "acme.md").body == (
        BODY + "\n\nReviewer: checked the hours.\n"
    )


def test_a_pending_request_renamed_by_a_person_is_still_the_same_request(
    app: App, vault_root: Path
):
    pending = request_acme_invoice(app, vault_root)
    task_id = parsed(pending).meta["id"]

    renamed = move(vault_root, pending, "Pending_Approval", "acme march.md")
    assert app.pipeline.process(renamed).status == "unchanged"
    task = app.ledger.task(task_id)
    assert task is not None
    assert task.file == "Pending_Approval/acme march.md"

    outcome = app.pipeline.process(move(vault_root, renamed, "Approved"))
    assert outcome.status == "done"
    assert files_in(vault_root, "Done") == ["acme march.md"]


def test_a_crlf_note_keeps_its_line_endings_through_request_and_execution(
    app: App, vault_root: Path
):
    frontmatter = INVOICE_FM.replace("\n", "\r\n")
    body = "Body\r\n\r\n  trailing  \r\n"
    path = vault_root / "Needs_Action" / "acme.md"
    path.write_bytes(f"---\r\n{frontmatter}---\r\n{body}".encode())

    pending = app.pipeline.process(path).path
    assert pending is not None
    text = pending.read_bytes().decode()
    assert text.count("\n") == text.count("\r\n")  # no bare LF, not even in the request
    assert text.startswith(f"---\r\n{frontmatter}")
    assert text.endswith(f"<!-- vaultd:end -->\r\n{body}")

    done = app.pipeline.process(move(vault_root, pending, "Approved")).path
    assert done is not None
    text = done.read_bytes().decode()
    assert text.count("\n") == text.count("\r\n")
    assert text.startswith(f"---\r\n{frontmatter}")
    assert text.endswith(f"---\r\n{body}")


def test_a_request_an_editor_saved_with_crlf_line_endings_is_re_rendered_not_duplicated(
    app: App, vault_root: Path
):
    pending = request_acme_invoice(app, vault_root)
    edited = pending.read_text(encoding="utf-8").replace("price_unit: 75", "price_unit: 80")
    pending.write_bytes(edited.replace("\n", "\r\n").encode())  # a Windows editor's save

    assert app.pipeline.process(pending).status == "pending_approval"

    text = pending.read_bytes().decode()
    assert text.count("vaultd:begin") == 1
    assert "160.00 USD" in text
    assert "150.00 USD" not in text
    assert parsed(pending).body == BODY.replace("\n", "\r\n")

    done = app.pipeline.process(move(vault_root, pending, "Approved")).path
    assert done is not None
    assert "vaultd:begin" not in done.read_bytes().decode()
    assert parsed(done).body == BODY.replace("\n", "\r\n")


def test_an_edit_that_makes_a_pending_request_invalid_is_marked_and_can_be_fixed(
    app: App, vault_root: Path
):
    pending = request_acme_invoice(app, vault_root)
    task_id = parsed(pending).meta["id"]
    good = pending.read_text(encoding="utf-8")
    pending.write_text(good.replace("currency: USD", "currency: dollars"), encoding="utf-8")

    assert app.pipeline.process(pending).status == "invalid"
    note = parsed(pending)
    assert note.meta["status"] == "invalid"
    assert note.meta["error"].startswith("currency: ")
    assert note.body == BODY
    before = pending.read_bytes()
    assert app.pipeline.process(pending).status == "unchanged"
    assert pending.read_bytes() == before

    # Approving the invalid version runs nothing.
    rejected = app.pipeline.process(move(vault_root, pending, "Approved"))
    assert rejected.status == "rejected"
    assert outbox(app.state_dir) == []
    assert events(vault_root, task_id)[-2:] == ["request_invalid", "rejected_invalid"]


def test_fixing_an_invalid_pending_request_re_renders_it(app: App, vault_root: Path):
    pending = request_acme_invoice(app, vault_root)
    good = pending.read_text(encoding="utf-8")
    pending.write_text(good.replace("currency: USD", "currency: dollars"), encoding="utf-8")
    app.pipeline.process(pending)

    fixed = pending.read_text(encoding="utf-8").replace("currency: dollars", "currency: USD")
    pending.write_text(fixed, encoding="utf-8")

    assert app.pipeline.process(pending).status == "pending_approval"
    note = parsed(pending)
    assert note.meta["status"] == "pending_approval"
    assert "error" not in note.meta
    assert app.pipeline.process(move(vault_root, pending, "Approved")).status == "done"


def test_a_rejected_task_fixed_and_dropped_back_in_runs_under_a_new_id(app: App, vault_root: Path):
    bad = POST_FM.replace("platforms: [facebook, twitter]", "platforms: [facebok]")
    rejected = app.pipeline.process(
        write_note(vault_root, "Needs_Action/launch.md", bad, BODY)
    ).path
    assert rejected is not None
    old_id = parsed(rejected).meta["id"]
    fixed = rejected.read_text(encoding="utf-8").replace("[facebok]", "[facebook]")
    rejected.write_text(fixed, encoding="utf-8")

    outcome = app.pipeline.process(move(vault_root, rejected, "Needs_Action"))

    assert outcome.status == "done"
    done = parsed(vault_root / "Done" / "launch.md")
    assert done.meta["id"] != old_id
    assert "error" not in done.meta
    assert done.body == BODY


def test_an_approved_scheduled_reply_edited_while_waiting_goes_back_for_approval(
    app: App, vault_root: Path, clock: Clock
):
    when = (clock() + timedelta(hours=5)).replace(microsecond=0)
    frontmatter = (
        "type: social_post\nplatforms: [twitter]\nkind: reply\nin_reply_to: '42'\n"
        f"text: Thanks!\nscheduled_for: {when.isoformat()}\n"
    )
    pending = app.pipeline.process(
        write_note(vault_root, "Needs_Action/reply.md", frontmatter, BODY)
    ).path
    assert pending is not None
    scheduled = app.pipeline.process(move(vault_root, pending, "Approved"))
    assert scheduled.status == "scheduled"
    assert scheduled.path is not None

    text = scheduled.path.read_text(encoding="utf-8")
    scheduled.path.write_text(text.replace("Thanks!", "Thanks, idiot!"), encoding="utf-8")
    clock.advance(hours=6)
    outcome = app.pipeline.process(scheduled.path)

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert (
        "changed after its approval request"
        in parsed(vault_root / "Pending_Approval" / "reply.md").meta["note"]
    )


def test_a_scheduled_post_a_person_moves_to_rejected_never_runs(
    app: App, vault_root: Path, clock: Clock
):
    when = (clock() + timedelta(hours=2)).replace(microsecond=0)
    scheduled = app.pipeline.process(
        write_note(
            vault_root,
            "Needs_Action/later.md",
            POST_FM + f"scheduled_for: {when.isoformat()}\n",
            BODY,
        )
    ).path
    assert scheduled is not None

    outcome = app.pipeline.process(move(vault_root, scheduled, "Rejected"))

    assert outcome.status == "rejected"
    task = app.ledger.task(parsed(vault_root / "Rejected" / "later.md").meta["id"])
    assert task is not None
    assert (task.state, task.approval) == (ledger.REJECTED, "human_rejected")
    clock.advance(hours=3)
    assert app.pipeline.process(vault_root / "Rejected" / "later.md").status == "unchanged"
    assert outbox(app.state_dir) == []


# -- execute → Failed, and a retry --------------------------------------------------------


@pytest.fixture
def services(app: App) -> dict[str, StandInService]:
    stand_ins = {name: StandInService(name) for name in ("facebook", "instagram", "twitter")}
    app.pipeline.connectors.update(stand_ins)
    return stand_ins


def test_a_partial_failure_lands_in_failed_and_a_retry_calls_only_the_platform_that_failed(
    app: App, vault_root: Path, services: dict[str, StandInService]
):
    services["twitter"].fail = 1
    outcome = app.pipeline.process(write_note(vault_root, "Needs_Action/launch.md", POST_FM, BODY))

    assert outcome.status == "failed"
    assert read_tree(vault_root).keys() == {"Failed/launch.md"}
    failed = parsed(vault_root / "Failed" / "launch.md")
    task_id = failed.meta["id"]
    assert failed.meta["status"] == "failed"
    assert failed.meta["result"]["facebook"] == {"id": "facebook-1"}
    assert "twitter" not in failed.meta["result"]
    assert "twitter: twitter answered 503" in failed.meta["error"]
    assert "Approved/" in failed.meta["error"]
    assert_user_text_intact(vault_root / "Failed" / "launch.md", POST_FM)
    task = app.ledger.task(task_id)
    assert task is not None
    assert task.state == ledger.FAILED
    assert [(s.target, s.state) for s in app.ledger.steps(task_id)] == [
        ("facebook", ledger.SUCCEEDED),
        ("twitter", ledger.FAILED),
    ]
    assert audit(vault_root)[-1]["event"] == "failed"

    # A person retries by moving the note back to Approved/.
    retry = app.pipeline.process(move(vault_root, vault_root / "Failed" / "launch.md", "Approved"))

    assert retry.status == "done"
    assert read_tree(vault_root).keys() == {"Done/launch.md"}
    assert services["facebook"].calls == [f"vaultd:{task_id}:facebook"]
    assert services["twitter"].calls == [f"vaultd:{task_id}:twitter"] * 2
    done = parsed(vault_root / "Done" / "launch.md")
    assert done.meta["result"]["facebook"] == {"id": "facebook-1"}
    assert done.meta["result"]["twitter"] == {"id": "twitter-2"}
    assert "error" not in done.meta
    assert_user_text_intact(vault_root / "Done" / "launch.md", POST_FM)
    assert [r["attempt"] for r in app.ledger.runs(task_id)] == [1, 2]


def test_an_outcome_unknown_lands_in_failed_and_is_never_called_again_blindly(
    app: App, vault_root: Path, services: dict[str, StandInService]
):
    services["twitter"].lost = 1
    services["twitter"].lookup_answer = Undetermined("the search API is down")
    outcome = app.pipeline.process(write_note(vault_root, "Needs_Action/launch.md", POST_FM, BODY))

    assert outcome.status == "outcome_unknown"
    failed = parsed(vault_root / "Failed" / "launch.md")
    task_id = failed.meta["id"]
    assert failed.meta["status"] == "outcome_unknown"
    assert "outcome unknown" in failed.meta["error"]
    assert "twitter" in failed.meta["error"]

    # Moved back while the service still cannot tell: not called again.
    again = app.pipeline.process(move(vault_root, vault_root / "Failed" / "launch.md", "Approved"))
    assert again.status == "outcome_unknown"
    assert files_in(vault_root, "Failed") == ["launch.md"]
    assert services["twitter"].calls == [f"vaultd:{task_id}:twitter"]

    # Once the lookup finds the tweet the first call made, it is recorded, not re-sent.
    services["twitter"].lookup_answer = None
    last = app.pipeline.process(move(vault_root, vault_root / "Failed" / "launch.md", "Approved"))
    assert last.status == "done"
    assert services["twitter"].calls == [f"vaultd:{task_id}:twitter"]
    assert services["facebook"].calls == [f"vaultd:{task_id}:facebook"]
    done = parsed(vault_root / "Done" / "launch.md")
    assert done.meta["result"]["twitter"] == {"id": "twitter-1"}
    assert_user_text_intact(vault_root / "Done" / "launch.md", POST_FM)


def test_an_unknown_outcome_proven_absent_is_safe_to_run_again(
    app: App, vault_root: Path, services: dict[str, StandInService]
):
    services["twitter"].lost = 1
    services["twitter"].lookup_answer = Undetermined("the search API is down", lasting=True)
    app.pipeline.process(write_note(vault_root, "Needs_Action/launch.md", POST_FM, BODY))
    task_id = parsed(vault_root / "Failed" / "launch.md").meta["id"]
    services["twitter"].created.clear()  # the service proves nothing carries the marker
    services["twitter"].lookup_answer = None

    outcome = app.pipeline.process(
        move(vault_root, vault_root / "Failed" / "launch.md", "Approved")
    )

    assert outcome.status == "done"
    assert services["twitter"].calls == [f"vaultd:{task_id}:twitter"] * 2
    assert services["facebook"].calls == [f"vaultd:{task_id}:facebook"]


# -- every file ends in exactly one terminal folder ---------------------------------------


def test_every_dropped_file_ends_in_exactly_one_folder_with_its_body_intact(
    app: App, vault_root: Path, clock: Clock
):
    files = {
        "post.md": POST_FM,
        "big.md": INVOICE_FM,
        "reply.md": (
            "type: social_post\nplatforms: [twitter]\nkind: reply\n"
            "in_reply_to: '1234567890'\ntext: Thanks!\n"
        ),
        "broken.md": "type: social_post\nplatforms: [myspace]\ntext: hi\n",
    }
    for name, frontmatter in files.items():
        app.pipeline.process(write_note(vault_root, f"Needs_Action/{name}", frontmatter, BODY))
    app.pipeline.process(move(vault_root, vault_root / "Pending_Approval/big.md", "Approved"))
    clock.advance(hours=49)
    app.pipeline.expire_due()

    tree = read_tree(vault_root)
    assert tree.keys() == {
        "Done/post.md",
        "Done/big.md",
        "Rejected/reply.md",
        "Rejected/broken.md",
    }
    for relative in tree:
        assert parsed(vault_root / relative).body == BODY, relative


@pytest.mark.parametrize("folder", ["Pending_Approval", "Needs_Action"])
def test_a_partly_failed_note_sent_back_for_review_keeps_its_id_and_never_posts_twice(
    app: App, vault_root: Path, services: dict[str, StandInService], folder: str
):
    services["twitter"].fail = 1
    app.pipeline.process(write_note(vault_root, "Needs_Action/launch.md", POST_FM, BODY))
    task_id = parsed(vault_root / "Failed" / "launch.md").meta["id"]

    review = app.pipeline.process(move(vault_root, vault_root / "Failed/launch.md", folder))

    assert review.status == "pending_approval"
    request = parsed(vault_root / "Pending_Approval" / "launch.md")
    assert request.meta["id"] == task_id
    assert "Already done and skipped if you approve: facebook" in request.block
    assert_user_text_intact(vault_root / "Pending_Approval" / "launch.md", POST_FM)

    approved = move(vault_root, vault_root / "Pending_Approval/launch.md", "Approved")
    assert app.pipeline.process(approved).status == "done"
    assert services["facebook"].calls == [f"vaultd:{task_id}:facebook"]
    assert services["twitter"].calls == [f"vaultd:{task_id}:twitter"] * 2


def test_rejected_and_expired_notes_no_longer_carry_the_approval_request(
    app: App, vault_root: Path, clock
):
    first = app.pipeline.process(write_note(vault_root, "Needs_Action/a.md", INVOICE_FM, BODY))
    second = app.pipeline.process(
        write_note(vault_root, "Needs_Action/b.md", INVOICE_FM.replace("Acme", "Beta"), BODY)
    )
    assert first.path is not None
    assert second.path is not None
    assert parsed(first.path).block
    app.pipeline.process(move(vault_root, first.path, "Rejected"))
    clock.advance(hours=49)
    app.pipeline.expire_due()

    for name in ("a.md", "b.md"):
        rejected = parsed(vault_root / "Rejected" / name)
        assert rejected.block == ""
        assert rejected.meta["status"] in ("rejected", "expired")
