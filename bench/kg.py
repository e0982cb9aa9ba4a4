"""The knowledge graph (issue 15, item 7) on a generated vault: the full index, one changed
note brought up to date, `neighborhood` at depth 2 and `search`, and the RSS while indexing.

The vault has `notes` notes in 50 folders, each with frontmatter (an id, a partner from a
pool of 500, a status, tags), three to five `[[links]]` to other notes, a tag in the body and
a paragraph of words. Beside the full index, in the same run, its baseline: reading every
note's bytes and hashing them (what any index keyed by content must do at least). The index
is built in a child process of its own (`python -m bench.kg CHILD`), so that its peak RSS is
the indexer's alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import Figure
from daemon.agents.kg import query
from daemon.agents.kg.build import rebuild
from daemon.agents.kg.store import connect, kg_path

WORDS = tuple(
    " ".join(
        (
            "invoice retainer renewal launch winter sale delivery consulting hour partner",
            "client quarterly plan budget review design website campaign newsletter support",
            "contract payment overdue shipping order catalogue pricing discount event workshop",
        )
    ).split()
)
PARTNERS = 500
SAMPLES = 200


def build_vault(root: Path, notes: int, seed: int = 7) -> Path:
    rng = random.Random(seed)
    vault = root / "vault"
    names = [f"Area {n % 50:02d}/Note {n:06d}" for n in range(notes)]
    for n, name in enumerate(names):
        path = vault / f"{name}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        links = " ".join(f"[[{rng.choice(names).split('/')[1]}]]" for _ in range(rng.randint(3, 5)))
        text = " ".join(rng.choice(WORDS) for _ in range(60))
        path.write_text(
            f"---\nid: note-{n:06d}\npartner: Partner {rng.randrange(PARTNERS)}\n"
            f"status: {rng.choice(['idea', 'in_progress', 'done'])}\n"
            f"tags: [{rng.choice(WORDS)}, area{n % 50}]\n---\n"
            f"# Note {n}\n\nSee {links} #{rng.choice(WORDS)}\n\n{text}\n",
            encoding="utf-8",
        )
    return vault


def _child(vault: Path, state: Path) -> None:
    """Index the vault, change one note, bring it up to date, ask; print JSON figures."""
    index = kg_path(vault, state)
    db = connect(index, create=True)
    started = time.perf_counter()
    report = rebuild(db, vault)
    full = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    notes = sorted(vault.rglob("*.md"))
    one = notes[len(notes) // 2]
    one.write_text(one.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    started = time.perf_counter()
    again = rebuild(db, vault)
    changed = time.perf_counter() - started
    rng = random.Random(11)
    near, found = [], []
    for _ in range(SAMPLES):
        ref = f"note-{rng.randrange(len(notes)):06d}"
        started = time.perf_counter()
        query.neighborhood(db, ref, depth=2)
        near.append((time.perf_counter() - started) * 1000)
        words = " ".join(rng.sample(WORDS, 2))
        started = time.perf_counter()
        query.search(db, words, limit=20)
        found.append((time.perf_counter() - started) * 1000)
    db.close()
    print(
        json.dumps(
            {
                "full_s": full,
                "indexed": report.extracted,
                "peak_mb": peak_mb,
                "changed_ms": changed * 1000,
                "changed_read": again.extracted,
                "changed_alone": again.incremental,
                "near_p99_ms": _p99(near),
                "search_p99_ms": _p99(found),
            }
        )
    )


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]


def _baseline(vault: Path) -> float:
    """Seconds to read and hash every note: the least a content-keyed index does."""
    started = time.perf_counter()
    for folder, _dirs, files in os.walk(vault):
        for name in files:
            hashlib.sha256(Path(folder, name).read_bytes()).hexdigest()
    return time.perf_counter() - started


def figures(root: Path, notes: int) -> list[Figure]:
    vault = build_vault(root, notes)
    baseline = _baseline(vault)
    done = subprocess.run(
        [sys.executable, "-m", "bench.kg", "CHILD", str(vault), str(root / "state")],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return [
        Figure(
            f"knowledge graph: full index of {notes:,} notes",
            f"{got['full_s']:.1f} s ({got['indexed']:,} read); baseline read+hash of every "
            f"note {baseline:.1f} s; peak RSS {got['peak_mb']:.0f} MB",
            "< 60 s and < 300 MB",
            got["full_s"] < 60 and got["peak_mb"] < 300,
        ),
        Figure(
            "knowledge graph: one changed note brought up to date",
            f"{got['changed_ms']:.0f} ms ({got['changed_read']} note read again; the graph "
            + (
                "brought up to date for it alone, after a walk of the whole vault)"
                if got.get("changed_alone")
                else "is derived again whole)"
            ),
            "< 50 ms",
            got["changed_ms"] < 50,
        ),
        Figure(
            f"knowledge graph: neighborhood at depth 2 and search ({SAMPLES} each)",
            f"neighborhood p99 {got['near_p99_ms']:.1f} ms; search p99 "
            f"{got['search_p99_ms']:.1f} ms",
            "p99 < 50 ms and < 100 ms",
            got["near_p99_ms"] < 50 and got["search_p99_ms"] < 100,
        ),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["CHILD"]:
    _child(Path(sys.argv[2]), Path(sys.argv[3]))
