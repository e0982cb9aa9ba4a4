"""States that stay true: a skill task's note, a run's output and a cancelled run's requests.

Runs are real (execute.py in a child process), the pipeline is the real one, and people are
played by renames between folders, as in Obsidian. The hostile tests race a cancel against
a person (or an agent) moving a request on, and against the pipeline executing it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, audit, files_in, move, outbox, parsed

from daemon.agents.skills.registry import load_registry
from daemon.agents.skills.runs import Runs, RunView
from daemon.agents.skills.service import open_runs
from daemon.core import notes
from daemon.core.config import SkillsConfig
from daemon.service.app import App, open_app
from daemon.service.runner import Runner

SKILL_TASK = """---
type: skill   # asked for by the marketing agent
skill: post-social-media
params:
  text: Winter sale starts Monday
  platforms: [facebook]
---
Asked for by the marketing agent.

Keep this paragraph exactly as it is.
"""

TWO_POSTS = (
    "def run(inputs, tools):\n"
    "    first = tools.call('social.post', platforms=['facebook'], text='One')\n"
    "    second = tools.call('social.post', platforms=['facebook'], text='Two')\n"
    "    return [first, second]\n"
)


def process(app: App) -> None:
    Runner(app.pipeline, app.config).run_once()


def runs_of(app: App, skills_dir: Path | None = None) -> Runs:
    """The run service of the app: the one `type: skill` task files start their runs with."""
    if skills_dir is None:
        assert app.pipeline.skills is not None
        return app.pipeline.skills
    registry = load_registry(SkillsConfig(dirs=[skills_dir]), vault=app.vault.root)
    runs = open_runs(app, registry)
    app.pipeline.skills = runs
    return runs


def two_post_skill(root: Path) -> Path:
    folder = root / "skills" / "two-posts"
    folder.mkdir(parents=True)
    manifest = {
        "name": "two-posts",
        "description": "posts twice",
        "parameters": {"type": "object", "properties": {}},
        "tools": ["social.post"],
        "approval_required": True,
    }
    (folder / "skill.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "execute.py").write_text(TWO_POSTS, encoding="utf-8")
    return root / "skills"


def requested_post(app: App, vault_root: Path, **inputs: Any) -> tuple[Runs, RunView, str]:
    """Start a post-social-media run and let the pipeline ask a person about its request."""
    runs = runs_of(app)
    view = runs.create(
        "post-social-media",
        {"text": "Winter sale", "platforms": ["facebook"], **inputs},
        requested_by="test",
        execute=True,
    )
    process(app)
    [name] = files_in(vault_root, "Pending_Approval")
    return runs, view, name


def the_skill_task(app: App, vault_root: Path) -> str:
    """Drop a skill task, let it start its run and the run's request wait for a person."""
    (vault_root / "Needs_Action" / "ask.md").write_text(SKILL_TASK)
    process(app)
    assert "status: awaiting_approval" in (vault_root / "Done" / "ask.md").read_text()
    process(app)
    [request] = files_in(vault_root, "Pending_Approval")
    return request


def user_part(path: Path) -> tuple[str, str]:
    """Return what the person wrote in a note: their frontmatter lines and the body."""
    note = parsed(path)
    return notes._strip_reserved(note.frontmatter or ""), note.body


def task_of(app: App, name: str, folder: str) -> Any:
    [task] = [t for t in app.ledger.find_tasks("") if t.file == f"{folder}/{name}"]
    return task


# -- the note of the task that asked for the run ---------------------------------------------


def test_a_skill_task_note_in_done_shows_that_its_run_succeeded(app: App, vault_root: Path):
    request = the_skill_task(app, vault_root)
    before = user_part(vault_root / "Done" / "ask.md")
    move(vault_root, vault_root / "Pending_Approval" / request, "Approved")
    process(app)

    runs_of(app).refresh_waiting()  # what the daemon does before each dashboard write

    done = parsed(vault_root / "Done" / "ask.md")
    assert done.meta["status"] == "succeeded"
    assert done.meta["result"]["state"] == "succeeded"
    assert done.meta["result"]["output"]["task_file"] == f"Done/{request}"
    assert "error" not in done.meta
    assert user_part(vault_root / "Done" / "ask.md") == before  # body and keys untouched


def test_a_skill_task_note_in_done_shows_that_its_run_failed_when_its_request_was_rejected(
    app: App, vault_root: Path
):
    request = the_skill_task(app, vault_root)
    move(vault_root, vault_root / "Pending_Approval" / request, "Rejected")
    process(app)

    runs_of(app).refresh_waiting()

    done = parsed(vault_root / "Done" / "ask.md")
    assert done.meta["status"] == "failed"
    assert "rejected" in done.meta["error"]
    assert done.body.endswith("Keep this paragraph exactly as it is.\n")


def test_a_skill_task_note_shows_its_run_cancelled(app: App, vault_root: Path):
    the_skill_task(app, vault_root)
    [run] = runs_of(app).listed()

    runs_of(app).cancel(run.id, reason="the sale was called off")

    done = parsed(vault_root / "Done" / "ask.md")
    assert done.meta["status"] == "cancelled"
    assert "the sale was called off" in done.meta["error"]


