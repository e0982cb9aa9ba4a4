"""The workers of `vaultd run`: threads that take runs from the queue and execute them.

Each channel gets as many threads as its capacity; the claim itself (QueueStore.claim)
holds the capacity across every process that shares the ledger. A heartbeat thread renews
the leases this process holds and takes back the runs of workers that stopped: their lease
ran out, or (faster) their process is seen dead on this machine. The supervisor of `vaultd
run` checks the threads like the watcher (`healthy`, `restart`).

An idle worker does not wait out its poll for a new run: a watcher thread reads the
ledger's `PRAGMA data_version` (which changes when any other connection commits: `vaultd
serve`, the CLI, the API inside this daemon) every `WATCH_SECONDS`, and wakes the workers
when a run is due, so a run enqueued anywhere starts within milliseconds.

A worker records a run's end only while it still holds the lease (checked and renewed in
the same transaction): a worker that was frozen past its lease finds its run taken back
and drops what it had, rather than finishing a run twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable

from daemon.agents.queue.store import QueueStore, Recovered, due_in
from daemon.agents.skills.runs import Attempt, Runs
from daemon.agents.skills.store import AWAITING_APPROVAL, FAILED, STEP_REQUESTED, TransitionRefused
from daemon.core.config import QueueConfig

log = logging.getLogger(__name__)
WATCH_SECONDS = 0.01
# The worker pools alive in this process, by their owner prefix: a lease of this process's
# pid under another prefix is a predecessor's that had the same pid (a container's daemon
# is pid 1 again after a restart), dead.
_LIVE: set[str] = set()


class Workers:
    name = "queue workers"

    def __init__(
        self,
        runs: Runs,
        config: QueueConfig,
        *,
        may_work: Callable[[], bool] = lambda: True,
    ) -> None:
        self.runs = runs
        self.config = config
        self.store = QueueStore(runs.store.ledger)
        self.may_work = may_work
        self._prefix = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        _LIVE.add(self._prefix)
        self._stop = threading.Event()
        self._nudges: dict[str, threading.Event] = {}
        self._holding: set[str] = set()
        self._threads: dict[str, threading.Thread] = {}

    # -- the threads ---------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._stop.clear()
        self.restart()

    def wake(self) -> None:
        """Make every idle worker look for a due run now."""
        for nudge in list(self._nudges.values()):
            nudge.set()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        for thread in self._threads.values():
            thread.join(timeout=5)

    def healthy(self) -> bool:
        return all(thread.is_alive() for thread in self._threads.values())

    def restart(self) -> None:
        """Start every thread that is not running (all of them the first time)."""
        slots = [
            (f"{channel}-{n}", channel)
            for channel, capacity in self.config.channels.items()
            for n in range(capacity)
        ]
        for slot, channel in slots:
            if slot not in self._threads or not self._threads[slot].is_alive():
                self._threads[slot] = self._thread(
                    f"vaultd-worker-{slot}", self._work, slot, channel
                )
        if "heartbeat" not in self._threads or not self._threads["heartbeat"].is_alive():
            self._threads["heartbeat"] = self._thread("vaultd-heartbeat", self._beat)
        if "watch" not in self._threads or not self._threads["watch"].is_alive():
            self._threads["watch"] = self._thread("vaultd-queue-watch", self._watch)

    @staticmethod
    def _thread(name: str, target: Callable[..., None], *args: str) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        return thread

    def _work(self, slot: str, channel: str) -> None:
        nudge = self._nudges.setdefault(slot, threading.Event())
        while not self._stop.is_set():
            nudge.clear()
            try:
                worked = self.may_work() and self.work_one(channel, self._owner(slot))
            except Exception:  # a busy ledger, say: the run's lease runs out
                log.exception("queue worker %s: unexpected error; going on", slot)
                worked = False
            if not worked:
                nudge.wait(self.config.poll_seconds)

    def _watch(self) -> None:
        """Wake the workers when another connection committed and a run is due."""
        try:
            db = sqlite3.connect(f"file:{self.store.ledger.path}?mode=ro", uri=True)
        except sqlite3.Error:
            return  # the workers still poll
        try:
            seen = None
            while not self._stop.wait(WATCH_SECONDS):
                (version,) = db.execute("PRAGMA data_version").fetchone()
                if version != seen:
                    seen = version
                    if due_in(db):
                        self.wake()
        except sqlite3.Error:
            log.warning(
                "queue watcher stopped; the workers poll every %g s", self.config.poll_seconds
            )
        finally:
            db.close()

    def _beat(self) -> None:
        while not self._stop.wait(self.config.lease_seconds / 3):
            self.store.renew(sorted(self._holding), self.config.lease_seconds)
            if self.may_work():
                self.recover()

    def _owner(self, slot: str) -> str:
        return f"{self._prefix}:{slot}"

    # -- one run ---------------------------------------------------------------------------

    def drain(self) -> int:
        """Work every due run, one at a time in this thread, until none is due; return how
        many were worked (for `vaultd run --once`, and tests)."""
        self.recover()
        count = 0
        while any(self.work_one(channel, self._owner("once")) for channel in self.config.channels):
            count += 1
        return count

    def work_one(self, channel: str, owner: str) -> bool:
        """Take one due run of a channel and execute it; return False if none was due."""
        capacity = self.config.channels[channel]
        run_id = self.store.claim(channel, capacity, owner, self.config.lease_seconds)
        if run_id is None:
            self._settled(self.store.orphans())  # a child whose parent failed fails too
            return False
        self._holding.add(owner)
        try:
            self._execute(run_id, owner)
        finally:
            self._holding.discard(owner)
        return True

    def _execute(self, run_id: str, owner: str) -> None:
        run = self.runs.store.get(run_id)
        if run is None:
            return
        try:
            attempt = self.runs.attempt(run)
        except Exception as error:  # noqa: BLE001 - a skill gone since, say: the run fails
            requested = sum(
                1
                for step in self.runs.store.steps(run_id)
                if step.attempt == run.attempt and step.state == STEP_REQUESTED
            )
            attempt = Attempt(None, f"{type(error).__name__}: {error}", requested)
        if not self.store.holds(run_id, owner, self.config.lease_seconds):
            log.warning(
                "run %s was taken back from %s while it ran: its end is dropped", run_id, owner
            )
            return
        if attempt.error is not None and not attempt.requested:
            delay = self.store.requeue(run_id, owner, attempt.error)
            if delay is not None:
                log.info("run %s failed (%s): tried again in %g s", run_id, attempt.error, delay)
                self._logged(run_id, "run_retried")
                return
        try:
            self.runs.finish(run_id, attempt)
        except TransitionRefused:
            log.warning("run %s changed while it ran; its end is dropped", run_id)
        self.store.release(run_id, owner)

    # -- workers that stopped ----------------------------------------------------------

    def recover(self) -> list[Recovered]:
        """Take back the runs of workers that stopped; log what became of each."""
        done = self.store.recover(self._dead(self.store.owners()))
        for item in done:
            log.warning("run %s: %s", item.run_id, item.reason)
            if item.state == AWAITING_APPROVAL:
                self._check_requests(item.run_id)
            self._logged(item.run_id, "run_recovered", error=item.reason)
        return done

    def _settled(self, failed: list[Recovered]) -> None:
        for item in failed:
            log.info("run %s: %s", item.run_id, item.reason)
            self._logged(item.run_id, "run_failed", error=item.reason)

    def _dead(self, owners: list[str]) -> set[str]:
        """Given lease owners, return those whose process is seen dead on this machine (or is
        this process, from before a restart of the workers)."""
        host, dead = socket.gethostname(), set()
        for owner in owners:
            parts = owner.split(":")
            if len(parts) < 4 or parts[0] != host or not parts[1].isdigit():
                continue
            pid = int(parts[1])
            if pid == os.getpid():
                if ":".join(parts[:3]) not in _LIVE:
                    dead.add(owner)
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                dead.add(owner)
            except PermissionError:
                continue  # alive, another user's
        return dead

    def _check_requests(self, run_id: str) -> None:
        """Given a run taken back after asking for actions, fail it if a request it recorded
        never became a file (its worker stopped between the record and the write): nothing
        was asked, so nothing would ever settle it. A request file is looked for first, its
        task second: the pipeline records a task before it moves the file away."""
        run = self.runs.store.get(run_id)
        if run is None:
            return
        vault = self.runs.vault
        for step in self.runs.store.steps(run_id):
            if step.attempt != run.attempt or not step.token or not step.task_file:
                continue
            if os.path.lexists(vault.root / step.task_file):
                continue
            if self.runs.store.task_of(run_id, step.token) is not None:
                continue
            with contextlib.suppress(TransitionRefused):  # cancelled meanwhile
                self.runs.store.move(
                    run_id,
                    FAILED,
                    expect=(AWAITING_APPROVAL,),
                    error=f"its worker stopped before it wrote the request {step.task_file}: "
                    "nothing was asked; execute the run again to ask",
                )
            return

    def _logged(self, run_id: str, event: str, **fields: str) -> None:
        run = self.runs.store.get(run_id)
        if run is not None:
            self.runs.logged(run, event, **fields)
