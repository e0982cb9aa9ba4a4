"""Odoo's LIKE operators, as the stand-in Odoo evaluates them in a search domain.

Odoo turns `=like`/`=ilike` into SQL `LIKE`/`ILIKE` with the value as the pattern, and
`like`/`ilike` into the same with the value wrapped in `%...%` and NOT escaped (so `%` and
`_` typed into a search are wildcards there too). PostgreSQL's LIKE: `%` is any run of
characters, `_` any one, and `\\` makes the next character literal; a pattern ending in `\\`
is an error.
"""

from __future__ import annotations

import re
from typing import Any

LIKE_OPERATORS = ("=like", "=ilike", "like", "ilike")


class LikeError(ValueError):
    """The pattern is not one PostgreSQL accepts."""


def like(operator: str, value: Any, actual: Any) -> bool:
    """Given a LIKE operator, a domain value and a field's value, return whether it matches.

    A field that holds no text (False) matches nothing. Raise LikeError for a bad pattern.
    """
    pattern = str(value) if operator.startswith("=") else f"%{value}%"
    return isinstance(actual, str) and sql_like(pattern, actual, operator.endswith("ilike"))


def sql_like(pattern: str, text: str, ignore_case: bool) -> bool:
    """Given a SQL LIKE pattern and a text, return whether the whole text matches it.

    Raise LikeError, with PostgreSQL's message, for a pattern ending in the escape character.
    """
    regex, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise LikeError(
                    "psycopg2.errors.InvalidEscapeSequence: LIKE pattern must not end with "
                    "escape character"
                )
            regex.append(re.escape(escaped))
        else:
            regex.append({"%": ".*", "_": "."}.get(char) or re.escape(char))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch("".join(regex), text, flags) is not None
