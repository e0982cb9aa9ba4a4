"""Issue 12, item 3: a lost answer is looked up at once, then on a schedule, before a person.

Through the real Executor and a real ledger, with a scripted service and a clock the test
moves: a lost answer found by its first lookup is done in the same run; one a lookup cannot
tell yet is deferred (never waited for in place) and looked up again when due, with backoff
and jitter, until the schedule's budget is spent; what can never be looked up (a DM) goes to
a person at once; Absent right after a loss is looked at again before anything is resent;
an unfinished object is finished by one more call. The write is never made again blindly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import parsed, write_note

from daemon.connectors.base import Absent, Found, Health, Lookup, Undetermined, Unfinished
from daemon.connectors.facebook_live import FacebookConnector
from daemon.connectors.instagram_live import InstagramConnector
from daemon.connectors.twitter_live import TwitterLive
from daemon.connectors.unavailable import Unavailable
from daemon.core import ledger
from daemon.core.audit import AuditLog
from daemon.core.errors import ConfigError, OutcomeUnknown
from daemon.core.ledger import Ledger
from daemon.core.models import Action, parse_action
from daemon.core.policy import Facts
from daemon.lifecycle.execution import Executor
from daemon.lifecycle.lookups import LookupSchedule
from daemon.service.app import App

MARKER = "vaultd:task-1:twitter"
SHORT = LookupSchedule(first=2.0, longest=8.0, budget=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Service:
    """A service that does each call; `lose` answers are lost after the work is done.

    `answers` are what the next lookups say, in order; after them a lookup tells the truth
    (Found if the call was done, else Absent). `unfinished`: the first call leaves its object
    unfinished (a draft), which the next call finishes.
    """

    name = "twitter"

    def __init__(self, *, lose: int = 0, answers: list[Lookup] | None = None) -> None:
        self.lose = lose
        self.answers = list(answers or [])
        self.calls: list[str] = []
        self.lookups = 0
        self.done: dict[str, dict[str, Any]] = {}
        self.unfinished = False
        self.lands = True

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return {"marker": marker}

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        self.calls.append(marker)
        if self.unfinished and len(self.calls) == 1:
            self.lose -= 1
            raise OutcomeUnknown("the answer to the first write was lost")
        if not self.lands:
            self.lands, self.lose = True, self.lose - 1
            raise OutcomeUnknown("timed out")
        self.done[marker] = {"id": f"obj-{len(self.calls)}"}
        if self.lose > 0:
            self.lose -= 1
            raise OutcomeUnknown("connection dropped after sending")
        return self.done[marker]

    def lookup(self, marker: str) -> Lookup:
        self.lookups += 1
        if self.answers:
            return self.answers.pop(0)
        if self.unfinished and marker not in self.done and self.calls:
            return Unfinished("a draft carries the marker")
        return Found(self.done[marker]) if marker in self.done else Absent()

    def check(self) -> Health:
        return Health(True, "scripted")

    def facts(self, action: Action) -> Facts:
        return Facts()


ACTION = parse_action({"type": "social_post", "platforms": ["twitter"], "text": "Hello"})


def executor(tmp_path: Path, service: Service, clock: Clock, **kw: Any) -> Executor:
    book = Ledger(tmp_path / "ledger.sqlite3")
    audit = AuditLog(tmp_path / "Logs")
    return Executor(
        book, {"twitter": service}, audit, dry_run=False, lookups=SHORT, clock=clock, **kw
    )


def states(run: Executor) -> list[str]:
    return [step.state for step in run.ledger.steps("task-1")]


def test_a_lost_answer_found_by_the_first_lookup_is_done_in_the_same_run(tmp_path: Path):
    service, clock = Service(lose=1), Clock()
    run = executor(tmp_path, service, clock)

    outcome = run.run("task-1", "hash", ACTION)

    assert outcome.state == ledger.SUCCEEDED
    assert outcome.results == {"twitter": {"id": "obj-1"}}
    assert service.calls == [MARKER]
    assert service.lookups == 1
    assert states(run) == [ledger.SUCCEEDED]


def test_a_lookup_that_cannot_tell_yet_is_deferred_and_looked_up_again_when_due(
    tmp_path: Path,
):
    down = Undetermined("the service cannot be read")
    service, clock = Service(lose=1, answers=[down, down]), Clock()
    run = executor(tmp_path, service, clock)

    first = run.run("task-1", "hash", ACTION)
    assert first.state == ledger.DEFERRED
    reason, until = first.deferred["twitter"]
    assert "cannot be read" in reason and "looks again" in reason
    assert 2 <= (until - clock.now).total_seconds() <= 4  # first wait, plus jitter

    early = run.run("task-1", "hash", ACTION)  # a rescan before it is due: no lookup
    assert early.state == ledger.DEFERRED
    assert early.deferred["twitter"][1] == until
    assert service.lookups == 1

    clock.now = until
    second = run.run("task-1", "hash", ACTION)
    assert second.state == ledger.DEFERRED
    later = second.deferred["twitter"][1]
    assert 4 <= (later - clock.now).total_seconds() <= 6  # the wait doubled

    clock.now = later
    third = run.run("task-1", "hash", ACTION)
    assert third.state == ledger.SUCCEEDED
    assert third.results == {"twitter": {"id": "obj-1"}}
    assert service.calls == [MARKER]  # never sent again
    assert service.lookups == 3
    assert states(run) == [ledger.SUCCEEDED]


def test_a_lookup_that_never_tells_goes_to_a_person_once_the_budget_is_spent(tmp_path: Path):
    service, clock = Service(lose=1, answers=[Undetermined("down")] * 100), Clock()
    run = executor(tmp_path, service, clock)
    started = clock.now

    outcome = run.run("task-1", "hash", ACTION)
    waits = []
    while outcome.state == ledger.DEFERRED:
        until = outcome.deferred["twitter"][1]
        waits.append((until - clock.now).total_seconds())
        clock.now = until
        outcome = run.run("task-1", "hash", ACTION)

    assert outcome.state == ledger.UNKNOWN
    # What went wrong, and why no lookup settled it.
    assert outcome.unknown["twitter"].startswith("connection dropped after sending; down")
    assert f"looked up {service.lookups} times in 30 s" in outcome.unknown["twitter"]
    assert clock.now - started == timedelta(seconds=SHORT.budget)  # the last look at the end
    assert 4 <= service.lookups <= 8  # 2, 4, 8, 8 ... seconds apart: a few, not hundreds
    assert max(waits) <= SHORT.longest
    assert service.calls == [MARKER]
    assert states(run) == [ledger.UNKNOWN]

    # A person retries: the service can be read now, and the lookup settles it.
    service.answers.clear()
    retry = run.run("task-1", "hash", ACTION)
    assert retry.state == ledger.SUCCEEDED
    assert service.calls == [MARKER]


def test_a_retry_after_giving_up_gets_the_whole_schedule_again(tmp_path: Path):
    service, clock = Service(lose=1, answers=[Undetermined("down")] * 100), Clock()
    run = executor(tmp_path, service, clock)
    run.lookups = LookupSchedule(first=1.0, longest=1.0, budget=1.0)
    outcome = run.run("task-1", "hash", ACTION)
    clock.now = outcome.deferred["twitter"][1]
    assert run.run("task-1", "hash", ACTION).state == ledger.UNKNOWN

    clock.advance(3600)  # an hour later a person moves the note back to Approved/
    again = run.run("task-1", "hash", ACTION)

    assert again.state == ledger.DEFERRED, "the retry went to a person at its first lookup"
    assert service.calls == [MARKER]


def test_a_lookup_that_can_never_tell_goes_to_a_person_at_once(tmp_path: Path):
    dm = Undetermined("a sent DM cannot be looked up", lasting=True)
    service, clock = Service(lose=1, answers=[dm]), Clock()
    run = executor(tmp_path, service, clock)

    outcome = run.run("task-1", "hash", ACTION)

    assert outcome.state == ledger.UNKNOWN
    assert outcome.unknown == {
        "twitter": "connection dropped after sending; a sent DM cannot be looked up"
    }
    assert service.lookups == 1
    assert service.calls == [MARKER]


def test_absent_right_after_a_lost_answer_is_looked_at_again_before_it_is_sent_again(
    tmp_path: Path,
):
    service, clock = Service(lose=1), Clock()
    service.lands = False  # the write times out and never lands: nothing carries the marker
    run = executor(tmp_path, service, clock)

    first = run.run("task-1", "hash", ACTION)

    assert first.state == ledger.DEFERRED, "sent again right after a lost answer"
    assert "not found right after its answer was lost" in first.deferred["twitter"][0]
    assert service.calls == [MARKER]
    assert states(run) == [ledger.UNKNOWN]

    clock.now = first.deferred["twitter"][1]
    second = run.run("task-1", "hash", ACTION)  # still absent when looked at again: safe

    assert second.state == ledger.SUCCEEDED
    assert service.calls == [MARKER, MARKER]
    assert service.lookups == 2
    assert states(run) == [ledger.ABSENT, ledger.SUCCEEDED]


def test_an_unfinished_object_left_by_a_lost_answer_is_finished_in_the_same_run(tmp_path: Path):
    service, clock = Service(lose=1), Clock()
    service.unfinished = True
    run = executor(tmp_path, service, clock)

    outcome = run.run("task-1", "hash", ACTION)

    assert outcome.state == ledger.SUCCEEDED
    assert outcome.results == {"twitter": {"id": "obj-2"}}
    assert service.calls == [MARKER, MARKER]  # the write, and the one that finished it
    assert states(run) == [ledger.UNFINISHED, ledger.SUCCEEDED]


def test_an_unfinished_object_found_at_start_up_is_finished_without_a_second_lookup(
    tmp_path: Path,
):
    service, clock = Service(), Clock()
    service.unfinished = True
    run = executor(tmp_path, service, clock)
    run_id = run.ledger.start_run("task-1", "hash", dry_run=False)
    run.ledger.record_intent(run_id, "task-1", "twitter", MARKER, {})  # then a crash
    service.calls.append(MARKER)  # the crashed process had sent the first write

    assert run.reconcile() == [MARKER]
    outcome = run.run("task-1", "hash", ACTION)

    assert outcome.state == ledger.SUCCEEDED
    assert service.lookups == 1
    assert states(run) == [ledger.UNFINISHED, ledger.SUCCEEDED]


def test_the_schedule_outlives_a_restart(tmp_path: Path):
    service, clock = Service(lose=1, answers=[Undetermined("down")]), Clock()
    first = executor(tmp_path, service, clock).run("task-1", "hash", ACTION)
    until = first.deferred["twitter"][1]

    restarted = executor(tmp_path, service, clock)  # the same ledger, a new process
    early = restarted.run("task-1", "hash", ACTION)
    assert early.deferred["twitter"][1] == until
    assert service.lookups == 1
    clock.now = until
    assert restarted.run("task-1", "hash", ACTION).state == ledger.SUCCEEDED


def test_the_schedule_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VAULTD_LOOKUP_SCHEDULE", "0.5, 4, 60")
    assert LookupSchedule.from_environment() == LookupSchedule(0.5, 4.0, 60.0)
    monkeypatch.delenv("VAULTD_LOOKUP_SCHEDULE")
    assert LookupSchedule.from_environment() == LookupSchedule(2.0, 30.0, 120.0)
    assert LookupSchedule.parse("1,1,0").budget == 0  # never look again: a person at once
    for bad in ("2,30", "a,b,c", "0,1,1", "5,2,10", "1,2,-1"):
        with pytest.raises(ConfigError, match="VAULTD_LOOKUP_SCHEDULE"):
            LookupSchedule.parse(bad)


def test_the_waits_back_off_exponentially_with_jitter_up_to_the_longest():
    schedule = LookupSchedule(first=2.0, longest=30.0, budget=120.0)
    for tries, low in ((1, 2), (2, 4), (3, 8), (4, 16)):
        waits = {schedule.wait(tries) for _ in range(20)}
        assert all(low <= w <= low + 2 for w in waits), (tries, waits)
        assert len(waits) > 1  # jitter
    assert {schedule.wait(9) for _ in range(5)} == {30.0}


def test_what_no_lookup_can_ever_settle_says_so():
    """DMs and Instagram replies have no lookup; neither has a connector that is not set up."""
    memory = _Memory()
    memory.remember(MARKER, "request", {"edge": "messages"})
    facebook = FacebookConnector(None, "1", memory)  # type: ignore[arg-type]
    assert facebook.lookup(MARKER) == Undetermined(
        "facebook: a sent Page message cannot be looked up", lasting=True
    )
    memory.remember(MARKER, "reply_sent", True)
    instagram = InstagramConnector(None, "1", memory)  # type: ignore[arg-type]
    answer = instagram.lookup(MARKER)
    assert isinstance(answer, Undetermined) and answer.lasting
    memory.remember(MARKER, "sending", {"kind": "dm", "text": "hi", "at": "2026-11-22T09:00"})
    keys = dict.fromkeys(("api_key", "api_secret", "access_token", "access_secret"), "test")
    twitter = TwitterLive(**keys, memory=memory)
    answer = twitter.lookup(MARKER)
    assert isinstance(answer, Undetermined) and answer.lasting
    unavailable = Unavailable("odoo", "missing ODOO_URL").lookup(MARKER)
    assert isinstance(unavailable, Undetermined) and unavailable.lasting


class _Memory:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    def remember(self, marker: str, key: str, value: Any) -> None:
        self.values.setdefault(marker, {})[key] = value

    def recall(self, marker: str) -> dict[str, Any]:
        return dict(self.values.get(marker, {}))


# -- through the pipeline: the note waits in Approved/, then ends in Done/ ------------------

POST = "type: social_post\nplatforms: [twitter]\ntext: 'Lost, then found'\n"


def test_a_note_waits_in_approved_while_its_lookup_cannot_tell_then_ends_in_done(
    app: App, vault_root: Path
):
    service = Service(lose=1, answers=[Undetermined("X cannot be read")])
    app.pipeline.connectors["twitter"] = service
    app.pipeline.executor.lookups = LookupSchedule(first=0.01, longest=0.02, budget=5)

    first = app.pipeline.process(write_note(vault_root, "Needs_Action/x.md", POST, "Body\n"))

    assert first.status == "deferred"
    assert first.path == vault_root / "Approved" / "x.md"
    assert first.retry_at is not None
    waiting = parsed(vault_root / "Approved" / "x.md")
    assert waiting.meta["status"] == "waiting"
    assert "X cannot be read" in waiting.meta["note"]

    while datetime.now(UTC) < first.retry_at:
        pass  # a few milliseconds
    last = app.pipeline.process(vault_root / "Approved" / "x.md")

    assert last.status == "done"
    done = parsed(vault_root / "Done" / "x.md")
    assert done.meta["result"]["twitter"] == {"id": "obj-1"}
    assert service.calls == [f"vaultd:{done.meta['id']}:twitter"]
