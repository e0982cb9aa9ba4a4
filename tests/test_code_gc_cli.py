"""`vaultd code gc` (issue 16): finished tasks' worktrees are reclaimed where nothing is
lost; every other entry of `<state>/worktrees/` is left alone and named, with why. Real git
repos under tmp_path; the ledger is the real one, its tasks put in directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from code_support import git, make_repo, task_worktree, write_config
from conftest import read_tree

from daemon.cli.main import main
from daemon.core.ledger import Ledger

DONE_ID, REJECTED_ID, PENDING_ID, DIRTY_ID, DETACHED_ID = (
    "20261201-d0d0d0",
    "20261201-4e4e4e",
    "20261201-9e9e9e",
    "20261201-d1d1d1",
    "20261201-de7ac4",
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repos" / "demo")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def config(tmp_path: Path, repo: Path) -> Path:
    return write_config(tmp_path, repo)


def put_tasks(state: Path, **states: str) -> None:
    ledger = Ledger(state / "ledger.sqlite3")
    try:
        for task_id, task_state in states.items():
            ledger.put_task(task_id, type="code_task", file=f"Done/{task_id}.md", state=task_state)
    finally:
        ledger.close()


@pytest.fixture
def gc(vault_root: Path, state: Path, config: Path) -> Callable[..., list[str]]:
    """The command line of `vaultd code gc` for the test's vault, state and config."""

    def argv(*extra: str) -> list[str]:
        return ["code", "gc", "--vault", str(vault_root), "--state-dir", str(state),
                "--config", str(config), *extra]  # fmt: skip

    return argv


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def mixed(repo: Path, state: Path) -> dict[str, Path]:
    """A state directory with one worktree of each kind: safe and unsafe."""
    made = {name: task_worktree(repo, state, name) for name in
            (DONE_ID, REJECTED_ID, PENDING_ID, DIRTY_ID, DETACHED_ID)}  # fmt: skip
    (made[DIRTY_ID] / "unsaved.txt").write_text("a person's unsaved work\n")
    git(made[DETACHED_ID], "checkout", "-q", "--detach")
    (made[DETACHED_ID] / "lost.txt").write_text("only on a detached HEAD\n")
    git(made[DETACHED_ID], "add", "lost.txt")
    git(made[DETACHED_ID], "commit", "-q", "-m", "On no branch")
    (state / "worktrees" / "stray folder").mkdir()
    (state / "worktrees" / "stray folder" / "keep.txt").write_text("not vaultd's\n")
    put_tasks(state, **{DONE_ID: "done", REJECTED_ID: "rejected", PENDING_ID: "pending_approval",
                        DIRTY_ID: "done", DETACHED_ID: "rejected"})  # fmt: skip
    return made


