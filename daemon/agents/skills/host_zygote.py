"""The skill host's zygote: one Python process that has loaded host.py once and forks a fresh
child for each skill run, so a run does not pay an interpreter's start and its imports.

    python -I host_zygote.py SOCKET

vaultd starts it with the same clean environment a skill gets (no credentials), and it runs
no skill code itself: every child is a copy of a process that has only imported the standard
library and host.py. A child starts its own session (the run's timeout kills its whole
group), moves to the skill's folder, takes the three streams vaultd passed, and runs
host.main exactly as `python -I host.py execute.py` would.

Protocol (daemon/agents/skills/spawn.py is the other side), over a Unix socket in a folder
only vaultd's user can open: a client sends one JSON line naming the script, with its stdin,
stdout and stderr as SCM_RIGHTS; the zygote answers the child's pid on a line, and its exit
code on a second line once it has reaped it. The client may write `kill` (the zygote kills
the child's process group if it has not reaped the child: never a recycled pid) and `bye`
(it no longer waits for the exit code). It exits when vaultd, its parent, is gone.
Standard library only, like host.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

HOST = Path(__file__).with_name("host.py")


def _load_host() -> Any:
    spec = importlib.util.spec_from_file_location("vaultd_skill_host", HOST)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {HOST}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Fork(BaseException):
    """Raised in a forked child to leave the zygote's loop and run the skill."""

    def __init__(self, script: str) -> None:
        self.script = script


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "reap")
    selector.register(0, selectors.EVENT_READ, "parent")  # EOF: vaultd is gone
    children: dict[int, socket.socket | None] = {}
    print("ready", flush=True)
    while True:
        for key, _events in selector.select():
            if key.data == "parent" and not os.read(0, 1024):
                return
            if key.data == "accept":
                _accept(listener, children, selector, [listener, selector, wake_r, wake_w])
            if key.data == "reap":
                while len(os.read(wake_r, 4096)) == 4096:
                    pass
            if isinstance(key.data, int):
                _asked(key.fileobj, key.data, children, selector)  # type: ignore[arg-type]
            _reap(children, selector)


def _asked(
    conn: socket.socket,
    pid: int,
    children: dict[int, socket.socket | None],
    selector: selectors.BaseSelector,
) -> None:
    """A run's client wrote: `kill` kills the child's process group if the child has not
    been reaped (so never a recycled pid); a closed client only stops being told its end."""
    try:
        said = conn.recv(64)
    except OSError:
        said = b""
    if said.startswith(b"kill") and pid in children:
        # The child itself first: until it has called setsid there is no group `pid` (ESRCH)
        # and the kill missed it. Not reaped yet, so the pid is still the child's.
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    if not said or said.endswith(b"bye\n"):
        selector.unregister(conn)
        conn.close()
        if pid in children:
            children[pid] = None


def _accept(
    listener: socket.socket,
    children: dict[int, socket.socket | None],
    selector: selectors.BaseSelector,
    own: list[Any],
) -> None:
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        conn.settimeout(5)
        data, fds, _flags, _address = socket.recv_fds(conn, 1 << 16, 3)
        request = json.loads(data.decode("utf-8"))
        if (
            len(fds) != 3
            or not isinstance(request, dict)
            or not isinstance(request.get("script"), str)
        ):
            raise ValueError("a request needs a script and three streams")
    except (OSError, ValueError):
        for fd in fds:  # kept open, every later child would inherit them
            with contextlib.suppress(OSError):
                os.close(fd)
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        _become_child(request["script"], fds, [*own, conn, *filter(None, children.values())])
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    conn.settimeout(None)
    _send(conn, f"{pid}\n")
    selector.register(conn, selectors.EVENT_READ, pid)


def _become_child(script: str, fds: list[int], handles: list[Any]) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for handle in handles:
        with contextlib.suppress(OSError):
            handle.close() if hasattr(handle, "close") else os.close(handle)
    os.setsid()  # its own session: a timeout kills everything the skill started
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(Path(script).parent)
    raise _Fork(script)


def _reap(children: dict[int, socket.socket | None], selector: selectors.BaseSelector) -> None:
    while children:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None or ended.si_pid == 0:
            return
        pid = ended.si_pid
        # The run is over: what it started dies with it. Its group is killed while the child
        # is not reaped yet, so `pid` is still its group's id (never a recycled one).
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        conn = children.pop(pid, None)
        if conn is not None:
            _send(conn, f"{os.waitstatus_to_exitcode(status)}\n")
            selector.unregister(conn)
            conn.close()


def _send(conn: socket.socket, text: str) -> None:
    with contextlib.suppress(OSError):  # vaultd stopped waiting; the child is reaped anyway
        conn.sendall(text.encode())


def _remove(socket_path: Path) -> None:
    """vaultd is gone: remove the socket, and its folder if vaultd made it for the zygote."""
    with contextlib.suppress(OSError):
        socket_path.unlink()
        if socket_path.parent.name.startswith("vaultd-skills-"):
            socket_path.parent.rmdir()


def main(argv: list[str]) -> int:
    host = _load_host()
    try:
        serve(argv[1])
        _remove(Path(argv[1]))
    except _Fork as fork:
        # The streams as a fresh `python -I host.py` has them (PYTHONIOENCODING=utf-8).
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(  # noqa: SIM115 - as a fresh one's: never fails on a character
            2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1
        )
        sys.argv = [str(HOST), fork.script]
        code = 1
        try:
            code = int(host.main(sys.argv))
        except SystemExit as exit_:  # the skill called sys.exit: its code, as in a process
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except BaseException:  # noqa: BLE001 - as the interpreter reports an uncaught one
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)  # not the zygote's interpreter teardown: nothing of it is needed
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
