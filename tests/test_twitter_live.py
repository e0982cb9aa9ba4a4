"""The live X connector: the real tweepy Client against a loopback X API v2 stand-in."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from standins.x_api import CONSUMER_KEY, DUPLICATE, USER, XServer
from tenacity import wait_none

from daemon.connectors import live_connectors
from daemon.connectors.base import Absent, Found, ScratchMemory, Undetermined
from daemon.connectors.twitter_live import (
    TwitterLive,
    comparable,
    connect,
)
from daemon.core.errors import (
    AuthError,
    Deferred,
    NotConfigured,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)
from daemon.core.models import SocialPost
from daemon.core.settings import Settings

MARKER = "vaultd:task-1:twitter"


@pytest.fixture
def x_api() -> Iterator[XServer]:
    server = XServer().start()
    yield server
    server.stop()


def settings(url: str, **overrides: str) -> Settings:
    values = {
        "TWITTER_API_KEY": CONSUMER_KEY,
        "TWITTER_API_SECRET": "x-test-consumer-secret",
        "TWITTER_ACCESS_TOKEN": "1700000000000000001-x-test-token",
        "TWITTER_ACCESS_SECRET": "x-test-token-secret",
        "TWITTER_API_URL": url,
    }
    return Settings({**values, **overrides})


def connector(url: str, memory: ScratchMemory | None = None, **overrides: str) -> TwitterLive:
    live = connect(settings(url, **overrides), memory or ScratchMemory())
    live.read_wait = wait_none()  # keep the read retries instant in tests
    return live


def post(**fields: Any) -> SocialPost:
    return SocialPost(type="social_post", platforms=["twitter"], **{"text": "Hello", **fields})


def test_post_is_sent_once_and_answers_with_the_tweet_id_and_its_url(x_api: XServer):
    live = connector(x_api.url)

    result = live.execute(post(text="Launch day"), marker=MARKER, dry_run=False)

    [tweet] = x_api.state.tweets
    assert tweet.text == "Launch day"
    assert result["tweet_id"] == tweet.id
    assert result["url"] == f"https://x.com/i/web/status/{tweet.id}"
    assert x_api.state.posts() == 1


def test_a_link_is_appended_to_the_text(x_api: XServer):
    live = connector(x_api.url)
    action = post(text="Read this", link="https://example.com/a")

    request = live.describe(action, marker=MARKER)
    result = live.execute(action, marker=MARKER, dry_run=False)

    assert request["url"] == f"{x_api.url}/2/tweets"
    assert request["json"] == {"text": "Read this https://example.com/a"}
    assert x_api.state.tweets[0].text.startswith("Read this https://t.co/")
    assert result["tweet_id"] == x_api.state.tweets[0].id


def test_reply_goes_to_the_tweet_it_answers(x_api: XServer):
    live = connector(x_api.url)

    result = live.execute(
        post(kind="reply", text="Thanks!", in_reply_to="1799"), marker=MARKER, dry_run=False
    )

    [tweet] = x_api.state.tweets
    assert tweet.in_reply_to == "1799"
    assert result["in_reply_to"] == "1799"
    assert result["tweet_id"] == tweet.id


def test_dm_is_sent_to_the_participant(x_api: XServer):
    live = connector(x_api.url)
    action = post(kind="dm", text="Your order shipped", recipient="42")

    request = live.describe(action, marker=MARKER)
    result = live.execute(action, marker=MARKER, dry_run=False)

    assert request["url"] == f"{x_api.url}/2/dm_conversations/with/42/messages"
    [dm] = x_api.state.dms
    assert dm == {"id": result["dm_event_id"], "to": "42", "text": "Your order shipped"}
    assert result["dm_conversation_id"] == f"{USER['id']}-42"
    assert x_api.state.tweets == []


def test_bad_credentials_are_an_auth_error(x_api: XServer):
    live = connector(x_api.url, TWITTER_API_KEY="not-the-key")

    with pytest.raises(AuthError, match="401"):
        live.execute(post(), marker=MARKER, dry_run=False)

    assert x_api.state.tweets == []
    assert not live.check().ok


def test_the_stand_in_refuses_a_request_without_oauth(x_api: XServer):
    answer = requests.post(f"{x_api.url}/2/tweets", json={"text": "hi"}, timeout=5)
    assert answer.status_code == 401
    assert x_api.state.tweets == []


def test_a_duplicate_is_a_permanent_error_with_xs_message(x_api: XServer):
    live = connector(x_api.url)
    live.execute(post(text="Same words"), marker=MARKER, dry_run=False)

    with pytest.raises(PermanentError, match=DUPLICATE) as caught:
        live.execute(post(text="Same words"), marker="vaultd:task-2:twitter", dry_run=False)

    assert "403" in str(caught.value)
    assert len(x_api.state.tweets) == 1


def test_rate_limit_defers_until_the_reset_time_in_the_headers(x_api: XServer):
    reset = int((datetime.now(UTC) + timedelta(minutes=7)).timestamp())
    x_api.state.rate_limit_reset = reset
    live = connector(x_api.url)

    with pytest.raises(Deferred) as caught:
        live.execute(post(), marker=MARKER, dry_run=False)

    assert caught.value.retry_at == datetime.fromtimestamp(reset, UTC)
    assert "429" in str(caught.value)
    assert x_api.state.tweets == []


def test_rate_limit_without_a_reset_header_defers_fifteen_minutes(x_api: XServer):
    x_api.state.rate_limited = True
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    live = connector(x_api.url)
    live.clock = lambda: now

    with pytest.raises(Deferred) as caught:
        live.execute(post(), marker=MARKER, dry_run=False)

    assert caught.value.retry_at == now + timedelta(minutes=15)


def test_reads_retry_5xx_then_succeed(x_api: XServer):
    x_api.state.read_failures = 2
    live = connector(x_api.url)

    health = live.check()

    assert health.ok, health.detail
    assert health.detail == f"X account @{USER['username']}"
    assert x_api.state.requests.count(("GET", "/2/users/me")) == 3


def test_reads_give_up_after_three_attempts(x_api: XServer):
    x_api.state.read_failures = 10
    live = connector(x_api.url)

    health = live.check()

    assert not health.ok
    assert "500" in health.detail
    assert x_api.state.requests.count(("GET", "/2/users/me")) == 3


def test_a_5xx_on_a_post_is_an_unknown_outcome_and_not_retried(x_api: XServer):
    # X may have created the tweet before failing: a lookup decides, never a blind resend.
    x_api.state.write_failures = 1
    live = connector(x_api.url)

    with pytest.raises(OutcomeUnknown, match="503"):
        live.execute(post(), marker=MARKER, dry_run=False)

    assert x_api.state.posts() == 1
    assert x_api.state.tweets == []
    assert isinstance(live.lookup(MARKER), Absent)


def test_connection_refused_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    live = connector(f"http://127.0.0.1:{port}")

    with pytest.raises(TransientError, match="could not reach X"):
        live.execute(post(), marker=MARKER, dry_run=False)
    assert not live.check().ok


def test_a_lost_answer_is_unknown_and_lookup_finds_the_tweet_without_posting_again(
    x_api: XServer,
):
    memory = ScratchMemory()
    live = connector(x_api.url, memory)
    x_api.state.drop_after_accept = 1
    action = post(text="Lost in transit", link="https://example.com/lost")

    with pytest.raises(OutcomeUnknown):
        live.execute(action, marker=MARKER, dry_run=False)

    # A fresh process: only the durable memory survives.
    answer = connector(x_api.url, memory).lookup(MARKER)

    assert isinstance(answer, Found)
    [tweet] = x_api.state.tweets
    assert answer.result["tweet_id"] == tweet.id
    assert answer.result["url"] == f"https://x.com/i/web/status/{tweet.id}"
    assert x_api.state.posts() == 1
    assert memory.recall(MARKER)["user_id"] == USER["id"]
    assert memory.recall(MARKER)["result"] == answer.result


def test_lookup_answers_from_memory_after_a_success(x_api: XServer):
    memory = ScratchMemory()
    live = connector(x_api.url, memory)
    result = live.execute(post(), marker=MARKER, dry_run=False)
    before = len(x_api.state.requests)

    assert live.lookup(MARKER) == Found(result)
    assert len(x_api.state.requests) == before  # no call to X


def test_lookup_without_a_record_of_sending_is_absent(x_api: XServer):
    assert connector(x_api.url).lookup(MARKER) == Absent()
    assert x_api.state.requests == []


def test_lookup_proves_absence_from_a_complete_listing(x_api: XServer):
    memory = ScratchMemory()
    live = connector(x_api.url, memory)
    live.execute(post(text="Another tweet"), marker="vaultd:other:twitter", dry_run=False)
    memory.remember(MARKER, "sending", {"kind": "post", "text": "Never arrived", "at": _now()})

    assert live.lookup(MARKER) == Absent()


def test_lookup_pages_through_the_timeline(x_api: XServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("daemon.connectors.twitter_live.LOOKUP_PAGE_SIZE", 2)
    memory = ScratchMemory()
    live = connector(x_api.url, memory)
    first = live.execute(post(text="Oldest"), marker="vaultd:a:twitter", dry_run=False)
    for n in range(4):
        live.execute(post(text=f"Newer {n}"), marker=f"vaultd:n{n}:twitter", dry_run=False)
    memory.remember(MARKER, "sending", {"kind": "post", "text": "Oldest", "at": _now()})

    answer = live.lookup(MARKER)

    assert isinstance(answer, Found)
    assert answer.result["tweet_id"] == first["tweet_id"]


def test_lookup_is_undetermined_when_x_cannot_be_read(x_api: XServer):
    memory = ScratchMemory()
    memory.remember(MARKER, "sending", {"kind": "post", "text": "Hello", "at": _now()})
    x_api.state.read_failures = 10

    answer = connector(x_api.url, memory).lookup(MARKER)

    assert isinstance(answer, Undetermined)
    assert "500" in answer.reason


def test_a_sent_dm_cannot_be_proven_absent(x_api: XServer):
    memory = ScratchMemory()
    memory.remember(MARKER, "sending", {"kind": "dm", "text": "Hi", "at": _now()})
    assert isinstance(connector(x_api.url, memory).lookup(MARKER), Undetermined)


def test_text_comparison_survives_what_x_does_to_text():
    sent = "Fish & chips https://example.com/menu"
    assert comparable("@shop Fish &amp; chips https://t.co/abc") == comparable(sent)
    assert comparable("Fish & chips") != comparable(sent)


def test_missing_settings_are_not_configured():
    with pytest.raises(NotConfigured, match="TWITTER_ACCESS_TOKEN, TWITTER_ACCESS_SECRET"):
        connect(Settings({"TWITTER_API_KEY": "k", "TWITTER_API_SECRET": "s"}), ScratchMemory())


def test_live_connectors_use_it_when_configured(x_api: XServer):
    connectors = live_connectors(settings(x_api.url), ScratchMemory())
    assert isinstance(connectors["twitter"], TwitterLive)
    assert connectors["twitter"].check().ok


def _now() -> str:
    return datetime.now(UTC).isoformat()
