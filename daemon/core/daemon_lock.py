"""One daemon per state directory: an exclusive lock that `vaultd run` holds while it runs.

The lock is `flock(2)` on `<state>/daemon.lock`, so the kernel drops it when the process
ends, however it ends (kill -9 included): there is no stale lock to clean up. The file also
says who holds it (pid, since when, dry-run or live), for the refusal message and for
`vaultd status`. The holder writes that only once it has the lock, so a reader that finds
the lock taken but the file not yet written still knows a daemon runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from daemon.core.errors import VaultdError
from daemon.core.timestamps import now_iso

LOCK_FILE = "daemon.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a state directory's lock, as it wrote itself down."""

    pid: int | None
    since: str | None
    mode: str | None
    host: str | None = None

    def describe(self) -> str:
        """Return "pid N, since T, dry-run" (whatever of it is known)."""
        parts = [
            f"pid {self.pid}" if self.pid else "pid unknown",
            f"since {self.since}" if self.since else None,
            self.mode,
            f"on {self.host}" if self.host and self.host != socket.gethostname() else None,
        ]
        return ", ".join(p for p in parts if p)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "since": self.since, "mode": self.mode, "host": self.host}


class AlreadyRunning(VaultdError):
    """Another vaultd holds the lock of this state directory."""

    def __init__(self, holder: Holder) -> None:
        super().__init__(f"another vaultd ({holder.describe()}) runs on this vault")
        self.holder = holder


class DaemonLock:
    """The exclusive lock of one state directory, held until `release` or the process ends."""

    def __init__(self, handle: IO[str], path: Path) -> None:
        self._handle = handle
        self.path = path

    @classmethod
    def acquire(cls, state_dir: Path, *, mode: str) -> DaemonLock:
        """Given a state directory and the daemon's mode ("dry-run" or "live"), return its
        lock, held. Raise AlreadyRunning, naming the holder, if another process has it."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(handle)
            handle.close()
            raise AlreadyRunning(holder) from None
        except BaseException:
            handle.close()
            raise
        record = {
            "pid": os.getpid(),
            "since": now_iso(),
            "mode": mode,
            "host": socket.gethostname(),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        return cls(handle, path)

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if not self._handle.closed:
            self._handle.close()


def holder_of(state_dir: Path) -> Holder | None:
    """Given a state directory, return who runs a daemon on it, or None if nobody does.

    Taking the lock shared, for an instant, tells whether anyone holds it exclusively.
    """
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(handle)
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _read(handle: IO[str]) -> Holder:
    """Return what the holder wrote into the lock file; what cannot be read is unknown."""
    try:
        handle.seek(0)
        data = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid = data.get("pid")
    return Holder(
        pid=pid if isinstance(pid, int) else None,
        since=str(data["since"]) if data.get("since") else None,
        mode=str(data["mode"]) if data.get("mode") else None,
        host=str(data["host"]) if data.get("host") else None,
    )
