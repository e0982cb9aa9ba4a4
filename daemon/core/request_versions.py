"""The versions of an approval request: what a person is asked to approve, and what changed.

A request's version is a short form of its payload hash, shown as `ID@version`. Every
version vaultd issues for a task is kept in the ledger with its payload and the notice it
showed, so that:
- a request whose payload changed while it waited opens with a banner (when, since which
  version, each changed field as old → new), computed from the ledger each time it is
  rendered, never read back from the note an agent can edit;
- `vaultd approve ID` approves only a request of which one version was ever issued, and
  `vaultd approve ID@version` resolves the short version to the one full hash issued with
  it, and approves only if that is the current payload (a short version two issued
  payloads share, which an agent can grind for, is refused as ambiguous).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from daemon.core.ledger import Ledger
from daemon.core.timestamps import now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS request_versions (
    task_id      TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    payload      TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    notice       TEXT,
    PRIMARY KEY (task_id, payload_hash)
);
"""
# 48 bits: what a person reads and types. Approval never trusts it alone (see `resolve`).
VERSION_LENGTH = 12


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


class AmbiguousVersion(Exception):
    """Two payloads issued for one task share the short version a person typed."""


@dataclass(frozen=True)
class Version:
    payload_hash: str
    payload: dict[str, Any]
    requested_at: str
    notice: str | None = None

    @property
    def short(self) -> str:
        return version_of(self.payload_hash)


@dataclass(frozen=True)
class Changed:
    """What the banner of a changed request says."""

    at: str
    first_at: str
    chain: str
    fields: list[tuple[str, str, str]]


class RequestVersions:
    """The request versions of every task, in the ledger's database."""

    def __init__(self, ledger: Ledger, *, create: bool = True) -> None:
        """`create=False` for a ledger opened read-only (`vaultd status`)."""
        self.ledger = ledger
        if create:
            ledger.ensure_schema(SCHEMA)
            columns = {row["name"] for row in ledger.rows("PRAGMA table_info(request_versions)")}
            if "notice" not in columns:  # a ledger from this feature's first cut
                ledger.ensure_schema("ALTER TABLE request_versions ADD COLUMN notice TEXT;")

    def issue(
        self, task_id: str, payload_hash: str, payload: dict[str, Any], notice: str | None
    ) -> None:
        """Record that vaultd showed this version of the task, with this notice."""
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        with self.ledger.transaction(durable=True) as db:
            db.execute(
                "INSERT INTO request_versions VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (task_id, payload_hash) DO UPDATE SET notice = excluded.notice",
                (task_id, payload_hash, text, now_iso(), notice),
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
            Version(
                row["payload_hash"],
                json.loads(row["payload"]),
                row["requested_at"],
                row.get("notice"),
            )
            for row in rows
        ]


def resolve(versions: list[Version], short: str) -> str | None:
    """Given a task's versions and a short version a person typed, return the full hash
    issued with it, or None if none was. Raise AmbiguousVersion if several share it."""
    found = {v.payload_hash for v in versions if v.short == short.strip().lower()}
    if len(found) > 1:
        raise AmbiguousVersion(short)
    return found.pop() if found else None


def changed(versions: list[Version], current_hash: str) -> Changed | None:
    """Given a task's versions and the payload now shown, return the banner's content, or
    None if only this one version was ever issued."""
    current = next((v for v in versions if v.payload_hash == current_hash), None)
    if current is None or len(versions) < 2:
        return None
    first = versions[0]
    shown = [v.short for v in versions]
    if shown[-1] != current.short:  # changed, then changed back to an earlier version
        shown.append(current.short)
    return Changed(
        at=max(v.requested_at for v in versions),
        first_at=first.requested_at,
        chain=" → ".join(shown),
        fields=changes(first.payload, current.payload),
    )


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Given two payloads, return (field, old, new) for each field that differs, with
    nested fields named by path (`lines[0].price_unit`)."""
    old, new = _flatten(before), _flatten(after)
    return [
        (name, old.get(name, "(none)"), new.get(name, "(none)"))
        for name in sorted(set(old) | set(new), key=_order(old, new))
        if old.get(name) != new.get(name)
    ]


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
