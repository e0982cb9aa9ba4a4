"""Approve → execute latency, with a real `vaultd run` subprocess.

`count` invoices over the threshold are classified by `vaultd run --once` into
Pending_Approval/. Then the daemon is started; once it is watching and idle, each request is
moved into Approved/ in turn (a rename, as a person dragging the note in Obsidian does) and
the time until the note is in Done/ is taken, polling every millisecond. The next move waits
for the previous note, so each latency is that of one approval on an otherwise idle daemon
(the file event, reading, checking the approval, the dry-run call, the ledger's durable
writes, the move, and whatever the daemon does meanwhile: the Dashboard, the scheduler).

The daemon runs with the default config but for `stability_ms` (vaultd's 300 unless
`--stability-ms` says otherwise), and a rename into Approved/ does not wait for it: a rename
is atomic, so the note is complete when it lands, and the approval is bound to its content
hash whatever the wait. The goal holds for any stability window.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench.daemon_process import (
    Daemon,
    clean_env,
    count_files,
    vaultd_command,
    wait_for,
    write_config,
    write_tasks,
)
from bench.report import Figure
from daemon.core.vault import Vault

# The goal for the p99 of one approval on an idle daemon, whatever the stability window.
GOAL_MS = 50


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(len(sorted_values) * fraction))
    return sorted_values[rank - 1]


def measure(root: Path, count: int, stability_ms: int) -> list[float]:
    """Return the seconds from each move into Approved/ until the note is in Done/."""
    vault = root / "vault"
    Vault(vault).ensure_folders()
    state, config = root / "state", write_config(root / "config.toml", stability_ms)
    names = [
        path.name
        for path in write_tasks(vault / "Needs_Action", count, prefix="approve", kinds="invoice")
    ]
    subprocess.run(
        [
            *vaultd_command(),
            "run",
            "--once",
            "--vault",
            str(vault),
            "--state-dir",
            str(state),
            "--config",
            str(config),
        ],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    pending = count_files(vault / "Pending_Approval")
    if pending != count:
        raise RuntimeError(f"latency: {pending} of {count} invoices reached Pending_Approval/")
    daemon = Daemon(vault, state, config, root / "daemon.log")
    latencies = []
    try:
        wait_for(daemon.watching, 30, "the daemon to watch")
        daemon.wait_idle()
        for name in names:
            done = vault / "Done" / name
            started = time.perf_counter()
            (vault / "Pending_Approval" / name).rename(vault / "Approved" / name)
            while not done.exists():
                if time.perf_counter() - started > 10:
                    daemon.check_alive()
                    raise RuntimeError(f"{name} did not reach Done/ within 10 s")
                time.sleep(0.001)
            latencies.append(time.perf_counter() - started)
    finally:
        daemon.stop()
    return latencies


def figures(root: Path, count: int, stability_ms: int) -> list[Figure]:
    load = os.getloadavg()[0]
    latencies = sorted(measure(root, count, stability_ms))
    p50 = statistics.median(latencies) * 1000
    p99 = percentile(latencies, 0.99) * 1000
    return [
        Figure(
            f"approve → execute latency ({count} moves into Approved/, real daemon)",
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {latencies[-1] * 1000:.0f} ms",
            f"p99 < {GOAL_MS} ms, idle daemon, default config",
            p99 < GOAL_MS,
            f"stability_ms = {stability_ms}, not waited: a rename is complete; "
            f"load average {load:.2f} before the run",
        )
    ]
