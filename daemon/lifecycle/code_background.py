"""Code tasks prepared in the background, so the pipeline never waits for an agent.

Preparing a code task runs its agent (up to `[code] timeout_s`, half an hour by default)
and its checks. Done in the pipeline's one thread, that held up every other file: a person's
move into Approved/ waited for the agent. `vaultd run` therefore prepares code tasks on
threads of their own, as many at once as `[queue.channels] code` allows (1 by default): the
pipeline starts a preparation, answers "not yet" for the note, and looks again each second
until it is done; then the request is written as before. `vaultd run --once` and the tests
that take no `Preparations` prepare in the pipeline itself.

A preparation is keyed by the note's place and the task as it was read: a note edited while
its agent works is prepared again, as it is, when its agent is done. One whose daemon stopped
is not resumed: its note is still in Needs_Action/ and is prepared again under a new id; the
first worktree is kept (`vaultd code gc` names it, for a person).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from daemon.connectors.code_prepare import Refused, stop_running
from daemon.core.models import Prepared

log = logging.getLogger(__name__)

LOOK_AGAIN = timedelta(seconds=1)


@dataclass
class _Job:
    task_id: str
    done: threading.Event = field(default_factory=threading.Event)
    prepared: Prepared | None = None
    refused: Refused | None = None


class Preparations:
    """The code tasks being prepared now, on at most `capacity` threads."""

    def __init__(self, capacity: int = 1) -> None:
        self._slots = threading.Semaphore(max(1, capacity))
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._lock = threading.Lock()

    def get(
        self, key: tuple[str, str], task_id: str, prepare: Callable[[str], Prepared]
    ) -> tuple[str, Prepared | Refused] | datetime:
        """Given a note's place and its task's hash, the id to prepare it under if this is
        its first look, and how: return when to look again, or once it is done, the id it
        was prepared under and what was prepared (or why it cannot be)."""
        place, version = key
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                # One preparation per place: an earlier version's is forgotten (its agent
                # finishes, and its worktree is kept for a person; `vaultd code gc` names it).
                for older in [k for k in self._jobs if k[0] == place and k[1] != version]:
                    del self._jobs[older]
                job = self._jobs[key] = _Job(task_id)
                threading.Thread(
                    target=self._work, args=(job, prepare), name="vaultd-code", daemon=True
                ).start()
            if not job.done.is_set():
                return datetime.now(UTC) + LOOK_AGAIN
            del self._jobs[key]
        answer = job.refused or job.prepared or Refused("its preparation gave nothing")
        return job.task_id, answer

    def stop(self) -> None:
        """The daemon stops: kill the agents and checks at work (their notes are prepared
        again at the next start)."""
        killed = stop_running()
        if killed:
            log.info("stopped %d code task agent(s) or check(s) at work", killed)

    def busy(self) -> int:
        """How many preparations are started and not yet taken back."""
        with self._lock:
            return sum(not job.done.is_set() for job in self._jobs.values())

    def _work(self, job: _Job, prepare: Callable[[str], Prepared]) -> None:
        with self._slots:
            try:
                job.prepared = prepare(job.task_id)
            except Refused as error:
                job.refused = error
            except Exception as error:
                log.exception("code task %s: preparing it failed", job.task_id)
                job.refused = Refused(f"preparing it failed unexpectedly: {error}")
            finally:
                job.done.set()
