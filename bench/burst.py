"""Burst throughput: a pile of task files through `Runner.run_once`, beside a baseline.

Two figures, each on fresh vault and ledger:

through classification   invoices over the threshold: Needs_Action/ → decide → a request
                         in Pending_Approval/. Nothing is executed.
through dry-run execution  posts to two platforms, approved by policy: Needs_Action/ →
                         Approved/ → two dry-run calls → Done/.

The baseline loop works on the very same files: it reads each one, parses its frontmatter
with python-frontmatter and renames it into Needs_Action/, where vaultd then finds it. It is
the least any daemon must do per file, measured in the same run on the same disk, so the
ratio vaultd / baseline says how much of the cost is vaultd's own (goal ≥ 0.5).
Runs in-process, without the stability window (as `vaultd run --once` does).
"""

from __future__ import annotations

import time
from pathlib import Path

import frontmatter

from bench.daemon_process import count_files, write_tasks
from bench.report import Figure
from daemon.core.vault import Vault
from daemon.service.app import open_app
from daemon.service.runner import Runner

GOAL_RATIO = 0.5


def baseline(incoming: Path, target: Path) -> float:
    """Read, parse and rename every file of `incoming` into `target`; return files/s."""
    paths = sorted(incoming.iterdir())
    started = time.perf_counter()
    for path in paths:
        frontmatter.loads(path.read_text(encoding="utf-8"))
        path.rename(target / path.name)
    return len(paths) / (time.perf_counter() - started)


def through_vaultd(root: Path, count: int, kinds: str, lands_in: str) -> tuple[float, float]:
    """Return (vaultd files/s, baseline files/s) for `count` files of one kind."""
    vault = root / "vault"
    Vault(vault).ensure_folders()
    incoming = root / "incoming"
    write_tasks(incoming, count, prefix="burst", kinds=kinds)
    baseline_rate = baseline(incoming, vault / "Needs_Action")
    app = open_app(vault, state_dir=root / "state")
    try:
        started = time.perf_counter()
        Runner(app.pipeline, app.config).run_once()
        elapsed = time.perf_counter() - started
    finally:
        app.close()
    landed = count_files(vault / lands_in)
    if landed != count:
        raise RuntimeError(f"burst: {landed} of {count} {kinds} files reached {lands_in}/")
    return count / elapsed, baseline_rate


def figures(root: Path, count: int) -> list[Figure]:
    result = []
    for label, kinds, lands_in, what in (
        ("through classification", "invoice", "Pending_Approval", "invoices needing approval"),
        ("through dry-run execution", "post", "Done", "posts to 2 platforms, auto-approved"),
    ):
        rate, base = through_vaultd(root / kinds, count, kinds, lands_in)
        result.append(
            Figure(
                f"burst throughput {label} ({count:,} {what} → {lands_in}/)",
                f"{rate:,.0f} files/s ({1000 / rate:.2f} ms/file); baseline read+parse+rename "
                f"{base:,.0f} files/s; ratio {rate / base:.3f}",
                f"ratio ≥ {GOAL_RATIO}",
                rate / base >= GOAL_RATIO,
            )
        )
    return result
