"""Idle queue workers start a run enqueued by another process at once, not after their
poll: the watcher sees the ledger's data_version change (issue 14, item 7)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from daemon.agents.queue.service import RunQueue
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.service import open_runs
from daemon.core.vault import Vault
from daemon.service.app import open_app


def test_a_run_enqueued_by_another_connection_starts_long_before_the_poll(tmp_path: Path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    Vault(vault).ensure_folders()
    skill = tmp_path / "skills" / "noop"
    skill.mkdir(parents=True)
    (skill / "skill.json").write_text(
        json.dumps({"name": "noop", "description": "nothing", "parameters": {"type": "object"}})
    )
    (skill / "execute.py").write_text("def run(inputs, tools):\n    return {}\n")
    config = tmp_path / "config.toml"
    config.write_text(
        f"[skills]\ndirs = [{json.dumps(str(tmp_path / 'skills'))}]\n[queue]\npoll_seconds = 30\n"
    )
    daemon = open_app(vault, config_path=config, state_dir=state)  # the workers' process
    other = open_app(vault, config_path=config, state_dir=state)  # `vaultd serve`, say
    try:
        workers = Workers(open_runs(daemon), daemon.config.queue)
        workers.start()
        try:
            time.sleep(0.2)  # every worker is idle in its 30 s poll
            queue = RunQueue(open_runs(other), other.config.queue)
            started = time.monotonic()
            enqueued = queue.enqueue("noop", {}, requested_by="test")
            # What enqueue answers is the run as its transaction wrote it, however fast a
            # worker takes it (the API's 202 says `queued`).
            assert (enqueued.run.state, enqueued.trace) == ("queued", [])
            run_id = enqueued.run.id
            ledger = state / "ledger.sqlite3"
            while time.monotonic() - started < 10:
                with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
                    (now,) = db.execute(
                        "SELECT state FROM skill_runs WHERE id = ?", (run_id,)
                    ).fetchone()
                if now != "queued":
                    break
                time.sleep(0.005)
            assert time.monotonic() - started < 2, "the run waited for the workers' poll"
        finally:
            workers.stop()
    finally:
        other.close()
        daemon.close()
