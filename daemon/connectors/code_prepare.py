"""Preparing a code task (issue 16): from the task file to the exact diff a person approves.

    record the base SHA → `git worktree add <state>/worktrees/<id> -b vaultd/<id> <base-sha>`
    → run the agent command there (clean environment, timeout, its own process group)
    → commit what it left uncommitted → run the checks → diff base..head and its SHA-256

Everything it keeps lives in the state directory, outside the vault: the worktree, and in
`<state>/code/<id>/` the spec given to the agent, the agent's and the checks' output, the
whole patch (named by its SHA-256, so anyone can check it) and `prepared.json`, vaultd's own
record of what was prepared, against which the note's `code` stamp is checked at landing.

Preparation runs synchronously with its timeouts for now; the run queue's `code` channel
(issue 14) is where it will run once that exists, so two never share a worktree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from daemon.connectors.git import (
    branch_commit,
    clean_environment,
    commit_of,
    common_dir,
    git,
    out,
)
from daemon.core.code_config import SPEC, CodeConfig
from daemon.core.errors import ConnectorError
from daemon.core.models import ChangedFile, CodeTask, Prepared

# The process groups of the agents and checks running now (stop_running), by their pid.
_RUNNING: set[int] = set()
_RUNNING_LOCK = threading.Lock()


class Refused(ConnectorError):
    """The task cannot be prepared as it stands: `field` is the task file's field at fault
    (None: the run of the agent or the repo itself). The main repo is left untouched."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Places:
    """Where one task's worktree and artifacts live."""

    worktree: Path
    artifacts: Path

    @classmethod
    def of(cls, state_dir: Path, task_id: str) -> Places:
        return cls(state_dir / "worktrees" / task_id, state_dir / "code" / task_id)

    @property
    def record(self) -> Path:
        return self.artifacts / "prepared.json"

    def patch(self, diff_sha256: str) -> Path:
        return self.artifacts / f"{diff_sha256}.patch"


def branch_of(task_id: str) -> str:
    return f"vaultd/{task_id}"


def repo_path(config: CodeConfig, action: CodeTask) -> Path:
    """Return the allowlisted repo a task names. Raise Refused (field `repo`) if it names
    none of `[code.repos]`, and (field `checks`) if its checks are not the ones the config
    sets for that repo: a task file never chooses a command vaultd runs."""
    path = config.repos.get(action.repo)
    if path is None:
        known = ", ".join(sorted(config.repos)) or "none are configured"
        raise Refused(f"{action.repo!r} is not a repo of [code.repos] ({known})", "repo")
    allowed = config.checks.get(action.repo, [])
    if action.checks is not None and list(action.checks) not in allowed:
        shown = ", ".join(json.dumps(c) for c in allowed) if allowed else "none are set"
        raise Refused(
            f"a task file cannot choose the command vaultd runs: its checks must be one of "
            f"those [code.checks] sets for {action.repo} ({shown})",
            "checks",
        )
    if commit_of(path, "HEAD") is None and not (path / "HEAD").exists():
        raise Refused(f"{action.repo!r} ({path}) is not a git repository", "repo")
    return path


def recorded(state_dir: Path, task_id: str) -> Prepared | None:
    """Return vaultd's own record of what it prepared for a task, if it prepared it."""
    try:
        return Prepared.model_validate_json(Places.of(state_dir, task_id).record.read_text())
    except FileNotFoundError:
        return None


