"""`vaultd approve` and `vaultd reject`: a person's decision, same as moving the note.

Both find the request through the ledger (the task vaultd issued, at the file vaultd put
it), never through an `id:` some file claims. What `approve` approves is a version: bare
`ID` only while the request is the one first issued; `ID@version` only that version. The
version approved is stamped into the note before it moves (`approved_version`), so a note an
agent changes during the move is sent back, never executed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daemon.cli.common import hints_of, open_vault
from daemon.core import ledger as ledger_states
from daemon.core import notes
from daemon.core.config import state_dir_for
from daemon.core.errors import NotFound, ValidationFailed, VaultdError
from daemon.core.hints import Hints
from daemon.core.ledger import Ledger, Task
from daemon.core.models import Action, OdooInvoice, OdooPayment, SocialPost
from daemon.core.request_versions import (
    AmbiguousVersion,
    RequestVersions,
    reference,
    resolve,
    split_reference,
    version_of,
)
from daemon.core.taskfile import Loaded, Unreadable, read_task_file, validate_note
from daemon.core.vault import APPROVED, PENDING, REJECTED, Vault
from daemon.service.app import LEDGER_FILE


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    approve = commands.add_parser(
        "approve", help="approve a pending request (same as moving it to Approved/)"
    )
    add_vault(approve, state=True)
    approve.add_argument(
        "id",
        help="ID@version as the request shows it; a bare ID (or unique prefix) only while "
        "the request is unchanged since it was first issued",
    )
    approve.set_defaults(func=cmd_approve)

    reject = commands.add_parser(
        "reject", help="reject a pending request, with a reason, into Rejected/"
    )
    add_vault(reject, state=True)
    reject.add_argument("id", help="the request's id (a unique prefix is enough; @version too)")
    reject.add_argument("--reason", required=True, help="why; written into the note")
    reject.set_defaults(func=cmd_reject)


def cmd_approve(args: argparse.Namespace) -> int:
    vault = open_vault(args)
    hints = hints_of(args, vault)
    wanted, version = split_reference(args.id)
    with _ledger(vault, args) as ledger:
        task, loaded = pending_request(vault, ledger, wanted, hints)
        action = _action(vault, loaded, task)
        current = action.payload_hash()
        ref = reference(task.id, current)
        if current != task.payload_hash:
            raise VaultdError(
                f"{vault.relative(loaded.path)} changed since vaultd showed it as "
                f"{reference(task.id, task.payload_hash or '')}; nothing was approved. Let "
                f"vaultd re-render it (the daemon must run), read it, then approve that version"
            )
        versions = RequestVersions(ledger).of(task.id)
        issued = list(dict.fromkeys(v.payload_hash for v in versions)) or [current]
        if version is None and issued != [current]:
            chain = " → ".join(version_of(h) for h in issued)
            raise VaultdError(
                f"{task.id} changed since it was first requested (versions {chain}); nothing "
                f"was approved. Read it again, then run `{hints.command('approve', ref)}`"
            )
        if version is not None:
            try:
                meant = resolve(versions, version)
            except AmbiguousVersion:
                raise VaultdError(
                    f"version {version} of {task.id} names more than one payload vaultd "
                    "showed (someone made them collide); nothing was approved. Reject it and "
                    "ask for the task again"
                ) from None
            if meant != current:
                raise VaultdError(
                    f"{task.id} is at version {version_of(current)}, not {version}: it "
                    f"changed since you read it; nothing was approved. Read it again, then "
                    f"run `{hints.command('approve', ref)}`"
                )
        moved = _stamp_and_move(vault, loaded, "approved_version", current, APPROVED)
    print(f"approved {ref}: {vault.relative(loaded.path)} → {vault.relative(moved)}")
    for line in describe(action):
        print(f"  {line}")
    print("A running vaultd executes it now; otherwise the next `vaultd run` does.")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    reason = " ".join(str(args.reason).split())
    if not reason:
        raise VaultdError("--reason must say why the request is rejected")
    vault = open_vault(args)
    wanted, _version = split_reference(args.id)  # rejecting any version is safe
    with _ledger(vault, args) as ledger:
        task, loaded = pending_request(vault, ledger, wanted, hints_of(args, vault))
    moved = _stamp_and_move(vault, loaded, "rejection_reason", reason, REJECTED)
    print(f"rejected {task.id}: {vault.relative(loaded.path)} → {vault.relative(moved)} ({reason})")
    return 0


def _stamp_and_move(vault: Vault, loaded: Loaded, key: str, value: str, folder: str) -> Path:
    """Given a request read for a decision, write the decision's stamp into it and move it
    into `folder`; return where it landed. Raise VaultdError, deciding nothing, if the note
    changed since it was read."""
    stamped = notes.render(loaded.note, {**loaded.note.stamps, key: value})
    if not vault.write(loaded.path, stamped, loaded.signature):
        raise VaultdError(
            f"{vault.relative(loaded.path)} changed while it was being decided; nothing was "
            "decided. Read it again and run the command again"
        )
    return vault.move(loaded.path, folder)


def pending_request(vault: Vault, ledger: Ledger, wanted: str, hints: Hints) -> tuple[Task, Loaded]:
    """Given an id (or unique prefix), return the pending task and its note, read.

    The ledger names the task and the file vaultd put it in; that file must still be in
    Pending_Approval/ and carry the id. Raise NotFound (saying where the task is, if it is
    elsewhere) or VaultdError (listing the matches of an ambiguous prefix).
    """
    listing = hints.command("status")
    wanted = wanted.strip()
    if not wanted:
        raise NotFound(f"give the id of a request (`{listing}` lists them)")
    known = [task for task in ledger.find_tasks(wanted) if task.id.startswith(wanted)]
    exact = [task for task in known if task.id == wanted]
    pending = [task for task in (exact or known) if task.state == ledger_states.PENDING]
    if len(pending) > 1:
        listed = "\n".join(f"  {task.id}  {task.file}" for task in pending)
        raise VaultdError(f"{wanted!r} matches {len(pending)} pending requests:\n{listed}")
    if not pending:
        if exact or len(known) == 1:
            task = (exact or known)[0]
            raise NotFound(
                f"{task.id} is not waiting for approval: it is {task.state}, at {task.file}"
            )
        raise NotFound(f"no pending request with id {wanted!r} (`{listing}` lists them)")
    task = pending[0]
    path = vault.root / task.file
    if Path(task.file).parent.name != PENDING or not path.is_file():
        raise NotFound(
            f"{task.id}'s request is not in {PENDING}/ (vaultd last saw it at {task.file}); "
            "it may have been moved: let the daemon catch up, then try again"
        )
    try:
        loaded = read_task_file(path)
    except Unreadable as error:
        raise VaultdError(f"{task.file} {error}") from None
    if loaded.note.meta.get("id") != task.id:
        raise VaultdError(
            f"{task.file} no longer carries the id {task.id}; nothing was decided. Let the "
            "daemon look at it first"
        )
    return task, loaded


def _action(vault: Vault, loaded: Loaded, task: Task) -> Action:
    if loaded.note.meta.get("status") == "invalid":
        raise VaultdError(
            f"{task.id} ({vault.relative(loaded.path)}) is not valid, so it cannot be "
            f"approved: {loaded.note.meta.get('error')}. Fix the note first."
        )
    try:
        return validate_note(loaded.note)
    except ValidationFailed as error:
        raise VaultdError(
            f"{task.id} ({vault.relative(loaded.path)}) is not valid, so it cannot be "
            f"approved: {error}. Fix the note first."
        ) from None


def describe(action: Action) -> list[str]:
    """Given an action, return what it will do, in the words of the request: amount,
    platforms, text and partner."""
    if isinstance(action, SocialPost):
        lines = [f"{action.kind} to {', '.join(action.platforms)}"]
        lines.append(f"text: {action.text!r}")
        if action.link:
            lines.append(f"link: {action.link}")
        if action.in_reply_to or action.recipient:
            lines.append(f"to: {action.in_reply_to or action.recipient}")
        return lines
    if isinstance(action, OdooInvoice):
        partner = action.partner if action.partner is not None else f"id {action.partner_id}"
        return [
            f"invoice to {partner}: {action.total():,.2f} {action.currency}, "
            f"{len(action.lines)} line(s)"
        ]
    if isinstance(action, OdooPayment):
        lines = [f"payment of {action.amount:,.2f} against invoice {action.invoice}"]
        if action.partner:
            lines.append(f"partner: {action.partner}")
        return lines
    return [action.type]


@contextmanager
def _ledger(vault: Vault, args: argparse.Namespace) -> Iterator[Ledger]:
    path = state_dir_for(vault.root, getattr(args, "state_dir", None)) / LEDGER_FILE
    try:
        path.stat()
    except PermissionError:
        # An agent confined by `vaultd agents setup` lands here: the ledger is the person's.
        raise VaultdError(
            f"{path}: permission denied: this user cannot read vaultd's ledger, so it cannot "
            "decide on requests; nothing was decided"
        ) from None
    except OSError:
        pass
    if not path.is_file():
        raise NotFound(
            f"no pending request with id {args.id!r}: vaultd has not issued any request for "
            f"this vault yet (no ledger at {path}); pass --state-dir if the daemon runs "
            "with one"
        )
    opened = Ledger(path)
    try:
        yield opened
    finally:
        opened.close()