def entries(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {e["name"]: e for e in report["entries"]}  # type: ignore[attr-defined,index]


def test_gc_reclaims_finished_clean_worktrees_and_names_the_rest(
    gc: Callable[..., list[str]], state: Path, repo: Path, mixed: dict[str, Path], capsys
):
    heads = {name: git(path, "rev-parse", "HEAD") for name, path in mixed.items()}
    report = run_json(capsys, gc())
    found = entries(report)
    assert {n for n, e in found.items() if e["reclaimed"]} == {DONE_ID, REJECTED_ID}
    assert not mixed[DONE_ID].exists() and not mixed[REJECTED_ID].exists()
    for name in (DONE_ID, REJECTED_ID):
        assert git(repo, "rev-parse", f"refs/vaultd/archive/{name}") == heads[name]
        assert git(repo, "branch", "--list", f"vaultd/{name}") == ""
    assert "not finished (ledger: pending_approval)" in str(found[PENDING_ID]["reasons"])
    assert "changes not committed" in str(found[DIRTY_ID]["reasons"])
    assert "on no branch or ref" in str(found[DETACHED_ID]["reasons"])
    assert "orphan folder" in str(found["stray folder"]["reasons"])
    for name in (PENDING_ID, DIRTY_ID, DETACHED_ID):
        assert mixed[name].is_dir() and not found[name]["reclaimed"]
    assert (mixed[DIRTY_ID] / "unsaved.txt").read_text() == "a person's unsaved work\n"
    assert git(mixed[DETACHED_ID], "rev-parse", "HEAD") == heads[DETACHED_ID]
    assert (state / "worktrees" / "stray folder" / "keep.txt").exists()
    # The artifacts the Done note links to are never removed.
    for name in mixed:
        assert (state / "code" / name / "agent.log").read_text() == "what the agent said\n"
    assert report["freed_bytes"] > 0  # type: ignore[operator]
    assert report["bytes_after"] < report["bytes_before"]  # type: ignore[operator]


def test_gc_says_in_text_what_it_freed_and_why_it_kept_the_rest(
    gc: Callable[..., list[str]], state: Path, mixed: dict[str, Path], capsys
):
    assert main(gc()) == 0
    text = capsys.readouterr().out
    assert "2 reclaimed, 4 kept" in text
    assert f"reclaimed        {DONE_ID}" in text
    assert f"kept             {DIRTY_ID}" in text
    assert "freed " in text and ("KiB" in text or "MiB" in text)


def test_a_dry_run_reports_the_same_and_changes_nothing(
    gc: Callable[..., list[str]], state: Path, repo: Path, mixed: dict[str, Path], capsys
):
    before_tree = read_tree(state, skip=("ledger.sqlite3", "ledger.sqlite3-wal",
                                         "ledger.sqlite3-shm"))  # fmt: skip
    refs = git(repo, "for-each-ref")
    report = run_json(capsys, gc("--dry-run"))
    assert {n for n, e in entries(report).items() if e["safe"]} == {DONE_ID, REJECTED_ID}
    assert not any(e["reclaimed"] for e in entries(report).values())
    assert report["freed_bytes"] == 0 and report["reclaimable_bytes"] > 0  # type: ignore[operator]
    assert git(repo, "for-each-ref") == refs
    assert read_tree(state, skip=("ledger.sqlite3", "ledger.sqlite3-wal",
                                  "ledger.sqlite3-shm")) == before_tree  # fmt: skip
    assert main(gc("--dry-run")) == 0
    assert "2 would be reclaimed, 4 kept (dry run)" in capsys.readouterr().out


def test_a_second_run_finds_nothing_more_to_reclaim(
    gc: Callable[..., list[str]], state: Path, mixed: dict[str, Path], capsys
):
    run_json(capsys, gc())
    again = run_json(capsys, gc())
    assert not any(e["reclaimed"] for e in entries(again).values())
    assert again["freed_bytes"] == 0


def test_a_finished_task_whose_worktree_is_gone_has_its_branch_archived(
    gc: Callable[..., list[str]], state: Path, repo: Path, capsys
):
    worktree = task_worktree(repo, state, DONE_ID)
    head = git(worktree, "rev-parse", "HEAD")
    git(repo, "worktree", "remove", str(worktree))
    put_tasks(state, **{DONE_ID: "done"})
    found = entries(run_json(capsys, gc()))
    assert "worktree missing" in str(found[DONE_ID]["reasons"])
    assert found[DONE_ID]["reclaimed"]
    assert git(repo, "rev-parse", f"refs/vaultd/archive/{DONE_ID}") == head
    assert git(repo, "branch", "--list", f"vaultd/{DONE_ID}") == ""


# --- hostile entries: never followed, never removed -------------------------------------


def test_a_symlink_in_worktrees_is_not_followed_or_deleted_through(
    gc: Callable[..., list[str]], state: Path, repo: Path, tmp_path: Path, capsys
):
    """The link has a finished task's name, and points at a clean worktree of the repo
    outside the state directory: removing "it" would remove that worktree."""
    outside = tmp_path / "outside"
    git(repo, "worktree", "add", "-q", "-b", "elsewhere", "--", str(outside), "main")
    (state / "worktrees").mkdir(parents=True)
    (state / "code" / DONE_ID).mkdir(parents=True)
    (state / "code" / DONE_ID / "inputs.json").write_text('{"repo": "demo"}')
    (state / "worktrees" / DONE_ID).symlink_to(outside, target_is_directory=True)
    put_tasks(state, **{DONE_ID: "done"})
    found = entries(run_json(capsys, gc()))
    assert "symbolic link" in str(found[DONE_ID]["reasons"]) and not found[DONE_ID]["safe"]
    assert (outside / "README.md").read_text() == "# Demo\n"
    assert (state / "worktrees" / DONE_ID).is_symlink()
    assert str(outside) in git(repo, "worktree", "list")


def test_a_worktrees_folder_that_is_a_link_is_refused_naming_it(
    gc: Callable[..., list[str]], state: Path, tmp_path: Path, capsys
):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / DONE_ID).mkdir(parents=True)
    state.mkdir()
    (state / "worktrees").symlink_to(elsewhere, target_is_directory=True)
    put_tasks(state, **{DONE_ID: "done"})
    assert main(gc()) == 1
    err = capsys.readouterr().err
    assert str(state) in err and "symbolic link" in err
    assert (elsewhere / DONE_ID).is_dir()


