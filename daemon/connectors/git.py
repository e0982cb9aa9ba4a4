"""Running git for code tasks: always an argument list, never a shell, with the repo's
hooks switched off and an environment of vaultd's choosing.

Hooks are off (`core.hooksPath=/dev/null`) because an agent working in a worktree can write
into the repo's shared `.git/hooks/`: a hook vaultd then ran (on commit, on cherry-pick)
would run the agent's code as vaultd, with vaultd's environment.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from daemon.core.errors import ConnectorError

# Every git call gets this long; a repo that needs longer is not one vaultd should wait on.
GIT_TIMEOUT_S = 120
# What a child process may see of vaultd's environment: nothing that can hold a secret.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ", "USER")
IDENTITY = {
    "GIT_AUTHOR_NAME": "vaultd",
    "GIT_AUTHOR_EMAIL": "vaultd@localhost",
    "GIT_COMMITTER_NAME": "vaultd",
    "GIT_COMMITTER_EMAIL": "vaultd@localhost",
}


class GitError(ConnectorError):
    """A git command failed; the message carries its stderr."""


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for a child of vaultd: PATH, HOME, the locale and the like,
    a git identity, and `extra`; none of vaultd's settings or secrets."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(IDENTITY)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra or {})
    return env


def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    binary: bool = False,
    timeout: float = GIT_TIMEOUT_S,
) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:
    """Run `git -C cwd args...` and return it. Raise GitError naming the command if it
    fails (and `check`) or does not finish within `timeout`."""
    command = [
        "git",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "core.quotePath=false",
        # A repo config an agent changed after it was compared (a process of its own
        # session outlives the agent's process group) must not name a command vaultd's
        # git runs: the fsmonitor hook runs on every status, add and diff of a worktree.
        "-c",
        "core.fsmonitor=false",
        "-C",
        str(cwd),
        *args,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=not binary,
            timeout=timeout,
            env=clean_environment({"GIT_CONFIG_NOSYSTEM": "1"}),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)}: no answer within {timeout:g} s") from None
    if check and done.returncode != 0:
        stderr = done.stderr.decode(errors="replace") if binary else done.stderr
        raise GitError(f"git {' '.join(args)}: {str(stderr).strip() or 'failed'}")
    return done


def out(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git and return its standard output, stripped."""
    return str(git(cwd, *args, check=check).stdout).strip()


def common_dir(repo: Path) -> Path:
    """Return the git folder a repo and all its worktrees share, as an absolute path."""
    return Path(out(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))


def commit_of(repo: Path, revision: str) -> str | None:
    """Given a branch or commit, return the commit's full SHA, or None if there is none.

    The revision is never read as an option: `--end-of-options` comes before it.
    """
    done = git(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{revision}^{{commit}}",
        check=False,
    )
    sha = str(done.stdout).strip()
    return sha if done.returncode == 0 and sha else None


def branch_commit(repo: Path, branch: str) -> str | None:
    """Return the commit a local branch points at, or None if it does not exist."""
    return commit_of(repo, f"refs/heads/{branch}")


def valid_branch_name(repo: Path, name: str) -> bool:
    """Return whether git takes `name` as a branch name."""
    done = git(repo, "check-ref-format", "--branch", name, check=False)
    return done.returncode == 0 and not name.startswith("-")
