"""Fewer ledger commits per file, the same promise: what a crash leaves in each new group.

A run begins as one record (the run, already running), a call's DONE is committed before the
next call is begun, and the last DONE, the run's end and the task's new state are one
transaction (daemon/lifecycle/execution.py, call_records.py). Records made inside an open
transaction join it (daemon/core/ledger_db.py). A power cut (an armed crash point, or a
failure inside the group) must leave every call settled by lookup on the next start: found,
never made again; nothing lost, nothing run twice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import files_in, make_files, note, outbox

from daemon.core import failpoints, ledger
from daemon.core.ledger import Ledger
from daemon.service.app import App, open_app
from daemon.service.runner import Runner

ONE = note({"type": "social_post", "platforms": ["facebook"], "text": "One platform"})
TWO = note({"type": "social_post", "platforms": ["facebook", "twitter"], "text": "Two"})


def _open(vault_root: Path, state_dir: Path) -> App:
    return open_app(vault_root, state_dir=state_dir)


def _run(app: App) -> None:
    Runner(app.pipeline, app.config, polling=True).run_once()


def _crash(app: App) -> None:
    """Run once; the armed point (or a planted failure) must cut it. Leave the app dead."""
    try:
        with pytest.raises(failpoints.Crashed):
            _run(app)
    finally:
        failpoints.disarm()
        app.ledger.close()  # what the OS does for a dead process


def _calls(state_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in outbox(state_dir):
        counts[record["marker"]] = counts.get(record["marker"], 0) + 1
    return counts


def _ledger(state_dir: Path) -> Ledger:
    return Ledger(state_dir / "ledger.sqlite3", readonly=True)


def _restart_and_finish(vault_root: Path, state_dir: Path, name: str, targets: list[str]) -> None:
    app = _open(vault_root, state_dir)
    app.pipeline.reconcile()
    _run(app)
    app.close()
    assert files_in(vault_root, "Done") == [name]
    assert files_in(vault_root, "Approved") == []
    book = _ledger(state_dir)
    try:
        (task,) = book.tasks(ledger.DONE)
        assert sorted(_calls(state_dir).items()) == [
            (f"vaultd:{task.id}:{target}", 1) for target in sorted(targets)
        ]
        assert book.open_intents() == []
        assert [r["state"] for r in book.runs(task.id)][-1] == ledger.SUCCEEDED
    finally:
        book.close()


# -- the ledger: records inside an open transaction join it --------------------------------


def test_records_inside_a_transaction_are_committed_with_it_in_one_commit(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    statements: list[str] = []
    book._db.set_trace_callback(statements.append)
    with book.transaction():
        run = book.start_run("t1", "sha256:x", dry_run=True, running=True)
        book.put_task("t1", file="Approved/a.md", state=ledger.EXECUTING)
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert book.runs("t1")[0]["state"] == ledger.RUNNING
    assert book.runs("t1")[0]["id"] == run
    task = book.task("t1")
    assert task is not None
    assert task.state == ledger.EXECUTING


def test_a_failed_record_inside_a_transaction_is_rolled_back_alone(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    with book.transaction():
        book.put_task("t1", file="a.md", state=ledger.APPROVED)
        with pytest.raises(sqlite3.OperationalError), book.transaction() as db:
            book.put_task("t2", file="b.md", state=ledger.APPROVED)
            db.execute("SELECT * FROM no_such_table")
    assert book.task("t1") is not None
    assert book.task("t2") is None


def test_a_crash_inside_a_transaction_commits_none_of_its_records(tmp_path: Path):
    book = Ledger(tmp_path / "l.db")
    with pytest.raises(failpoints.Crashed), book.transaction():
        book.put_task("t1", file="a.md", state=ledger.APPROVED)
        book.start_run("t1", "sha256:x", dry_run=True)
        raise failpoints.Crashed
    assert book.task("t1") is None
    assert book.runs("t1") == []
    book.put_task("t1", file="a.md", state=ledger.APPROVED)  # the connection is usable again
    assert book.task("t1") is not None


def test_a_durable_record_cannot_join_a_transaction_that_is_not_durable(tmp_path: Path):
    """An INTENT must be on disk before its call: inside a transaction committed later
    without an fsync it would not be, so it is refused (and nothing of it is kept)."""
    book = Ledger(tmp_path / "l.db")
    run = book.start_run("t1", "sha256:x", dry_run=True)
    with pytest.raises(RuntimeError, match="durable"), book.transaction():
        book.record_intent(run, "t1", "facebook", "vaultd:t1:facebook", None)
    assert book.steps("t1") == []
    with book.transaction(durable=True):
        book.record_intent(run, "t1", "facebook", "vaultd:t1:facebook", None)
    assert [s.state for s in book.steps("t1")] == [ledger.INTENT]


# -- the pipeline: a crash in each new group ------------------------------------------------


def test_a_post_is_executed_in_fewer_commits(vault_root: Path, state_dir: Path):
    """One post to two platforms: 9 commits, not 12 (begin the run; DONE of the first
    call; last DONE + run end + task state)."""
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    statements: list[str] = []
    app.ledger._db.set_trace_callback(statements.append)
    _run(app)
    app.ledger._db.set_trace_callback(None)
    app.close()
    assert files_in(vault_root, "Done") == ["two.md"]
    assert statements.count("COMMIT") == 9


@pytest.mark.parametrize(
    ("post", "targets"),
    [(ONE, ["facebook"]), (TWO, ["facebook", "twitter"])],
    ids=["one platform", "two platforms"],
)
def test_a_crash_after_the_last_call_before_its_done_is_settled_by_lookup(
    vault_root: Path, state_dir: Path, post: str, targets: list[str]
):
    """The last call's DONE waits for the run's end: a crash between leaves its INTENT,
    which the next start finds by its marker and records done; no call is made twice."""
    make_files(vault_root, {"Needs_Action/post.md": post})
    app = _open(vault_root, state_dir)
    last = {"key": None}

    def armed_on_the_last_call(point: str, key: str) -> None:
        if point == "after-call" and key.endswith(f":{targets[-1]}"):
            last["key"] = key
            raise failpoints.Crashed(point)

    original = failpoints.hit
    failpoints.hit = armed_on_the_last_call  # type: ignore[assignment]
    try:
        _crash(app)
    finally:
        failpoints.hit = original  # type: ignore[assignment]
    book = _ledger(state_dir)
    try:
        (intent,) = book.open_intents()  # the last call: its DONE never committed
        assert intent.marker == last["key"]
        (task,) = book.tasks(ledger.EXECUTING)
        assert [r["state"] for r in book.runs(task.id)] == [ledger.RUNNING]
    finally:
        book.close()
    assert len(outbox(state_dir)) == len(targets)  # every call went out once

    _restart_and_finish(vault_root, state_dir, "post.md", targets)


def test_a_crash_inside_the_run_end_commits_none_of_it(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """The last DONE, the run's end and the task's state are one transaction: a crash while
    the task's state is being recorded leaves all three as they were, and the restart
    settles the call by lookup."""
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    put_task = app.ledger.put_task

    def crash_on_the_executed_state(task_id: str, **fields: object) -> None:
        if fields.get("state") == ledger.EXECUTED:
            raise failpoints.Crashed("while recording the run's end")
        put_task(task_id, **fields)

    monkeypatch.setattr(app.ledger, "put_task", crash_on_the_executed_state)
    _crash(app)
    monkeypatch.undo()
    book = _ledger(state_dir)
    try:
        (task,) = book.tasks(ledger.EXECUTING)
        assert [(s.target, s.state) for s in book.steps(task.id)] == [
            ("facebook", ledger.SUCCEEDED),  # committed before the second call began
            ("twitter", ledger.INTENT),
        ]
        assert [r["state"] for r in book.runs(task.id)] == [ledger.RUNNING]
    finally:
        book.close()

    _restart_and_finish(vault_root, state_dir, "two.md", ["facebook", "twitter"])


def test_a_crash_after_the_run_end_finishes_the_note_without_calling_again(
    vault_root: Path, state_dir: Path
):
    """after-done on the last call: its DONE, the run's end and the task's state are on
    disk together; the note is still in Approved/ and is filed on the next start."""
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    calls = {"n": 0}
    original = failpoints.hit

    def armed_on_the_second_done(point: str, key: str) -> None:
        if point == "after-done":
            calls["n"] += 1
            if calls["n"] == 2:
                raise failpoints.Crashed(point)

    failpoints.hit = armed_on_the_second_done  # type: ignore[assignment]
    try:
        _crash(app)
    finally:
        failpoints.hit = original  # type: ignore[assignment]
    book = _ledger(state_dir)
    try:
        (task,) = book.tasks(ledger.EXECUTED)
        assert book.open_intents() == []
        assert [r["state"] for r in book.runs(task.id)] == [ledger.SUCCEEDED]
    finally:
        book.close()
    assert files_in(vault_root, "Approved") == ["two.md"]

    _restart_and_finish(vault_root, state_dir, "two.md", ["facebook", "twitter"])
