"""The errors of the run service, each with the HTTP status that fits it (the REST API and
MCP answer with them; the CLI prints them)."""

from __future__ import annotations

from datetime import datetime

from daemon.core.errors import VaultdError


class RunError(VaultdError):
    """A run cannot be created or executed; `status` is the HTTP status that fits."""

    status = 400


class SkillNotFound(RunError):
    status = 404


class RunNotFound(RunError):
    status = 404


class Forbidden(RunError):
    status = 403


class InputsInvalid(RunError):
    status = 422

    def __init__(self, skill: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            f"inputs for {skill}: " + "; ".join(f"{where}: {why}" for where, why in problems)
        )


class NotExecutable(RunError):
    status = 409


class Throttled(RunError):
    """Rate limit or cooldown: try again at `retry_at`."""

    status = 429

    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class Duplicate(RunError):
    """An unfinished run with the same identity key exists: `run_id` (None when the caller
    may not see it, so that its id cannot be probed)."""

    status = 409

    def __init__(self, message: str, run_id: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id
