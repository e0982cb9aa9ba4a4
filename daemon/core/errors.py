"""One exception hierarchy for vaultd; the CLI turns it into messages and exit codes."""

from __future__ import annotations

from datetime import datetime


class VaultdError(Exception):
    """Base of every error vaultd raises on purpose."""


class ConfigError(VaultdError):
    """The configuration file or a command-line setting is wrong."""


class VaultError(VaultdError):
    """The vault is missing, or a path is not where vaultd expects it."""


class NoteError(VaultdError):
    """A task file cannot be read or parsed. `field` names the frontmatter key, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ValidationFailed(VaultdError):
    """A task file parsed but its frontmatter is not a valid action.

    `problems` lists every (field, message) pair, not just the first.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in problems))


class ConnectorError(VaultdError):
    """A connector call failed and the service did not do the work."""


class OutcomeUnknown(ConnectorError):
    """A connector call may or may not have done the work; only a lookup can tell."""


class PermanentError(ConnectorError):
    """The service refused the request as it is (validation, duplicate): do not retry."""


class TransientError(ConnectorError):
    """The service could not do it now (5xx, timeout before sending): a read may retry."""


class AuthError(ConnectorError):
    """The service refused the credentials."""


class NotConfigured(ConnectorError):
    """A live connector lacks settings; the action fails instead of silently succeeding."""


class Deferred(ConnectorError):
    """The service will not take the call yet (a rate limit or quota); try again at `retry_at`.

    Raised only when the service did not do the work, so calling again later is safe.
    """

    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class NotFound(VaultdError):
    """An id or file named on the command line does not exist."""
