"""Named crash points for the crash tests.

`VAULTD_FAILPOINT=after-intent` (a comma-separated list of names) makes the process kill
itself with SIGKILL when it reaches that point, exactly as a power cut or OOM kill would.
The points, in the order a call meets them: `before-intent`, `after-intent`, `mid-call`
(inside a connector's two-write call, after the first write: an Odoo invoice created as a
draft and not yet posted, a payment wizard created and not yet run), `after-call` (the
service answered, DONE not yet recorded), `after-done`, and `mid-move` (the note half moved).
With `VAULTD_FAILPOINT_ONCE=<file>` each point fires once per key (the call's marker, or the
file's name for `mid-move`): the file remembers what already fired, so a test can restart
the daemon with the same environment until every action has crashed once and then finished.

In-process tests call `arm(...)` instead; an armed point then raises `Crashed`, which no
handler in vaultd catches, so the test can drop the app and open it again as a restart.
Only tests arm points; unarmed, `hit` costs one set lookup.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

POINTS = ("before-intent", "after-intent", "mid-call", "after-call", "after-done", "mid-move")


class Crashed(BaseException):
    """Raised at an armed point in-process: the stand-in for a power cut."""


@dataclass
class _Armed:
    points: frozenset[str] = frozenset()
    once_file: Path | None = None  # SIGKILL mode: what already fired, across restarts
    raise_: bool = False  # in-process mode: raise Crashed instead of killing
    once: bool = True
    fired: set[str] = field(default_factory=set)


_state = _Armed()


def load_environment() -> None:
    """Arm the points VAULTD_FAILPOINT names, in SIGKILL mode (done at import; again by a
    process forked after its environment was set, as the suite's fork server does)."""
    once = os.environ.get("VAULTD_FAILPOINT_ONCE")
    _state.points = frozenset(filter(None, os.environ.get("VAULTD_FAILPOINT", "").split(",")))
    _state.once_file = Path(once) if once else None
    _state.raise_, _state.once = False, True
    _state.fired.clear()


load_environment()


def arm(points: Iterable[str], *, once: bool = True) -> None:
    """Arm points in this process: each raises Crashed (once per key if `once`)."""
    unknown = set(points) - set(POINTS)
    if unknown:
        raise ValueError(f"unknown failpoint(s): {', '.join(sorted(unknown))}")
    _state.points, _state.raise_, _state.once, _state.once_file = (
        frozenset(points),
        True,
        once,
        None,
    )
    _state.fired.clear()


def disarm() -> None:
    _state.points, _state.raise_ = frozenset(), False
    _state.fired.clear()


def hit(name: str, key: str = "") -> None:
    if name not in _state.points:
        return
    fired = f"{name} {key}"
    if _state.raise_:
        if _state.once and fired in _state.fired:
            return
        _state.fired.add(fired)
        raise Crashed(fired)
    if _state.once_file is not None and not _first_time(_state.once_file, fired):
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _first_time(record: Path, fired: str) -> bool:
    """Return whether `fired` is new, and remember it durably before the kill."""
    seen = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
    if fired in seen:
        return False
    with record.open("a", encoding="utf-8") as out:
        out.write(fired + "\n")
        out.flush()
        os.fsync(out.fileno())
    return True
