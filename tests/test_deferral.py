"""A service that will not take a call yet (429, quota): the action waits in Approved/."""

from datetime import timedelta
from pathlib import Path

from conftest import StandInService, make_files, note, parsed

from daemon.core import ledger
from daemon.core.errors import Deferred
from daemon.service.app import App

POST = {"type": "social_post", "platforms": ["facebook", "twitter"], "text": "Hello"}


def test_a_rate_limited_call_waits_in_approved_and_runs_when_the_window_opens(
    app: App, vault_root: Path, clock
):
    facebook, twitter = StandInService("facebook"), StandInService("twitter")
    reset = clock() + timedelta(minutes=15)
    twitter.always = Deferred("429 Too Many Requests", reset)
    app.pipeline.connectors.update(facebook=facebook, twitter=twitter)
    make_files(vault_root, {"Needs_Action/post.md": note(POST)})

    waiting = app.pipeline.process(vault_root / "Needs_Action/post.md")

    assert waiting.status == "deferred"
    assert waiting.retry_at == reset
    assert waiting.path == vault_root / "Approved/post.md"
    stamped = parsed(waiting.path)
    task_id = stamped.meta["id"]
    assert stamped.meta["status"] == "waiting"
    assert "twitter: 429 Too Many Requests" in stamped.meta["note"]
    assert stamped.meta["result"]["facebook"] == {"id": "facebook-1"}
    task = app.ledger.task(task_id)
    assert task is not None
    assert task.state == ledger.APPROVED

    twitter.always = None
    done = app.pipeline.process(waiting.path)

    assert done.status == "done"
    assert facebook.calls == [f"vaultd:{task_id}:facebook"]
    assert twitter.calls == [f"vaultd:{task_id}:twitter"] * 2
    assert [run["state"] for run in app.ledger.runs(task_id)] == ["deferred", "succeeded"]
