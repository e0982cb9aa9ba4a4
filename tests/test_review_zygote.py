"""Adversarial review of skill runs forked from the host's zygote (spawn.py, host_zygote.py).

A skill runs as vaultd's OS user, so it can do what any process of that user can; these
tests check only what the zygote adds to that."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from daemon.agents.skills import sandbox
from daemon.agents.skills.spawn import Zygote


def _skill(folder: Path, code: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "execute.py"
    script.write_text(code, encoding="utf-8")
    return script


def _no_tools(name: str, args: dict) -> tuple[str, object]:
    return ("error", "no tools here")


@pytest.fixture
def zygote(monkeypatch: pytest.MonkeyPatch):
    own = Zygote(sandbox._clean_environment)
    monkeypatch.setattr(sandbox, "ZYGOTE", own)
    yield own
    own.stop()


FDS = """\
import os

def run(inputs, tools):
    return {"ppid": os.getppid(), "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "zygote": open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\\0")[-2].decode()}
"""


def test_a_process_of_the_user_that_takes_the_zygote_socket_path_gets_no_other_run(
    zygote: Zygote, tmp_path: Path
):
    """A skill finds the zygote's socket through its parent's command line, and the folder is
    its user's: it can unlink the socket and listen in its place while the zygote lives on.
    vaultd then sent the NEXT run's (another skill's) stdin, stdout and stderr to that
    listener: it read that run's inputs and could make tool calls as that skill. With a fresh
    interpreter no process of the user gets another run's pipes."""
    first = sandbox.run_script(_skill(tmp_path / "a", FDS), {}, _no_tools, timeout_s=20)
    assert first.error is None, first.error
    path = first.result["zygote"]
    assert path == zygote._path  # a skill can name the socket
    Path(path).unlink()
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(path)
    fake.listen(1)
    fake.settimeout(10)
    got: list[int] = []

    def impostor() -> None:
        try:
            conn, _ = fake.accept()
        except OSError:
            return
        _data, fds, _f, _a = socket.recv_fds(conn, 1 << 16, 3)
        got.extend(fds)
        if fds:
            os.write(fds[1], b'{"result": "the impostor answered"}\n')
        with contextlib.suppress(OSError):  # vaultd hung up on it
            conn.sendall(b"1\n0\n")
        conn.close()

    thread = threading.Thread(target=impostor, daemon=True)
    thread.start()
    second = sandbox.run_script(
        _skill(tmp_path / "b", "def run(i, t):\n    return i['secret']\n"),
        {"secret": "inputs-of-b"},
        _no_tools,
        timeout_s=20,
    )
    fake.close()
    thread.join(5)
    for fd in got:
        os.close(fd)
    assert got == [], "vaultd gave another process of the user a run's streams"
    assert second.result == "inputs-of-b", second


