"""Fewer ledger commits per file, the same promise: what a crash leaves in each new group.

A run begins as one record (the run, already running), with the INTENTs of all its calls when
every connector's lookup settles a call (found, or proven absent: the dry-run connectors), in
one durable commit; a call's DONE is committed before the next call is begun, and the last
DONE, the run's end and the task's new state are one transaction
(daemon/lifecycle/execution.py, call_records.py). Records made inside an open
transaction join it (daemon/core/ledger_db.py). A power cut (an armed crash point, or a
failure inside the group) must leave every call settled by lookup on the next start: found,
never made again; nothing lost, nothing run twice.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from conftest import audit, files_in, make_files, note, outbox

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


def _raise_on_the_executed_state(
    app: App, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    """Make the ledger raise `error` when a task's state is recorded as executed (the run's
    end), and record every other state as ever."""
    put_task = app.ledger.put_task

    def raising(task_id: str, **fields: object) -> None:
        if fields.get("state") == ledger.EXECUTED:
            raise error
        put_task(task_id, **fields)

    monkeypatch.setattr(app.ledger, "put_task", raising)


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


def test_an_error_that_ends_the_whole_transaction_is_the_one_raised(tmp_path: Path):
    """Some errors make SQLite roll back the whole transaction itself (a full disk, an I/O
    error, OR ROLLBACK): the savepoint is gone with it. The error raised must be that one,
    not "no such savepoint"; nothing of the transaction is kept, and a record made after it
    (by a caller that caught the error) does not start a transaction of its own."""
    book = Ledger(tmp_path / "l.db")
    insert = (
        "INSERT OR ROLLBACK INTO tasks (id, file, state, created_at, updated_at)"
        " VALUES ('t1', 'b.md', 'approved', 'now', 'now')"
    )
    with pytest.raises(sqlite3.IntegrityError), book.transaction():
        book.put_task("t1", file="a.md", state=ledger.APPROVED)
        with book.transaction() as db:
            db.execute(insert)
    assert book.task("t1") is None
    with pytest.raises(RuntimeError, match="rolled back"), book.transaction():
        book.put_task("t1", file="a.md", state=ledger.APPROVED)
        with contextlib.suppress(sqlite3.IntegrityError), book.transaction() as db:
            db.execute(insert)
        book.put_task("t2", file="c.md", state=ledger.APPROVED)
    assert book.task("t1") is None
    assert book.task("t2") is None
    book.put_task("t3", file="d.md", state=ledger.APPROVED)  # the connection is usable again
    assert book.task("t3") is not None


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


def _commits(statements: list[str]) -> tuple[int, int]:
    """Return (commits, durable commits) in a trace of one connection's statements."""
    commits = durable = 0
    full = False
    for statement in statements:
        if statement.startswith("PRAGMA synchronous="):
            full = statement.endswith("FULL")
        elif statement == "COMMIT":
            commits += 1
            durable += full
    return commits, durable


def _traced_run(app: App) -> tuple[int, int]:
    statements: list[str] = []
    app.ledger._db.set_trace_callback(statements.append)
    try:
        _run(app)
    finally:
        app.ledger._db.set_trace_callback(None)
    return _commits(statements)


def test_a_post_is_executed_in_fewer_commits_and_one_fsync(vault_root: Path, state_dir: Path):
    """One post to two platforms: 7 commits, not 12, and one durable (the run and both
    INTENTs), not two."""
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    assert _traced_run(app) == (7, 1)
    app.close()
    assert files_in(vault_root, "Done") == ["two.md"]


