"""A real `vaultd run` as a subprocess, observed from the outside through /proc (Linux).

"Watching" is decided without the daemon's word for it: the daemon is watching once its
process holds an inotify watch on every active pipeline folder (the `inotify wd:` lines of
/proc/<pid>/fdinfo). From then on the kernel queues every file event for it, so nothing that
arrives can be missed. The daemon's own word is only a cross-check: `vaultd run` logs
"vaultd … watching <vault>" before it reconciles, starts the scheduler and the watcher, and
the runner logs "watching for file events" once the watcher has started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from daemon.core.vault import ACTIVE_FOLDERS, ALL_FOLDERS, Vault

INVOICE = """---
type: odoo_invoice
partner: Acme {n}
lines:
  - product: Consulting hour
    quantity: 2
    price_unit: 90
---
Invoice {n}, 180.00 USD: over the threshold, so it waits for approval.
"""
POST = """---
type: social_post
platforms: [facebook, twitter]
text: "Post number {n}"
---
Post {n}: approved by policy, so it goes all the way to Done/ (dry-run).
"""
NOTE = """---
tags: [{area}, notes]
created: 2026-{month:02d}-{day:02d}
---
# Note {n}

Meeting notes for {area}/{topic}. See [[note-{prev}]] and [[Business_Goals]].

- follow up with the client about the proposal
- review the draft and send comments by Friday
- numbers: {n} visits, {month} leads, {day} orders

Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt
ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation.
"""


def vaultd_command() -> list[str]:
    """Return how to launch vaultd: the venv's console script, as a user would."""
    script = Path(sys.executable).with_name("vaultd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemon"]


def clean_env() -> dict[str, str]:
    """The environment without vaultd's own variables, so the bench runs as configured."""
    return {key: value for key, value in os.environ.items() if not key.startswith("VAULTD_")}


def write_config(path: Path, stability_ms: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[daemon]\nstability_ms = {stability_ms}\n", encoding="utf-8")
    return path


def build_notes_vault(root: Path, notes: int) -> Path:
    """Write a vault with `notes` ordinary notes under Notes/<area>/<topic>/ (100 per folder)."""
    vault = root / "vault"
    Vault(vault).ensure_folders()
    (vault / "Business_Goals.md").write_text(
        "---\nmonthly_revenue_target: 10000\ncurrency: USD\n---\n# Goals\n", encoding="utf-8"
    )
    (vault / "Company_Handbook.md").write_text("# Handbook\n\nBe kind.\n", encoding="utf-8")
    for n in range(notes):
        area, topic = f"area-{n // 1000:02d}", f"topic-{n // 100 % 10}"
        folder = vault / "Notes" / area / topic
        if n % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        text = NOTE.format(
            n=n, area=area, topic=topic, prev=max(0, n - 1), month=n % 12 + 1, day=n % 28 + 1
        )
        (folder / f"note-{n}.md").write_text(text, encoding="utf-8")
    return vault


def reset_pipeline(vault: Path) -> None:
    """Empty the pipeline folders, Logs/ and Briefings/, leaving the notes alone.

    The executor lease goes too: each run starts a daemon with a fresh state directory, a
    new machine to vaultd, which would otherwise find the previous run's lease still fresh
    and (rightly) execute nothing until a person runs `vaultd run --take-over`.
    """
    for name in ALL_FOLDERS:
        shutil.rmtree(vault / name, ignore_errors=True)
    (vault / "Dashboard.md").unlink(missing_ok=True)
    (vault / ".vaultd" / "executor.json").unlink(missing_ok=True)
    Vault(vault).ensure_folders()


def write_tasks(folder: Path, count: int, *, prefix: str, kinds: str = "mixed") -> list[Path]:
    """Write `count` task files: "post", "invoice", or "mixed" (alternating)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        kind = kinds if kinds != "mixed" else ("post" if n % 2 == 0 else "invoice")
        template = POST if kind == "post" else INVOICE
        path = folder / f"{prefix}-{kind}-{n}.md"
        path.write_text(template.format(n=n), encoding="utf-8")
        paths.append(path)
    return paths


def count_files(folder: Path) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for entry in entries if not entry.name.startswith("."))
    except FileNotFoundError:
        return 0


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.005
) -> float:
    """Poll until the condition holds; return when (perf_counter). Raise if it never does."""
    deadline = time.perf_counter() + timeout
    while True:
        if condition():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """One `vaultd run --vault V --state-dir S --config C` subprocess."""

    def __init__(
        self,
        vault: Path,
        state_dir: Path,
        config: Path,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.vault = vault
        self.log_path = log
        self._log = log.open("wb")
        self.launched = time.perf_counter()
        self.process = subprocess.Popen(
            [
                *vaultd_command(),
                "run",
                "--vault",
                str(vault),
                "--state-dir",
                str(state_dir),
                "--config",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**clean_env(), **(env or {})},
        )
        self.pid = self.process.pid

    # -- what /proc says ------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process.poll() is None

    def inotify_watches(self) -> int:
        """Return how many inotify watches the process holds (0 if it has none yet)."""
        watches = 0
        try:
            fds = list(Path(f"/proc/{self.pid}/fd").iterdir())
        except OSError:
            return 0
        for fd in fds:
            try:
                if str(fd.readlink()) != "anon_inode:inotify":
                    continue
                info = Path(f"/proc/{self.pid}/fdinfo/{fd.name}").read_text()
            except OSError:
                continue
            watches += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
        return watches

    def watching(self) -> bool:
        self.check_alive()
        return self.inotify_watches() >= len(ACTIVE_FOLDERS)

    def status(self) -> dict[str, int]:
        """Return /proc/<pid>/status memory fields in kB (VmRSS, VmHWM, RssAnon …)."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[key] = int(value.split()[0])
        return fields

    def cpu_ticks(self) -> int:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def wait_idle(self, quiet: float = 1.0, timeout: float = 180.0) -> None:
        """Wait until the process used (almost) no CPU for `quiet` seconds: under 5 % of a
        core (an idle `vaultd run` uses 2 to 4 %: the queue's watcher asks SQLite's
        data_version every 10 ms). After a burst into Pending_Approval/ the daemon reviews
        each request it moved there once more (about 5 ms a file), hence the timeout."""
        deadline = time.perf_counter() + timeout
        ticks_per_second = os.sysconf("SC_CLK_TCK")
        last = self.cpu_ticks()
        while time.perf_counter() < deadline:
            time.sleep(quiet)
            self.check_alive()
            now = self.cpu_ticks()
            if now - last <= ticks_per_second * 0.05 * quiet:
                return
            last = now
        raise RuntimeError(f"the daemon did not go idle within {timeout:.0f} s")

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def check_alive(self) -> None:
        if not self.alive():
            tail = "\n".join(self.log_text().splitlines()[-20:])
            raise RuntimeError(f"vaultd exited with {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
