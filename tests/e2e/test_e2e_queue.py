"""Issue 14: the run queue worked by the real `vaultd run`, and kill -9 at random under it.

`vaultd runs create --execute --wait` enqueues from another process and follows the run to
its end while the daemon's workers run it and its pipeline executes what it asked for.

The kill test enqueues runs of a skill that asks for one auto-approved post each, starts
`vaultd run`, SIGKILLs it after a random delay (seeded; the seed is printed, VAULTD_SEED=N
replays it) and starts it again, a few times, then lets it finish. Then every run is in one
terminal state, no run that asked for its post was ever started again, each run's request
task file was written once, and each post was sent (dry-run) once.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import forkserver
import pytest
from conftest import files_in, wait_for
from e2e_support import Daemon, audit_events, calls_per_marker, integrity, nightly

from daemon.agents.queue.service import RunQueue
from daemon.agents.skills.service import open_runs
from daemon.service.app import open_app

pytestmark = pytest.mark.e2e

RUNS = 200 if nightly() else 30
KILLS = 25 if nightly() else 4
# Seeds that found a bug stay here, beside one random seed a run (printed, and kept as a
# user property for the summary). The first one to find a bug here (the intake one in
# test_queue.py, under an older kill schedule) no longer replays the same kills, and that
# bug has its own deterministic test, so none is kept yet.
FIXED_SEEDS: tuple[int, ...] = ()
# Asks for one post, between two short pauses, so that kills land before, in and after it.
ANNOUNCE = """\
import os, time


def run(inputs, tools):
    with open(os.path.join(inputs["marks"], "starts.log"), "a") as log:
        log.write(f"{inputs['n']}\\n")
    time.sleep(inputs["pause"])
    tools.call("social.post", platforms=["facebook"], text=f"Announcement {inputs['n']}")
    time.sleep(inputs["pause"])
    return {"n": inputs["n"]}
"""


def setup(tmp_path: Path, queue: str = "") -> tuple[Path, Path, Path, Path]:
    """A vault, its state, a folder outside it where the skill marks its starts, and a
    config naming the skill's folder, with `queue` (TOML lines) in [queue]."""
    vault, state, marks = tmp_path / "vault", tmp_path / "state", tmp_path / "marks"
    for folder in ("Needs_Action", "Pending_Approval", "Approved", "Rejected", "Done", "Failed"):
        (vault / folder).mkdir(parents=True)
    marks.mkdir()
    skill = tmp_path / "skills" / "announce"
    skill.mkdir(parents=True)
    (skill / "skill.json").write_text(
        json.dumps(
            {
                "name": "announce",
                "description": "asks for one post",
                "tools": ["social.post"],
                "approval_required": False,
                "parameters": {"type": "object"},
            }
        )
    )
    (skill / "execute.py").write_text(ANNOUNCE)
    config = tmp_path / "vaultd.toml"
    config.write_text(
        "[daemon]\nstability_ms = 50\nquiet_ms = 0\ndashboard_seconds = 0.2\n"
        "[policy]\ndaily_posts_per_platform = 1000\n"
        f"[skills]\ndirs = [{json.dumps(str(tmp_path / 'skills'))}]\n"
        f"[queue]\npoll_seconds = 0.05\n{queue}\n[queue.channels]\ndefault = 2\n"
    )
    return vault, state, marks, config


def started(starts: Path) -> int:
    """Return how many times the skill has started (its marks, written outside the vault)."""
    return len(starts.read_text().splitlines()) if starts.exists() else 0


def runs_by_state(state: Path) -> dict[str, dict[str, object]]:
    with sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in db.execute("SELECT * FROM skill_runs")}


def request_steps(state: Path) -> list[dict[str, object]]:
    with sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM skill_steps WHERE token IS NOT NULL")
        return [dict(row) for row in rows]


def test_runs_create_execute_wait_follows_a_run_the_daemon_works_to_its_end(tmp_path: Path):
    vault, state, marks, config = setup(tmp_path)
    where = ["--vault", str(vault), "--state-dir", str(state), "--config", str(config)]
    daemon = Daemon(vault, state, "--config", str(config))
    try:
        inputs = json.dumps({"n": 1, "pause": 0.0, "marks": str(marks)})
        waited = forkserver.run(
            [
                "runs",
                "create",
                "announce",
                "--input",
                inputs,
                "--execute",
                "--wait",
                *where,
            ],
            timeout=60,
        )
        assert waited.returncode == 0, waited.stdout + waited.stderr + daemon.output()
        assert ": queued\n" in waited.stdout
        assert ": succeeded\n" in waited.stdout
        [done] = files_in(vault, "Done")
        assert done.startswith("announce-")
    finally:
        assert daemon.terminate() == 0, daemon.output()
    assert "restarting" not in daemon.output()


