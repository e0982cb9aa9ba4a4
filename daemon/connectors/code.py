"""The code connector (issue 16): lands an approved code task on its target branch, at most
once, behind the ledger's INTENT like any other remote call (daemon/lifecycle/execution.py).

Landing cherry-picks the approved commits base..head, one by one, in a temporary detached
worktree of the target's commit (so it works while the target is checked out elsewhere),
adds the trailer `Vaultd-Task: <id>` to each (or, with `[code] land = "squash"`, makes one
commit of them all, with the trailer), and then moves the target with one
compare-and-swap `git update-ref <target> <new> <old>`: the target either gets all of the
change or none of it, and only if nobody moved it meanwhile. Before any of that it writes
`landing.json` (the target and its commit before), and, just before the target moves, the
exact commit it will become; the lookup reads it after a crash:

    the target contains that exact commit              → Found (landed: never again)
    no landing.json, or the target is where it was     → Absent (safe to land)
    anything else                                      → Undetermined: Failed/, for a person

A trailer is not proof: it is text in a commit message, which an agent writes (another
task's agent could name this task in its own commits).

A conflict fails the call with the conflicted files listed; the target ref is untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from daemon.connectors.base import Absent, Found, Health, Lookup, Undetermined
from daemon.connectors.code_cleanup import archive_ref, tidy
from daemon.connectors.code_prepare import Places, diff_of, recorded, repo_path
from daemon.connectors.git import GitError, branch_commit, git, out
from daemon.core import failpoints
from daemon.core.code_config import CodeConfig
from daemon.core.errors import ConnectorError, PermanentError
from daemon.core.models import Action, CodeTask, Prepared
from daemon.core.policy import Facts

_TRAILER_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*: ")
TRAILER = "Vaultd-Task"


def task_of(marker: str) -> str:
    """Given a marker "vaultd:<task-id>:code", return the task id."""
    return marker.split(":")[1]


class CodeConnector:
    name = "code"

    def __init__(self, config: CodeConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        if not isinstance(action, CodeTask) or action.prepared is None:
            raise PermanentError("only a prepared code task can be landed")
        return {
            "repo": action.repo,
            "target": action.target,
            "branch": action.prepared.branch,
            "base_sha": action.prepared.base_sha,
            "head_sha": action.prepared.head_sha,
            "diff_sha256": action.prepared.diff_sha256,
            "trailer": f"{TRAILER}: {task_of(marker)}",
        }

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        """Land the approved commits on the target (in dry-run: prove they apply, and move
        nothing). Raise PermanentError for a conflict or a change that is no longer what was
        approved, with the target untouched."""
        if not isinstance(action, CodeTask):
            raise PermanentError("only a code task can be landed")
        task_id = task_of(marker)
        repo = repo_path(self.config, action)
        if not dry_run and isinstance(landed_before := self.lookup(marker), Found):
            return landed_before.result  # whatever the ledger says, never land twice
        prepared = self.approved(action, task_id, repo)
        places = Places.of(self.state_dir, task_id)
        before = branch_commit(repo, action.target)
        if before is None:
            raise PermanentError(f"{action.target!r} is no longer a branch of {action.repo}")
        checkouts = checkouts_of(repo, action.target)
        for checkout in checkouts:
            if out(checkout, "status", "--porcelain", "--untracked-files=no"):
                raise PermanentError(
                    f"{action.target} is checked out in {checkout} with uncommitted changes; "
                    "nothing landed. Commit or stash them, then move this note to Approved/."
                )
        _write_json(
            places.artifacts / "landing.json",
            {"repo": action.repo, "target": action.target, "before": before},
        )
        commits = out(repo, "rev-list", "--reverse", f"{prepared.base_sha}..{prepared.head_sha}")
        landing = places.worktree.with_name(f"{task_id}.landing")
        if landing.exists():  # left by a crash mid-landing: it was never the target
            git(repo, "worktree", "remove", "--force", str(landing), check=False)
            shutil.rmtree(landing, ignore_errors=True)
        git(repo, "worktree", "add", "--quiet", "--detach", "--", str(landing), before)
        try:
            squash = self.config.land == "squash"
            for commit in commits.split():
                self._pick(landing, commit, task_id, commit_it=not squash)
            if squash:
                first_line = action.task.strip().splitlines()[0][:72]
                git(
                    landing,
                    "commit",
                    "--quiet",
                    "--allow-empty",
                    "-m",
                    first_line,
                    "-m",
                    f"Squashed from {prepared.branch} ({prepared.base_sha[:12]}.."
                    f"{prepared.head_sha[:12]}) by vaultd.",
                    "-m",
                    f"{TRAILER}: {task_id}",
                )
            new = out(landing, "rev-parse", "HEAD")
            # The exact commit the target is about to become: after a crash, the lookup
            # finds the landing by it (a trailer alone is text an agent can write).
            _write_json(
                places.artifacts / "landing.json",
                {"repo": action.repo, "target": action.target, "before": before, "new": new},
            )
            failpoints.hit("mid-call", marker)
            if not dry_run:
                try:
                    git(
                        repo,
                        "update-ref",
                        "-m",
                        f"vaultd: land task {task_id}",
                        f"refs/heads/{action.target}",
                        new,
                        before,
                    )
                except GitError as error:
                    raise PermanentError(
                        f"{action.target} moved while the change was landed; nothing landed "
                        f"({error})"
                    ) from None
        finally:
            git(repo, "worktree", "remove", "--force", str(landing), check=False)
        # Landed (unless dry-run): from here on nothing may raise, or the ledger would record
        # a failure of a change that is on the target.
        listed = git(repo, "rev-list", "--reverse", f"{before}..{new}", check=False)
        landed = str(listed.stdout).split()
        result: dict[str, Any] = {
            "target": action.target,
            "dry_run": dry_run,
            "head": new,
            "commits": landed,
            # The whole patch, the spec, the agent's and the checks' output.
            "artifacts": str(places.artifacts),
        }
        if dry_run:
            return result
        if stale := _bring_along(checkouts, before, new):
            result["stale_checkouts"] = stale
        try:  # nothing of the branch can be lost (code_cleanup.py)
            tidied = tidy(repo, self.state_dir, task_id)
        except ConnectorError as error:
            result["kept"] = [f"cleanup stopped: {error}"]
        else:
            result["archived_as"] = archive_ref(task_id)
            if tidied.kept:
                result["kept"] = tidied.kept
        return result

    def _pick(self, landing: Path, commit: str, task_id: str, *, commit_it: bool = True) -> None:
        """Cherry-pick one commit and add the trailer (or, not `commit_it`, only apply it to
        the index, for a squash); raise PermanentError on a conflict."""
        how = ["--allow-empty", "--keep-redundant-commits"] if commit_it else ["--no-commit"]
        done = git(landing, "cherry-pick", *how, commit, check=False)
        if done.returncode != 0:
            conflicted = out(landing, "diff", "--name-only", "--diff-filter=U")
            git(landing, "cherry-pick", "--abort", check=False)
            files = ", ".join(conflicted.split()) or "(none listed by git)"
            raise PermanentError(
                f"cherry-picking {commit[:12]} conflicts in: {files}; the target is untouched"
            )
        if not commit_it:
            return
        # The trailer is written into the message here, not with `commit --trailer`: git
        # runs the repo's `trailer.<key>.cmd` for that, a command a process the agent left
        # behind could have put into the repo's config after it was compared.
        message = out(landing, "log", "-1", "--format=%B", "HEAD").rstrip("\n")
        message_file = landing.with_name(f"{landing.name}.message")
        message_file.write_text(with_trailer(message, f"{TRAILER}: {task_id}") + "\n")
        try:
            git(landing, "commit", "--quiet", "--amend", "--allow-empty", "-F", str(message_file))
        finally:
            message_file.unlink(missing_ok=True)

    def approved(self, action: CodeTask, task_id: str, repo: Path) -> Prepared:
        """Return the prepared change if the note, vaultd's record and the branch all still
        say what was approved; raise PermanentError saying which does not."""
        prepared, record = action.prepared, recorded(self.state_dir, task_id)
        if prepared is None or record is None or prepared != record:
            raise PermanentError(
                "the note's `code` stamp is not what vaultd prepared for this task; nothing landed"
            )
        head = branch_commit(repo, prepared.branch)
        if head != prepared.head_sha:
            raise PermanentError(
                f"{prepared.branch} is at {head or 'nothing'}, not the approved "
                f"{prepared.head_sha}; nothing landed"
            )
        digest = hashlib.sha256(diff_of(repo, prepared.base_sha, prepared.head_sha)).hexdigest()
        if digest != prepared.diff_sha256:
            raise PermanentError("the diff is not the approved one; nothing landed")
        return prepared

    def lookup(self, marker: str) -> Lookup:
        task_id = task_of(marker)
        places = Places.of(self.state_dir, task_id)
        try:
            landing = json.loads((places.artifacts / "landing.json").read_text())
        except FileNotFoundError:
            return Absent()  # written before anything else: nothing was begun
        repo = self.config.repos.get(landing["repo"])
        if repo is None:
            return Undetermined(f"{landing['repo']!r} is no longer in [code.repos]", lasting=True)
        now = branch_commit(repo, landing["target"])
        if now is None:
            return Undetermined(f"{landing['target']} no longer exists", lasting=True)
        if now == landing["before"]:
            return Absent()
        new = landing.get("new")
        if new and self._contains(repo, new, now):
            mine = out(repo, "rev-list", "--reverse", f"{landing['before']}..{new}").split()
            return Found({"target": landing["target"], "head": now, "commits": mine})
        return Undetermined(
            f"{landing['target']} moved from {landing['before'][:12]} to {now[:12]} without "
            f"a commit of task {task_id}: a person decides whether to land it",
            lasting=True,
        )

    @staticmethod
    def _contains(repo: Path, commit: str, now: str) -> bool:
        """Return whether the target (at `now`) contains the exact commit this landing made
        (recorded before the target moved), not merely one whose message names the task."""
        done = git(repo, "merge-base", "--is-ancestor", commit, now, check=False)
        return done.returncode == 0

    def check(self) -> Health:
        missing = [n for n, p in self.config.repos.items() if not p.exists()]
        if missing:
            return Health(False, f"repos not found: {', '.join(missing)}")
        return Health(True, f"{len(self.config.repos)} repo(s) allowed")

    def facts(self, action: Action) -> Facts:
        return Facts()


def checkouts_of(repo: Path, branch: str) -> list[Path]:
    """Return the worktrees (the repo's own checkout among them) that have `branch` checked
    out."""
    listing = out(repo, "worktree", "list", "--porcelain")
    found, path = [], None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}" and path is not None:
            found.append(path)
    return found


def _bring_along(checkouts: list[Path], before: str, new: str) -> list[str]:
    """Move the files of each checkout of the target from `before` to `new`, as a push to a
    checked-out branch with receive.denyCurrentBranch=updateInstead does; return the
    checkouts that could not be (edited meanwhile: git refuses to overwrite, and they show
    the landed commits as `git status` differences for a person to sort out)."""
    stale = []
    for checkout in checkouts:
        if git(checkout, "read-tree", "-u", "-m", before, new, check=False).returncode:
            stale.append(str(checkout))
    return stale


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def with_trailer(message: str, trailer: str) -> str:
    """Given a commit message and a trailer line, return the message with the trailer: in
    its last paragraph if that is trailers already (Signed-off-by: …), else after it."""
    paragraphs = message.split("\n\n")
    last = paragraphs[-1].splitlines() if len(paragraphs) > 1 else []
    if last and all(_TRAILER_LINE.match(line) for line in last):
        return f"{message}\n{trailer}"
    return f"{message}\n\n{trailer}"
