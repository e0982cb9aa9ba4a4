"""What makes two actions the same, for the repeat rule and the auto-approval budgets.

Approval stays bound to the exact `Action.payload_hash`: a person approves these very
bytes. The repeat rule ("the very same action already ran") must not be fooled by text
that looks the same but is not byte for byte the same, so it compares `repeat_hash`
instead: the payload with every string NFKC-normalised, stripped of format characters
(Unicode category Cf: zero-width spaces and joiners, bidi marks, the BOM) and variation
selectors, casefolded, its whitespace collapsed to single spaces; amounts as numbers
(99.990 is 99.99), times in UTC, and the order of platforms and invoice lines ignored.
Such a hash may call two different actions the same; that only makes a person look.

Budgets count money per payee (`payees`) and posts per platform (`platforms`).
Everything here is pure: no I/O, the same action gives the same keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from decimal import Decimal
from typing import Any

from daemon.core.models import Action, OdooInvoice, OdooPayment, SocialPost

# Variation selectors (category Mn, so not Cf) change how a glyph looks, not the text.
_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")


def normal_text(text: str) -> str:
    """Given a string, return it as the repeat rule compares it.

    NFKC (a non-breaking space becomes a space, NFD becomes NFC), no format characters or
    variation selectors, casefolded, runs of whitespace collapsed to one space, stripped.
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    text = _VARIATION_SELECTORS.sub("", text)
    # Removing characters can leave a sequence that composes, and casefolding can undo NFKC.
    text = unicodedata.normalize("NFKC", text.casefold())
    return " ".join(text.split())


def repeat_hash(action: Action) -> str:
    """Given an action, return "sha256:<hex>" of its normalised payload (see the module)."""
    canonical = json.dumps(
        _normal(action.model_dump(mode="python", exclude_none=True)),
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def payees(action: Action) -> list[tuple[str, str]]:
    """Given an action, return (key, label) for each payee whose daily budget it draws on.

    An invoice draws on its partner's (by normalised name, or by id: "partner #7" is not
    matched with a name). A payment draws on its invoice's and, if it names one, on its
    partner's: the invoice is what Odoo checked; a partner's name on a payment is the agent's
    word. A post moves no money and has none.
    """
    found: list[tuple[str, str]] = []
    if isinstance(action, OdooPayment):
        found.append((f"invoice:{normal_text(str(action.invoice))}", f"invoice {action.invoice}"))
        if action.partner:
            found.append((f"partner:{normal_text(action.partner)}", action.partner))
    elif isinstance(action, OdooInvoice):
        if action.partner:
            found.append((f"partner:{normal_text(action.partner)}", action.partner))
        else:
            found.append((f"partner_id:{action.partner_id}", f"partner #{action.partner_id}"))
    return found


def platforms(action: Action) -> list[str]:
    """Given an action, return the platforms it posts to (none for Odoo actions), sorted."""
    return sorted(action.platforms) if isinstance(action, SocialPost) else []


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        items = [_normal(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, str):
        return normal_text(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, int):
        return str(value)  # invoice: 42 and invoice: "42" name the same invoice
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
