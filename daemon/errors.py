"""One exception hierarchy for vaultd; the CLI turns it into messages and exit codes."""

from __future__ import annotations


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


class NotFound(VaultdError):
    """An id or file named on the command line does not exist."""
