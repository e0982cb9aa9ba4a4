"""Values put into URL paths: each one percent-quoted into exactly one path segment.

An id read from a task file, the environment or a service's answer is data, never a path:
`urllib.parse.quote(value, safe="")` turns `/`, `?`, `#` and `%` into escapes, so
`"<page>/feed#"` stays the one (unknown) object it names instead of becoming the page feed.
Quoting cannot help "." and "..": a client or server removes them as dot-segments, so they
are refused. The models already accept only the services' id formats; this is the second
line (design §3: agents can write any value into a task).
"""

from __future__ import annotations

from urllib.parse import quote

from daemon.core.errors import PermanentError

_DOT_SEGMENTS = ("", ".", "..")


def segment(value: object) -> str:
    """Given a value for one URL path segment, return it percent-quoted (nothing kept as is).

    Raise PermanentError if it is empty, "." or "..", which no quoting keeps in its segment.
    """
    text = str(value)
    if text in _DOT_SEGMENTS:
        raise PermanentError(f"{text!r} cannot be put into a URL path as an id")
    return quote(text, safe="")


def path(*parts: object) -> str:
    """Given the parts of a URL path, return them quoted one segment each, joined by "/".

    Raise PermanentError if a part is empty, "." or "..".
    """
    return "/".join(segment(part) for part in parts)
