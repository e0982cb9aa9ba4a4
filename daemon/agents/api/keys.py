"""API keys: `vaultd apikey create NAME` shows a key once; the ledger keeps only its hash.

A key is `vd_` plus 43 random URL-safe characters (256 bits), so a plain SHA-256 is the
right hash: there is nothing to brute-force. Lookups compare every stored hash in constant
time. A revoked key stays in the table (who had it, when it was revoked) and never works
again; its name can then be given to a new key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

from daemon.core.errors import NotFound, VaultdError
from daemon.core.ledger import Ledger
from daemon.core.timestamps import now_iso

PREFIX = "vd_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    groups      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name
    ON api_keys(name) WHERE revoked_at IS NULL;
"""


@dataclass(frozen=True)
class ApiKey:
    name: str
    groups: list[str]
    created_at: str
    revoked_at: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(text: str) -> bool:
    return text.startswith(PREFIX)


class ApiKeyStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        ledger.ensure_schema(SCHEMA)

    def create(self, name: str, groups: list[str]) -> str:
        """Store a new key under this name; return the key itself (it is not kept).

        Raise VaultdError if the name or a group is not a plain word, or if an active key
        already has this name.
        """
        for word in (name, *groups):
            if not NAME.match(word):
                raise VaultdError(
                    f"{word!r}: names and groups are 1-64 letters, digits, or . _ @ -"
                )
        if self.active(name) is not None:
            raise VaultdError(f"an API key named {name!r} exists; revoke it first")
        key = PREFIX + secrets.token_urlsafe(32)
        with self.ledger.transaction(durable=True) as db:
            db.execute(
                "INSERT INTO api_keys (name, key_hash, groups, created_at) VALUES (?, ?, ?, ?)",
                (name, hash_key(key), json.dumps(sorted(set(groups))), now_iso()),
            )
        return key

    def revoke(self, name: str) -> ApiKey:
        """Revoke the active key of this name and return it. Raise NotFound if none."""
        with self.ledger.transaction(durable=True) as db:
            changed = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (now_iso(), name),
            ).rowcount
        if not changed:
            raise NotFound(f"no active API key named {name!r} (vaultd apikey list shows them)")
        return self.listed(name=name)[0]

    def active(self, name: str) -> ApiKey | None:
        found = [key for key in self.listed(name=name) if not key.revoked]
        return found[0] if found else None

    def listed(self, *, name: str | None = None) -> list[ApiKey]:
        """Return the keys (newest first), revoked ones included."""
        query, args = "SELECT * FROM api_keys", []
        if name is not None:
            query, args = query + " WHERE name = ?", [name]
        rows = self.ledger.rows(query + " ORDER BY id DESC", args)
        return [_key(row) for row in rows]

    def find(self, key: str) -> ApiKey | None:
        """Return the key record this key matches (revoked or not), or None."""
        wanted = hash_key(key)
        found = None
        for row in self.ledger.rows("SELECT * FROM api_keys"):
            # Every row is compared, in constant time, whether or not one matched already.
            if hmac.compare_digest(row["key_hash"], wanted):
                found = row
        return _key(found) if found is not None else None


def _key(row: dict[str, object]) -> ApiKey:
    return ApiKey(
        name=str(row["name"]),
        groups=list(json.loads(str(row["groups"]))),
        created_at=str(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else str(row["revoked_at"]),
    )
