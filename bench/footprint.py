"""Start-up time and memory of a real `vaultd run`, on a vault with many ordinary notes.

The vault holds `notes` Markdown notes under Notes/<area>/<topic>/ besides the pipeline
folders, as a well-used Obsidian vault does.

start-up  Needs_Action/ holds `pending` task files (posts and invoices). The time is taken
          from just before launching `vaultd run` until the process holds its inotify
          watches on every active folder (see bench.daemon_process): from then on no file
          event is lost. Also shown, as a cross-check: until the runner's log line
          "watching for file events" (logged right after the watcher started), until the
          first pending file has left Needs_Action/, and how long the interpreter and
          imports alone take (`vaultd --help`).
          Each run gets a fresh state directory and fresh pending files; the worst run
          is held against the goal. The page cache is warm (the files were just written).
memory    VmRSS from /proc/<pid>/status: idle (watching, CPU quiet) on the vault with no
          task files, then after `burst` task files (half posts to Done/, half invoices to
          Pending_Approval/) were renamed into Needs_Action/ at once and all processed.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from bench.daemon_process import (
    Daemon,
    build_notes_vault,
    clean_env,
    count_files,
    reset_pipeline,
    vaultd_command,
    wait_for,
    write_config,
    write_tasks,
)
from bench.report import Figure

STARTUP_GOAL_S = 2.0
# What Runner.run_forever logs once its watcher has started.
WATCHING_LINE = "watching for file events"
MEMORY_GOAL_MB = 100.0


def import_seconds(runs: int = 3) -> float:
    """Return the fastest `vaultd --help`: interpreter start, imports, argument parser."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [*vaultd_command(), "--help"], check=True, capture_output=True, env=clean_env()
        )
        best = min(best, time.perf_counter() - started)
    return best


def startup_once(vault: Path, root: Path, config: Path, pending: int) -> dict[str, float]:
    """Return seconds from launch until: "watching" (inotify watches in place), "logged"
    (the runner's "watching for file events" line) and "first" (a pending file processed).
    """
    reset_pipeline(vault)
    write_tasks(vault / "Needs_Action", pending, prefix="pending")
    state = root / f"state-{time.monotonic_ns()}"
    daemon = Daemon(vault, state, config, root / "startup.log")
    seen: dict[str, float] = {}
    checks = {
        "watching": daemon.watching,
        "logged": lambda: WATCHING_LINE in daemon.log_text(),
        "first": lambda: count_files(vault / "Needs_Action") < pending,
    }
    try:

        def all_seen() -> bool:
            for name, check in checks.items():
                if name not in seen and check():
                    seen[name] = time.perf_counter() - daemon.launched
            return len(seen) == len(checks)

        wait_for(all_seen, 60, "the daemon to start", interval=0.002)
    finally:
        daemon.stop()
    return seen


def startup_figures(
    vault: Path, root: Path, config: Path, *, pending: int, runs: int, notes: int
) -> list[Figure]:
    results = [startup_once(vault, root, config, pending) for _ in range(runs)]
    watching = [result["watching"] for result in results]
    imports = import_seconds()
    return [
        Figure(
            f"start-up until watching ({notes:,} notes, {pending:,} files in Needs_Action/, "
            f"{runs} runs)",
            f"median {statistics.median(watching):.2f} s, worst {max(watching):.2f} s",
            f"< {STARTUP_GOAL_S:.0f} s",
            max(watching) < STARTUP_GOAL_S,
            f'medians: log line "{WATCHING_LINE}" seen after '
            f"{statistics.median(r['logged'] for r in results):.2f} s, first pending file "
            f"processed after {statistics.median(r['first'] for r in results):.2f} s; "
            f"interpreter + imports alone (`vaultd --help`, best of 3) {imports:.2f} s",
        )
    ]


def memory_figures(
    vault: Path, root: Path, config: Path, *, burst: int, notes: int
) -> list[Figure]:
    reset_pipeline(vault)
    incoming = root / "incoming"
    write_tasks(incoming, burst, prefix="burst")
    daemon = Daemon(vault, root / "state-memory", config, root / "memory.log")
    try:
        wait_for(daemon.watching, 60, "the daemon to watch")
        daemon.wait_idle()
        idle = daemon.status()
        started = time.perf_counter()
        for path in sorted(incoming.iterdir()):
            path.rename(vault / "Needs_Action" / path.name)

        def all_processed() -> bool:
            daemon.check_alive()
            settled = count_files(vault / "Done") + count_files(vault / "Pending_Approval")
            return settled >= burst and count_files(vault / "Needs_Action") == 0

        finished = wait_for(all_processed, 1800, "the burst to be processed", interval=0.25)
        daemon.wait_idle()
        after = daemon.status()
    finally:
        daemon.stop()
    idle_mb, after_mb, peak_mb = idle["VmRSS"] / 1024, after["VmRSS"] / 1024, after["VmHWM"] / 1024
    return [
        Figure(
            f"memory idle (VmRSS of `vaultd run`, {notes:,} notes)",
            f"{idle_mb:.1f} MB",
            f"< {MEMORY_GOAL_MB:.0f} MB",
            idle_mb < MEMORY_GOAL_MB,
            f"RssAnon {idle.get('RssAnon', 0) / 1024:.1f} MB, "
            f"RssFile {idle.get('RssFile', 0) / 1024:.1f} MB",
        ),
        Figure(
            f"memory after a burst of {burst:,} task files (VmRSS)",
            f"{after_mb:.1f} MB (peak VmHWM {peak_mb:.1f} MB)",
            f"< {MEMORY_GOAL_MB:.0f} MB",
            after_mb < MEMORY_GOAL_MB,
            f"the real daemon took {finished - started:.1f} s for the burst "
            f"({burst / (finished - started):,.0f} files/s, stability window included)",
        ),
    ]


def prepare(root: Path, notes: int, stability_ms: int) -> tuple[Path, Path]:
    """Write the vault with `notes` notes and the daemon's config; return both paths."""
    started = time.perf_counter()
    vault = build_notes_vault(root, notes)
    print(f"  (wrote {notes:,} notes in {time.perf_counter() - started:.1f} s)", flush=True)
    return vault, write_config(root / "config.toml", stability_ms)
