"""Is this note in Approved/ the one a person approved? (design §3, "Approval is bound to
content"): one pure function, `check`, of the ledger's task, the note and its payload hash,
returning a `Verdict` with the reason a person will read. No I/O: what the check needs from
the ledger (the tasks that already executed this payload, the request block vaultd showed)
and the time are handed to it, so every verdict is tested without files
(tests/test_approval_check.py).

    no task, or rejected before   → UNREQUESTED (a fresh request; or REPLAY if this very
                                     payload was executed already: never run twice)
    done                          → REPLAY
    executed, not yet moved       → FINISH (the calls went out: only the move is left)
    payload not the one asked     → SEND_BACK (to Pending_Approval/, same id)
    pending: expired              → EXPIRED
             another version approved by `vaultd approve`, request never shown in
             Pending_Approval/, or its block edited               → SEND_BACK
             otherwise            → APPROVE (a person approved it now: record it, execute)
    approved before (policy, a person, a retry)                   → EXECUTE
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from daemon.core import ledger, notes
from daemon.core.ledger import Task
from daemon.core.request_versions import version_of
from daemon.core.timestamps import parse_time
from daemon.core.vault import PENDING


class Ruling(Enum):
    """What to do with a note in Approved/."""

    EXECUTE = "execute"  # approved before: execute it
    APPROVE = "approve"  # a person approved the pending request now: record it, execute
    FINISH = "finish"  # executed already: only recording it done and moving it are left
    SEND_BACK = "send_back"  # not what was approved: ask again (same id), saying why
    EXPIRED = "expired"  # the request expired before it was approved
    UNREQUESTED = "unrequested"  # vaultd never asked about it: a new request (new id)
    REPLAY = "replay"  # this payload was executed already: refused, never run twice


@dataclass(frozen=True)
class Verdict:
    """The approval check's answer: the ruling, why (for the audit log and the request's
    notice), what the note should tell a person when it is sent back, and for a replay the
    task that executed this payload first."""

    ruling: Ruling
    reason: str = ""
    notice: str | None = None
    executed_as: Task | None = None

    @property
    def runs(self) -> bool:
        """Return whether the note may be executed (now or, if scheduled, later)."""
        return self.ruling in (Ruling.EXECUTE, Ruling.APPROVE)


def has_expired(task: Task, now: datetime) -> bool:
    """Given a task and the time, return whether its approval request has expired."""
    return task.expires_at is not None and parse_time(task.expires_at) <= now


def check(
    task: Task | None,
    note: notes.Note,
    payload_hash: str,
    *,
    now: datetime,
    executed: Sequence[Task] = (),
    shown_block: str | None = None,
) -> Verdict:
    """Given the ledger's task of a note in Approved/ (None if it is none), the note, the
    hash of its payload, the time, the tasks that already executed this payload
    (Ledger.executed_hashes) and, for a pending task, the request block vaultd showed,
    return whether it is the note a person approved, and why not if it is not. Raise
    ValueError if the task is pending and the block vaultd showed is not given."""
    if task is None or task.state in (ledger.REJECTED, ledger.DONE):
        earlier = [task, *executed] if task is not None and task.state == ledger.DONE else executed
        if earlier:
            first = earlier[0]
            reason = (
                f"this action was already executed as task {first.id} ({first.file}); "
                "vaultd never runs an action twice. Drop a new task into Needs_Action/ "
                "if you really want it again."
            )
            return Verdict(Ruling.REPLAY, reason, executed_as=first)
        why = "it was rejected before" if task else "vaultd never issued an approval request for it"
        return Verdict(Ruling.UNREQUESTED, f"appeared in Approved/ but {why}; not executed")
    if task.state == ledger.EXECUTED:
        return Verdict(Ruling.FINISH, "executed; its move to Done/ or Failed/ was interrupted")
    if task.payload_hash != payload_hash:
        return Verdict(
            Ruling.SEND_BACK,
            "payload changed after the approval request",
            "This note changed after its approval request, so it was not executed. "
            "Review the version below and approve it again.",
        )
    if task.state != ledger.PENDING:
        return Verdict(Ruling.EXECUTE, f"approved before ({task.approval})")
    return _pending(task, note, payload_hash, now=now, shown_block=shown_block)


def _pending(
    task: Task, note: notes.Note, payload_hash: str, *, now: datetime, shown_block: str | None
) -> Verdict:
    """Given a pending task whose note a person moved to Approved/ with the payload it was
    asked about, return whether that move approves it."""
    if has_expired(task, now):
        return Verdict(
            Ruling.EXPIRED,
            f"the approval request expired at {task.expires_at} without a decision",
        )
    pinned = note.meta.get("approved_version")
    if pinned is not None and pinned != payload_hash:
        return Verdict(
            Ruling.SEND_BACK,
            "vaultd approve approved another version",
            f"`vaultd approve` approved version {version_of(str(pinned))}, but the "
            f"note holds version {version_of(payload_hash)}, so it was not executed. "
            "Review this version and approve it.",
        )
    if not task.file.startswith(PENDING + "/"):
        # A crash stopped vaultd while it sent this note to Pending_Approval/: no person has
        # seen the request there, so nobody approved it. Send it on.
        return Verdict(
            Ruling.SEND_BACK,
            "the approval request never reached Pending_Approval/",
            "vaultd was interrupted while it asked for approval of this note, so it "
            "was not executed. Review it here and approve it again.",
        )
    if shown_block is None:
        raise ValueError(f"task {task.id} is pending: the check needs the block vaultd showed")
    if note.block and (
        notes.render(note, note.stamps, shown_block) != notes.render(note, note.stamps)
    ):
        # The approver read an edited request (a smaller amount, say): they did not approve
        # what would run. A block removed altogether hides nothing.
        return Verdict(
            Ruling.SEND_BACK,
            "the approval request was edited before it was approved",
            "The request shown in this note was edited, so it was not executed. "
            "Review the request as vaultd wrote it below and approve it again.",
        )
    return Verdict(Ruling.APPROVE, "moved to Approved/ by a person")
