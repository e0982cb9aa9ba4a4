"""What every stage of the lifecycle works with: the vault, the ledger, the audit log, the
policy, the connectors and the clock of one vault (`Context`), and the port to the skill run
service (`SkillSteps`). The stages are functions of a Context; `Pipeline` is the Context that
routes a file to its stage (daemon/lifecycle/pipeline.py).

Tests and the CLI change a Context's parts in place (its clock, a connector, the executor's
lookup schedule): the stages read them at each call, never keep a copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from daemon.connectors import targets
from daemon.connectors.base import Connector
from daemon.core.audit import AuditLog
from daemon.core.costs import Prices
from daemon.core.hints import Hints
from daemon.core.ledger import Ledger, Task
from daemon.core.limits import Limiter, RateLimits
from daemon.core.models import Action
from daemon.core.outcome import Outcome
from daemon.core.policy import Policy
from daemon.core.request_versions import RequestVersions
from daemon.core.taskfile import Loaded
from daemon.core.vault import Vault
from daemon.lifecycle.code_background import Preparations
from daemon.lifecycle.execution import Executor

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# The port to the skill run service (daemon/agents/skills/tasks.py), plugged in by open_app.
class SkillSteps(Protocol):
    def take_in(self, context: Context, loaded: Loaded, task_id: str) -> Outcome:
        """Given a `type: skill` task file, start (once) the run it asks for and file it."""

    def withdrawn(self, context: Context, loaded: Loaded, task: Task | None) -> Outcome | None:
        """Given a request, withdraw it to Rejected/ if its run was cancelled; else None."""

    def start_execution(self, context: Context, loaded: Loaded, task: Task) -> Outcome | None:
        """Given an approved task, record it executing and return None, unless its run was
        cancelled: then withdraw it and return how."""


class Context:
    """The parts of one vault's lifecycle, shared by its stages."""

    def __init__(
        self,
        vault: Vault,
        ledger_: Ledger,
        audit: AuditLog,
        policy: Policy,
        connectors: dict[str, Connector],
        *,
        dry_run: bool = True,
        clock: Clock = utc_now,
        limits: RateLimits | None = None,
        prices: Prices | None = None,
        hints: Hints | None = None,
    ) -> None:
        self.vault = vault
        self.hints = hints or Hints.for_vault(vault.root)
        self.ledger = ledger_
        self.audit = audit
        self.policy = policy
        self.connectors = connectors
        self.dry_run = dry_run
        self.clock = clock
        self.prices = prices or Prices()
        # The skill run service, set by open_app: `type: skill` task files start runs.
        self.skills: SkillSteps | None = None
        # Set by `vaultd run`: code tasks are prepared off the pipeline's thread
        # (code_background.py); None prepares them here.
        self.code_preparations: Preparations | None = None
        limiter = Limiter(limits, ledger_) if limits and limits.per_hour else None
        self.executor = Executor(ledger_, connectors, audit, dry_run=dry_run, limiter=limiter)
        # Every version of a request shown to a person, to say what changed since the first.
        self.versions = RequestVersions(ledger_)
        # When the step on this thread's file began: the audit entries' duration_ms.
        self._step = threading.local()

    def step_began(self) -> float | None:
        """Return when the step on this thread's file began (time.monotonic), if one runs."""
        return getattr(self._step, "began", None)

    def begin_step(self, began: float | None) -> None:
        """Mark the start (a time.monotonic value) or, with None, the end of a file's step."""
        self._step.began = began

    # Called through the Context (not as a function of its module) on purpose: it is the
    # last look at the ledger between the approval check and the execution, and a test
    # (test_run_states.py) puts a concurrent cancel exactly there by replacing it.
    def _done_with_another_version(
        self, task_id: str, payload_hash: str, action: Action
    ) -> list[str]:
        """Return the targets of this action that an earlier version of the task reached."""
        earlier = self.executor.completed_versions(task_id)
        return sorted(t for t in targets(action) if earlier.get(t, payload_hash) != payload_hash)
