"""The lifecycle of one file (design §3): read → validate → decide → execute → move → log.

`Pipeline.process(path)` is the only entry point. It looks at which folder the file is in
and hands it to the one stage that folder calls for:

    Needs_Action/     intake.py      read, validate (invalid → Rejected/), decide: approval
                                     needed → Pending_Approval/ (request.py); auto-approved
                                     → Approved/ → execute
    Pending_Approval/ review.py      edits re-render and re-hash the request; expired →
                                     Rejected/
    Approved/         approved.py    the approval check (approval_check.py, pure): only what
                                     vaultd asked about (or auto-approved), with the very
                                     payload hash it showed, is executed; anything else goes
                                     back to Pending_Approval/
                      execute.py     each remote call INTENT (durable) → call → DONE
                                     (execution.py), then move → Done/ or Failed/
    Rejected/         rejection.py   a request a person moved here is recorded as rejected
    (start-up)        reconcile.py   INTENTs a crash left behind are looked up

Every step is written to the ledger first and the audit log after (steps.py), and every
file ends in exactly one terminal folder with its body intact.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from daemon.core import ledger
from daemon.core.outcome import Outcome
from daemon.core.vault import (
    APPROVED,
    NEEDS_ACTION,
    PENDING,
    REJECTED,
    Vanished,
    is_ignored,
    is_sync_conflict,
)
from daemon.lifecycle import guards, reconcile
from daemon.lifecycle.approval_check import has_expired
from daemon.lifecycle.approved import execute_approved
from daemon.lifecycle.code_tasks import record_rejection  # the stage, and a code task's cleanup
from daemon.lifecycle.context import Context
from daemon.lifecycle.intake import take_in
from daemon.lifecycle.review import review

# Outcome is the answer of `process`; the runner takes it from here.
__all__ = ["Outcome", "Pipeline"]

Stage = Callable[[Context, Path], Outcome]

# The stage each pipeline folder calls for; Done/ and Failed/ are final.
STAGES: dict[str, Stage] = {
    NEEDS_ACTION: take_in,
    PENDING: review,
    APPROVED: execute_approved,
    REJECTED: record_rejection,
}


class Pipeline(Context):
    """One vault's lifecycle: its parts (Context) and the routing of a file to its stage."""

    def process(self, path: Path) -> Outcome:
        """Given a file in a pipeline folder, do the step its folder calls for."""
        folder = self.vault.folder_of(path)
        if folder is None or is_ignored(path.name) or not os.path.lexists(path):
            return Outcome("ignored", None)
        if is_sync_conflict(path.name):
            # Copies made by sync tools are for a person to merge, never tasks of their own.
            return Outcome("ignored", path)
        stage = STAGES.get(folder)
        if stage is None:
            return Outcome("unchanged", path)
        if folder == NEEDS_ACTION and not guards.utf8(path.name):
            return guards.reject_unsafe_name(self, path)
        if folder in (NEEDS_ACTION, APPROVED) and (wait := guards.being_written(self, path)):
            return wait
        self.begin_step(time.monotonic())
        try:
            return stage(self, path)
        except Vanished as error:
            return guards.vanished(self, path, str(error))
        finally:
            self.begin_step(None)

    def expire_due(self) -> list[Outcome]:
        """Reject every pending request whose expiry has passed; return what was done."""
        outcomes = []
        for task in self.ledger.tasks(ledger.PENDING):
            if has_expired(task, self.clock()):
                path = self.vault.root / task.file
                if path.parent.name == PENDING and path.exists():
                    outcomes.append(self.process(path))
        return outcomes

    def reconcile(self) -> list[str]:
        """Settle every INTENT a crash left behind (see Executor.reconcile), and every note
        a crash moved to its last folder before the ledger recorded the move."""
        return reconcile.reconcile(self)
