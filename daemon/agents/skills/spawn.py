"""Starting a skill's child process: forked from the host's zygote (host_zygote.py) when it
runs, as a fresh `python -I host.py execute.py` when it cannot.

A fresh interpreter costs a skill run some 60 ms before its first line (the interpreter,
then `json` and `re`); a fork of the zygote, a few. Both give the same child: the clean
environment, its own session, the skill's folder as its directory, the same three streams.
The zygote is started on the first run, with that clean environment, and again if it died
(a skill may kill it: it runs as the same user); every failure to use it falls back to
`subprocess.Popen`, so a run never fails for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

HOST = Path(__file__).with_name("host.py")
ZYGOTE = Path(__file__).with_name("host_zygote.py")

log = logging.getLogger(__name__)
MAX_FAILURES = 3
REST_S = 60.0  # how long every run starts afresh after MAX_FAILURES in a row
START_TIMEOUT_S = 5.0  # for the zygote's `ready`
ANSWER_TIMEOUT_S = 5.0  # for its answer to a run's request (the child's pid)


class Child(Protocol):
    """What the sandbox needs of a skill's process (a subprocess.Popen is one)."""

    pid: int
    returncode: int | None  # None until it is reaped
    stdin: IO[str] | None
    stdout: IO[str] | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Forked:
    """A skill's process forked by the zygote: its pid, its pipes, its exit code."""

    def __init__(self, pid: int, conn: socket.socket, stdin: IO[str], stdout: IO[str]) -> None:
        self.pid = pid
        self.stdin: IO[str] | None = stdin
        self.stdout: IO[str] | None = stdout
        self.returncode: int | None = None
        self._conn = conn
        self._buffer = b""
        self._zygote_lost = False
        self._released = False
        # The child waits for its inputs, which are not sent yet: it is alive, so the pid
        # is still its own, and the pidfd names it for good (signals to a recycled pid
        # cannot reach another process through it).
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self._read()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code; raise subprocess.TimeoutExpired if it has not ended in `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._conn], [], [], left)[0]:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            self._read()
        return self.returncode

    def kill(self) -> None:
        """Kill the child's process group, through the zygote: it knows whether the pid is
        still the child's (not reaped yet), which this process cannot. A zygote that died
        meanwhile cannot: then this process does (`_kill_without_zygote`); one alive but
        stopped or slow does not yet: then this process kills it too (`_kill_unreaped`)."""
        if self.returncode is None:
            if self._told(b"kill\n"):
                self._kill_unreaped()
            else:
                self._kill_without_zygote()

    def release(self) -> None:
        """Kill what is left of the run and stop waiting for its exit code: the zygote reaps
        it (the normal end of a run that has given its result). Only the first call acts:
        after it the pid may be another process's."""
        if self._released:
            return
        self._released = True
        if self.returncode is None and self._told(b"kill\nbye\n"):
            self._kill_unreaped()
        elif self.returncode is None or self._zygote_lost:
            self._kill_without_zygote()
        if self.returncode is None:
            self.returncode = -1
        self._conn.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _told(self, what: bytes) -> bool:
        """Tell the zygote `what`; return False if it is gone (it can kill nothing now)."""
        try:
            readable = select.select([self._conn], [], [], 0)[0]
            if readable and self._conn.recv(64, socket.MSG_PEEK) == b"":
                self._zygote_lost = True
                return False
            self._conn.sendall(what)
        except OSError:
            self._zygote_lost = True
            return False
        return True

    def _kill_without_zygote(self) -> None:
        """The zygote died (another skill of the same user may kill it): kill the child
        through its pidfd, and its group, whose id stays the child's pid while anything
        the run started is in it (Linux frees a pid only once no group uses it)."""
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)

    def _kill_unreaped(self) -> None:
        """Kill the child through its pidfd, and its group while the child is not reaped (a
        signal 0 through the pidfd still reaches it: its pid, so its group's id, is still its
        own). For a zygote alive but stopped or slow, which kills nothing until it runs."""
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                signal.pidfd_send_signal(self._pidfd, 0)
                os.killpg(self.pid, signal.SIGKILL)

    def _read(self) -> None:
        chunk = self._conn.recv(64)
        if not chunk:  # the zygote died: the code is lost; the process was killed or ended
            self.returncode = -1
            self._zygote_lost = True
        self._buffer += chunk
        if b"\n" in self._buffer:
            self.returncode = int(self._buffer.split(b"\n", 1)[0])
        if self.returncode is not None:
            self._conn.close()


class Zygote:
    """The host's zygote of this process, started on first use."""

    def __init__(self, environment: Callable[[], dict[str, str]]) -> None:
        self.environment = environment
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._path = ""
        self._failures = 0  # in a row; at MAX_FAILURES the zygote rests for REST_S
        self._resting_until = 0.0

    def spawn(self, script: Path, stderr: int) -> Child:
        """Start `host.py script`: forked by the zygote, or else as a fresh interpreter."""
        if self._failures >= MAX_FAILURES and time.monotonic() >= self._resting_until:
            self._failures = 0  # rested: try the zygote again (the cause may have passed)
        if self._failures < MAX_FAILURES:
            try:
                child = self._fork(script, stderr)
                self._failures = 0
                return child
            except (OSError, ValueError, RuntimeError) as error:
                self._failures += 1
                given_up = self._failures >= MAX_FAILURES
                if given_up:
                    self._resting_until = time.monotonic() + REST_S
                log.log(
                    logging.WARNING if given_up else logging.INFO,
                    "skill host zygote unavailable (%s); %s",
                    error,
                    f"skill runs start a fresh interpreter for the next {REST_S:g} s"
                    if given_up
                    else f"starting {script} afresh",
                )
        return popen(script, stderr, self.environment())

    def forget(self) -> None:
        """In a forked copy of this process: the zygote is the parent's; start another."""
        self._lock = threading.Lock()
        self._process, self._path, self._failures = None, "", 0

    def stop(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            if self._path:
                shutil.rmtree(Path(self._path).parent, ignore_errors=True)
            self._process, self._path = None, ""

    def _socket(self) -> str:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return self._path
            if self._path:
                shutil.rmtree(Path(self._path).parent, ignore_errors=True)
            folder = tempfile.mkdtemp(prefix="vaultd-skills-")  # 0700: vaultd's user only
            self._path = str(Path(folder) / "zygote")
            self._process = subprocess.Popen(
                [sys.executable, "-I", str(ZYGOTE), self._path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=folder,
                env=self.environment(),
            )
            # Within a bound: the lock is held, and any process of the user (a skill) can
            # stop the zygote as it starts; every queue worker waited here for good.
            out = self._process.stdout
            started = out is not None and select.select([out], [], [], START_TIMEOUT_S)[0]
            if not started or out is None or out.readline() != b"ready\n":
                self._process.kill()
                self._process.communicate()
                self._process = None
                raise RuntimeError("the zygote did not start")
            return self._path

    def _end(self) -> None:
        with self._lock:
            if self._process is not None:
                with contextlib.suppress(OSError):
                    self._process.kill()
                self._process.communicate()
                self._process = None

    def _check_peer(self, conn: socket.socket) -> None:
        """The socket's folder is only vaultd's user's, but any process of that user (a skill)
        can put its own listener at the path: only the zygote vaultd started gets a run's
        streams. Else that zygote is ended (the next run starts another, in a new folder)."""
        if not hasattr(socket, "SO_PEERCRED"):  # not Linux: the peer cannot be told
            raise RuntimeError("the zygote's socket peer cannot be checked here")
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, _uid, _gid = struct.unpack("3i", creds)
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None and pid == process.pid:
                return
            if process is not None:
                process.kill()
                process.communicate()  # reaped, and its pipes closed
        raise RuntimeError(f"the zygote's socket is held by another process (pid {pid})")

    def _fork(self, script: Path, stderr: int) -> Forked:
        path = self._socket()
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.settimeout(ANSWER_TIMEOUT_S)
                conn.connect(path)
                self._check_peer(conn)
                request = json.dumps({"script": str(script)}).encode("utf-8")
                socket.send_fds(conn, [request], [child_in, child_out, stderr])
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = conn.recv(64)
                    if not chunk:
                        raise RuntimeError("the zygote closed the connection")
                    answer += chunk
                pid = int(answer)
                conn.settimeout(None)
            except TimeoutError:
                conn.close()
                self._end()  # stopped or stuck (a skill may SIGSTOP it): start another next
                raise
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(to_child)
            os.close(from_child)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        stdin = open(to_child, "w", encoding="utf-8")  # noqa: SIM115, PTH123 - kept by Forked
        stdout = open(from_child, encoding="utf-8")  # noqa: SIM115, PTH123
        return Forked(pid, conn, stdin, stdout)


def popen(script: Path, stderr: int, environment: dict[str, str]) -> subprocess.Popen[str]:
    """Start `python -I host.py script` afresh."""
    return subprocess.Popen(
        [sys.executable, "-I", str(HOST), str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=script.parent,
        env=environment,
        start_new_session=True,
        text=True,
        encoding="utf-8",
    )