def prepare(config: CodeConfig, state_dir: Path, task_id: str, action: CodeTask) -> Prepared:
    """Given a code task, make its change in a worktree of its own and return what a person
    is to approve. A task prepared before (a crash after preparing) is not prepared again:
    its record is returned once its branch is checked to still be what was recorded.

    Raise Refused, saying why, for a repo, base or target that cannot be used, an agent that
    fails, hangs, changes nothing or writes outside its worktree, and a diff over the limit.
    """
    places = Places.of(state_dir, task_id)
    _same_inputs(places, action)
    repo = repo_path(config, action)
    branch = branch_of(task_id)
    earlier = recorded(state_dir, task_id)
    if earlier is not None and branch_commit(repo, branch) == earlier.head_sha:
        return earlier
    if branch_commit(repo, branch) is not None or places.worktree.exists():
        raise Refused(
            f"an earlier preparation of this task was interrupted; its worktree "
            f"{places.worktree} and branch {branch} are kept for a person to look at"
        )
    base_sha = commit_of(repo, action.base)
    if base_sha is None:
        raise Refused(f"{action.base!r} is not a branch or commit of {action.repo}", "base")
    if git(repo, "check-ref-format", "--branch", action.target, check=False).returncode:
        raise Refused(f"{action.target!r} is not a valid branch name", "target")
    if branch_commit(repo, action.target) is None:
        raise Refused(f"{action.target!r} is not a branch of {action.repo}", "target")
    places.artifacts.mkdir(parents=True, exist_ok=True)
    places.worktree.parent.mkdir(parents=True, exist_ok=True)
    (places.artifacts / INPUTS).write_text(json.dumps(_inputs(action), sort_keys=True))
    before = _main_checkout(repo, branch)
    git(repo, "worktree", "add", "--quiet", "-b", branch, "--", str(places.worktree), base_sha)
    common = common_dir(repo)
    settings = _repo_settings(common)
    _run_agent(config, places, action)
    # The settings first: a changed config could make the next git command run its code.
    if _repo_settings(common) != settings:
        raise Refused(
            f"the agent changed the git settings of {repo} (its config, attributes or hooks); "
            "nothing is landed, and a person should look at them"
        )
    if _main_checkout(repo, branch) != before:
        raise Refused(f"the agent changed {repo} outside its worktree; nothing is landed")
    head_sha = _commit_leftovers(places.worktree, task_id)
    if head_sha == base_sha:
        raise Refused("the agent changed nothing: no commit and no edit in its worktree")
    prepared = _describe(config, places, branch, (base_sha, head_sha), action)
    _write_record(places, prepared)
    return prepared


# What a preparation was made from; the change a person approves answers exactly these.
INPUTS = "inputs.json"


def _inputs(action: CodeTask) -> dict[str, object]:
    return {"repo": action.repo, "base": action.base, "task": action.task, "checks": action.checks}


def _same_inputs(places: Places, action: CodeTask) -> None:
    """Raise Refused, naming the fields, if the task was prepared from other fields than it
    has now (edited while pending): the diff shown would not answer the task shown."""
    try:
        before = json.loads((places.artifacts / INPUTS).read_text())
    except FileNotFoundError:
        return
    changed = sorted(k for k, v in _inputs(action).items() if before.get(k) != v)
    if changed:
        raise Refused(
            f"changed after the change was prepared from it; the diff answers the "
            f"{', '.join(changed)} it had then. Drop a new task for a new change",
            changed[0],
        )


def refresh(config: CodeConfig, state_dir: Path, task_id: str, action: CodeTask) -> Prepared:
    """Given a prepared task whose branch moved (a commit pushed to it), describe the branch
    as it is now, run the checks again, and record that; the agent is not run again."""
    repo = repo_path(config, action)
    places = Places.of(state_dir, task_id)
    earlier = recorded(state_dir, task_id)
    head = branch_commit(repo, branch_of(task_id))
    if earlier is None or head is None:
        raise Refused(f"{branch_of(task_id)} or vaultd's record of it is gone")
    prepared = _describe(config, places, earlier.branch, (earlier.base_sha, head), action)
    _write_record(places, prepared)
    return prepared


def _repo_settings(common: Path) -> dict[str, bytes]:
    """Given a repo's shared git folder, return its files that make git run commands (config,
    attributes, hooks), by name, read as files (no git command, which could run them)."""
    found: dict[str, bytes] = {}
    for path in [common / "config", common / "info" / "attributes", common / "config.worktree"]:
        found[path.name] = path.read_bytes() if path.is_file() else b""
    hooks = common / "hooks"
    for hook in sorted(hooks.iterdir()) if hooks.is_dir() else []:
        found[f"hooks/{hook.name}"] = hook.read_bytes() if hook.is_file() else b"(not a file)"
    return found


