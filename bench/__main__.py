"""Run the benchmarks and print their figures.

approve → execute latency   a pending request moved into Approved/ until it is in Done/,
                            with the real daemon loop and file watcher running
burst throughput            task files per second through `run --once` (validate,
                            decide, execute in dry-run, move), beside a baseline loop that
                            only reads, parses the frontmatter and renames the same files
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import frontmatter

from bench import briefing as briefing_bench
from daemon.app import open_app
from daemon.config import Config, Timing
from daemon.runner import Runner
from daemon.vault import Vault

INVOICE = """---
type: odoo_invoice
partner: Acme {n}
lines:
  - product: Consulting hour
    quantity: 2
    price_unit: 90
---
Invoice {n}, over the threshold, so it waits for approval.
"""
POST = """---
type: social_post
platforms: [facebook, twitter]
text: "Post number {n}"
---
Scheduled post {n}.
"""


def _fresh(root: Path) -> Path:
    vault = root / "vault"
    Vault(vault).ensure_folders()
    return vault


def approve_latency(root: Path, count: int) -> list[float]:
    """Return seconds from each move into Approved/ until the file is in Done/."""
    vault = _fresh(root)
    for n in range(count):
        (vault / f"Needs_Action/invoice-{n}.md").write_text(INVOICE.format(n=n))
    app = open_app(vault, state_dir=root / "state")
    app.pipeline.clock = lambda: __import__("datetime").datetime.now(__import__("datetime").UTC)
    Runner(app.pipeline, app.config).run_once()
    stop = threading.Event()
    runner = Runner(app.pipeline, Config(daemon=Timing()), stop=stop)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    time.sleep(1.0)  # let the watcher settle
    latencies = []
    for n in range(count):
        name = f"invoice-{n}.md"
        started = time.perf_counter()
        (vault / "Pending_Approval" / name).rename(vault / "Approved" / name)
        while not (vault / "Done" / name).exists():
            if time.perf_counter() - started > 10:
                raise RuntimeError(f"{name} did not reach Done/ within 10 s")
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    stop.set()
    thread.join()
    app.close()
    return latencies


def burst(root: Path, count: int) -> tuple[float, float]:
    """Return (files/s through vaultd, files/s through the baseline loop)."""
    baseline_dir = root / "baseline"
    (baseline_dir / "in").mkdir(parents=True)
    (baseline_dir / "out").mkdir()
    for n in range(count):
        (baseline_dir / "in" / f"post-{n}.md").write_text(POST.format(n=n))
    started = time.perf_counter()
    for path in sorted((baseline_dir / "in").iterdir()):
        frontmatter.loads(path.read_text())
        path.rename(baseline_dir / "out" / path.name)
    baseline = count / (time.perf_counter() - started)

    vault = _fresh(root)
    for n in range(count):
        (vault / f"Needs_Action/post-{n}.md").write_text(POST.format(n=n))
    app = open_app(vault, state_dir=root / "state-burst")
    started = time.perf_counter()
    Runner(app.pipeline, app.config).run_once()
    elapsed = time.perf_counter() - started
    done = len(list((vault / "Done").iterdir()))
    app.close()
    if done != count:
        raise RuntimeError(f"burst: {done} of {count} files reached Done/")
    return count / elapsed, baseline


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument(
        "--briefing-lines", type=int, default=1_000_000, help="audit log lines for the briefing"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        latencies = sorted(approve_latency(Path(tmp) / "latency", args.approvals))
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(
            f"approve → execute latency over {len(latencies)} moves: "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (stability window 300 ms; goal p99 < 450 ms)"
        )
        vaultd_rate, baseline_rate = burst(Path(tmp) / "burst", args.burst)
        print(
            f"burst of {args.burst} posts (2 platforms each), dry-run: "
            f"{vaultd_rate:,.0f} files/s; baseline read+parse+rename: {baseline_rate:,.0f} "
            f"files/s; ratio {vaultd_rate / baseline_rate:.2f}"
        )
        lines, seconds, peak_mb = briefing_bench.measure(
            Path(tmp) / "briefing", args.briefing_lines
        )
        print(
            f"CEO briefing over a year of logs ({lines:,} lines): {seconds:.2f} s, "
            f"peak {peak_mb:.0f} MB allocated (goal < 3 s, < 200 MB)"
        )


if __name__ == "__main__":
    main()
