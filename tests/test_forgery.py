"""Approval forgery (issue 5, item 5): every way to get an action run without the approval
it needs, one named case per row of `FORGERIES`.

Each case first does what is legitimate (ask for approval, execute a post, fail one …),
then forges: writes, copies, moves, renames, links or edits a note, or stamps vaultd's own
keys into it. The checks are the same for every case:

* nothing is executed: no new record in the dry-run outbox (`<state>/dry_run_outbox.jsonl`,
  what would have been sent) and no call to a stand-in service, neither when the forged
  file is processed nor after the real `Runner.run_once()` has looked at every file again;
* the refusal is in the audit log (`Logs/YYYY-MM-DD.json`), naming the file;
* a person can see it: the forged note is now in Pending_Approval/ or Rejected/ and says
  why (in its request block, its `note:` or `error:`, or a `.rejected.md` note beside it),
  with the body it arrived with.

`ALLOWED` holds the controls: legitimate approvals that must run exactly once, so that the
"nothing executed" check is seen to count executions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, StandInService, audit, outbox, parsed, write_note

from daemon.core import ledger
from daemon.core.errors import ConnectorError
from daemon.service.app import App
from daemon.service.runner import Runner

BODY = "Context for the reviewer.\n\n  kept byte for byte  \n"

INVOICE = (
    "type: odoo_invoice\n"
    "partner: Acme Corp\n"
    "lines:\n"
    "  - product: Consulting\n"
    "    quantity: 3\n"
    "    price_unit: 50\n"
)
POST = "type: social_post\nplatforms: [facebook]\ntext: Hello from vaultd\n"

NEVER_ISSUED = "vaultd never issued an approval request for it"
REJECTED_BEFORE = "it was rejected before"
CHANGED = "changed after its approval request"
ALREADY_EXECUTED = "already executed"
SYMLINK = "is a symbolic link; vaultd never follows links"


class World:
    """One vault with a running pipeline, and the legitimate steps the cases start from."""

    def __init__(self, app: App, root: Path, clock: Clock) -> None:
        self.app = app
        self.root = root
        self.clock = clock
        self.services: list[StandInService] = []

    # What reached a service: the dry-run outbox, and every call to a stand-in.
    def sent(self) -> list[str]:
        markers = [record["marker"] for record in outbox(self.app.state_dir)]
        return markers + [marker for service in self.services for marker in service.calls]

    def write(self, relative: str, frontmatter: str, body: str = BODY) -> Path:
        return write_note(self.root, relative, frontmatter, body)

    def move(self, path: Path, folder: str, name: str | None = None) -> Path:
        target = self.root / folder / (name or path.name)
        os.rename(path, target)  # noqa: PTH104 - one rename, as a person does in Obsidian
        return target

    def copy(self, path: Path, folder: str, name: str | None = None) -> Path:
        target = self.root / folder / (name or path.name)
        shutil.copyfile(path, target)
        return target

    def edit(self, path: Path, old: str, new: str) -> None:
        text = path.read_text(encoding="utf-8")
        assert old in text, (old, text)
        path.write_text(text.replace(old, new), encoding="utf-8")

    def process(self, path: Path, expected: str) -> Path:
        outcome = self.app.pipeline.process(path)
        assert outcome.status == expected, outcome
        assert outcome.path is not None
        return outcome.path

    def request_invoice(self, name: str = "acme.md") -> tuple[Path, str]:
        """An invoice over the threshold: its pending request, and the task id."""
        path = self.process(self.write(f"Needs_Action/{name}", INVOICE), "pending_approval")
        return path, str(parsed(path).meta["id"])

    def execute_post(self, name: str = "hello.md") -> tuple[Path, str]:
        """A post approved by policy and executed: its Done note, and the task id."""
        path = self.process(self.write(f"Needs_Action/{name}", POST), "done")
        return path, str(parsed(path).meta["id"])

    def execute_invoice(self, name: str = "acme.md") -> tuple[Path, str]:
        """An invoice a person approved and that ran: its Done note, and the task id."""
        pending, task_id = self.request_invoice(name)
        return self.process(self.move(pending, "Approved"), "done"), task_id

    def fail_post(self, name: str = "hello.md") -> tuple[Path, str]:
        """A post whose service refused the call: its Failed note, and the task id."""
        service = StandInService("facebook", always=ConnectorError("503 Service Unavailable"))
        self.services.append(service)
        self.app.pipeline.connectors["facebook"] = service
        path = self.process(self.write(f"Needs_Action/{name}", POST), "failed")
        service.always = None  # the service is back: a forged retry would now go through
        return path, str(parsed(path).meta["id"])


@dataclass(frozen=True)
class Forgery:
    name: str
    forge: Callable[[World], Path]
    """Do the legitimate steps, then forge; return the forged file for vaultd to look at."""
    lands_in: str
    event: str
    says: str
    body: bool = True  # the forged note keeps the body it arrived with (not for links)
    extra: dict[str, Any] = field(default_factory=dict)


# -- the forgeries -----------------------------------------------------------------------


def written_into_approved(w: World) -> Path:
    return w.write("Approved/hello.md", POST)


def invoice_written_into_approved(w: World) -> Path:
    return w.write("Approved/acme.md", INVOICE)


def forged_status_approved(w: World) -> Path:
    return w.write("Approved/acme.md", INVOICE + "status: approved\n")


def forged_approval_by_human(w: World) -> Path:
    stamps = "status: approved\napproval:\n  by: human\n  decided_at: 2026-11-22T09:00:00Z\n"
    return w.write("Approved/acme.md", INVOICE + stamps)


def forged_approval_by_policy(w: World) -> Path:
    stamps = "approval:\n  by: policy\n  rule: small_recurring\n  reason: under 100 USD\n"
    return w.write("Approved/acme.md", INVOICE + stamps)


def forged_id_never_issued(w: World) -> Path:
    return w.write("Approved/acme.md", INVOICE + "id: 20261122-0f0f0f\nstatus: approved\n")


def forged_id_of_a_pending_task(w: World) -> Path:
    _, task_id = w.request_invoice()
    bigger = INVOICE.replace("quantity: 3", "quantity: 300")
    return w.write("Approved/sneaky.md", bigger + f"id: {task_id}\nstatus: approved\n")


def payload_hash_copied_from_a_pending_request(w: World) -> Path:
    pending, task_id = w.request_invoice()
    approval = parsed(pending).meta["approval"]
    stamps = (
        f"id: {task_id}\nstatus: approved\napproval:\n  by: human\n"
        f"  payload_hash: {approval['payload_hash']}\n"
    )
    return w.write("Approved/twin.md", INVOICE + stamps)


def forged_id_of_a_done_task(w: World) -> Path:
    _, task_id = w.execute_post()
    other = POST.replace("Hello from vaultd", "Buy now, 90% off")
    return w.write("Approved/new.md", other + f"id: {task_id}\nstatus: approved\n")


def copy_of_a_pending_request_under_a_new_name(w: World) -> Path:
    pending, _ = w.request_invoice()
    return w.copy(pending, "Approved", "acme copy.md")


def copy_of_a_pending_request_under_its_own_name(w: World) -> Path:
    pending, _ = w.request_invoice()
    return w.copy(pending, "Approved")


def hard_link_to_a_pending_request(w: World) -> Path:
    pending, _ = w.request_invoice()
    link = w.root / "Approved" / "acme.md"
    os.link(pending, link)
    return link


def copy_of_an_approved_note_left_behind_when_it_ran(w: World) -> Path:
    pending, _ = w.request_invoice()
    approved = w.move(pending, "Approved")
    copy = w.copy(approved, "Approved", "acme copy.md")
    w.process(approved, "done")
    return copy


def done_moved_back_into_approved(w: World) -> Path:
    done, _ = w.execute_post()
    return w.move(done, "Approved")


def done_copied_into_approved(w: World) -> Path:
    done, _ = w.execute_post()
    return w.copy(done, "Approved", "hello again.md")


def done_renamed_into_approved(w: World) -> Path:
    done, _ = w.execute_post()
    return w.move(done, "Approved", "fresh idea.md")


def done_invoice_replayed_into_approved(w: World) -> Path:
    done, _ = w.execute_invoice()
    return w.copy(done, "Approved", "acme again.md")


def payload_edited_between_request_and_approval(w: World) -> Path:
    pending, _ = w.request_invoice()
    w.edit(pending, "price_unit: 50", "price_unit: 5000")
    return w.move(pending, "Approved")


def payload_edited_in_approved_before_vaultd_read_it(w: World) -> Path:
    pending, _ = w.request_invoice()
    approved = w.move(pending, "Approved")
    w.edit(approved, "partner: Acme Corp", "partner: Mallory Ltd")
    return approved


def payload_and_its_hash_stamp_edited_together(w: World) -> Path:
    pending, _ = w.request_invoice()
    w.edit(pending, "quantity: 3", "quantity: 30")
    fake = "sha256:" + "0" * 64
    w.edit(pending, str(parsed(pending).meta["approval"]["payload_hash"]), fake)
    return w.move(pending, "Approved")


def scheduled_post_edited_while_it_waits(w: World) -> Path:
    when = (w.clock.now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scheduled = w.write("Needs_Action/later.md", POST + f"scheduled_for: {when}\n")
    waiting = w.process(scheduled, "scheduled")
    w.edit(waiting, "Hello from vaultd", "Visit http://evil.example")
    w.clock.advance(hours=3)  # and it is due: still nothing may run
    return waiting


def approved_after_it_expired(w: World) -> Path:
    pending, _ = w.request_invoice()
    w.clock.advance(hours=49)
    return w.move(pending, "Approved")


def expired_request_moved_from_rejected(w: World) -> Path:
    w.request_invoice()
    w.clock.advance(hours=49)
    [expired] = w.app.pipeline.expire_due()
    assert expired.status == "expired" and expired.path is not None
    return w.move(expired.path, "Approved")


def rejected_request_moved_to_approved(w: World) -> Path:
    pending, _ = w.request_invoice()
    rejected = w.process(w.move(pending, "Rejected"), "rejected")
    return w.move(rejected, "Approved")


def rejected_request_renamed_into_approved(w: World) -> Path:
    pending, _ = w.request_invoice()
    rejected = w.process(w.move(pending, "Rejected"), "rejected")
    return w.move(rejected, "Approved", "acme v2.md")


def invalid_task_fixed_and_moved_from_rejected(w: World) -> Path:
    broken = w.write("Needs_Action/acme.md", INVOICE.replace("partner: Acme Corp\n", ""))
    rejected = w.process(broken, "rejected")
    w.edit(rejected, "type: odoo_invoice\n", "type: odoo_invoice\npartner: Acme Corp\n")
    return w.move(rejected, "Approved")


def failed_tasks_id_reused_in_a_new_file(w: World) -> Path:
    _, task_id = w.fail_post()
    other = POST.replace("Hello from vaultd", "Something else entirely")
    return w.write("Approved/retry.md", other + f"id: {task_id}\nstatus: approved\n")


def failed_note_copied_into_approved(w: World) -> Path:
    failed, _ = w.fail_post()
    return w.copy(failed, "Approved", "hello copy.md")


def symlink_in_approved_to_a_pending_request(w: World) -> Path:
    pending, _ = w.request_invoice()
    link = w.root / "Approved" / "acme.md"
    link.symlink_to(pending)
    return link


def symlink_in_approved_to_a_note_outside_the_vault(w: World) -> Path:
    outside = w.root.parent / "outside.md"
    outside.write_text(f"---\n{POST}id: x\nstatus: approved\n---\n{BODY}", encoding="utf-8")
    link = w.root / "Approved" / "hello.md"
    link.symlink_to(outside)
    return link


def request_block_edited_then_approved(w: World) -> Path:
    pending, _ = w.request_invoice()
    w.edit(pending, "150.00 USD", "1.50 USD")  # what the approver reads, not what runs
    return w.move(pending, "Approved")


def forged_approval_stamps_in_needs_action(w: World) -> Path:
    _, task_id = w.request_invoice("first.md")
    stamps = f"id: {task_id}\nstatus: approved\napproval:\n  by: human\n"
    return w.write("Needs_Action/acme.md", INVOICE.replace("3", "4") + stamps)


FORGERIES = [
    Forgery("written straight into Approved", written_into_approved, "Pending_Approval",
            "approval_refused", NEVER_ISSUED),
    Forgery("invoice written straight into Approved", invoice_written_into_approved,
            "Pending_Approval", "approval_refused", NEVER_ISSUED),
    Forgery("forged status: approved", forged_status_approved, "Pending_Approval",
            "approval_refused", NEVER_ISSUED),
    Forgery("forged approval by: human", forged_approval_by_human, "Pending_Approval",
            "approval_refused", NEVER_ISSUED),
    Forgery("forged approval by: policy", forged_approval_by_policy, "Pending_Approval",
            "approval_refused", NEVER_ISSUED),
    Forgery("forged id vaultd never issued", forged_id_never_issued, "Pending_Approval",
            "approval_refused", NEVER_ISSUED),
    Forgery("forged id of another, pending task", forged_id_of_a_pending_task,
            "Pending_Approval", "approval_refused", NEVER_ISSUED),
    Forgery("payload_hash and id copied from a pending request",
            payload_hash_copied_from_a_pending_request, "Pending_Approval", "approval_refused",
            NEVER_ISSUED),
    Forgery("forged id of a done task, new payload", forged_id_of_a_done_task,
            "Pending_Approval", "approval_refused", NEVER_ISSUED),
    Forgery("copy of a pending request under a new name",
            copy_of_a_pending_request_under_a_new_name, "Pending_Approval", "approval_refused",
            NEVER_ISSUED),
    Forgery("copy of a pending request under its own name",
            copy_of_a_pending_request_under_its_own_name, "Pending_Approval",
            "approval_refused", NEVER_ISSUED),
    Forgery("hard link to a pending request", hard_link_to_a_pending_request,
            "Pending_Approval", "approval_refused", NEVER_ISSUED),
    Forgery("copy of an approved note, left behind when it ran",
            copy_of_an_approved_note_left_behind_when_it_ran, "Rejected", "replay_refused",
            ALREADY_EXECUTED),
    Forgery("Done note moved back into Approved", done_moved_back_into_approved, "Rejected",
            "replay_refused", ALREADY_EXECUTED),
    Forgery("Done note copied into Approved", done_copied_into_approved, "Rejected",
            "replay_refused", ALREADY_EXECUTED),
    Forgery("Done note renamed into Approved", done_renamed_into_approved, "Rejected",
            "replay_refused", ALREADY_EXECUTED),
    Forgery("Done invoice (human-approved) replayed", done_invoice_replayed_into_approved,
            "Rejected", "replay_refused", ALREADY_EXECUTED),
    Forgery("payload edited between request and approval",
            payload_edited_between_request_and_approval, "Pending_Approval",
            "approval_refused", CHANGED),
    Forgery("payload edited in Approved before vaultd read it",
            payload_edited_in_approved_before_vaultd_read_it, "Pending_Approval",
            "approval_refused", CHANGED),
    Forgery("payload and its payload_hash stamp edited together",
            payload_and_its_hash_stamp_edited_together, "Pending_Approval", "approval_refused",
            CHANGED),
    Forgery("scheduled post edited while it waits in Approved",
            scheduled_post_edited_while_it_waits, "Pending_Approval", "approval_refused",
            CHANGED),
    Forgery("approved after it expired", approved_after_it_expired, "Rejected", "expired",
            "expired"),
    Forgery("expired request moved from Rejected to Approved",
            expired_request_moved_from_rejected, "Pending_Approval", "approval_refused",
            REJECTED_BEFORE),
    Forgery("rejected request moved to Approved", rejected_request_moved_to_approved,
            "Pending_Approval", "approval_refused", REJECTED_BEFORE),
    Forgery("rejected request renamed into Approved", rejected_request_renamed_into_approved,
            "Pending_Approval", "approval_refused", REJECTED_BEFORE),
    Forgery("invalid task fixed in Rejected and moved to Approved",
            invalid_task_fixed_and_moved_from_rejected, "Pending_Approval",
            "approval_refused", REJECTED_BEFORE),
    Forgery("Failed task's id reused in a new file", failed_tasks_id_reused_in_a_new_file,
            "Pending_Approval", "approval_refused", NEVER_ISSUED),
    Forgery("Failed note copied into Approved under a new name",
            failed_note_copied_into_approved, "Pending_Approval", "approval_refused",
            NEVER_ISSUED),
    Forgery("symlink in Approved to a pending request",
            symlink_in_approved_to_a_pending_request, "Rejected", "rejected_unreadable",
            SYMLINK, body=False),
    Forgery("symlink in Approved to a note outside the vault",
            symlink_in_approved_to_a_note_outside_the_vault, "Rejected", "rejected_unreadable",
            SYMLINK, body=False),
    Forgery("rendered request block edited, then approved",
            request_block_edited_then_approved, "Pending_Approval", "approval_refused",
            "edited"),
    Forgery("approval stamps forged in Needs_Action", forged_approval_stamps_in_needs_action,
            "Pending_Approval", "approval_requested", "at or over"),
]  # fmt: skip


def _params() -> list[Any]:
    params = []
    for case in FORGERIES:
        marks = []
        if "xfail" in case.extra:
            marks.append(pytest.mark.xfail(strict=True, reason=case.extra["xfail"]))
        params.append(pytest.param(case, id=case.name.replace(" ", "_"), marks=marks))
    return params


def test_the_table_has_at_least_twenty_distinct_named_forgeries():
    names = [case.name for case in FORGERIES]
    assert len(set(names)) == len(names) >= 20
    assert len({case.forge for case in FORGERIES}) == len(FORGERIES)


@pytest.mark.parametrize("case", _params())
def test_a_forgery_is_never_executed_and_is_logged_and_explained(
    case: Forgery, app: App, vault_root: Path, clock: Clock
):
    w = World(app, vault_root, clock)
    # Everything legitimate a case does is done before this line; what follows is forged.
    forged = case.forge(w)
    sent_before = w.sent()
    logged_before = len(audit(vault_root))
    relative = forged.relative_to(vault_root).as_posix()

    outcome = app.pipeline.process(forged)

    # 0 executed, now and after vaultd has looked at every file again.
    assert w.sent() == sent_before
    assert outcome.status in ("pending_approval", "rejected", "expired"), outcome
    Runner(app.pipeline, app.config).run_once()
    assert w.sent() == sent_before
    assert not app.ledger.tasks(ledger.EXECUTING)

    # Logged, naming the file.
    logged = audit(vault_root)[logged_before:]
    assert any(
        entry["event"] == case.event
        and (forged.stem in (entry["file"] or "") or forged.stem in (entry["error"] or ""))
        for entry in logged
    ), (case.event, relative, logged)

    # Visible to a person, in a folder they look at, saying why.
    assert outcome.path is not None
    landed = outcome.path
    assert landed.parent.name == case.lands_in, landed
    explained = landed.read_text(encoding="utf-8") if not landed.is_symlink() else ""
    sidecar = landed.with_name(f"{landed.name}.rejected.md")
    if sidecar.exists():
        explained += sidecar.read_text(encoding="utf-8")
    assert case.says in explained, explained
    if case.body:
        assert parsed(landed).body == BODY
    else:
        assert landed.is_symlink()  # moved, never followed
    assert not (vault_root / "Approved" / forged.name).exists() or forged.name == landed.name


# -- controls: legitimate approvals run, exactly once ------------------------------------


def approve_as_shown(w: World) -> Path:
    pending, _ = w.request_invoice()
    return w.move(pending, "Approved")


def approve_after_editing_only_the_body(w: World) -> Path:
    pending, _ = w.request_invoice()
    with pending.open("a", encoding="utf-8") as handle:
        handle.write("Reviewer: hours checked against the timesheet.\n")
    return w.move(pending, "Approved")


def approve_after_renaming(w: World) -> Path:
    pending, _ = w.request_invoice()
    return w.move(pending, "Approved", "acme, checked.md")


def approve_after_a_reviewed_edit(w: World) -> Path:
    pending, _ = w.request_invoice()
    w.edit(pending, "quantity: 3", "quantity: 4")
    again = w.process(pending, "pending_approval")  # vaultd re-renders and re-hashes it
    assert "200.00 USD" in again.read_text(encoding="utf-8")
    return w.move(again, "Approved")


ALLOWED = [approve_as_shown, approve_after_editing_only_the_body, approve_after_renaming,
           approve_after_a_reviewed_edit]  # fmt: skip


@pytest.mark.parametrize("approve", ALLOWED, ids=lambda f: f.__name__)
def test_a_legitimate_approval_runs_exactly_once(
    approve: Callable[[World], Path], app: App, vault_root: Path, clock: Clock
):
    w = World(app, vault_root, clock)
    approved = approve(w)
    task_id = parsed(approved).meta["id"]

    done = w.process(approved, "done")
    Runner(app.pipeline, app.config).run_once()

    assert [marker.split(":")[1] for marker in w.sent()] == [task_id]
    assert done.parent.name == "Done"
    assert parsed(done).body.startswith(BODY)
    assert audit(vault_root)[-1]["event"] == "executed"


@pytest.mark.parametrize("first", ["original", "copy"])
def test_a_copy_of_an_approved_note_runs_the_action_once_whichever_is_seen_first(
    first: str, app: App, vault_root: Path, clock: Clock
):
    w = World(app, vault_root, clock)
    pending, task_id = w.request_invoice()
    original = w.move(pending, "Approved")
    copy = w.copy(original, "Approved", "acme copy.md")

    for path in (original, copy) if first == "original" else (copy, original):
        app.pipeline.process(path)
    Runner(app.pipeline, app.config).run_once()

    assert [marker.split(":")[1] for marker in w.sent()] == [task_id]
    events = [entry["event"] for entry in audit(vault_root)]
    assert events.count("executed") == 1
    assert "replay_refused" in events
