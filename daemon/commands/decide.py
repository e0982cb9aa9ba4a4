"""`vaultd approve` and `vaultd reject`: a person's decision, same as moving the note."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon import notes
from daemon.commands.common import hints_of, open_vault
from daemon.errors import NotFound, VaultdError
from daemon.taskfile import Unreadable, read_task_file
from daemon.vault import (
    APPROVED,
    PENDING,
    PIPELINE_FOLDERS,
    REJECTED,
    Vault,
    is_sync_conflict,
)


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    approve = commands.add_parser(
        "approve", help="approve a pending request (same as moving it to Approved/)"
    )
    add_vault(approve)
    approve.add_argument("id", help="the request's id (a unique prefix is enough)")
    approve.set_defaults(func=cmd_approve)

    reject = commands.add_parser(
        "reject", help="reject a pending request, with a reason, into Rejected/"
    )
    add_vault(reject)
    reject.add_argument("id", help="the request's id (a unique prefix is enough)")
    reject.add_argument("--reason", required=True, help="why; written into the note")
    reject.set_defaults(func=cmd_reject)


def cmd_approve(args: argparse.Namespace) -> int:
    vault = open_vault(args)
    task_id, path, meta = find_request(vault, args.id, hints_of(args, vault).command("status"))
    if meta.get("status") == "invalid":
        raise VaultdError(
            f"{task_id} ({vault.relative(path)}) is not valid, so it cannot be approved: "
            f"{meta.get('error')}. Fix the note first."
        )
    moved = vault.move(path, APPROVED)
    print(
        f"approved {task_id}: {vault.relative(path)} → {vault.relative(moved)}. "
        "A running vaultd executes it now; otherwise the next `vaultd run` does."
    )
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    reason = " ".join(str(args.reason).split())
    if not reason:
        raise VaultdError("--reason must say why the request is rejected")
    vault = open_vault(args)
    task_id, path, _ = find_request(vault, args.id, hints_of(args, vault).command("status"))
    try:
        loaded = read_task_file(path)
    except Unreadable as error:
        raise VaultdError(f"{vault.relative(path)} {error}") from None
    text = notes.render(loaded.note, {**loaded.note.stamps, "rejection_reason": reason})
    if not vault.write(path, text, loaded.signature):
        raise VaultdError(
            f"{vault.relative(path)} changed while it was being rejected; run the command again"
        )
    moved = vault.move(path, REJECTED)
    print(f"rejected {task_id}: {vault.relative(path)} → {vault.relative(moved)} ({reason})")
    return 0


def find_request(
    vault: Vault, wanted: str, status_command: str = "vaultd status"
) -> tuple[str, Path, dict[str, Any]]:
    """Return (id, path, frontmatter) of the pending request with this id or unique prefix.
    `status_command` is the command that lists them, named in the errors.

    Raise NotFound if none has it (saying where the task is, if it is elsewhere), and
    VaultdError listing the matches if the prefix fits several.
    """
    wanted = wanted.strip()
    if not wanted:
        raise NotFound(f"give the id of a request (`{status_command}` lists them)")
    matches = [
        (task_id, path, meta)
        for task_id, path, meta in _notes_with_ids(vault, PENDING)
        if task_id.startswith(wanted)
    ]
    exact = [match for match in matches if match[0] == wanted]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if matches:
        listed = "\n".join(f"  {task_id}  {vault.relative(path)}" for task_id, path, _ in matches)
        raise VaultdError(f"{wanted!r} matches {len(matches)} pending requests:\n{listed}")
    for folder in PIPELINE_FOLDERS:
        if folder == PENDING:
            continue
        for task_id, path, _ in _notes_with_ids(vault, folder):
            if task_id == wanted or (len(wanted) >= 6 and task_id.startswith(wanted)):
                raise NotFound(
                    f"{task_id} is not waiting for approval: it is already at "
                    f"{vault.relative(path)}"
                )
    raise NotFound(
        f"no pending request with id {wanted!r} in {PENDING}/ (`{status_command}` lists them)"
    )


def _notes_with_ids(vault: Vault, folder: str) -> list[tuple[str, Path, dict[str, Any]]]:
    found = []
    for path in vault.files(folder):
        if is_sync_conflict(path.name) or path.suffix.lower() != ".md":
            continue
        try:
            meta = read_task_file(path).note.meta
        except Unreadable:
            continue
        task_id = meta.get("id")
        if isinstance(task_id, str):
            found.append((task_id, path, meta))
    return found
