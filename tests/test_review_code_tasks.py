"""Adversarial review of code tasks: each test states a property the README and the design
promise, found broken by the review of 2026-12-01. Those fixed since pass; those still open
are strict xfails that say what is left (a fix makes them pass, and then fail as xfail)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from code_support import code_task, git, make_repo
from conftest import make_files, move, note, parsed

from daemon.lifecycle.lookups import LookupSchedule
from daemon.service.app import open_app


def _app(vault_root: Path, state: Path, tmp_path: Path, repo: Path, agent_source: str):
    agent = tmp_path / "hostile_agent.py"
    agent.write_text(textwrap.dedent(agent_source))
    config = tmp_path / "vaultd.toml"
    config.write_text(
        "[code]\n"
        f'agent_command = ["{sys.executable}", "{agent}", "{{spec}}"]\n'
        "timeout_s = 20\n[code.repos]\n"
        f'demo = "{repo}"\n'
    )
    app = open_app(vault_root, state_dir=state, config_path=config, dry_run=False)
    app.pipeline.executor.lookups = LookupSchedule(budget=0)
    return app


def _drop(vault_root: Path, app, **fields: object) -> Path:
    make_files(vault_root, {"Needs_Action/change.md": note(code_task(**fields))})
    return app.pipeline.process(vault_root / "Needs_Action" / "change.md").path


README_AGENT = """
from pathlib import Path
Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
"""


def test_review_checks_from_the_task_file_never_run_before_a_person_approves(
    vault_root: Path, tmp_path: Path
):
    """An agent that can write Needs_Action/ chooses `checks`: vaultd runs that argv as its
    own OS user at intake, before any approval (code_prepare._describe)."""
    repo = make_repo(tmp_path / "repos" / "demo")
    proof = tmp_path / "ran-as-vaultd.txt"
    app = _app(vault_root, tmp_path / "state", tmp_path, repo, README_AGENT)
    try:
        path = _drop(
            vault_root,
            app,
            checks=[sys.executable, "-c", f"open({str(proof)!r}, 'w').write('pwned')"],
        )
    finally:
        app.close()
    # A task file may only name checks the config sets for its repo ([code.checks]).
    assert path.parent.name == "Rejected"
    assert "checks" in path.read_text() and "[code.checks]" in path.read_text()
    assert not proof.exists(), "a command the task file chose ran as vaultd, unapproved"


def _an_agent_moves_main_of_a_bare_repo(vault_root: Path, tmp_path: Path) -> tuple[Path, str, Path]:
    """Drop a code task on a bare repo whose agent commits and moves `main` to its commit
    itself; return the repo, where `main` was before, and where the task's note is now."""
    checkout = make_repo(tmp_path / "checkout")
    bare = tmp_path / "demo.git"
    git(tmp_path, "clone", "-q", "--bare", str(checkout), str(bare))
    before = git(bare, "rev-parse", "main")
    agent = """
    import subprocess
    from pathlib import Path
    Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@a", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@a", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "commit", "-qam", "evil"], check=True, env=env)
    subprocess.run(["git", "update-ref", "refs/heads/main", "HEAD"], check=True, env=env)
    """
    app = _app(vault_root, tmp_path / "state", tmp_path, bare, agent)
    try:
        path = _drop(vault_root, app)
    finally:
        app.close()
    return bare, before, path


@pytest.mark.xfail(
    strict=True,
    reason="open (review finding 2): every ref is now compared before and after the agent, "
    "and a task whose agent moved one is rejected (the test below), but the ref has moved by "
    "then: the agent's worktree can write its repo's refs. The fix is a clone of its own",
)
def test_review_an_agent_cannot_move_the_target_branch_itself(vault_root: Path, tmp_path: Path):
    """The agent's worktree shares the repo's refs: it moves `main` itself (a bare repo, or
    any branch not checked out in the main checkout) and vaultd does not notice. The change
    is on the target before any person saw it."""
    bare, before, path = _an_agent_moves_main_of_a_bare_repo(vault_root, tmp_path)
    assert git(bare, "rev-parse", "main") == before, "main moved with no approval"
    assert path.parent.name == "Rejected"


def test_a_task_whose_agent_moved_another_ref_is_rejected_saying_so(
    vault_root: Path, tmp_path: Path
):
    """The stopgap for the above: every ref but the task's own branch is compared before
    and after the agent; an agent that moved one gets its task rejected, for a person."""
    _, _, path = _an_agent_moves_main_of_a_bare_repo(vault_root, tmp_path)
    assert path.parent.name == "Rejected"
    assert "outside its worktree" in path.read_text()


