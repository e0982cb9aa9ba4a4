"""A fork server for the suite's `vaultd` processes: the real CLI in a real process of its
own, without paying Python's start-up and vaultd's imports each time.

Most of the suite's CPU went into starting interpreters: some 400 `vaultd` processes, each
spending 0.8 s importing vaultd, pydantic and the rest before it did anything. Here one server
per test worker imports all of that once; every `vaultd …` the suite runs is then a fork of it
that sets its own stdin, stdout, stderr, working directory, environment and argv, and runs
`python -m daemon` as the command line would (`runpy`, with a normal interpreter exit: atexit,
thread joins, flushed streams).

The forked process is a real process: its pid can be sent SIGTERM, SIGINT or SIGKILL, and it
exits with a code the server reports back (`Forked` behaves as `subprocess.Popen` does). What
it does not repeat is what every vaultd process does the same way: loading modules. Tests of
start-up itself (what `vaultd run` imports, the console script, `make run`) keep starting
real interpreters, as does everything when `VAULTD_TEST_FRESH=1` is set.

Protocol, over a Unix socket: the client sends one length-prefixed JSON request (argv, env,
cwd) with its three standard streams as SCM_RIGHTS; the server answers the child's pid on a
line, and its exit code on a second line when it has reaped it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
VAULTD = (sys.executable, "-m", "daemon")  # what a fresh interpreter runs instead
# What `vaultd run` (and the commands the suite runs) would import: once, in the server.
PRELOAD = (
    "daemon.cli.main",
    "daemon.core.failpoints",
    "daemon.service.app",
    "daemon.service.runner",
    "daemon.service.scheduler",
    "daemon.agents.api.app",
    "daemon.agents.kg.build",
    "daemon.agents.mcp.vault_server",
    "daemon.agents.mcp.odoo_server",
    "daemon.agents.mcp.social_server",
    "apscheduler.schedulers.background",
    "jinja2",
    "jsonschema",
    "uvicorn",
    "fastapi",
    "tweepy",
    "requests",
)


# -- the server ----------------------------------------------------------------------------


class _Start(BaseException):
    """Raised in a forked child to leave the server's loop and become `python -m daemon`."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if threading.active_count() != 1:  # a fork copies only this thread
        raise SystemExit("forkserver: an import started a thread; cannot fork safely")


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _flags, _address = socket.recv_fds(conn, 1 << 16, 3)
    (size,) = struct.unpack("!I", data[:4])
    body = bytearray(data[4:])
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("request cut short")
        body += chunk
    return json.loads(body), list(fds)


def _become_child(request: dict[str, Any], fds: list[int], keep_closed: list[Any]) -> None:
    """In the forked child: drop the server's handles, take the request's streams,
    directory and environment, then leave the loop (raise _Start)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for handle in keep_closed:
        with contextlib.suppress(OSError):
            handle.close() if hasattr(handle, "close") else os.close(handle)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    from daemon.core import failpoints

    failpoints.load_environment()  # the child's own VAULTD_FAILPOINT, not the server's
    raise _Start(request["argv"])


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "reap")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        for key, _events in selector.select():
            if key.data == "parent" and not os.read(sys.stdin.fileno(), 1024):
                return  # the test worker is gone
            if key.data == "accept":
                conn, _ = listener.accept()
                try:
                    request, fds = _receive(conn)
                except (OSError, ValueError):
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    handles = [listener, conn, selector, wake_r, wake_w, *children.values()]
                    _become_child(request, fds, handles)
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                _send(conn, f"{pid}\n")
            if key.data == "reap":
                while os.read(wake_r, 4096) == 4096:
                    pass
            _reap(children)


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            _send(conn, f"{os.waitstatus_to_exitcode(status)}\n")
            conn.close()


def _send(conn: socket.socket, text: str) -> None:
    with contextlib.suppress(OSError):  # a client gone: its child runs on, as Popen's would
        conn.sendall(text.encode())


def _main() -> None:
    import runpy

    sys.path.insert(0, str(ROOT))
    _preload()
    try:
        serve(sys.argv[1])
        shutil.rmtree(Path(sys.argv[1]).parent, ignore_errors=True)  # the worker is gone
    except _Start as start:
        sys.argv = [str(ROOT / "daemon" / "__main__.py"), *start.argv]
        sys.path[:2] = [str(Path.cwd())]  # as `python -m` sets it (not ROOT, not tests/)
        code = 0
        try:
            runpy.run_module("daemon", run_name="__main__", alter_sys=True)
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except BaseException:  # noqa: BLE001 (what the interpreter does with an uncaught one)
            traceback.print_exc()
            code = 1
        _exit(code)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """Exit as the interpreter does (join the threads, run atexit, flush the streams), but
    without tearing down every module: in a fork, that touches each object of the server's
    heap and costs a third of a second."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


