"""`python forkserver_exec.py SOCKET ARGS...`: the stand-in `forkserver.command` gives a
program that starts vaultd itself (the MCP client). It has the suite's fork server fork
`vaultd ARGS` with this process's streams, environment and directory, passes on the signals
this process gets, and ends as vaultd did: with its exit code, or by the signal it died of.
Standard library only: it is a fresh interpreter each time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(path: str, args: list[str]) -> int:
    # Held until vaultd's pid is known, then passed on: one that came before killed this
    # process alone, and the forked vaultd ran on.
    signal.pthread_sigmask(signal.SIG_BLOCK, PASSED_ON)
    request = {"argv": args, "env": dict(os.environ), "cwd": str(Path.cwd())}
    payload = json.dumps(request).encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    socket.send_fds(conn, [struct.pack("!I", len(payload)) + payload], [0, 1, 2])
    answers = conn.makefile("rb")
    pid = int(answers.readline())
    for sig in PASSED_ON:
        signal.signal(sig, lambda number, _frame: os.kill(pid, number))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, PASSED_ON)
    line = answers.readline()
    code = int(line) if line.strip() else 1
    if code < 0:  # as vaultd's parent sees a fresh one's death by that signal
        for sig in PASSED_ON:  # vaultd is reaped: its pid may be another process's now
            signal.signal(sig, signal.SIG_IGN)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL cannot be set (nor caught)
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
