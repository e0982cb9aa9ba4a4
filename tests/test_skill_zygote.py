"""Skill runs forked from the host's zygote (daemon/agents/skills/spawn.py, host_zygote.py)
are what a fresh `python -I host.py` gives: a process of their own per run, nothing left
from another run, no credentials, their exit code; a skill that kills the zygote or a zygote
that cannot start costs speed, never a run."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from test_skills import make_skill, runs_with

from daemon.agents.skills import sandbox
from daemon.agents.skills.spawn import Forked, Zygote
from daemon.service.app import App

# Reports its process and what an earlier run may have left in the process it runs in.
PROBE = """\
import json
import os
import sys

def run(inputs, tools):
    left = getattr(json, "left_by_an_earlier_run", None)
    json.left_by_an_earlier_run = inputs.get("mark")
    return {"pid": os.getpid(), "ppid": os.getppid(), "left": left, "cwd": os.getcwd(),
            "argv": sys.argv, "env": dict(os.environ)}
"""


@pytest.fixture(autouse=True)
def own_zygote(monkeypatch: pytest.MonkeyPatch):
    """A zygote of this test's own: whatever earlier tests did to the worker's does not
    count (one that gave up on its zygote runs every skill afresh)."""
    own = Zygote(sandbox._clean_environment)
    monkeypatch.setattr(sandbox, "ZYGOTE", own)
    yield own
    own.stop()


@pytest.fixture
def probe(app: App, tmp_path: Path):
    make_skill(tmp_path / "skills", "probe", PROBE)
    return runs_with(app, tmp_path / "skills")


def test_each_run_is_a_fresh_fork_that_nothing_of_an_earlier_run_reaches(
    probe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ODOO_PASSWORD", "canary-zygote-51c2")
    first = probe.create("probe", {"mark": "one"}, requested_by="t", execute=True).run
    second = probe.create("probe", {"mark": "two"}, requested_by="t", execute=True).run
    assert first.state == second.state == "succeeded", (first.error, second.error)
    one, two = first.output, second.output
    assert one["pid"] != two["pid"] and os.getpid() not in (one["pid"], two["pid"])
    assert one["left"] is None and two["left"] is None  # a fresh copy each time
    assert one["ppid"] == two["ppid"] != os.getpid()  # both forked by the zygote
    assert one["cwd"] == str(tmp_path / "skills" / "probe")
    assert one["argv"][1] == str(tmp_path / "skills" / "probe" / "execute.py")
    assert "canary-zygote-51c2" not in json.dumps(one["env"])
    assert set(one["env"]) <= {"PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONIOENCODING"}


def test_a_skill_that_kills_the_zygote_still_ends_its_run_and_the_next_gets_a_new_one(
    app: App, tmp_path: Path
):
    # It kills its parent only if that is the zygote: never the test's own process.
    code = (
        "import os, signal\nfrom pathlib import Path\n\ndef run(inputs, tools):\n"
        "    parent = os.getppid()\n"
        "    if b'host_zygote' in Path(f'/proc/{parent}/cmdline').read_bytes():\n"
        "        os.kill(parent, signal.SIGKILL)\n"
        "    return {'ppid': parent}\n"
    )
    make_skill(tmp_path / "skills", "rogue", code)
    make_skill(tmp_path / "skills", "probe", PROBE)
    runs = runs_with(app, tmp_path / "skills")
    rogue = runs.create("rogue", {}, requested_by="t", execute=True).run
    assert rogue.state == "succeeded", rogue.error
    after = runs.create("probe", {}, requested_by="t", execute=True).run
    assert after.state == "succeeded", after.error
    assert after.output["ppid"] != rogue.output["ppid"]  # a new zygote


def test_exit_codes_and_a_timeout_are_told_as_for_a_fresh_process(app: App, tmp_path: Path):
    make_skill(tmp_path / "skills", "quits", "import sys\n\ndef run(i, t):\n    sys.exit(3)\n")
    hang = "import subprocess, time\n\ndef run(i, t):\n    subprocess.Popen(['sleep', '60'])\n    time.sleep(60)\n"  # noqa: E501
    make_skill(tmp_path / "skills", "hangs", hang, timeout_s=0.5)
    runs = runs_with(app, tmp_path / "skills")
    quits = runs.create("quits", {}, requested_by="t", execute=True).run
    assert quits.error == "execute.py ended without a result (exit code 3)"
    hung = runs.create("hangs", {}, requested_by="t", execute=True).run
    assert hung.error == "timed out after 0.5 s (timeout_s)"


def test_a_zygote_that_cannot_start_leaves_each_run_to_a_fresh_interpreter(
    probe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    broken = tmp_path / "no-zygote.py"
    broken.write_text("raise SystemExit(1)\n", encoding="utf-8")
    monkeypatch.setattr("daemon.agents.skills.spawn.ZYGOTE", broken)
    fresh = Zygote(sandbox._clean_environment)
    monkeypatch.setattr(sandbox, "ZYGOTE", fresh)
    started = []
    monkeypatch.setattr(fresh, "_socket", lambda real=fresh._socket: started.append(1) or real())
    for _ in range(5):
        run = probe.create("probe", {}, requested_by="t", execute=True).run
        assert run.state == "succeeded", run.error
        assert run.output["ppid"] == os.getpid()  # started by this process itself
    assert len(started) == 3  # tried three times, then no more: no start-up cost per run
    monkeypatch.setattr(fresh, "_resting_until", 0.0)  # its rest is over
    probe.create("probe", {}, requested_by="t", execute=True)
    assert len(started) == 4  # tried again: the cause may have passed
    fresh.stop()


def test_the_zygote_forks_with_the_streams_it_was_given(tmp_path: Path):
    script = tmp_path / "execute.py"
    script.write_text("def run(inputs, tools):\n    return inputs['x'] * 2\n", encoding="utf-8")
    zygote = Zygote(sandbox._clean_environment)
    try:
        with (tmp_path / "err").open("w") as err:
            child = zygote.spawn(script, err.fileno())
        assert isinstance(child, Forked)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write('{"x": 21}\n')
        child.stdin.flush()
        assert json.loads(child.stdout.readline()) == {"result": 42}
        assert child.wait() == 0
    finally:
        zygote.stop()


def test_a_skill_that_closes_its_channel_and_lingers_is_ended_at_its_timeout(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Closing every copy of vaultd's channel is an end of file, not an end of the process.
    code = "import os, time\n\ndef run(inputs, tools):\n    os.closerange(1, 256)\n    time.sleep(60)\n"  # noqa: E501
    make_skill(tmp_path / "skills", "lingers", code, timeout_s=1)
    for zygote in (True, False):
        if not zygote:  # and as a fresh interpreter, the fallback
            monkeypatch.setattr(sandbox.ZYGOTE, "_failures", 99)  # this test's own
        run = runs_with(app, tmp_path / "skills").create("lingers", {}, requested_by="t")
        ended = runs_with(app, tmp_path / "skills").execute(run.run.id).run
        assert ended.error == "timed out after 1 s (timeout_s)", (zygote, ended.error)


def test_a_zygote_a_skill_stopped_is_replaced_after_one_slow_run(
    own_zygote: Zygote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import signal

    monkeypatch.setattr("daemon.agents.skills.spawn.ANSWER_TIMEOUT_S", 0.5)
    script = tmp_path / "execute.py"
    script.write_text("def run(inputs, tools):\n    return 'ran'\n", encoding="utf-8")
    assert sandbox.run_script(script, {}, lambda n, a: ("error", ""), timeout_s=20).result == "ran"
    stopped = own_zygote._process
    assert stopped is not None
    os.kill(stopped.pid, signal.SIGSTOP)  # what a skill of the same user can do
    try:
        for _ in range(2):  # the first waits for it and ends it; the second has a new one
            done = sandbox.run_script(script, {}, lambda n, a: ("error", ""), timeout_s=20)
            assert done.result == "ran"
        assert own_zygote._process is not None and own_zygote._process.pid != stopped.pid
    finally:
        with contextlib.suppress(OSError):
            os.kill(stopped.pid, signal.SIGCONT)
