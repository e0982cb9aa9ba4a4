"""Named crash points for the crash tests.

`VAULTD_FAILPOINT=after-intent` (a comma-separated list of names) makes the process kill
itself with SIGKILL when it reaches that point, exactly as a power cut or OOM kill would.
Only tests set it; unset, `hit` costs one set lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("before-intent", "after-intent", "after-call", "after-done", "mid-move")
_armed = frozenset(filter(None, os.environ.get("VAULTD_FAILPOINT", "").split(",")))


def hit(name: str) -> None:
    if name in _armed:
        os.kill(os.getpid(), signal.SIGKILL)