def kill_seeds() -> list[str]:
    if os.environ.get("VAULTD_SEED"):
        return [os.environ["VAULTD_SEED"]]
    return [*map(str, FIXED_SEEDS), "random"]


@pytest.mark.parametrize("seed_name", kill_seeds())
def test_random_kill_9_under_the_queue_ends_every_run_once_and_asks_nothing_twice(
    tmp_path: Path, seed_name: str, record_property: Callable[[str, object], None]
):
    seed = time.time_ns() % 2**32 if seed_name == "random" else int(seed_name)
    record_property("kill_seed", seed)
    print(f"random kill seed: VAULTD_SEED={seed}")
    rng = random.Random(seed)
    vault, state, marks, config = setup(
        tmp_path, "max_retries = 5\nretry_pattern = {1 = 0}\nlease_seconds = 2"
    )
    app = open_app(vault, config_path=config, state_dir=state)
    try:
        queue = RunQueue(open_runs(app), app.config.queue)
        for n in range(RUNS):
            pause = rng.choice((0.0, 0.02, 0.1))
            queue.enqueue(
                "announce", {"n": n, "pause": pause, "marks": str(marks)}, requested_by="test"
            )
    finally:
        app.close()

    starts = marks / "starts.log"
    for kill in range(KILLS):
        daemon = Daemon(vault, state, "--config", str(config))
        # Killed after 1 to 4 more runs started, and a few milliseconds more: inside a
        # run's steps, not in the daemon's start-up (which takes longer than a run).
        before, most = started(starts), rng.randint(1, 4)
        deadline = time.monotonic() + 20
        while started(starts) < before + most and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.1))
        exited = daemon.process.poll()
        daemon.kill()
        assert exited is None, f"seed {seed}: vaultd exited {exited}:\n{daemon.output()}"
        assert integrity(state) == "ok", f"seed {seed}: after kill {kill + 1}"

    final = Daemon(vault, state, "--config", str(config))
    try:

        def ended() -> bool:
            states = {run["state"] for run in runs_by_state(state).values()}
            return states <= {"succeeded", "failed"}

        wait_for(ended, timeout=120 if nightly() else 60, interval=0.2)
    finally:
        assert final.terminate() == 0, f"seed {seed}:\n{final.output()}"
    assert integrity(state) == "ok"

    runs = runs_by_state(state)
    assert len(runs) == RUNS
    steps = request_steps(state)
    asked = Counter(str(step["run_id"]) for step in steps)
    assert max(asked.values()) == 1, f"seed {seed}: a run asked twice: {asked.most_common(3)}"
    for step in steps:  # a run that asked was never started again after it
        run = runs[str(step["run_id"])]
        assert step["attempt"] == run["attempt"], f"seed {seed}: {run['id']} ran after asking"
    files = [
        (folder, name)
        for folder in ("Needs_Action", "Pending_Approval", "Approved", "Rejected", "Done", "Failed")
        for name in files_in(vault, folder)
    ]
    # A request's file is named by its run, attempt and step (tools.py): announce-RUN-A-S.md
    by_run = Counter(
        re.sub(r"^announce-(run-\d+-[0-9a-f]+)-\d+-\d+\.md$", r"\1", n) for _, n in files
    )
    # A kill between a request's record and its file (tools.py records first) leaves a
    # request that was never made: its run fails saying so, and is never started again.
    unwritten = Counter(
        run_id
        for run_id, run in runs.items()
        if run["state"] == "failed" and "before it wrote the request" in str(run["error"])
    )
    assert by_run == asked - unwritten, f"seed {seed}: request files and requests differ"
    assert {folder for folder, _ in files} <= {"Done"}, f"seed {seed}: {files}"
    sent = calls_per_marker(state)
    assert sent and max(sent.values()) == 1, f"seed {seed}: a post was sent twice"
    assert len(sent) == len(files)
    for run in runs.values():
        if run["state"] == "failed":
            assert "worker" in str(run["error"]), f"seed {seed}: {run['id']}: {run['error']}"
        else:
            assert by_run[str(run["id"])] == 1, f"seed {seed}: {run['id']} succeeded unasked"
    recovered = [e for e in audit_events(vault) if e["event"] == "run_recovered"]
    assert recovered, f"seed {seed}: no kill landed in a run; the test proved little"
    succeeded = sum(1 for run in runs.values() if run["state"] == "succeeded")
    print(
        f"seed {seed}: {KILLS} kills, {len(recovered)} runs taken back, {succeeded} of {RUNS} "
        f"succeeded, {started(starts)} starts"
    )
