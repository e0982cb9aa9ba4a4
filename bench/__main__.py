"""Run the benchmarks and print their figures, each beside its goal.

approve → execute latency   p50/p99 over N moves into Approved/, real `vaultd run` process
burst throughput            files/s through classification and through dry-run execution
                            (`Runner.run_once`), each beside a baseline loop that only
                            reads, parses the frontmatter and renames the same files;
                            and 2,000 auto-approved posts beside the durable baseline
                            (bench/durable.py): ratio vaultd ÷ durable baseline, goal ≥ 0.8
start-up                    launching `vaultd run` until it watches (inotify watches in
                            place), on a vault with many notes and pending files
memory                      VmRSS of `vaultd run` idle on that vault, and after a burst
CEO briefing                write_briefing over a year of audit logs
run queue                   enqueue → start latency and no-op runs/s through the queue's
                            workers, beside the same runs executed one by one (bench/queue.py)
knowledge graph             full index of a generated vault (beside reading and hashing its
                            notes), one changed note, neighborhood and search p99, RSS
                            (bench/kg.py)

Linux only (the process figures read /proc). `--quick` runs everything small in well under
a minute; `--only` picks benchmarks; `--markdown` prints the table for bench/RESULTS.md, and
`--results bench/RESULTS.md` replaces the generated block in that file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import briefing as briefing_bench
from bench import burst, footprint, latency
from bench import kg as kg_bench
from bench import queue as queue_bench
from bench.report import Figure, machine, markdown, text_line, update_results

BENCHES = ("latency", "burst", "startup", "memory", "briefing", "queue", "kg")
QUICK = {
    "approvals": 30,
    "burst": 1000,
    "durable_burst": 500,
    "notes": 5000,
    "pending": 200,
    "startup_runs": 2,
    "memory_burst": 1000,
    "briefing_lines": 50_000,
    "queue_samples": 20,
    "queue_runs": 40,
    "kg_notes": 2000,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sizes = parser.add_argument_group("sizes (defaults: the full run of `make bench`)")
    sizes.add_argument("--approvals", type=int, default=200, help="moves into Approved/")
    sizes.add_argument(
        "--burst", type=int, default=10_000, help="task files per burst throughput figure"
    )
    sizes.add_argument(
        "--durable-burst",
        type=int,
        default=2000,
        help="auto-approved posts beside the durable baseline (0 skips that figure)",
    )
    sizes.add_argument("--notes", type=int, default=50_000, help="notes in the big vault")
    sizes.add_argument(
        "--pending", type=int, default=1000, help="files in Needs_Action/ at start-up"
    )
    sizes.add_argument("--startup-runs", type=int, default=3, help="start-ups to time")
    sizes.add_argument(
        "--memory-burst", type=int, default=10_000, help="task files in the memory burst"
    )
    sizes.add_argument(
        "--briefing-lines", type=int, default=1_000_000, help="audit log lines for the briefing"
    )
    sizes.add_argument(
        "--queue-samples", type=int, default=100, help="runs timed from enqueue to start"
    )
    sizes.add_argument(
        "--queue-runs", type=int, default=200, help="no-op runs through the queue at once"
    )
    sizes.add_argument(
        "--kg-notes", type=int, default=50_000, help="notes of the knowledge graph's vault"
    )
    sizes.add_argument(
        "--quick", action="store_true", help="small defaults for a quick run; sizes given win"
    )
    parser.add_argument(
        "--stability-ms",
        type=int,
        default=300,
        help="daemon.stability_ms for the daemon processes (default: vaultd's 300)",
    )
    parser.add_argument(
        "--only", action="append", choices=BENCHES, help="run only these (repeatable)"
    )
    parser.add_argument("--tmp", type=Path, help="where to build the vaults (default: $TMPDIR)")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table too")
    parser.add_argument(
        "--results", type=Path, help="replace the generated block of this file (RESULTS.md)"
    )
    if parser.parse_args(argv).quick:
        parser.set_defaults(**QUICK)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = args.only or list(BENCHES)
    if args.briefing_lines <= 0 and "briefing" in chosen:
        chosen.remove("briefing")
    figures: list[Figure] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-", dir=args.tmp) as tmp:
        root = Path(tmp)
        about = machine(root)
        print("; ".join(f"{key}: {value}" for key, value in about.items()), flush=True)

        def run(name: str, bench: Callable[[], list[Figure]]) -> None:
            if name not in chosen:
                return
            print(f"[{name}] …", flush=True)
            begun = time.perf_counter()
            for figure in bench():
                figures.append(figure)
                print(text_line(figure), flush=True)
            print(f"  ({name} took {time.perf_counter() - begun:.0f} s)", flush=True)

        run(
            "latency",
            lambda: latency.figures(root / "latency", args.approvals, args.stability_ms),
        )
        run(
            "queue",
            lambda: queue_bench.figures(root / "queue", args.queue_samples, args.queue_runs),
        )
        run("burst", lambda: burst.figures(root / "burst", args.burst, args.durable_burst))
        if "startup" in chosen or "memory" in chosen:
            vault, config = footprint.prepare(root / "notes", args.notes, args.stability_ms)
            run(
                "startup",
                lambda: footprint.startup_figures(
                    vault,
                    root / "notes",
                    config,
                    pending=args.pending,
                    runs=args.startup_runs,
                    notes=args.notes,
                ),
            )
            run(
                "memory",
                lambda: footprint.memory_figures(
                    vault, root / "notes", config, burst=args.memory_burst, notes=args.notes
                ),
            )
        run("briefing", lambda: briefing_figures(root / "briefing", args.briefing_lines))
        run("kg", lambda: kg_bench.figures(root / "kg", args.kg_notes))
    total = time.perf_counter() - started
    print(f"total {total:.0f} s", flush=True)
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    about["bench run time"] = f"{total:.0f} s"
    block = markdown(figures, about, command)
    if args.markdown:
        print(block)
    if args.results:
        update_results(args.results, block)
        print(f"updated {args.results}")


def briefing_figures(root: Path, lines: int) -> list[Figure]:
    written, cold, warm, peak_mb = briefing_bench.measure(root, lines)
    return [
        Figure(
            f"CEO briefing over a year of audit logs ({written:,} lines), the first one",
            f"{cold:.2f} s, no older day summarized yet",
            "< 3 s",
            cold < 3,
        ),
        Figure(
            "CEO briefing, every later week (older days' summaries kept in the state dir)",
            f"{warm:.2f} s, peak {peak_mb:.0f} MB allocated (tracemalloc)",
            "< 3 s and < 200 MB",
            warm < 3 and peak_mb < 200,
        ),
    ]


if __name__ == "__main__":
    main()
