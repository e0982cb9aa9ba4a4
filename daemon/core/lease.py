"""One executor per vault, across machines: the lease `<vault>/.vaultd/executor.json`.

The state directory's lock (daemon_lock) keeps one daemon per state directory, but a vault
synced to other machines has a state directory, and a ledger, on each: a second machine's
daemon takes the first one's notes in flight for forgeries, asks again, and what a person
approves then runs twice. So the vault carries a lease naming the one machine that
executes: its machine id (a UUID kept in the state directory), host name, pid, mode, since
when, and a heartbeat rewritten every `[daemon] lease_heartbeat_seconds`.

- No lease: the first daemon claims it atomically (a hard link of a complete temp file,
  which fails if the name exists), so of two daemons started at once exactly one wins.
- A lease naming this machine (after a restart or a crash): this daemon takes it again.
- A lease naming another machine, or one that cannot be read: this daemon processes no
  file and writes nothing into the vault, however old the heartbeat. A clock cannot tell
  a dead machine from a laptop that sleeps with notes in flight; only a person can
  (`vaultd run --take-over`).
- The executor checks the lease before every file (one stat; the file is read again only
  when it changed) and stops at once when it no longer names it.

Every write is atomic (temp file, fsync, rename). Between daemons on one filesystem the
check and the write happen under an flock on the `.vaultd/` folder, so a heartbeat never
overwrites a take-over made a moment before; across machines the sync tool is the only
channel, and a person takes over only a machine that is stopped or gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from daemon.core.errors import VaultdError, VaultError
from daemon.core.timestamps import now_iso

log = logging.getLogger(__name__)

LEASE_DIR = ".vaultd"
LEASE_FILE = "executor.json"
MACHINE_ID_FILE = "machine_id"
# A lease is a few hundred bytes; anything much larger is not one.
MAX_LEASE_BYTES = 64 * 1024

Signature = tuple[int, int, int]  # inode, size, mtime_ns


@dataclass(frozen=True)
class LeaseRecord:
    """What a vault's executor lease says; only `problem` is set when it cannot be read."""

    machine_id: str | None
    host: str | None = None
    pid: int | None = None
    mode: str | None = None
    since: str | None = None
    heartbeat: str | None = None
    # Made afresh by each claim: tells this daemon's lease from any other, its own
    # machine's previous one included.
    claim: str | None = None
    problem: str | None = None

    def describe(self, show: Callable[[str], str] = str) -> str:
        """Return "machine ID (host, pid N, since T, heartbeat T)", or why it is unreadable;
        `show` writes the times."""
        if self.problem:
            return f"an unreadable lease ({self.problem})"
        details = [
            self.host,
            f"pid {self.pid}" if self.pid else None,
            f"since {show(self.since)}" if self.since else None,
            f"heartbeat {show(self.heartbeat)}" if self.heartbeat else None,
        ]
        return f"machine {self.machine_id} ({', '.join(d for d in details if d)})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LeaseProblem(VaultdError):
    """The state directory's machine id cannot be read: its lease could not be told apart."""


def lease_path(vault_root: Path) -> Path:
    """Given a vault, return where its executor lease lives."""
    return vault_root / LEASE_DIR / LEASE_FILE


def machine_id(state_dir: Path, *, create: bool = True) -> str | None:
    """Given a state directory, return its machine id, made and kept there on first use.

    Return None if it has none and `create` is False. Raise LeaseProblem if the file holds
    something else than a UUID (a new one would disown the lease this machine holds).
    """
    path = state_dir / MACHINE_ID_FILE
    if create and not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / f".{MACHINE_ID_FILE}-{secrets.token_hex(6)}.tmp"
        try:
            tmp.write_text(f"{uuid.uuid4()}\n", encoding="utf-8")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # never replaces one made a moment ago
        finally:
            tmp.unlink(missing_ok=True)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise LeaseProblem(
            f"{path}: not a machine id (a UUID); restore it, or delete it and run "
            "`vaultd run --take-over`"
        ) from None


