"""The live Facebook and Instagram connectors, through the real pyfacebook client, against a
loopback Graph API stand-in."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import forkserver
import pytest
import yaml
from standins.graph import GraphStandIn

from daemon.connectors import facebook_live, instagram_live
from daemon.connectors.base import Absent, Found, ScratchMemory, Undetermined
from daemon.connectors.facebook_live import FacebookConnector
from daemon.connectors.graph import GraphClient, RetryPolicy
from daemon.connectors.instagram_live import InstagramConnector
from daemon.core.audit import AuditLog
from daemon.core.errors import (
    AuthError,
    Deferred,
    NotConfigured,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)
from daemon.core.ledger import Ledger
from daemon.core.models import SocialPost
from daemon.core.settings import Settings
from daemon.lifecycle.execution import Executor, marker_for

FAST = RetryPolicy(attempts=3, initial=0.01, maximum=0.02, jitter=0.01)
MARKER = "vaultd:task-1:facebook"
IG_MARKER = "vaultd:task-1:instagram"
WRONG_TOKEN = "EAAGnotTheRightToken"  # noqa: S105 - a test token


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    with GraphStandIn() as standin:
        yield standin


def client(
    graph: GraphStandIn, *, token: str | None = None, service: str = "facebook"
) -> GraphClient:
    return GraphClient(
        token=token or graph.token,
        base_url=graph.url,
        version=graph.version,
        timeout=5,
        retry=FAST,
        service=service,
    )


def facebook(graph: GraphStandIn, memory: Any = None, **kw: Any) -> FacebookConnector:
    return FacebookConnector(client(graph, **kw), graph.page_id, memory or ScratchMemory())


def instagram(graph: GraphStandIn, memory: Any = None, **kw: Any) -> InstagramConnector:
    return InstagramConnector(
        client(graph, service="instagram", **kw),
        graph.ig_id,
        memory or ScratchMemory(),
        poll_delays=(0.01, 0.01, 0.01),
        sleep=lambda _: None,
    )


def post(**fields: Any) -> SocialPost:
    values: dict[str, Any] = {
        "type": "social_post",
        "platforms": ["facebook"],
        "text": "Winter sale: 20% off everything this week.",
    }
    values.update(fields)
    return SocialPost.model_validate(values)


IG_POST = {
    "platforms": ["instagram"],
    "image_url": "https://example.com/winter.jpg",
    "text": "Winter is here #sale",
}


# Facebook


def test_page_post_is_sent_once_with_message_and_link(graph: GraphStandIn):
    connector = facebook(graph)
    action = post(link="https://example.com/winter")
    described = connector.describe(action, marker=MARKER)
    assert described == {
        "method": "POST",
        "url": f"{graph.url}/v25.0/{graph.page_id}/feed",
        "params": {"message": action.text, "link": "https://example.com/winter"},
    }

    result = connector.execute(action, marker=MARKER, dry_run=False)

    assert len(graph.posts) == 1
    assert graph.posts[0]["message"] == action.text
    assert graph.posts[0]["link"] == "https://example.com/winter"
    assert result["id"] == graph.posts[0]["id"]
    assert result["id"].startswith(f"{graph.page_id}_")
    assert connector.lookup(MARKER) == Found(
        {"id": result["id"], "kind": "post", "found_by": "ledger"}
    )


def test_dry_run_sends_nothing(graph: GraphStandIn):
    result = facebook(graph).execute(post(), marker=MARKER, dry_run=True)
    assert result["dry_run"] is True
    assert graph.requests == []


def test_reply_is_a_comment_on_the_post(graph: GraphStandIn):
    parent = graph.seed_post("Do you ship to Canada?", timedelta(hours=2))
    result = facebook(graph).execute(
        post(kind="reply", in_reply_to=parent, text="Yes, we do!"), marker=MARKER, dry_run=False
    )
    assert graph.comments[parent] == [
        {
            "id": result["id"],
            "message": "Yes, we do!",
            "created_time": graph.comments[parent][0]["created_time"],
        }
    ]
    assert result["kind"] == "comment"
    assert len(graph.posts) == 1


def test_dm_is_a_page_message(graph: GraphStandIn):
    result = facebook(graph).execute(
        post(kind="dm", recipient="24000000000001", text="Your order shipped."),
        marker=MARKER,
        dry_run=False,
    )
    assert result["id"].startswith("m_")
    assert graph.messages[0]["recipient"] == {"id": "24000000000001"}
    assert graph.messages[0]["messaging_type"] == "RESPONSE"


def test_bad_token_is_an_auth_error(graph: GraphStandIn):
    with pytest.raises(AuthError, match="Invalid OAuth access token"):
        facebook(graph, token=WRONG_TOKEN).execute(post(), marker=MARKER, dry_run=False)
    assert graph.posts == []


def test_duplicate_post_is_permanent_with_facebooks_message(graph: GraphStandIn):
    graph.seed_post(post().text, timedelta(minutes=1))
    with pytest.raises(PermanentError, match=r"Duplicate status message.*code 506"):
        facebook(graph).execute(post(), marker=MARKER, dry_run=False)


@pytest.mark.parametrize(("code", "minutes"), [(4, None), (32, 7)])
def test_rate_limit_defers_until_the_header_says(
    graph: GraphStandIn, code: int, minutes: int | None
):
    graph.rate_limit_code, graph.regain_minutes = code, minutes
    before = datetime.now(UTC)
    with pytest.raises(Deferred, match=f"code {code}") as caught:
        facebook(graph).execute(post(), marker=MARKER, dry_run=False)
    wait = timedelta(minutes=minutes) if minutes else timedelta(hours=1)
    assert before + wait <= caught.value.retry_at <= datetime.now(UTC) + wait
    assert graph.posts == []


def test_a_read_is_retried_after_a_5xx(graph: GraphStandIn):
    graph.fail_reads = 2
    health = facebook(graph).check()
    assert health.ok, health.detail
    assert [r for r in graph.requests if r[0] == "GET"] == [("GET", "/v25.0/me")] * 3


def test_a_read_gives_up_after_its_attempts(graph: GraphStandIn):
    graph.fail_reads = 5
    with pytest.raises(TransientError, match="code 2"):
        client(graph).read("me")
    assert len(graph.requests) == 3


def test_writes_are_never_retried_and_refused_connections_are_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = GraphClient(token="t" * 10, base_url=f"http://127.0.0.1:{port}", retry=FAST, timeout=2)
    connector = FacebookConnector(dead, "1", ScratchMemory())
    with pytest.raises(TransientError, match="nothing was sent"):
        connector.execute(post(), marker=MARKER, dry_run=False)
    assert not connector.check().ok


def test_lost_answer_after_posting_is_found_by_lookup(graph: GraphStandIn):
    for hours in range(1, 40):  # an older feed, several pages long
        graph.seed_post(f"older post {hours}", timedelta(hours=hours))
    connector = facebook(graph)
    assert isinstance(connector.lookup(MARKER), Absent)  # never sent
    graph.drop_after_post = True
    with pytest.raises(OutcomeUnknown):
        connector.execute(post(), marker=MARKER, dry_run=False)
    found = connector.lookup(MARKER)
    assert isinstance(found, Found)
    assert found.result["id"] == graph.posts[-1]["id"]
    assert sum(p["message"] == post().text for p in graph.posts) == 1


def test_lookup_proves_absence_and_reports_errors(graph: GraphStandIn):
    for hours in range(1, 60):
        graph.seed_post(f"older post {hours}", timedelta(hours=hours))
    memory = ScratchMemory()
    now = datetime.now(UTC).isoformat()
    memory.remember(
        MARKER,
        "request",
        {"object": graph.page_id, "edge": "feed", "message": "never posted", "sent_after": now},
    )
    connector = facebook(graph, memory)
    assert isinstance(connector.lookup(MARKER), Absent)
    assert len(graph.requests) == 1  # stopped at the first post older than the intent
    graph.fail_reads = 10
    assert isinstance(connector.lookup(MARKER), Undetermined)


def test_executor_resolves_a_lost_answer_without_a_second_post(graph: GraphStandIn, tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    connector = facebook(graph, ledger)
    executor = Executor(ledger, {"facebook": connector}, AuditLog(tmp_path / "Logs"), dry_run=False)
    action = post()
    graph.drop_after_post = True
    first = executor.run("task-1", "hash", action)  # the lost answer is looked up at once
    assert first.results["facebook"]["id"] == graph.posts[0]["id"]
    second = executor.run("task-1", "hash", action)
    assert second.results["facebook"]["id"] == graph.posts[0]["id"]
    assert len(graph.posts) == 1
    assert marker_for("task-1", "facebook") == MARKER


def test_check_reads_me_with_the_page_token(graph: GraphStandIn):
    health = facebook(graph).check()
    assert health.ok
    assert health.detail == f"page Vaultd Test Page ({graph.page_id})"
    assert not facebook(graph, token=WRONG_TOKEN).check().ok


def test_connect_needs_its_settings(graph: GraphStandIn):
    with pytest.raises(NotConfigured, match="FACEBOOK_PAGE_TOKEN"):
        facebook_live.connect(Settings({"FACEBOOK_PAGE_ID": "1"}), ScratchMemory())
    with pytest.raises(NotConfigured, match="INSTAGRAM_ACCOUNT_ID"):
        instagram_live.connect(Settings({"FACEBOOK_PAGE_TOKEN": "x"}), ScratchMemory())
    live = facebook_live.connect(Settings(graph.env()), ScratchMemory())
    assert live.check().ok
    assert instagram_live.connect(Settings(graph.env()), ScratchMemory()).check().ok


# Instagram


def test_instagram_publishes_after_the_container_finishes(graph: GraphStandIn):
    memory = ScratchMemory()
    graph.reads_to_finish = 2
    result = instagram(graph, memory).execute(post(**IG_POST), marker=IG_MARKER, dry_run=False)
    assert len(graph.media) == 1
    assert result == {
        "id": graph.media[0]["id"],
        "container_id": memory.recall(IG_MARKER)["container_id"],
        "kind": "post",
    }
    container = graph.containers[result["container_id"]]
    assert (container.status, container.reads, container.caption) == (
        "PUBLISHED",
        3,
        IG_POST["text"],
    )
    paths = [p for _, p in graph.requests]
    assert paths.index(f"/v25.0/{graph.ig_id}/content_publishing_limit") < paths.index(
        f"/v25.0/{graph.ig_id}/media_publish"
    )


def test_container_error_fails_the_action(graph: GraphStandIn):
    graph.container_mode = "error"
    with pytest.raises(PermanentError, match="ERROR: Error: Media download has failed"):
        instagram(graph).execute(post(**IG_POST), marker=IG_MARKER, dry_run=False)
    assert graph.media == []


def test_container_that_never_finishes_defers_and_the_retry_reuses_it(graph: GraphStandIn):
    memory = ScratchMemory()
    graph.container_mode = "in_progress"
    connector = instagram(graph, memory)
    with pytest.raises(Deferred, match="still processing") as caught:
        connector.execute(post(**IG_POST), marker=IG_MARKER, dry_run=False)
    assert caught.value.retry_at > datetime.now(UTC)
    assert graph.media == []
    assert isinstance(connector.lookup(IG_MARKER), Absent)

    graph.container_mode = "finish"
    connector.execute(post(**IG_POST), marker=IG_MARKER, dry_run=False)
    assert len(graph.containers) == 1  # the retry reused the container
    assert len(graph.media) == 1


def test_used_up_quota_defers_the_action(graph: GraphStandIn):
    graph.quota_usage = graph.quota_total = 100
    before = datetime.now(UTC)
    with pytest.raises(Deferred, match="quota used up") as caught:
        instagram(graph).execute(post(**IG_POST), marker=IG_MARKER, dry_run=False)
    assert caught.value.retry_at >= before + timedelta(hours=1)
    assert graph.media == []


def test_lookup_after_a_crash_reads_the_container_status(graph: GraphStandIn, tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    connector = instagram(graph, ledger)
    assert isinstance(connector.lookup(IG_MARKER), Absent)  # no container: nothing published
    graph.drop_after_post = True
    with pytest.raises(OutcomeUnknown):
        connector.execute(post(**IG_POST), marker=IG_MARKER, dry_run=False)

    # A new process: only the ledger remembers the container.
    after_crash = instagram(graph, Ledger(tmp_path / "ledger.sqlite3"))
    found = after_crash.lookup(IG_MARKER)
    assert isinstance(found, Found)
    assert found.result["id"] == graph.media[0]["id"]
    assert graph.containers[found.result["container_id"]].status == "PUBLISHED"
    graph.fail_reads = 10
    assert isinstance(after_crash.lookup(IG_MARKER), Undetermined)


def test_instagram_rate_limit_and_bad_token(graph: GraphStandIn):
    with pytest.raises(AuthError):
        instagram(graph, token=WRONG_TOKEN).execute(
            post(**IG_POST), marker=IG_MARKER, dry_run=False
        )
    graph.rate_limit_code = 4
    with pytest.raises(Deferred):
        instagram(graph).execute(post(**IG_POST), marker=IG_MARKER, dry_run=False)
    assert graph.containers == {}


# End to end: the real CLI, live, against the stand-in.


@pytest.mark.e2e
def test_vaultd_run_live_posts_to_facebook_and_instagram_once(graph: GraphStandIn, tmp_path: Path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    env = {**os.environ, **graph.env()}
    env.pop("VAULTD_FAILPOINT", None)

    def vaultd(*args: str | Path) -> subprocess.CompletedProcess[str]:
        done = forkserver.run([str(arg) for arg in args], env=env, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    vaultd("init", vault)
    for old in (vault / "Needs_Action").iterdir():
        old.unlink()
    meta = {
        "type": "social_post",
        "platforms": ["facebook", "instagram"],
        "kind": "post",
        "text": "Live from the stand-in!",
        "image_url": "https://example.com/live.jpg",
        "scheduled_for": "2026-11-02T09:00:00Z",
    }
    note = f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\nA post.\n"
    (vault / "Needs_Action" / "live_post.md").write_text(note, encoding="utf-8")

    vaultd("run", "--vault", vault, "--state-dir", state, "--live", "--once")

    done = (vault / "Done" / "live_post.md").read_text(encoding="utf-8")
    stamps = yaml.safe_load(done[4:].partition("\n---\n")[0])
    assert stamps["status"] == "done"
    assert stamps["result"]["facebook"]["id"] == graph.posts[0]["id"]
    assert stamps["result"]["instagram"]["id"] == graph.media[0]["id"]
    assert len(graph.posts) == 1
    assert len(graph.media) == 1
    assert graph.token not in done


def test_instagram_dm_is_described_but_refused(graph: GraphStandIn):
    connector = instagram(graph)
    action = post(platforms=["instagram"], kind="dm", recipient="1", image_url=IG_POST["image_url"])
    assert "unsupported" in connector.describe(action, marker=IG_MARKER)
    with pytest.raises(PermanentError, match="not supported"):
        connector.execute(action, marker=IG_MARKER, dry_run=False)
    assert graph.requests == []


def test_a_non_json_5xx_after_a_post_is_an_unknown_outcome(graph: GraphStandIn):
    from daemon.connectors.graph import GraphClient as Client

    broken = client(graph)
    original = broken.api.post_object

    def html_502(**kwargs: Any) -> dict[str, Any]:
        original(**kwargs)  # the post is made, then the proxy answers with HTML
        raise KeyError("Content-Type")

    broken.api.post_object = html_502
    with pytest.raises(OutcomeUnknown, match="malformed answer"):
        FacebookConnector(broken, graph.page_id, ScratchMemory()).execute(
            post(), marker=MARKER, dry_run=False
        )
    assert isinstance(broken, Client)
    assert len(graph.posts) == 1