class _Unsure:
    """A connector whose lookup may not tell (any live service's, here by saying nothing
    about it): its INTENT is never committed ahead of its call."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        if name == "lookup_settles":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_intents_are_recorded_one_by_one_when_a_lookup_may_not_settle_a_call(
    vault_root: Path, state_dir: Path
):
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    connectors = app.pipeline.connectors
    connectors["twitter"] = _Unsure(connectors["twitter"])  # type: ignore[assignment]
    assert _traced_run(app) == (9, 2)
    app.close()
    assert files_in(vault_root, "Done") == ["two.md"]


def test_intents_are_recorded_one_by_one_under_a_rate_limit(vault_root: Path, state_dir: Path):
    """A rate limit may hold the second call back after the first: its INTENT must not be
    on record before then."""
    config = vault_root.parent / "limits.toml"
    config.write_text("[rate_limits]\nper_hour = { twitter = 10 }\n", encoding="utf-8")
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = open_app(vault_root, config_path=config, state_dir=state_dir)
    assert _traced_run(app) == (9, 2)
    app.close()
    assert files_in(vault_root, "Done") == ["two.md"]


@pytest.mark.parametrize(
    ("point", "lookups"),
    [("after-intent", ["absent", "absent"]), ("after-call", ["found", "absent"])],
)
def test_a_crash_after_the_intents_were_recorded_together_is_settled_by_lookup(
    vault_root: Path, state_dir: Path, point: str, lookups: list[str]
):
    """Both INTENTs are on disk before the first call: a crash before it (after-intent) or
    after it (after-call) leaves both in doubt. The next start looks each up: the call made
    is found and never made again, the one not made is proven absent and made once."""
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    failpoints.arm([point])
    _crash(app)
    assert len(outbox(state_dir)) == (0 if point == "after-intent" else 1)
    book = _ledger(state_dir)
    try:
        assert [s.target for s in book.open_intents()] == ["facebook", "twitter"]
    finally:
        book.close()

    _restart_and_finish(vault_root, state_dir, "two.md", ["facebook", "twitter"])
    found = [e["result"]["lookup"] for e in audit(vault_root) if e["event"] == "reconciled"]
    assert found == lookups


def test_a_crash_while_the_intents_are_recorded_records_none_of_them(
    vault_root: Path, state_dir: Path
):
    """before-intent of the second call is passed inside the transaction of the group: a
    crash there leaves neither INTENT (and no run), and nothing was sent."""
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    original = failpoints.hit

    def armed_before_the_second_intent(point: str, key: str) -> None:
        if point == "before-intent" and key.endswith(":twitter"):
            raise failpoints.Crashed(point)

    failpoints.hit = armed_before_the_second_intent  # type: ignore[assignment]
    try:
        _crash(app)
    finally:
        failpoints.hit = original  # type: ignore[assignment]
    book = _ledger(state_dir)
    try:
        assert book.open_intents() == []
        (task,) = book.tasks(ledger.EXECUTING)
        assert book.runs(task.id) == []
    finally:
        book.close()
    assert outbox(state_dir) == []

    _restart_and_finish(vault_root, state_dir, "two.md", ["facebook", "twitter"])


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
    _raise_on_the_executed_state(
        app, monkeypatch, failpoints.Crashed("while recording the run's end")
    )
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


def test_a_failure_inside_the_run_end_keeps_the_last_calls_done(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """A failure (not a crash) while the run's end is recorded rolls that transaction back,
    the last call's DONE with it: the call went out, and its result must stay on record
    (committed alone), not be left to a lookup that a live service may not answer."""
    make_files(vault_root, {"Needs_Action/two.md": TWO})
    app = _open(vault_root, state_dir)
    _raise_on_the_executed_state(app, monkeypatch, sqlite3.OperationalError("disk I/O error"))
    _run(app)  # the runner logs the failure; the note stays in Approved/
    monkeypatch.undo()
    try:
        (task,) = app.ledger.tasks(ledger.EXECUTING)
        assert [(s.target, s.state) for s in app.ledger.steps(task.id)] == [
            ("facebook", ledger.SUCCEEDED),
            ("twitter", ledger.SUCCEEDED),  # went out: its DONE is kept
        ]
        assert app.ledger.open_intents() == []
    finally:
        app.close()
    assert len(outbox(state_dir)) == 2

    _restart_and_finish(vault_root, state_dir, "two.md", ["facebook", "twitter"])