def _main_checkout(repo: Path, own: str) -> tuple[str, str, str]:
    """Return what the repo holds outside the task's own branch `own`: its checkout's HEAD
    and status (nothing for a bare repo) and every other ref, to tell whether an agent wrote
    outside its worktree (its worktree shares the repo's refs: it could move the target)."""
    listed = out(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    refs = "\n".join(
        line for line in listed.splitlines() if not line.startswith(f"refs/heads/{own} ")
    )
    if out(repo, "rev-parse", "--is-bare-repository") == "true":
        return ("bare", "", refs)
    status = out(repo, "status", "--porcelain=v1", "--untracked-files=all")
    return (out(repo, "rev-parse", "HEAD"), status, refs)


def _run(argv: list[str], cwd: Path, log: Path, timeout: float) -> tuple[int | None, str]:
    """Run a command without a shell in `cwd`, in a process group of its own, with a clean
    environment; return (exit code or None if it timed out and was killed, its output)."""
    with log.open("wb") as output:
        try:
            child = subprocess.Popen(
                argv,
                cwd=cwd,
                env=clean_environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            return 127, f"cannot run {argv[0]!r}: {error.strerror}"
        with _RUNNING_LOCK:
            _RUNNING.add(child.pid)
        try:
            code: int | None = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            # Whatever it left running in its group goes too (a child that would commit to
            # the branch later, after the person approved what they saw).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            with _RUNNING_LOCK:
                _RUNNING.discard(child.pid)
    return code, log.read_text(errors="replace")[-2000:]


def stop_running() -> int:
    """Kill every agent and check this process is running now, each with its process group
    (the daemon is stopping: none may go on working in a worktree unwatched); return how
    many. Each one's preparation then fails, and its note is prepared again at the next
    start."""
    with _RUNNING_LOCK:
        running = sorted(_RUNNING)
    for pid in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return len(running)


def _run_agent(config: CodeConfig, places: Places, action: CodeTask) -> None:
    spec = places.artifacts / "spec.md"
    spec.write_text(action.task + "\n", encoding="utf-8")
    argv = [part.replace(SPEC, str(spec)) for part in config.agent_command]
    code, tail = _run(argv, places.worktree, places.artifacts / "agent.log", config.timeout_s)
    if code is None:
        raise Refused(f"the agent did not finish within {config.timeout_s:g} s and was killed")
    if code != 0:
        raise Refused(f"the agent exited with status {code}: {tail.strip()[-500:]}")


def _commit_leftovers(worktree: Path, task_id: str) -> str:
    """Commit what the agent left uncommitted in its worktree; return the head."""
    git(worktree, "add", "--all")
    if git(worktree, "diff", "--cached", "--quiet", check=False).returncode:
        git(worktree, "commit", "--quiet", "-m", f"Uncommitted work of vaultd task {task_id}")
    return out(worktree, "rev-parse", "HEAD")


def diff_of(repo: Path, base_sha: str, head_sha: str) -> bytes:
    """Return the exact patch base..head (binary-safe, no external diff or textconv),
    the same from the task's worktree and from its repo: computed in the shared git folder
    with no working tree, so no `.gitattributes` of a checkout (the agent's) changes it."""
    common = common_dir(repo)
    done = git(
        common,
        "--git-dir=.",
        "-c",
        "core.attributesFile=/dev/null",
        "diff",
        "--binary",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--full-index",
        base_sha,
        head_sha,
        "--",
        binary=True,
    )
    patch = done.stdout
    return patch if isinstance(patch, bytes) else patch.encode()


def _describe(
    config: CodeConfig, places: Places, branch: str, commits: tuple[str, str], action: CodeTask
) -> Prepared:
    """Given the base and head of a branch, return what a person is to approve of it."""
    base, head = commits
    patch = diff_of(places.worktree, base, head)
    if len(patch) > config.max_diff_bytes:
        raise Refused(
            f"the diff is {len(patch):,} bytes; at most {config.max_diff_bytes:,} are shown "
            "for approval ([code] max_diff_bytes)"
        )
    digest = hashlib.sha256(patch).hexdigest()
    places.patch(digest).write_bytes(patch)
    files = []
    numstat = out(places.worktree, "diff", "--numstat", "--no-renames", base, head)
    for line in filter(None, numstat.splitlines()):
        added, deleted, path = line.split("\t", 2)
        files.append(
            ChangedFile(
                path=path,
                added=None if added == "-" else int(added),
                deleted=None if deleted == "-" else int(deleted),
            )
        )
    checks_exit = None
    if action.checks:
        log = places.artifacts / "checks.log"
        code, _ = _run(list(action.checks), places.worktree, log, config.checks_timeout_s)
        checks_exit = -1 if code is None else code
    return Prepared(
        branch=branch,
        base_sha=base,
        head_sha=head,
        diff_sha256=digest,
        diff_bytes=len(patch),
        files=files,
        checks_exit=checks_exit,
    )


def _write_record(places: Places, prepared: Prepared) -> None:
    temporary = places.record.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(prepared.model_dump(mode="json"), handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(places.record)