def test_review_a_gitattributes_change_does_not_break_the_approved_diff(
    vault_root: Path, tmp_path: Path
):
    """The shown diff is computed in the worktree (its .gitattributes), the landing check in
    the repo (the main checkout's): an agent's `*.md -diff` shows README.md's change as a
    base85 blob to the person, and the same approved change then fails to land."""
    repo = make_repo(tmp_path / "repos" / "demo")
    agent = """
    from pathlib import Path
    Path(".gitattributes").write_text("*.md -diff\\n")
    Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    """
    app = _app(vault_root, tmp_path / "state", tmp_path, repo, agent)
    try:
        pending = _drop(vault_root, app)
        assert pending.parent.name == "Pending_Approval"
        shown = pending.read_text()
        outcome = app.pipeline.process(move(vault_root, pending, "Approved"))
    finally:
        app.close()
    error = parsed(outcome.path).meta.get("error")
    assert outcome.status == "done", error  # fails: "the diff is not the approved one"
    assert "+changed by the agent" in shown, "the text change was shown as a binary patch"


def test_review_a_forged_trailer_does_not_make_a_crashed_landing_look_landed(
    vault_root: Path, tmp_path: Path
):
    """Task A crashes mid-landing (landing.json written, target not moved). Before the
    restart's reconcile, task B lands; B's agent wrote `Vaultd-Task: <A>` into its own commit
    message, which the cherry-pick keeps. The lookup (code.py `_landed`) takes B's commit for
    A's: A is recorded Done, and the change a person approved never lands."""
    import pytest

    from daemon.core import failpoints

    repo = make_repo(tmp_path / "repos" / "demo")
    agent = """
    import subprocess, sys
    from pathlib import Path
    spec = Path(sys.argv[1]).read_text().split()
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@a", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@a", "PATH": "/usr/bin:/bin"}
    if spec[0] == "TRAILER":
        Path("b.txt").write_text("task B\\n")
        subprocess.run(["git", "add", "b.txt"], check=True, env=env)
        subprocess.run(["git", "commit", "-q", "-m", "B", "-m", f"Vaultd-Task: {spec[1]}"],
                       check=True, env=env)
    else:
        Path("README.md").write_text("# Demo\\nchange of task A\\n")
    """
    state = tmp_path / "state"
    app = _app(vault_root, state, tmp_path, repo, agent)
    pending = _drop(vault_root, app)
    task_a = parsed(pending).meta["id"]
    approved = move(vault_root, pending, "Approved")
    failpoints.arm(["mid-call"])
    try:
        with pytest.raises(failpoints.Crashed):
            app.pipeline.process(approved)
    finally:
        failpoints.disarm()
        app.close()
    app = _app(vault_root, state, tmp_path, repo, agent)  # the restart
    try:
        make_files(vault_root, {"Needs_Action/b.md": note(code_task(task=f"TRAILER {task_a}"))})
        b = app.pipeline.process(vault_root / "Needs_Action" / "b.md").path
        assert b.parent.name == "Pending_Approval"
        assert app.pipeline.process(move(vault_root, b, "Approved")).status == "done"
        app.pipeline.reconcile()
        for name in list((vault_root / "Approved").iterdir()):
            app.pipeline.process(name)
    finally:
        app.close()
    landed_a = "change of task A" in git(repo, "show", "main:README.md")
    a_done = (vault_root / "Done" / "change.md").exists()
    assert landed_a or not a_done, "task A is in Done/ but its approved change never landed"


@pytest.mark.parametrize(
    ("section", "key"),
    [("core", "fsmonitor"), ('trailer \\"Vaultd-Task\\"', "cmd")],  # status/add; commit --trailer
)
def test_review_a_process_the_agent_leaves_in_its_own_session_cannot_plant_git_config(
    vault_root: Path, tmp_path: Path, section: str, key: str
):
    """`_run` kills the agent's process group, but a child that called setsid() is in
    another group and lives on. It writes `core.fsmonitor` into the repo's config after the
    settings were compared (code_prepare.prepare), and vaultd's own git (landing's
    `git status`) runs the command it names, as vaultd."""
    import time

    repo = make_repo(tmp_path / "repos" / "demo")
    proof = tmp_path / "planted-command-ran-as-vaultd"
    agent = f"""
    import subprocess, sys
    from pathlib import Path
    Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                            capture_output=True, text=True, check=True).stdout.strip()
    later = (
        "import time; time.sleep(0.5); "
        f"open({{common + '/config'!r}}, 'a')"
        f".write('[{section}]\\\\n\\\\t{key} = touch {proof}; echo\\\\n')"
    )
    subprocess.Popen([sys.executable, "-c", later], start_new_session=True)
    """
    app = _app(vault_root, tmp_path / "state", tmp_path, repo, agent)
    try:
        pending = _drop(vault_root, app)
        assert pending.parent.name == "Pending_Approval"
        time.sleep(1.5)
        outcome = app.pipeline.process(move(vault_root, pending, "Approved"))
    finally:
        app.close()
    assert key in (repo / ".git" / "config").read_text()  # planted after the check
    assert not proof.exists(), f"a command the agent planted ran as vaultd ({outcome.status})"
