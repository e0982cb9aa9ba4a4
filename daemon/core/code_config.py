"""The `[code]` table of the config file: which repos code tasks may change, the agent
command that makes a change, and the limits of one preparation (issue 16).

A task file names a repo only by a key of `repos`, never by a path, so an agent that can
write task files cannot point vaultd at a repo nobody allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SPEC = "{spec}"


class CodeConfig(BaseModel):
    """`[code]`: code tasks in isolated git worktrees."""

    model_config = ConfigDict(extra="forbid")

    # name = "/absolute/path/to/repo" (a bare repo or a checkout).
    repos: dict[str, Path] = Field(default_factory=dict)
    # Run in the task's worktree as an argument list, never through a shell; "{spec}" in an
    # argument is replaced by the path of a file holding the task's instructions.
    agent_command: list[str] = Field(default_factory=lambda: ["claude", "-p", SPEC], min_length=1)
    # How an approved change lands on its target: each commit cherry-picked, or all of them
    # as one commit; either way each landed commit carries the trailer `Vaultd-Task: <id>`.
    land: Literal["cherry-pick", "squash"] = "cherry-pick"
    # The agent is killed (its whole process group) after this many seconds.
    timeout_s: float = Field(default=1800, gt=0)
    # The checks a code task of each repo may ask for (`checks:` in the task must be one of
    # these argument lists; a task file never chooses a command vaultd runs):
    # demo = [["make", "test"], ["make", "lint"]]. They run as vaultd's user, on the code
    # the agent wrote: see README, "Code tasks".
    checks: dict[str, list[list[str]]] = Field(default_factory=dict)
    # The task's `checks` are killed after this many seconds.
    checks_timeout_s: float = Field(default=600, gt=0)
    # A diff larger than this is refused at preparation, not shown to a person.
    max_diff_bytes: int = Field(default=10_000_000, gt=0)
    # The approval request shows at most this many lines of the patch; the whole patch is
    # kept in the state directory, linked from the request.
    shown_patch_lines: int = Field(default=200, ge=0)

    @field_validator("repos")
    @classmethod
    def _names_and_absolute_paths(cls, repos: dict[str, Path]) -> dict[str, Path]:
        problems = []
        for name, path in repos.items():
            if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or (
                name.startswith((".", "-"))
            ):
                problems.append(f"{name!r} is not a plain name (letters, digits, . _ -)")
            if not path.is_absolute():
                problems.append(f"{name}: {str(path)!r} must be an absolute path")
        if problems:
            raise ValueError("; ".join(problems))
        return repos