# -- the client ----------------------------------------------------------------------------


class _Server:
    """This test worker's fork server, started on first use."""

    lock = threading.Lock()
    process: subprocess.Popen[bytes] | None = None
    path = ""

    @classmethod
    def socket_path(cls) -> str:
        with cls.lock:
            if cls.process is not None and cls.process.poll() is None:
                return cls.path
            cls.path = str(Path(tempfile.mkdtemp(prefix="vaultd-fork-")) / "s")
            cls.process = subprocess.Popen(
                [sys.executable, __file__, cls.path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            assert cls.process.stdout is not None
            if cls.process.stdout.readline() != b"ready\n":
                raise RuntimeError("the fork server did not start")
            atexit.register(_stop, cls.process, cls.path)
            return cls.path


def enabled() -> bool:
    return os.environ.get("VAULTD_TEST_FRESH") != "1"


def _stop(server: subprocess.Popen[bytes], path: str) -> None:
    if server.poll() is None:
        server.kill()
        server.wait()
    shutil.rmtree(Path(path).parent, ignore_errors=True)


class Forked:
    """A `python -m daemon …` process forked by the server, used as a `subprocess.Popen`."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = list(args)
        self.returncode: int | None = None
        request = {
            "argv": self.args,
            "env": dict(os.environ if env is None else env),
            "cwd": str(cwd or Path.cwd()),
        }
        payload = json.dumps(request).encode()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            out = 1 if stdout is None else stdout
            err = 2 if stderr is None else out if stderr == subprocess.STDOUT else stderr
            streams = [null if stdin is None else stdin, out, err]
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.connect(_Server.socket_path())
            socket.send_fds(self._sock, [struct.pack("!I", len(payload)) + payload], streams)
        finally:
            os.close(null)
        self._buffer = b""
        pid = self._line(None)
        if pid is None:
            raise RuntimeError("the fork server did not answer")
        self.pid = int(pid)

    def _line(self, timeout: float | None) -> str | None:
        """The server's next line, waiting up to `timeout` seconds (None: for good); None
        if it has not come by then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([self._sock], [], [], left)
            if not readable:
                return None
            chunk = self._sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"the fork server lost the process it ran {self.args}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._finish(self._line(0))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._finish(self._line(timeout))
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def _finish(self, line: str | None) -> None:
        if line is not None:
            self.returncode = int(line)
            self._sock.close()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m daemon *args` to its end (in `cwd`), as `subprocess.run(capture_output=True,
    text=True)` would; a timeout kills it and raises subprocess.TimeoutExpired."""
    if not enabled():
        return subprocess.run(
            [*VAULTD, *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = Forked(args, env=env, stdout=out.fileno(), stderr=err.fileno(), cwd=cwd)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    return subprocess.CompletedProcess(process.args, process.returncode or 0, stdout, stderr)


def start(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, log: IO[str]
) -> subprocess.Popen[str] | Forked:
    """Start `python -m daemon *args` with stdout and stderr going to `log`."""
    if not enabled():
        return subprocess.Popen(
            [*VAULTD, *args], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
    return Forked(args, env=env, stdout=log.fileno(), stderr=subprocess.STDOUT)


def command(args: Sequence[str]) -> list[str]:
    """Return the command line that runs `vaultd *args` for a program that starts it itself
    (the MCP client over stdio): a stand-in that has the fork server run it."""
    if not enabled():
        return [*VAULTD, *args]
    stand_in = Path(__file__).with_name("forkserver_exec.py")
    return [sys.executable, str(stand_in), _Server.socket_path(), *args]


if __name__ == "__main__":
    _main()