def test_odd_folder_names_are_reported_escaped_and_kept(
    gc: Callable[..., list[str]], state: Path, capsys
):
    odd = ["--force", "a\nb\x1b[31mred", "$(touch pwned)", "sp ace;rm -rf ~", "x\udcff"]
    for name in odd:
        (state / "worktrees" / name).mkdir(parents=True)
        (state / "worktrees" / name / "f.txt").write_text("x")
    put_tasks(state)
    assert main(gc()) == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and "5 kept" in text
    for name in odd:
        assert (state / "worktrees" / name / "f.txt").exists()
    assert not Path("pwned").exists()
    report = run_json(capsys, gc())
    assert all("orphan" in str(e["reasons"]) for e in entries(report).values())


def test_gc_without_a_ledger_fails_naming_the_path(
    gc: Callable[..., list[str]], state: Path, capsys
):
    assert main(gc()) == 1
    assert str(state / "ledger.sqlite3") in capsys.readouterr().err


def test_a_link_the_agent_committed_inside_a_worktree_is_removed_not_followed(
    gc: Callable[..., list[str]], state: Path, repo: Path, tmp_path: Path, capsys
):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("outside the state directory\n")
    worktree = task_worktree(repo, state, DONE_ID)
    (worktree / "escape").symlink_to(precious, target_is_directory=True)
    git(worktree, "add", "escape")
    git(worktree, "commit", "-q", "-m", "A link out")
    put_tasks(state, **{DONE_ID: "done"})
    found = entries(run_json(capsys, gc()))
    assert found[DONE_ID]["reclaimed"] and not worktree.exists()
    assert (precious / "data.txt").read_text() == "outside the state directory\n"


def test_an_interrupted_landing_worktree_is_named_and_kept(
    gc: Callable[..., list[str]], state: Path, repo: Path, capsys
):
    landing = state / "worktrees" / f"{DONE_ID}.landing"
    landing.parent.mkdir(parents=True)
    git(repo, "worktree", "add", "-q", "--detach", "--", str(landing), "main")
    put_tasks(state, **{DONE_ID: "done"})
    found = entries(run_json(capsys, gc()))
    assert "interrupted landing" in str(found[f"{DONE_ID}.landing"]["reasons"])
    assert landing.is_dir()


@pytest.mark.parametrize(
    "case",
    [('{"repo": "gone"}', "not in [code.repos]"), (None, "its repo is not known")],
)
def test_a_finished_task_of_a_repo_not_allowed_now_is_kept(
    gc: Callable[..., list[str]], state: Path, repo: Path, case: tuple[str | None, str], capsys
):
    inputs, why = case
    worktree = task_worktree(repo, state, DONE_ID)
    record = state / "code" / DONE_ID / "inputs.json"
    if inputs is None:
        record.unlink()
    else:
        record.write_text(inputs)
    put_tasks(state, **{DONE_ID: "done"})
    found = entries(run_json(capsys, gc()))
    assert why in str(found[DONE_ID]["reasons"]) and not found[DONE_ID]["safe"]
    assert worktree.is_dir()
