"""The versions of an approval request: what a person is asked to approve, and what changed.

A request's version is a short form of its payload hash, shown as `ID@version`. Every
version vaultd issues for a task is kept in the ledger with its payload, so a request whose
payload an agent (or a person) changed while it waited says so at the top: when, since
which version, and each changed field as old → new. `vaultd approve ID` approves only a
request that never changed; `vaultd approve ID@version` approves only that version.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from daemon.ledger import Ledger
from daemon.timestamps import now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS request_versions (
    task_id      TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    payload      TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    PRIMARY KEY (task_id, payload_hash)
);
"""
VERSION_LENGTH = 8


def version_of(payload_hash: str) -> str:
    """Given a payload hash (`sha256:…`), return its short form, the request's version."""
    return payload_hash.removeprefix("sha256:")[:VERSION_LENGTH]


def reference(task_id: str, payload_hash: str) -> str:
    """Return `ID@version`, what a person approves."""
    return f"{task_id}@{version_of(payload_hash)}"


def split_reference(text: str) -> tuple[str, str | None]:
    """Given `ID` or `ID@version`, return (id, version or None)."""
    task_id, _, version = text.strip().partition("@")
    return task_id, (version or None)


@dataclass(frozen=True)
class Version:
    payload_hash: str
    payload: dict[str, Any]
    requested_at: str

    @property
    def short(self) -> str:
        return version_of(self.payload_hash)


class RequestVersions:
    """The request versions of every task, in the ledger's database."""

    def __init__(self, ledger: Ledger, *, create: bool = True) -> None:
        """`create=False` for a ledger opened read-only (`vaultd status`)."""
        self.ledger = ledger
        if create:
            ledger.ensure_schema(SCHEMA)

    def issue(self, task_id: str, payload_hash: str, payload: dict[str, Any]) -> None:
        """Record that vaultd showed this version of the task to a person (once)."""
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        with self.ledger.transaction(durable=True) as db:
            db.execute(
                "INSERT OR IGNORE INTO request_versions VALUES (?, ?, ?, ?)",
                (task_id, payload_hash, text, now_iso()),
            )

    def of(self, task_id: str) -> list[Version]:
        """Return every version issued for a task, first first."""
        try:
            rows = self.ledger.rows(
                "SELECT * FROM request_versions WHERE task_id = ? ORDER BY requested_at, rowid",
                (task_id,),
            )
        except sqlite3.OperationalError:  # a ledger from before versions: none recorded
            return []
        return [
            Version(row["payload_hash"], json.loads(row["payload"]), row["requested_at"])
            for row in rows
        ]


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Given two payloads, return (field, old, new) for each field that differs, with
    nested fields named by path (`lines[0].price_unit`)."""
    old, new = _flatten(before), _flatten(after)
    return [
        (name, old.get(name, "(none)"), new.get(name, "(none)"))
        for name in sorted(set(old) | set(new), key=_order(old, new))
        if old.get(name) != new.get(name)
    ]


def banner(first: Version, now_hash: str, now_payload: dict[str, Any], at: str) -> str:
    """Return the notice a changed request opens with."""
    listed = "; ".join(
        f"{name}: {old} → {new}" for name, old, new in changes(first.payload, now_payload)
    )
    return (
        f"Changed at {at} since first requested at {first.requested_at} (version "
        f"{first.short} → {version_of(now_hash)}): {listed or 'no field differs'}. "
        f"Approve only what you read below, as version {version_of(now_hash)}."
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat or {prefix: "[]"}
    return {prefix: json.dumps(value, ensure_ascii=False, default=str)}


def _order(old: dict[str, str], new: dict[str, str]) -> Any:
    keys = list(old) + [k for k in new if k not in old]
    return keys.index
