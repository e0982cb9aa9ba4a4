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

A third figure holds vaultd to what its promise costs (issue 13): the same auto-approved
posts (2,000 in `make bench`) beside the durable baseline of bench/durable.py, which does
per file only the reads, commits, fsyncs, renames and log line that promise needs. The
baseline runs just before and just after vaultd, on its own copy of the files, and the
ratio is taken against the mean of the two, so a change in the machine's load during the
run weighs on both sides (goal ≥ 0.8).
Runs in-process, without the stability window (as `vaultd run --once` does).
"""

from __future__ import annotations

import time
from pathlib import Path

import frontmatter

from bench import durable
from bench.daemon_process import count_files, write_tasks
from bench.report import Figure
from daemon.core.vault import Vault
from daemon.service.app import open_app
from daemon.service.runner import Runner

GOAL_RATIO = 0.5
GOAL_DURABLE_RATIO = 0.8
# A burst auto-approves thousands of posts at once: far over the default daily budget of
# posts per platform, which would send all but the first ten to a person.
UNLIMITED_POSTS = "[policy]\ndaily_posts_per_platform = 100000000\n"


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
    return run_vaultd(root, count, kinds, lands_in), baseline_rate


def run_vaultd(root: Path, count: int, kinds: str, lands_in: str) -> float:
    """Given a vault under `root` whose Needs_Action/ holds `count` files, run them through
    one `Runner.run_once` on a fresh ledger; return files/s. Raise RuntimeError if any did
    not land in `lands_in`/.
    """
    vault = root / "vault"
    config = root / "config.toml"
    config.write_text(UNLIMITED_POSTS, encoding="utf-8")
    app = open_app(vault, config_path=config, state_dir=root / "state")
    try:
        started = time.perf_counter()
        Runner(app.pipeline, app.config).run_once()
        elapsed = time.perf_counter() - started
    finally:
        app.close()
    landed = count_files(vault / lands_in)
    if landed != count:
        raise RuntimeError(f"burst: {landed} of {count} {kinds} files reached {lands_in}/")
    return count / elapsed


def against_durable(root: Path, count: int) -> tuple[float, float, float]:
    """Return (vaultd files/s, durable baseline before, after) for `count` auto-approved
    posts, each side on its own copy of the same files, in the same run.
    """
    Vault(root / "vault").ensure_folders()
    write_tasks(root / "vault" / "Needs_Action", count, prefix="burst", kinds="post")
    rates = []
    for turn in ("before", "after"):
        incoming = root / f"baseline-{turn}" / "Needs_Action"
        write_tasks(incoming, count, prefix="burst", kinds="post")
        rates.append(durable.baseline(incoming, incoming.parent))
        if turn == "before":
            rate = run_vaultd(root, count, "post", "Done")
    return rate, rates[0], rates[1]


def durable_figure(root: Path, count: int) -> Figure:
    rate, before, after = against_durable(root, count)
    base = (before + after) / 2
    return Figure(
        f"burst against the durable baseline ({count:,} posts to 2 platforms, auto-approved "
        "→ Done/)",
        f"vaultd {rate:,.0f} files/s ({1000 / rate:.2f} ms/file); durable baseline "
        f"{base:,.0f} files/s ({1000 / base:.2f} ms/file; {before:,.0f} before vaultd, "
        f"{after:,.0f} after); ratio vaultd ÷ durable baseline {rate / base:.2f}",
        f"ratio ≥ {GOAL_DURABLE_RATIO}",
        rate / base >= GOAL_DURABLE_RATIO,
    )


def figures(root: Path, count: int, durable_count: int) -> list[Figure]:
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
    if durable_count > 0:
        result.append(durable_figure(root / "durable", durable_count))
    return result