def test_fds_sent_in_a_refused_request_are_not_kept_by_the_zygote_for_later_runs(
    zygote: Zygote, tmp_path: Path
):
    """A request the zygote refuses (two streams, or bad JSON) left the descriptors it carried
    open in the zygote, and every later child of every skill inherited them."""
    script = _skill(tmp_path / "a", FDS)
    before = sandbox.run_script(script, {}, _no_tools, timeout_s=20)
    assert before.error is None, before.error
    read_end, write_end = os.pipe()
    for payload in (b'{"script": 1}', b"not json"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(zygote._path)
        socket.send_fds(conn, [payload], [write_end, read_end])
        conn.recv(16)
        conn.close()
    os.close(read_end)
    os.close(write_end)
    after = sandbox.run_script(script, {}, _no_tools, timeout_s=20)
    assert after.error is None, after.error
    assert after.result["ppid"] == before.result["ppid"]  # the same zygote
    assert after.result["fds"] == before.result["fds"]


def _alive(pid: int) -> bool:
    try:
        with Path(f"/proc/{pid}/stat").open(encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _assert_gone(at: Path, after: float, message: str) -> None:
    """Assert that the process whose pid a skill wrote to `at` is gone `after` seconds on
    (killed with its run); kill it either way, so no test leaves it running."""
    child = int(at.read_text())
    time.sleep(after)
    try:
        assert not _alive(child), message
    finally:
        with contextlib.suppress(OSError):
            os.kill(child, 9)


LINGERS = """\
import os, time

def run(inputs, tools):
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    open(inputs["at"], "w").write(str(pid))
    return "done"
"""


@pytest.mark.parametrize("fresh", [False, True])
def test_what_a_run_started_is_killed_when_the_run_ends_even_after_its_process_exited(
    zygote: Zygote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: bool
):
    """The run's session is killed only if its first process was not reaped yet; a skill that
    forked a child and returned left the child running (fresh interpreter or fork alike)."""
    if fresh:
        monkeypatch.setattr(zygote, "_failures", 99)  # a fresh interpreter
    at = tmp_path / "child.pid"
    done = sandbox.run_script(_skill(tmp_path / "a", LINGERS), {"at": str(at)}, _no_tools,
                              timeout_s=20)  # fmt: skip
    assert done.result == "done", done
    _assert_gone(at, 0.5, "the run's child outlived its run")


SLOW = """\
import os, time

def run(inputs, tools):
    open(os.path.join(inputs["at"], str(os.getpid())), "w").close()
    time.sleep(30)
"""


def test_a_run_that_times_out_before_its_child_has_its_own_session_is_still_killed(
    zygote: Zygote, tmp_path: Path
):
    """The zygote answers the child's pid before the child has called setsid; a kill in that
    window (killpg of a group that does not exist yet: ESRCH) missed it, and after `bye` no one
    killed it again: the skill ran past its timeout. timeout_s may be any positive number."""
    at = tmp_path / "started"
    at.mkdir()
    script = _skill(tmp_path / "a", SLOW)
    sandbox.run_script(script, {"at": str(at)}, _no_tools, timeout_s=1)  # the zygote is up
    for pid in (int(p.name) for p in at.iterdir()):
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    for entry in at.iterdir():
        entry.unlink()
    for _ in range(60):
        sandbox.run_script(script, {"at": str(at)}, _no_tools, timeout_s=1e-9)
    time.sleep(1)
    survivors = [pid for pid in (int(p.name) for p in at.iterdir()) if _alive(pid)]
    for pid in survivors:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    assert survivors == []


def _children_named(word: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and word.encode() in cmdline and stat[0] != "T":
            found.append(int(entry.name))
    return found


def test_a_zygote_stopped_while_it_starts_does_not_hang_every_run_for_good(
    zygote: Zygote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """vaultd read the new zygote's `ready` line with no timeout, holding the zygote lock. A
    skill's lingering process (same user) that kills the zygote and SIGSTOPs the next one as
    it appears held the first queue worker forever, and every other behind the lock. With a
    fresh interpreter a stopped child is only a run that times out."""
    import signal

    monkeypatch.setattr("daemon.agents.skills.spawn.START_TIMEOUT_S", 1.0)
    script = _skill(tmp_path / "a", "def run(i, t):\n    return 'ran'\n")
    assert sandbox.run_script(script, {}, _no_tools, timeout_s=20).result == "ran"
    assert zygote._process is not None
    stop = threading.Event()
    # Only the zygotes started from here on: not another test's (this worker's own zygote
    # is a child of this process too; stopped, it hung every later test's runs for 5 s).
    others = set(_children_named("host_zygote")) - {zygote._process.pid}
    stopped: set[int] = set()

    def stopper() -> None:
        while not stop.is_set():
            for pid in set(_children_named("host_zygote")) - others:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.add(pid)

    watcher = threading.Thread(target=stopper, daemon=True)
    watcher.start()
    zygote._process.kill()
    zygote._process.wait()
    done: list[object] = []
    run = threading.Thread(
        target=lambda: done.append(sandbox.run_script(script, {}, _no_tools, timeout_s=2)),
        daemon=True,
    )
    run.start()
    run.join(15)
    in_time = bool(done)
    stop.set()
    watcher.join(5)
    for pid in stopped:  # let them go: each is killed, or ends with its parent
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
    if zygote._process is not None:
        with contextlib.suppress(OSError):
            zygote._process.kill()
    run.join(5)
    assert in_time, "the run did not end within 15 s (it waited for the stopped zygote)"
    assert getattr(done[0], "result", None) == "ran"


LEFT_BEHIND = """\
import os, subprocess, time

def run(inputs, tools):
    child = subprocess.Popen(["sleep", "30"])
    open(inputs["at"], "w").write(str(child.pid))
    time.sleep(1.0)
    return "done"
"""


def test_a_run_whose_zygote_was_killed_meanwhile_still_has_what_it_started_killed(
    zygote: Zygote, tmp_path: Path
):
    """Another skill kills the zygote (its parent: os.kill(os.getppid(), 9)) while this run
    goes on; vaultd then kills what this run left running itself (the child's pidfd, and its
    group), as it does a fresh interpreter's run."""
    import signal

    warm = sandbox.run_script(_skill(tmp_path / "w", FDS), {}, _no_tools, timeout_s=20)
    at = tmp_path / "child.pid"
    timer = threading.Timer(0.4, lambda: os.kill(warm.result["ppid"], signal.SIGKILL))
    timer.start()
    done = sandbox.run_script(_skill(tmp_path / "b", LEFT_BEHIND), {"at": str(at)}, _no_tools,
                              timeout_s=20)  # fmt: skip
    timer.join()
    assert done.result == "done", done
    _assert_gone(at, 0.5, "the run's child outlived its run")


KILLS_ITS_ZYGOTE_AND_HANGS = """\
import os, signal, subprocess, time

def run(inputs, tools):
    child = subprocess.Popen(["sleep", "30"])
    open(inputs["at"], "w").write(str(child.pid))
    os.kill(os.getppid(), signal.SIGKILL)  # the zygote: vaultd cannot ask it to kill now
    time.sleep(30)
"""


def test_a_run_that_killed_its_zygote_and_hangs_is_killed_at_its_timeout_with_its_children(
    zygote: Zygote, tmp_path: Path
):
    at = tmp_path / "child.pid"
    script = _skill(tmp_path / "k", KILLS_ITS_ZYGOTE_AND_HANGS)
    started = time.monotonic()
    done = sandbox.run_script(script, {"at": str(at)}, _no_tools, timeout_s=1.5)
    assert done.timed_out, done
    assert time.monotonic() - started < 10
    _assert_gone(at, 0.3, "what the run started outlived it")


SURROGATE = """\
import sys

def run(inputs, tools):
    print("name: " + b"caf\\xe9".decode("utf-8", "surrogateescape"))
    return {"errors": sys.stderr.errors, "line_buffering": sys.stderr.line_buffering}
"""


@pytest.mark.parametrize("fresh", [True, False])
def test_a_skills_prints_go_to_stderr_as_in_a_fresh_interpreter(
    zygote: Zygote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: bool
):
    """A fresh `python -I` has stderr with errors='backslashreplace', line-buffered; the fork
    opened it strict and block-buffered: printing a name read with surrogateescape failed the
    run (UnicodeEncodeError) in the fork only."""
    if fresh:
        monkeypatch.setattr(zygote, "_failures", 99)
    done = sandbox.run_script(_skill(tmp_path / "a", SURROGATE), {}, _no_tools, timeout_s=20)
    assert done.result == {"errors": "backslashreplace", "line_buffering": True}, done


STOPS_ITS_ZYGOTE_AND_HANGS = """\
import os, signal, subprocess, time

def run(inputs, tools):
    child = subprocess.Popen(["sleep", "30"])
    open(inputs["at"], "w").write(str(child.pid))
    os.kill(os.getppid(), signal.SIGSTOP)  # the zygote: alive, but it kills nothing now
    time.sleep(30)
"""


def test_a_run_that_stopped_its_zygote_and_hangs_is_killed_at_its_timeout_with_its_children(
    zygote: Zygote, tmp_path: Path
):
    """The zygote alive but not answering (SIGSTOP, or only slow): `kill` and `bye` went into
    its socket, vaultd closed it and went on, and the run (and what it started) ran past its
    timeout for as long as the zygote stayed stopped. The next run ends that zygote, which
    does not kill the runs it forked either."""
    import signal

    at = tmp_path / "child.pid"
    script = _skill(tmp_path / "s", STOPS_ITS_ZYGOTE_AND_HANGS)
    done = sandbox.run_script(script, {"at": str(at)}, _no_tools, timeout_s=1.5)
    stopped = zygote._process
    assert done.timed_out, done
    try:
        _assert_gone(at, 0.3, "what the run started outlived its timeout")
    finally:
        if stopped is not None:
            with contextlib.suppress(OSError):
                stopped.send_signal(signal.SIGCONT)


def _open_fds() -> list[str]:
    return sorted(entry.name for entry in Path("/proc/self/fd").iterdir())


def test_many_runs_leave_no_descriptor_open_whether_or_not_their_zygote_died(
    zygote: Zygote, tmp_path: Path
):
    """Each forked run holds a pidfd, a socket and two pipes: all closed at its end, also
    when its zygote was killed meanwhile (and another one started)."""
    import gc
    import signal

    quick = _skill(tmp_path / "q", "def run(i, t):\n    return 'ran'\n")
    assert sandbox.run_script(quick, {}, _no_tools, timeout_s=20).result == "ran"
    gc.collect()
    before = len(_open_fds())
    for number in range(30):
        if number % 10 == 5 and zygote._process is not None:
            zygote._process.send_signal(signal.SIGKILL)
            zygote._process.wait()
        assert sandbox.run_script(quick, {}, _no_tools, timeout_s=20).result == "ran"
    gc.collect()
    time.sleep(0.2)  # the pumps' threads end at their pipes' end
    gc.collect()
    assert len(_open_fds()) <= before + 3, _open_fds()  # a new zygote's own pipes


def test_a_released_run_is_not_signalled_again_by_a_second_release_or_kill(
    zygote: Zygote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A run whose zygote died is killed by vaultd itself (its group, by pid); a second
    release (or a kill after it) did that again, when the pid can be another process's."""
    import signal
    import tempfile

    from daemon.agents.skills import spawn

    script = _skill(tmp_path / "a", "def run(i, t):\n    return 'ran'\n")
    assert sandbox.run_script(script, {}, _no_tools, timeout_s=20).result == "ran"
    with tempfile.TemporaryFile() as stderr:
        child = zygote.spawn(script, stderr.fileno())
        assert isinstance(child, spawn.Forked)
        assert zygote._process is not None
        time.sleep(0.3)  # the child has closed its copy of the zygote's socket
        zygote._process.send_signal(signal.SIGKILL)
        zygote._process.wait()
        child.release()
        signalled: list[int] = []
        monkeypatch.setattr(spawn.os, "killpg", lambda pid, sig: signalled.append(pid))
        child.release()
        child.kill()
        assert signalled == []


def test_a_run_released_as_its_zygote_dies_just_after_answering_is_killed(
    zygote: Zygote, tmp_path: Path
):
    """The zygote killed just after it answered the pid, before the child closed its copy
    of the connection: the socket is not at its end, so `kill` and `bye` went into it as if
    the zygote were there, no one read them, and the child lived on (here it waits for its
    inputs for good)."""
    import signal
    import tempfile

    script = _skill(tmp_path / "a", "def run(i, t):\n    return 'ran'\n")
    assert sandbox.run_script(script, {}, _no_tools, timeout_s=20).result == "ran"
    with tempfile.TemporaryFile() as stderr:
        child = zygote.spawn(script, stderr.fileno())
        assert zygote._process is not None
        zygote._process.send_signal(signal.SIGKILL)
        zygote._process.wait()
        child.release()
        time.sleep(0.3)
        try:
            assert not _alive(child.pid), "the run outlived its release"
        finally:
            with contextlib.suppress(OSError):
                os.kill(child.pid, 9)
