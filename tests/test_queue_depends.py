"""depends_on: a child run starts only once every parent succeeded, and fails (with its own
children) when a parent fails or is cancelled. A parent must exist, be visible to the
caller and still be able to succeed when the child is enqueued, so no cycle can be made."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_queue import BOOM, ECHO, make_skill

from daemon.agents.queue.service import Options, RunQueue
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.registry import load_registry
from daemon.agents.skills.run_errors import InputsInvalid
from daemon.agents.skills.runs import Runs
from daemon.agents.skills.service import open_runs
from daemon.core.config import QueueConfig, SkillsConfig
from daemon.core.timestamps import parse_time
from daemon.service.app import App

NOW = QueueConfig(max_retries=0)


@pytest.fixture
def runs(app: App, tmp_path: Path) -> Runs:
    skills = tmp_path / "skills"
    make_skill(skills, "echo", ECHO)
    make_skill(skills, "boom", BOOM)
    return open_runs(app, load_registry(SkillsConfig(dirs=[skills]), vault=app.vault.root))


def enqueue(runs: Runs, skill: str, n: int, *parents: str, **options: object) -> str:
    queue = RunQueue(runs, NOW)
    chosen = Options(depends_on=parents, **options)  # type: ignore[arg-type]
    return queue.enqueue(skill, {"n": n}, requested_by="t", options=chosen).run.id


def test_a_child_starts_only_after_its_parents_succeeded_whatever_its_priority(runs: Runs):
    first = enqueue(runs, "echo", 1, priority=50)
    second = enqueue(runs, "echo", 2, priority=50)
    child = enqueue(runs, "echo", 3, first, second, priority=0)

    assert Workers(runs, NOW).drain() == 3

    done = {run_id: runs.view(run_id).run for run_id in (first, second, child)}
    assert {run.state for run in done.values()} == {"succeeded"}
    assert parse_time(done[child].started_at or "") >= max(
        parse_time(done[parent].finished_at or "") for parent in (first, second)
    )
    assert RunQueue(runs, NOW).scheduling(child)["depends_on"] == sorted([first, second])  # type: ignore[index]


def test_a_child_waits_while_a_parent_is_not_due(runs: Runs):
    later = enqueue(runs, "echo", 1, eta=parse_time("2099-01-01T00:00:00Z"))
    child = enqueue(runs, "echo", 2, later)

    assert Workers(runs, NOW).drain() == 0
    assert runs.view(child).run.state == "queued"


def test_a_failed_parent_fails_its_children_and_theirs_naming_it(runs: Runs):
    parent = enqueue(runs, "boom", 1)
    child = enqueue(runs, "echo", 2, parent)
    grandchild = enqueue(runs, "echo", 3, child)

    assert Workers(runs, NOW).drain() == 1  # the parent alone ran

    assert runs.view(parent).run.state == "failed"
    failed_child, failed_grandchild = runs.view(child).run, runs.view(grandchild).run
    assert failed_child.state == failed_grandchild.state == "failed"
    assert f"its parent run {parent} failed" in (failed_child.error or "")
    assert f"its parent run {child} failed" in (failed_grandchild.error or "")
    assert failed_child.started_at is None  # never started


def test_a_cancelled_parent_fails_its_child(runs: Runs):
    parent = enqueue(runs, "echo", 1, eta=parse_time("2099-01-01T00:00:00Z"))
    child = enqueue(runs, "echo", 2, parent)
    runs.cancel(parent, reason="not needed")

    Workers(runs, NOW).drain()

    assert runs.view(child).run.state == "failed"
    assert "cancelled" in (runs.view(child).run.error or "")


@pytest.mark.parametrize("parent", ["run-20260101-00000000", "hidden"])
def test_a_parent_that_does_not_exist_or_is_not_the_callers_is_refused_alike(
    runs: Runs, parent: str
):
    queue = RunQueue(runs, NOW)
    hidden = queue.enqueue("echo", {"n": 0}, requested_by="someone else").run.id
    wanted = hidden if parent == "hidden" else parent

    with pytest.raises(InputsInvalid) as refused:
        queue.enqueue(
            "echo",
            {"n": 1},
            requested_by="t",
            options=Options(depends_on=(wanted,)),
            sees=lambda run_id: run_id != hidden,
        )

    assert refused.value.problems == [("depends_on", f"no run {wanted!r}")]
    assert len(runs.store.listed()) == 1  # nothing half-enqueued


def test_a_parent_that_already_failed_is_refused(runs: Runs):
    parent = enqueue(runs, "boom", 1)
    Workers(runs, NOW).drain()
    with pytest.raises(InputsInvalid) as refused:
        enqueue(runs, "echo", 2, parent)
    assert "it cannot succeed" in str(refused.value)
