"""The run queue (issue 14, item 7): enqueue → start latency, and the throughput of no-op
runs, worked by the real queue workers of `vaultd run` (daemon/agents/queue/workers.py) in
this process, on SQLite, with the default `[queue]` config (2 workers, poll 0.5 s).

Beside them, in the same run, the baseline: the same no-op runs executed one after the
other by the run service itself (`Runs.execute`, no queue), so the figure shows what the
queue costs over running a skill at all. A skill's `execute.py` runs in a child process
with its timeout: that child, not the queue, bounds how many runs a second two workers do.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from pathlib import Path

from bench.report import Figure
from daemon.agents.queue.service import RunQueue
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.service import open_runs
from daemon.agents.skills.store import SUCCEEDED
from daemon.core.vault import Vault
from daemon.service.app import open_app

GOAL_LATENCY_MS = 50
GOAL_RUNS_PER_S = 200
NOOP = "def run(inputs, tools):\n    return {}\n"


def _vault(root: Path) -> tuple[Path, Path, Path]:
    vault, state = root / "vault", root / "state"
    Vault(vault).ensure_folders()
    skill = root / "skills" / "noop"
    skill.mkdir(parents=True, exist_ok=True)
    manifest = {"name": "noop", "description": "does nothing", "parameters": {"type": "object"}}
    (skill / "skill.json").write_text(json.dumps(manifest))
    (skill / "execute.py").write_text(NOOP)
    config = root / "config.toml"
    config.write_text(f"[skills]\ndirs = [{json.dumps(str(root / 'skills'))}]\n")
    return vault, state, config


def _wait(observer: sqlite3.Connection, run_ids: list[str], state: str, timeout: float) -> None:
    """Return when every run is in `state`, asked from a connection of the bench's own (as a
    client would watch): one query a poll, never the daemon's connection or its lock."""
    deadline, wanted = time.monotonic() + timeout, json.dumps(run_ids)
    pause = 0.0005 if len(run_ids) == 1 else 0.005
    query = (
        "SELECT count(*) FROM skill_runs WHERE state = ? AND id IN (SELECT value FROM json_each(?))"
    )
    while time.monotonic() < deadline:
        (done,) = observer.execute(query, (state, wanted)).fetchone()
        if done == len(run_ids):
            return
        time.sleep(pause)
    raise RuntimeError(f"queue bench: run(s) never became {state}")


def measure(root: Path, samples: int, burst: int) -> tuple[list[float], float, float]:
    """Return (enqueue → running latencies in ms, queued runs/s, baseline runs/s)."""
    vault, state, config = _vault(root)
    app = open_app(vault, config_path=config, state_dir=state)
    try:
        runs = open_runs(app)
        queue = RunQueue(runs, app.config.queue)
        workers = Workers(runs, app.config.queue)
        workers.start()
        observer = sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True)
        try:
            latencies = []
            for n in range(samples):
                started = time.perf_counter()
                view = queue.enqueue("noop", {"n": n}, requested_by="bench")
                _wait(observer, [view.run.id], "running", 10)
                latencies.append((time.perf_counter() - started) * 1000)
                _wait(observer, [view.run.id], SUCCEEDED, 30)
            began = time.perf_counter()
            ids = [
                queue.enqueue("noop", {"burst": n}, requested_by="bench").run.id
                for n in range(burst)
            ]
            _wait(observer, ids, SUCCEEDED, 600)
            queued_rate = burst / (time.perf_counter() - began)
        finally:
            observer.close()
            workers.stop()
        began = time.perf_counter()
        for n in range(burst):
            draft = runs.create("noop", {"baseline": n}, requested_by="bench")
            runs.execute(draft.run.id)
        baseline_rate = burst / (time.perf_counter() - began)
    finally:
        app.close()
    return latencies, queued_rate, baseline_rate


def figures(root: Path, samples: int, burst: int) -> list[Figure]:
    latencies, rate, baseline = measure(root, samples, burst)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return [
        Figure(
            f"run queue: enqueue → start latency ({samples} runs, 2 workers, SQLite)",
            f"p50 {statistics.median(ordered):.0f} ms, p99 {p99:.0f} ms, max {ordered[-1]:.0f} ms",
            f"p99 < {GOAL_LATENCY_MS} ms",
            p99 < GOAL_LATENCY_MS,
        ),
        Figure(
            f"run queue: no-op runs through the queue ({burst} runs, 2 workers, SQLite)",
            f"{rate:,.0f} runs/s; baseline (the same runs executed one by one, no queue) "
            f"{baseline:,.0f} runs/s; ratio {rate / baseline:.2f}",
            f"≥ {GOAL_RUNS_PER_S} runs/s",
            rate >= GOAL_RUNS_PER_S,
        ),
    ]