def test_a_run_that_finished_without_writing_its_task_note_is_caught_up_by_the_daemon(
    app: App, vault_root: Path, monkeypatch: pytest.MonkeyPatch
):
    request = the_skill_task(app, vault_root)
    move(vault_root, vault_root / "Pending_Approval" / request, "Approved")
    process(app)
    runs = runs_of(app)
    [run] = runs.store.listed()
    # A `vaultd runs show` that dies between finishing the run and writing the note.
    with monkeypatch.context() as patch:
        patch.setattr(Runs, "_note", lambda self, run: None)
        assert runs.view(run.id).run.state == "succeeded"
    assert parsed(vault_root / "Done" / "ask.md").meta["status"] == "awaiting_approval"

    runs.refresh_waiting()

    assert parsed(vault_root / "Done" / "ask.md").meta["status"] == "succeeded"


def test_a_person_editing_the_task_note_while_vaultd_writes_it_keeps_their_edit(
    app: App, vault_root: Path, monkeypatch: pytest.MonkeyPatch
):
    from daemon.agents.skills import settle

    request = the_skill_task(app, vault_root)
    move(vault_root, vault_root / "Pending_Approval" / request, "Approved")
    process(app)
    note = vault_root / "Done" / "ask.md"
    real_read = settle.read_task_file
    edits: list[int] = []

    def read_then_person_edits(path: Path) -> Any:
        loaded = real_read(path)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"Line {len(edits)} the person adds.\n")
        edits.append(1)
        return loaded

    with monkeypatch.context() as patch:
        patch.setattr(settle, "read_task_file", read_then_person_edits)
        runs_of(app).refresh_waiting()
    assert parsed(note).meta["status"] == "awaiting_approval"  # never written over an edit

    runs_of(app).refresh_waiting()  # the next dashboard write, once the person is done

    assert parsed(note).meta["status"] == "succeeded"
    assert edits
    assert note.read_text().endswith(
        "".join(f"Line {n} the person adds.\n" for n in range(len(edits)))
    )


# -- the run's output --------------------------------------------------------------------------


def test_a_finished_runs_output_points_to_where_its_request_is_now(app: App, vault_root: Path):
    runs, view, name = requested_post(app, vault_root)
    assert view.run.output["task_file"] == f"Needs_Action/{name}"
    move(vault_root, vault_root / "Pending_Approval" / name, "Approved")
    process(app)

    run = runs.view(view.run.id).run

    assert run.state == "succeeded"
    assert run.output == {
        "approval_required": True,
        "status": "done",
        "task_file": f"Done/{name}",
    }


def test_a_failed_runs_output_points_to_its_rejected_request(app: App, vault_root: Path):
    runs, view, name = requested_post(app, vault_root)
    move(vault_root, vault_root / "Pending_Approval" / name, "Rejected")
    process(app)

    run = runs.view(view.run.id).run

    assert run.state == "failed"
    assert run.output["task_file"] == f"Rejected/{name}"
    assert run.output["status"] == "rejected"


# -- cancelling withdraws the requests ------------------------------------------------------


def test_cancelling_a_run_withdraws_its_pending_request_to_rejected_with_the_reason(
    app: App, vault_root: Path
):
    runs, view, name = requested_post(app, vault_root)

    cancelled = runs.cancel(view.run.id, reason="wrong week")

    assert files_in(vault_root, "Pending_Approval") == []
    assert files_in(vault_root, "Rejected") == [name]
    note = parsed(vault_root / "Rejected" / name)
    assert note.meta["status"] == "rejected"
    assert note.meta["error"].startswith("run cancelled: ")
    assert "wrong week" in note.meta["error"]
    assert note.block == ""  # the approval request is gone from the note
    task = task_of(app, name, "Rejected")
    assert (task.state, task.approval) == ("rejected", "withdrawn")
    [entry] = [e for e in audit(vault_root) if e["event"] == "rejected"]
    assert entry["file"] == f"Rejected/{name}"
    assert entry["error"].startswith("run cancelled")
    assert cancelled.run.state == "cancelled"
    assert cancelled.trace[0].state == "rejected"
    assert cancelled.run.output["task_file"] == f"Rejected/{name}"
    assert cancelled.notices == (
        f"Pending_Approval/{name}: withdrawn to Rejected/{name}; it will not be executed",
    )


def test_a_cancelled_runs_request_moved_from_rejected_into_approved_is_not_executed(
    app: App, vault_root: Path
):
    runs, view, name = requested_post(app, vault_root)
    runs.cancel(view.run.id, reason="wrong week")

    move(vault_root, vault_root / "Rejected" / name, "Approved")
    process(app)

    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Rejected") == [name]
    assert files_in(vault_root, "Pending_Approval") == []  # not even asked about again
    assert parsed(vault_root / "Rejected" / name).meta["error"].startswith("run cancelled")


