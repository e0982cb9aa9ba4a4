"""Code tasks prepared off the pipeline's thread (daemon/lifecycle/code_background.py): the
pipeline is told to look again until the preparation is done, then gets it under the id it
was started with; a refusal comes back the same way; an edited note is prepared again."""

from __future__ import annotations

import threading
from datetime import datetime

from daemon.connectors.code_prepare import Refused
from daemon.lifecycle.code_background import Preparations


def test_a_preparation_is_looked_at_again_until_done_and_keeps_its_first_id():
    release = threading.Event()
    calls: list[str] = []

    def prepare(task_id: str):
        calls.append(task_id)
        release.wait(10)
        return {"prepared": task_id}  # stands in for models.Prepared

    jobs = Preparations(1)
    first = jobs.get(("Needs_Action/a.md", "h1"), "t-first", prepare)  # type: ignore[arg-type]
    assert isinstance(first, datetime)
    again = jobs.get(("Needs_Action/a.md", "h1"), "t-second", prepare)  # type: ignore[arg-type]
    assert isinstance(again, datetime) and jobs.busy() == 1
    release.set()
    done = jobs.get(("Needs_Action/a.md", "h1"), "t-third", prepare)  # type: ignore[arg-type]
    while isinstance(done, datetime):  # however long the machine takes
        threading.Event().wait(0.01)
        done = jobs.get(("Needs_Action/a.md", "h1"), "t-third", prepare)  # type: ignore[arg-type]
    assert done == ("t-first", {"prepared": "t-first"})
    assert calls == ["t-first"]  # prepared once, under the id it was started with


def test_a_refusal_or_a_crash_of_the_preparation_comes_back_as_a_refusal():
    def refuse(task_id: str):
        raise Refused("the repo is gone", field="repo")

    def crash(task_id: str):
        raise RuntimeError("disk full")

    jobs = Preparations(2)
    for key, prepare in [(("a.md", "h"), refuse), (("b.md", "h"), crash)]:
        got = jobs.get(key, "t", prepare)  # type: ignore[arg-type]
        while isinstance(got, datetime):
            threading.Event().wait(0.01)
            got = jobs.get(key, "t", prepare)  # type: ignore[arg-type]
        task_id, answer = got
        assert task_id == "t" and isinstance(answer, Refused)
    assert "disk full" in str(answer)


def test_an_edited_note_is_prepared_again_and_the_old_version_forgotten():
    gate = threading.Event()
    seen: list[str] = []

    def prepare(task_id: str):
        seen.append(task_id)
        gate.wait(10)
        return task_id

    jobs = Preparations(2)
    jobs.get(("a.md", "v1"), "t1", prepare)  # type: ignore[arg-type]
    jobs.get(("a.md", "v2"), "t2", prepare)  # type: ignore[arg-type]
    gate.set()
    got = jobs.get(("a.md", "v2"), "t3", prepare)  # type: ignore[arg-type]
    while isinstance(got, datetime):
        threading.Event().wait(0.01)
        got = jobs.get(("a.md", "v2"), "t3", prepare)  # type: ignore[arg-type]
    assert got == ("t2", "t2")
    back = jobs.get(("a.md", "v1"), "t4", prepare)  # type: ignore[arg-type]
    while isinstance(back, datetime):
        threading.Event().wait(0.01)
        back = jobs.get(("a.md", "v1"), "t4", prepare)  # type: ignore[arg-type]
    assert back == ("t4", "t4")  # v1 was forgotten: asked again, it is prepared afresh