def read_lease(vault_root: Path) -> LeaseRecord | None:
    """Given a vault, return its executor lease, or None if it has none.

    A lease that cannot be read comes back with only `problem` set: it still names nobody
    who may execute, so it blocks every daemon but one a person tells to take over.
    """
    try:
        fd = os.open(lease_path(vault_root), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(MAX_LEASE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:  # a folder or a symlink in its place, an I/O error
        return LeaseRecord(None, problem=error.strerror or str(error))
    try:
        data = json.loads(raw) if len(raw) <= MAX_LEASE_BYTES else None
    except ValueError:
        return LeaseRecord(None, problem="not JSON")
    if not isinstance(data, dict) or not isinstance(data.get("machine_id"), str):
        return LeaseRecord(None, problem="it names no machine id")
    texts = {k: str(data[k]) for k in ("host", "mode", "since", "heartbeat", "claim") if k in data}
    pid = data.get("pid")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
    return LeaseRecord(machine_id=str(data["machine_id"]), pid=pid, **texts)


def _signature(path: Path) -> Signature | None:
    try:
        found = path.lstat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


class ExecutorLease:
    """This daemon's side of a vault's executor lease: claim it, keep it, notice losing it."""

    def __init__(
        self,
        vault_root: Path,
        state_dir: Path,
        *,
        mode: str,
        heartbeat_seconds: float = 30,
        take_over_hint: str = "vaultd run --take-over",
    ) -> None:
        self.vault_root = vault_root
        self.path = lease_path(vault_root)
        self.machine_id = machine_id(state_dir) or ""
        self.mode = mode
        self.heartbeat_seconds = heartbeat_seconds
        self.take_over_hint = take_over_hint
        # Set when another daemon took the lease while this one held it.
        self.lost = threading.Event()
        self._mutex = threading.RLock()
        self._record: LeaseRecord | None = None
        self._seen: Signature | None = None
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None

    def claim(self, *, take_over: bool = False) -> LeaseRecord | None:
        """Claim the lease for this daemon; return None if it holds it now.

        Return the lease that stops it otherwise: another machine's, or one that cannot be
        read. `take_over` (a person's `--take-over`) replaces whatever lease there is.
        Raise VaultError if the lease cannot be written.
        """
        with self._mutex, _as_vault_error(self.path), self._guard():
            current = read_lease(self.vault_root)
            now = now_iso()
            mine = LeaseRecord(
                machine_id=self.machine_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                mode=self.mode,
                since=now,
                heartbeat=now,
                claim=uuid.uuid4().hex,
            )
            if current is None:
                try:
                    self._seen = self._write(mine, create=True)
                except FileExistsError:  # another daemon claimed it a moment before
                    return read_lease(self.vault_root) or LeaseRecord(None, problem="gone")
            elif take_over or current.machine_id == self.machine_id:
                self._seen = self._write(mine, create=False)
                if current.machine_id != self.machine_id:
                    log.warning("took the executor lease over from %s", current.describe())
            else:
                return current
            self._record = mine
            self.lost.clear()
            return None

    def holds(self) -> bool:
        """Return whether the lease still names this daemon (one stat while it is unchanged).

        On finding that another daemon took it, log that once and set `lost`. A lease that
        disappeared is claimed again: nobody else executes. One that cannot be checked (an
        I/O error) gives False for now, without `lost`.
        """
        with self._mutex:
            if self._record is None:
                return False
            if _signature(self.path) == self._seen:
                return True
            try:
                with self._guard():
                    return self._still_mine(self._record)
            except OSError as error:
                # Cannot tell: touch nothing this time, and look again at the next file.
                log.warning("%s: the executor lease cannot be checked (%s)", self.path, error)
                return False

    def beat(self) -> bool:
        """Rewrite the heartbeat if the lease still names this daemon; return whether it does."""
        with self._mutex, self._guard():
            if self._record is None or not self._still_mine(self._record):
                return False
            self._record = replace(self._record, heartbeat=now_iso())
            self._seen = self._write(self._record, create=False)
            return True

    def standby_message(self, holder: LeaseRecord) -> str:
        """Given the lease that stops this daemon, return why it executes nothing."""
        return (
            f"not the executor: {holder.describe()} holds the lease "
            f"({self.path}); this daemon processes no file and writes nothing into the "
            f"vault. To make this machine the executor, a person runs "
            f"`{self.take_over_hint}` (with this daemon stopped)"
        )

    def wait_for_turn(
        self, stop: threading.Event, *, take_over: bool = False, wait: bool = True
    ) -> bool:
        """Given a stop event, claim the lease, and start the heartbeat.

        While another machine holds it, say so once (and again if the holder changes) and
        look again every second, or give up at once if `wait` is False. Return True once
        this daemon holds the lease; False if it does not, and `stop` was set or `wait` is
        False.
        """
        told: LeaseRecord | None = None
        while not stop.is_set():
            holder = self.claim(take_over=take_over)
            if holder is None:
                if told is not None:
                    log.warning("the executor lease is free again: this daemon executes now")
                self._start_heartbeat()
                return True
            if told is None or (holder.machine_id, holder.claim) != (told.machine_id, told.claim):
                log.warning("%s", self.standby_message(holder))
                told = holder
            if not wait:
                return False
            stop.wait(1.0)
        return False

    def stop_heartbeat(self) -> None:
        """Stop rewriting the heartbeat. The lease stays: a restart here takes it again."""
        self._stop_beating.set()
        if self._beater is not None and self._beater is not threading.current_thread():
            self._beater.join(timeout=5)
        self._beater = None

    def _start_heartbeat(self) -> None:
        self.stop_heartbeat()
        self._stop_beating = threading.Event()
        self._beater = threading.Thread(target=self._beat, name="vaultd-lease", daemon=True)
        self._beater.start()

    def _beat(self) -> None:
        stop = self._stop_beating
        while not stop.wait(self.heartbeat_seconds):
            try:
                if not self.beat():
                    return
            except (OSError, VaultError) as error:  # a full disk, a sync tool: try again
                log.warning("%s: the heartbeat could not be written (%s)", self.path, error)

    def _still_mine(self, mine: LeaseRecord) -> bool:
        """Under the guard: re-read the lease; return whether it is still `mine`."""
        current = read_lease(self.vault_root)
        if current is None:
            log.warning("%s: the executor lease disappeared; claiming it again", self.path)
            try:
                self._seen = self._write(mine, create=True)
                return True
            except FileExistsError:
                current = read_lease(self.vault_root) or LeaseRecord(None, problem="gone")
        if current.claim == mine.claim and not current.problem:
            self._seen = _signature(self.path)
            return True
        log.error(
            "%s took the executor lease: this daemon stops executing now and processes "
            "no further file",
            current.describe(),
        )
        self._record = None
        self._seen = None
        self._stop_beating.set()
        self.lost.set()
        return False

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the flock of the `.vaultd/` folder: a check and a write by two daemons on
        one filesystem never interleave. Where flock is not supported, go on without."""
        folder = self.path.parent
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        found = folder.lstat()
        if not stat.S_ISDIR(found.st_mode):
            raise VaultError(f"{folder}: not a folder; vaultd keeps its executor lease there")
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _write(self, record: LeaseRecord, *, create: bool) -> Signature:
        """Write the lease atomically; return the signature it has on disk.

        `create`: only if there is none (raise FileExistsError if there is); else replace.
        """
        folder = self.path.parent
        tmp = folder / f".executor-{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with os.fdopen(os.open(tmp, flags, 0o644), "w", encoding="utf-8") as handle:
                fields = {k: v for k, v in record.to_json().items() if k != "problem"}
                handle.write(json.dumps(fields, indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                written = os.fstat(handle.fileno())
            if create:
                _link(tmp, self.path)
            else:
                tmp.replace(self.path)
        finally:
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(directory)
            os.close(directory)
        return written.st_ino, written.st_size, written.st_mtime_ns


def _link(source: Path, target: Path) -> None:
    """Give `source` the name `target` unless that exists (raise FileExistsError then).
    A filesystem without hard links falls back to check-then-rename, under the guard."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(target) from None
        source.replace(target)


@contextlib.contextmanager
def _as_vault_error(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise VaultError(f"{path}: the executor lease cannot be written ({error})") from None