def test_a_cancelled_runs_request_moved_back_into_pending_approval_then_approved_is_not_executed(
    app: App, vault_root: Path
):
    runs, view, name = requested_post(app, vault_root)
    runs.cancel(view.run.id, reason="wrong week")

    move(vault_root, vault_root / "Rejected" / name, "Pending_Approval")
    process(app)
    assert files_in(vault_root, "Pending_Approval") == []
    move(vault_root, vault_root / "Rejected" / name, "Approved")
    process(app)

    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Rejected") == [name]


def test_a_request_moved_into_approved_just_before_its_run_is_cancelled_is_not_executed(
    app: App, vault_root: Path
):
    runs, view, name = requested_post(app, vault_root)
    move(vault_root, vault_root / "Pending_Approval" / name, "Approved")  # not yet seen

    cancelled = runs.cancel(view.run.id, reason="wrong week")
    assert "withdrawn; it will not be executed" in cancelled.notices[0]
    process(app)

    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Approved") == []
    assert files_in(vault_root, "Rejected") == [name]
    assert parsed(vault_root / "Rejected" / name).meta["error"].startswith("run cancelled")


def test_a_request_approved_and_waiting_for_its_time_when_its_run_is_cancelled_never_runs(
    app: App, vault_root: Path, clock: Clock
):
    later = (clock.now + timedelta(days=1)).isoformat()
    runs, view, name = requested_post(app, vault_root, scheduled_for=later)
    move(vault_root, vault_root / "Pending_Approval" / name, "Approved")
    process(app)
    assert files_in(vault_root, "Approved") == [name]  # approved, waiting for its time

    runs.cancel(view.run.id, reason="wrong week")
    assert files_in(vault_root, "Rejected") == [name]
    clock.advance(days=2)
    move(vault_root, vault_root / "Rejected" / name, "Approved")  # moved on by an agent
    process(app)

    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Rejected") == [name]


def test_a_cancel_that_lands_between_the_approval_check_and_the_execution_still_stops_it(
    app: App, vault_root: Path, monkeypatch: pytest.MonkeyPatch
):
    _, view, name = requested_post(app, vault_root)
    move(vault_root, vault_root / "Pending_Approval" / name, "Approved")
    # `vaultd runs cancel` from a shell: its own app, with its own connection to the ledger.
    shell = open_app(vault_root, state_dir=app.state_dir)
    other_process = open_runs(shell)
    pipeline = app.pipeline
    real = pipeline._done_with_another_version

    def cancel_meanwhile(*args: Any) -> list[str]:
        other_process.cancel(view.run.id, reason="wrong week")
        return real(*args)

    monkeypatch.setattr(pipeline, "_done_with_another_version", cancel_meanwhile)
    try:
        process(app)
    finally:
        shell.close()

    assert outbox(app.state_dir) == []
    assert files_in(vault_root, "Approved") == []
    assert files_in(vault_root, "Rejected") == [name]
    task = task_of(app, name, "Rejected")
    assert task.state == "rejected"
    assert not [e for e in audit(vault_root) if e["event"] == "executed"]


def test_a_request_executed_before_the_cancel_stays_done_and_the_cancel_says_so(
    app: App, vault_root: Path, tmp_path: Path
):
    runs = runs_of(app, two_post_skill(tmp_path))
    view = runs.create("two-posts", {}, requested_by="test", execute=True)
    process(app)
    first, second = sorted(files_in(vault_root, "Pending_Approval"))
    move(vault_root, vault_root / "Pending_Approval" / first, "Approved")
    process(app)

    cancelled = runs.cancel(view.run.id, reason="enough")

    assert files_in(vault_root, "Done") == [first]
    assert files_in(vault_root, "Rejected") == [second]
    assert len(outbox(app.state_dir)) == 1
    assert cancelled.notices == (
        f"Done/{first}: already executed, stays done (cancelling cannot undo it)",
        f"Pending_Approval/{second}: withdrawn to Rejected/{second}; it will not be executed",
    )
    assert [step.state for step in cancelled.trace] == ["done", "rejected"]
    assert [item["task_file"] for item in cancelled.run.output] == [
        f"Done/{first}",
        f"Rejected/{second}",
    ]


def test_a_cancelled_runs_request_not_yet_taken_in_is_rejected_when_vaultd_takes_it_in(
    app: App, vault_root: Path
):
    runs = runs_of(app)
    view = runs.create("post-social-media", {"text": "Hi"}, requested_by="t", execute=True)
    [name] = files_in(vault_root, "Needs_Action")

    cancelled = runs.cancel(view.run.id, reason="wrong week")
    assert cancelled.notices == (
        f"Needs_Action/{name}: not yet taken in; vaultd rejects it (run cancelled) when it does",
    )
    process(app)

    assert files_in(vault_root, "Pending_Approval") == []
    assert files_in(vault_root, "Rejected") == [name]
    assert parsed(vault_root / "Rejected" / name).meta["error"].startswith("run cancelled")
    after = runs.view(view.run.id)
    assert after.trace[0].state == "rejected"
    assert after.run.output["task_file"] == f"Rejected/{name}"
    assert outbox(app.state_dir) == []
