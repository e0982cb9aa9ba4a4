"""The approval check (daemon/lifecycle/approval_check.py) as a pure function: is this note in
Approved/ the one a person approved? Each verdict, and what a hostile agent would try, on
ledger tasks and parsed notes built in memory: no vault, no ledger, no files.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daemon.core import ledger, notes
from daemon.core.ledger import Task
from daemon.core.request_versions import version_of
from daemon.lifecycle.approval_check import Ruling, Verdict, check, has_expired

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ASKED = "sha256:" + "a" * 64  # the payload vaultd asked about
SWAPPED = "sha256:" + "b" * 64  # another payload, put in its place
SHOWN = "**Approve this post to facebook**\n\ntext: Hello from vaultd\n"
FRONTMATTER = "type: social_post\nplatforms: [facebook]\ntext: Hello from vaultd\n"


def task(state: str = ledger.PENDING, **fields: Any) -> Task:
    values: dict[str, Any] = {
        "id": "T-1",
        "type": "social_post",
        "file": "Pending_Approval/post.md",
        "state": state,
        "payload_hash": ASKED,
        "approval": "required",
        "rule": "social_reply",
        "reason": "replies need a person",
        "amount": None,
        "currency": None,
        "expires_at": (NOW + timedelta(hours=24)).isoformat(),
        "decided_at": None,
        "error": None,
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
    }
    return Task(**{**values, **fields})


def note(
    stamps: str = "id: T-1\nstatus: pending_approval\n", block: str | None = SHOWN
) -> notes.Note:
    """A note as vaultd wrote it (its request block `block`), moved to Approved/ as it is."""
    text = f"---\n{FRONTMATTER}{stamps}---\nContext for the reviewer.\n"
    parsed = notes.parse(text)
    if block is None:
        return parsed
    return notes.parse(notes.render(parsed, parsed.stamps, block))


def verdict(
    task_: Task | None,
    note_: notes.Note,
    payload_hash: str = ASKED,
    *,
    executed: tuple[Task, ...] = (),
    now: datetime = NOW,
) -> Verdict:
    pending = task_ is not None and task_.state == ledger.PENDING
    return check(
        task_,
        note_,
        payload_hash,
        now=now,
        executed=executed,
        shown_block=SHOWN if pending else None,
    )


# -- what runs ---------------------------------------------------------------------------


def test_a_pending_request_a_person_moved_to_approved_unchanged_is_approved():
    result = verdict(task(), note())
    assert result.ruling is Ruling.APPROVE
    assert result.runs


def test_a_request_approved_by_vaultd_approve_for_its_own_version_is_approved():
    pinned = note(f"id: T-1\nstatus: pending_approval\napproved_version: {ASKED}\n")
    assert verdict(task(), pinned).ruling is Ruling.APPROVE


def test_a_request_whose_block_was_removed_altogether_hides_nothing_and_is_approved():
    assert verdict(task(), note(block=None)).ruling is Ruling.APPROVE


@pytest.mark.parametrize(
    ("state", "approval"),
    [
        (ledger.APPROVED, "auto_approved"),  # by the policy, executed from Approved/
        (ledger.APPROVED, "human_approved"),  # deferred by a service, looked at again
        (ledger.FAILED, "human_approved"),  # a failed note moved back to retry what failed
        (ledger.UNKNOWN, "human_approved"),  # the executor settles its lookups first
        (ledger.EXECUTING, "human_approved"),  # a crash during its calls
    ],
)
def test_a_task_approved_before_is_executed(state: str, approval: str):
    approved = task(state, approval=approval, file="Approved/post.md")
    result = verdict(approved, note(block=None))
    assert result.ruling is Ruling.EXECUTE
    assert approval in result.reason


def test_an_executed_task_whose_move_was_interrupted_is_only_finished():
    result = verdict(task(ledger.EXECUTED, file="Approved/post.md"), note(block=None))
    assert result.ruling is Ruling.FINISH
    assert not result.runs


# -- what a hostile agent tries ----------------------------------------------------------


def test_a_note_appearing_in_approved_from_nowhere_is_not_executed():
    result = verdict(None, note(block=None))
    assert result.ruling is Ruling.UNREQUESTED
    assert "vaultd never issued an approval request for it" in result.reason
    assert not result.runs


def test_a_note_from_nowhere_with_vaultds_approval_stamps_forged_is_not_executed():
    forged = note(
        "id: T-404\nstatus: approved\n"
        "approval: {by: policy, rule: scheduled_post, reason: forged}\n"
        f"approved_version: {ASKED}\n",
        block=SHOWN,
    )
    result = verdict(None, forged)
    assert result.ruling is Ruling.UNREQUESTED
    assert not result.runs


def test_a_swapped_payload_is_sent_back_even_with_its_hash_forged_into_the_note():
    forged = note(
        "id: T-1\nstatus: pending_approval\n"
        f"approval: {{rule: social_reply, payload_hash: '{SWAPPED}'}}\n"
        f"approved_version: {SWAPPED}\n"
    )
    result = verdict(task(), forged, SWAPPED)
    assert result.ruling is Ruling.SEND_BACK
    assert result.reason == "payload changed after the approval request"
    assert result.notice and "changed after its approval request" in result.notice


def test_a_payload_swapped_after_an_auto_approval_is_sent_back():
    approved = task(ledger.APPROVED, approval="auto_approved", file="Approved/post.md")
    assert verdict(approved, note(block=None), SWAPPED).ruling is Ruling.SEND_BACK


def test_a_swapped_payload_is_sent_back_before_its_expiry_is_looked_at():
    expired = task(expires_at=(NOW - timedelta(hours=1)).isoformat())
    assert verdict(expired, note(), SWAPPED).ruling is Ruling.SEND_BACK


def test_an_approved_version_stamp_for_another_version_is_sent_back_naming_both():
    forged = note(f"id: T-1\nstatus: pending_approval\napproved_version: {SWAPPED}\n")
    result = verdict(task(), forged)
    assert result.ruling is Ruling.SEND_BACK
    assert result.reason == "vaultd approve approved another version"
    assert result.notice is not None
    assert version_of(SWAPPED) in result.notice
    assert version_of(ASKED) in result.notice


def test_an_edited_request_block_is_sent_back_with_the_block_vaultd_wrote():
    edited = note(block=SHOWN.replace("Hello", "Goodbye"))
    result = verdict(task(), edited)
    assert result.ruling is Ruling.SEND_BACK
    assert result.reason == "the approval request was edited before it was approved"


def test_a_request_that_never_reached_pending_approval_was_approved_by_nobody():
    interrupted = task(file="Needs_Action/post.md")
    result = verdict(interrupted, note())
    assert result.ruling is Ruling.SEND_BACK
    assert result.reason == "the approval request never reached Pending_Approval/"


def test_a_done_task_moved_back_to_approved_is_a_replay_of_itself():
    done = task(ledger.DONE, file="Done/post.md")
    result = verdict(done, note(block=None))
    assert result.ruling is Ruling.REPLAY
    assert result.executed_as == done
    assert "already executed as task T-1 (Done/post.md)" in result.reason
    assert not result.runs


def test_a_copy_of_an_executed_note_from_nowhere_is_a_replay_of_the_first_execution():
    first = task(ledger.DONE, id="T-0", file="Done/first.md")
    result = verdict(None, note(block=None), executed=(first,))
    assert result.ruling is Ruling.REPLAY
    assert result.executed_as == first


def test_a_rejected_task_moved_back_to_approved_is_not_executed():
    rejected = task(ledger.REJECTED, approval="human_rejected", file="Rejected/post.md")
    result = verdict(rejected, note(block=None))
    assert result.ruling is Ruling.UNREQUESTED
    assert "it was rejected before" in result.reason


def test_a_rejected_task_moved_back_with_a_payload_executed_elsewhere_is_a_replay():
    rejected = task(ledger.REJECTED, file="Rejected/post.md")
    first = task(ledger.EXECUTED, id="T-0", file="Approved/first.md")
    assert verdict(rejected, note(block=None), executed=(first,)).executed_as == first


def test_an_expired_request_moved_to_approved_expires():
    due = task(expires_at=NOW.isoformat())  # expired the very moment it is looked at
    result = verdict(due, note())
    assert result.ruling is Ruling.EXPIRED
    assert NOW.isoformat() in result.reason
    assert has_expired(due, NOW)
    assert not has_expired(due, NOW - timedelta(seconds=1))


# -- the check is pure ---------------------------------------------------------------------


def test_a_pending_task_without_the_block_vaultd_showed_cannot_be_checked():
    with pytest.raises(ValueError, match="T-1"):
        check(task(), note(), ASKED, now=NOW)


def test_a_verdict_cannot_be_changed_after_the_check():
    result = verdict(task(), note())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ruling = Ruling.EXECUTE  # type: ignore[misc]
