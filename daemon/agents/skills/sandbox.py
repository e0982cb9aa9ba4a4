"""Running a skill's `execute.py` in a child process, within its timeout.

The child gets its inputs as JSON, a clean environment (no credentials: it reaches services
only through vaultd), its own session (so a timeout kills everything it started), and one
channel to vaultd on which each tool call is a request line answered by `handle`. It is
forked from the skill host's zygote where it can be (spawn.py), a fresh interpreter else.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from daemon.agents.skills.spawn import Child, Forked, Zygote

STDERR_TAIL = 2000

# Given a tool name and its arguments, return ("ok", result) or ("error", message).
Handler = Callable[[str, dict[str, Any]], tuple[str, Any]]


@dataclass(frozen=True)
class Finished:
    result: Any = None
    error: str | None = None
    timed_out: bool = False


def run_script(script: Path, inputs: Any, handle: Handler, *, timeout_s: float) -> Finished:
    """Run a skill script to its end (or its timeout); return what it produced."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stderr:
        child = ZYGOTE.spawn(script, stderr.fileno())
        if child.stdin is None or child.stdout is None:  # pragma: no cover - PIPE was asked
            raise RuntimeError("the skill's pipes were not opened")
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        try:
            _send(child.stdin, inputs)
            finished = _converse(child, lines, handle, deadline, timeout_s)
        finally:
            _stop(child)
        if finished.error is not None and not finished.timed_out:
            stderr.seek(0)
            tail = stderr.read()[-STDERR_TAIL:].strip()
            if tail and "Traceback" in tail:
                return Finished(error=f"{finished.error}\n{tail}")
        return finished


def _converse(
    child: Child,
    lines: queue.Queue[str],
    handle: Handler,
    deadline: float,
    timeout_s: float,
) -> Finished:
    if child.stdin is None:  # pragma: no cover - PIPE was asked
        raise RuntimeError("the skill's stdin was not opened")
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return Finished(error=f"timed out after {timeout_s:g} s (timeout_s)", timed_out=True)
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if line == "":
            try:  # it closed its end: it is ending, or it must end within its timeout
                code = child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return Finished(
                    error=f"timed out after {timeout_s:g} s (timeout_s)", timed_out=True
                )
            return Finished(error=f"execute.py ended without a result (exit code {code})")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            return Finished(error=f"execute.py broke the protocol: {line[:200]!r}")
        if "result" in message:
            return Finished(result=message["result"])
        if "failed" in message:
            return Finished(error=str(message["failed"]))
        name, args = message.get("call"), message.get("args")
        if not isinstance(name, str) or not isinstance(args, dict):
            return Finished(error=f"execute.py broke the protocol: {line[:200]!r}")
        kind, value = handle(name, args)
        try:
            _send(child.stdin, {kind: value})
        except (BrokenPipeError, OSError):
            continue  # it died; its end of stdout tells how


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("")


def _send(stream: IO[str], value: Any) -> None:
    stream.write(json.dumps(value, default=str) + "\n")
    stream.flush()


def _stop(child: Child) -> None:
    """Kill whatever the run left running (its whole session) and reap it."""
    if isinstance(child, Forked):
        child.release()  # killed by the zygote, which reaps it
        return
    if child.returncode is None:  # not reaped (poll() would reap it): still its group's id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _clean_environment() -> dict[str, str]:
    """Only what a Python process needs; never vaultd's credentials."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# This process's skill host zygote (spawn.py), started with the clean environment.
ZYGOTE = Zygote(_clean_environment)
os.register_at_fork(after_in_child=ZYGOTE.forget)
