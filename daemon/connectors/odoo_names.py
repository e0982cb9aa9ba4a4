"""Finding Odoo records by a name a task gives: that very name, never a pattern.

Odoo's `=ilike` (like `ilike`, `=like` and `like`) is SQL LIKE: `%` and `_` in the value are
wildcards and `\\` escapes, so `partner: "A%"` would find Acme Corp. Here a name is sent
with all three escaped, and "the same name" means the same text ignoring case: Odoo's
escaped `=ilike` finds the candidates, and each is checked again here with `str.casefold`,
so a server that also ignores accents (Odoo's `unaccent`) cannot widen the match.

A name that several records carry is never settled by picking one: the policy asks a person
(`partner_candidates`, rule `ambiguous_partner`), and execution refuses with the ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from daemon.core.errors import PermanentError

# search_read(model, domain, fields) -> records, as OdooConnector.search_read does it.
SearchRead = Callable[[str, list[Any], list[str]], list[dict[str, Any]]]
# How many records an error message or approval request lists by id and name.
SHOWN = 10


def escape_like(value: str) -> str:
    """Given a name, return it as a LIKE pattern that matches only itself (`\\ % _` escaped)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def name_is(field: str, value: str) -> list[Any]:
    """Given a field and a name, return the Odoo domain leaf "field is this name, any case"."""
    return [field, "=ilike", escape_like(value)]


def same_name(found: Any, wanted: str) -> bool:
    """Given a record's name and the name asked for, return whether they are the same text
    ignoring case (False for a missing name)."""
    return isinstance(found, str) and found.casefold() == wanted.casefold()


def named(
    search_read: SearchRead,
    model: str,
    value: str,
    *,
    field: str = "name",
    fields: Sequence[str] = (),
    domain: Sequence[Any] = (),
) -> list[dict[str, Any]]:
    """Given a model and a name, return the records carrying exactly that name (any case),
    within `domain`, with `field` and `fields` read. Raise ConnectorError if Odoo cannot be
    read."""
    found = search_read(model, [name_is(field, value), *domain], [field, *fields])
    return [record for record in found if same_name(record.get(field), value)]


def listed(records: Sequence[dict[str, Any]], field: str = "name") -> str:
    """Given records, return them as "#id name, ..." (at most SHOWN, then how many more)."""
    shown = [f"#{r['id']} {_one_line(r.get(field))}" for r in records[:SHOWN]]
    if len(records) > SHOWN:
        shown.append(f"and {len(records) - SHOWN} more")
    return ", ".join(shown)


def candidates(records: Sequence[dict[str, Any]]) -> tuple[tuple[int, str], ...]:
    """Given the records a name matches, return them as (id, name) pairs for the policy."""
    return tuple((int(r["id"]), _one_line(r.get("name"))) for r in records)


def find_partners(
    search_read: SearchRead, partner: str | None, partner_id: int | None
) -> list[dict[str, Any]]:
    """Given an invoice's partner name or id, return the partners it names (by id: at most
    one). Raise ConnectorError if Odoo cannot be read."""
    if partner_id:
        return search_read("res.partner", [["id", "=", partner_id]], ["name"])
    return named(search_read, "res.partner", partner or "")


def one_partner(partners: Sequence[dict[str, Any]], partner: str | None) -> int | None:
    """Given the partners a name matched, return the one's id, or None if there is none.

    Raise PermanentError if there are several: vaultd never picks one of them.
    """
    if len(partners) > 1:
        raise PermanentError(
            f"Odoo has {len(partners)} partners named {partner!r} ({listed(partners)}); "
            "vaultd will not pick one: give partner_id instead"
        )
    return int(partners[0]["id"]) if partners else None


def product_id(search_read: SearchRead, product: str) -> int:
    """Given a product's internal reference or name, return its id; an exact reference wins.

    Raise PermanentError if no product, or several, carry it; ConnectorError if Odoo cannot
    be read.
    """
    domain = ["|", ["default_code", "=", product], name_is("name", product)]
    found = search_read("product.product", domain, ["name", "default_code"])
    by_code = [p for p in found if p.get("default_code") == product]
    matches = by_code or [p for p in found if same_name(p.get("name"), product)]
    if not matches:
        raise PermanentError(f"Odoo has no product named or coded {product!r}")
    if len(matches) > 1:
        raise PermanentError(
            f"Odoo has {len(matches)} products named {product!r} ({listed(matches)}); "
            "use its internal reference"
        )
    return int(matches[0]["id"])


def journal_id(search_read: SearchRead, journal: str) -> int:
    """Given a bank or cash journal's name, return its id.

    Raise PermanentError if no such journal, or several, carry it; ConnectorError if Odoo
    cannot be read.
    """
    journals = named(
        search_read, "account.journal", journal, domain=[["type", "in", ["bank", "cash"]]]
    )
    if len(journals) != 1:
        several = f" ({listed(journals)})" if journals else ""
        raise PermanentError(f"Odoo has no single bank or cash journal {journal!r}{several}")
    return int(journals[0]["id"])


def _one_line(name: Any) -> str:
    """Given a record's name, return it on one line, at most 80 characters."""
    text = " ".join(str(name or "").split())
    return text if len(text) <= 80 else text[:79] + "…"
