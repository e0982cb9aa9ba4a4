"""A burst of task files that overflows the kernel's inotify queue: none lost, each once.

The kernel keeps at most `fs.inotify.max_queued_events` events for a watcher (16,384 by
default), read at the moment the watcher is created. The overflow is made certain, however
fast or slow the machine is:
- the daemon is stopped (SIGSTOP) while the files are dropped, so it reads no event until
  the queue is full, then continued (SIGCONT);
- as root, the limit is lowered to 128 while the daemon creates its watchers and restored
  at once, so 300 files (three events each: 900) overflow it; without root the burst is made
  larger than the machine's own limit.
The periodic rescan is set to an hour, so the files can only be found through the
overflow's rescan. The daemon must log the overflow and process every file exactly once;
the deadline only guards against a hang, it measures nothing (bench/ measures throughput).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import outbox
from e2e_support import UNLIMITED_BUDGETS, Daemon, audit_events, integrity, nightly

pytestmark = pytest.mark.e2e

QUEUE_LIMIT = Path("/proc/sys/fs/inotify/max_queued_events")
LOWERED = 128
RESCAN_SECONDS = 3600
HANG_SECONDS = 900
BODY = "Drafted by the social agent during the launch rush.\n"
POST = """---
type: social_post
platforms: [facebook]
text: "Launch note {n}"
---
"""
INVOICE = """---
type: odoo_invoice
partner: Customer {n}
lines:
  - product: Consulting hour
    quantity: 3
    price_unit: 90
---
"""


def can_lower_the_queue_limit() -> bool:
    return os.geteuid() == 0 and os.access(QUEUE_LIMIT, os.W_OK)


def max_queued_events() -> int:
    try:
        return int(QUEUE_LIMIT.read_text())
    except (OSError, ValueError):
        return 16_384


def burst_size() -> int:
    """Return how many files make the burst: always more events than the queue holds."""
    if nightly():
        return 50_000
    if can_lower_the_queue_limit():
        return 300  # 900 events: seven times the lowered queue limit
    return max_queued_events() + 2_000


@contextlib.contextmanager
def lowered_queue_limit() -> Iterator[None]:
    """Lower the kernel's inotify queue limit while watchers are created; restore it after.

    Only watchers created meanwhile get the low limit: the daemon's, and perhaps those of a
    daemon another test worker starts in the same second, which then rescans as vaultd does
    after any overflow.
    """
    if not can_lower_the_queue_limit():
        yield
        return
    before = QUEUE_LIMIT.read_text()
    QUEUE_LIMIT.write_text(f"{LOWERED}\n")
    try:
        yield
    finally:
        QUEUE_LIMIT.write_text(before)


def task_text(n: int) -> str:
    """Every tenth file is a post that runs at once (dry-run); the rest wait for approval."""
    return (POST if n % 10 == 0 else INVOICE).format(n=n) + BODY


def wait_for_log(daemon: Daemon, line: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while line not in daemon.output():
        assert daemon.alive(), daemon.output()
        assert time.monotonic() < deadline, f"no {line!r} in:\n{daemon.output()}"
        time.sleep(0.05)


def drop_all(folder: Path, count: int) -> None:
    """Write the files as fast as this process can, each in one write."""
    for n in range(count):
        fd = os.open(folder / f"task-{n:05d}.md", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, task_text(n).encode())
        finally:
            os.close(fd)


def settled(vault: Path) -> Counter[str]:
    """Return how many task files each folder holds."""
    return Counter(
        {
            folder: sum(1 for path in (vault / folder).iterdir() if path.name.startswith("task-"))
            for folder in ("Needs_Action", "Pending_Approval", "Approved", "Done", "Rejected")
        }
    )


def test_a_burst_that_overflows_inotify_is_processed_by_the_overflow_rescan_each_file_once(
    vault_root: Path, state_dir: Path, tmp_path: Path
):
    vault, state, count = vault_root, state_dir, burst_size()
    config = tmp_path / "vaultd.toml"
    config.write_text(
        f"[daemon]\nrescan_seconds = {RESCAN_SECONDS}\nstability_ms = 300\n" + UNLIMITED_BUDGETS
    )
    with lowered_queue_limit():
        daemon = Daemon(vault, state, "--config", str(config))
        wait_for_log(daemon, "watching for file events")
    try:
        os.kill(daemon.process.pid, signal.SIGSTOP)
        try:
            drop_all(vault / "Needs_Action", count)
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)
        burst_over = time.monotonic()

        posts = len(range(0, count, 10))
        expected = Counter({"Done": posts, "Pending_Approval": count - posts})
        while (now := settled(vault)) != expected:
            assert daemon.alive(), daemon.output()[-3000:]
            assert time.monotonic() - burst_over < HANG_SECONDS, f"hung at {dict(now)}"
            time.sleep(0.5)
        took = time.monotonic() - burst_over
    finally:
        daemon.kill()
    print(f"{count} files settled {took:.1f} s after the burst ({count / took:.0f} files/s)")

    events = audit_events(vault)
    assert any(e["event"] == "rescan_after_overflow" for e in events), "overflow not logged"
    assert "inotify overflow" in daemon.output()
    # Each file was handled once: one decision per file, one dry-run call per post.
    decided = Counter(e["file"] for e in events if e["event"] == "approval_requested")
    assert len(decided) == count - posts
    assert set(decided.values()) == {1}
    executed = Counter(e["file"] for e in events if e["event"] == "executed")
    assert len(executed) == posts
    assert set(executed.values()) == {1}
    markers = Counter(record["marker"] for record in outbox(state))
    assert len(markers) == posts
    assert set(markers.values()) == {1}
    # Bodies intact: after the frontmatter (Done/), or after vaultd's request block.
    assert (vault / "Done/task-00000.md").read_text(encoding="utf-8").endswith("---\n" + BODY)
    last = (vault / f"Pending_Approval/task-{count - 1:05d}.md").read_text(encoding="utf-8")
    assert last.endswith("<!-- vaultd:end -->\n" + BODY)
    assert integrity(state) == "ok"
