"""Ids go only where they belong (issue 11, item 5): the services' ids in URL paths.

An id a task names (`in_reply_to`, `recipient`) is pasted into a Graph or X URL path. The
model takes only the id format of every platform the task goes to (Graph `digits` or
`digits_digits`, X `digits`), so anything else lands in Rejected/ with the field named; and
the connectors quote every value they put into a path into its one segment, so even an id
that got past the model cannot turn a reply into a page post or a DM into a tweet. Forged
actions (`model_construct`, no validation) stand for "it got past the model".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_files, note, parsed
from standins.graph import GraphStandIn
from standins.odoo import FakeOdoo, running_odoo
from standins.x_api import CONSUMER_KEY, XServer
from tenacity import wait_none

from daemon.connectors import paths, social, twitter_live
from daemon.connectors.base import ScratchMemory, Undetermined
from daemon.connectors.facebook_live import FacebookConnector
from daemon.connectors.graph import GraphClient, RetryPolicy
from daemon.connectors.instagram_live import InstagramConnector
from daemon.connectors.odoo_transport import Json2Transport
from daemon.connectors.twitter_live import TwitterLive, tweet_url
from daemon.core.errors import PermanentError, ValidationFailed
from daemon.core.models import SocialPost, parse_action
from daemon.core.settings import Settings
from daemon.service.app import App

MARKER = "vaultd:task-1:facebook"
X_MARKER = "vaultd:task-1:twitter"
REPLY = {"type": "social_post", "platforms": ["facebook"], "kind": "reply", "text": "Thanks!"}
DM = {"type": "social_post", "platforms": ["twitter"], "kind": "dm", "text": "Your order"}
IMAGE = "https://example.com/winter.jpg"


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    with GraphStandIn() as standin:
        yield standin


@pytest.fixture
def x_api() -> Iterator[XServer]:
    server = XServer().start()
    yield server
    server.stop()


def graph_client(graph: GraphStandIn, service: str = "facebook") -> GraphClient:
    retry = RetryPolicy(attempts=1, initial=0.01, maximum=0.01, jitter=0)
    return GraphClient(
        token=graph.token, base_url=graph.url, version=graph.version, retry=retry, service=service
    )


def facebook(graph: GraphStandIn, page_id: str | None = None) -> FacebookConnector:
    return FacebookConnector(graph_client(graph), page_id or graph.page_id, ScratchMemory())


def instagram(graph: GraphStandIn, memory: ScratchMemory | None = None) -> InstagramConnector:
    return InstagramConnector(
        graph_client(graph, "instagram"), graph.ig_id, memory or ScratchMemory()
    )


def x_connector(x_api: XServer) -> TwitterLive:
    settings = {
        "TWITTER_API_KEY": CONSUMER_KEY,
        "TWITTER_API_SECRET": "x-test-consumer-secret",
        "TWITTER_ACCESS_TOKEN": "1700000000000000001-x-test-token",
        "TWITTER_ACCESS_SECRET": "x-test-token-secret",
        "TWITTER_API_URL": x_api.url,
    }
    live = twitter_live.connect(Settings(settings), ScratchMemory())
    live.read_wait = wait_none()
    return live


def forged(**fields: Any) -> SocialPost:
    """A post built without validation: what an id that slipped past the model would be."""
    return SocialPost.model_construct(**fields)


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_action(data)
    return caught.value.problems


def rejected_error(app: App, root: Path, meta: dict[str, Any]) -> str:
    """Drop a task, process it, check it landed in Rejected/; return the error stamped in."""
    make_files(root, {"Needs_Action/task.md": note(meta)})
    outcome = app.pipeline.process(root / "Needs_Action" / "task.md")
    assert outcome.status == "rejected"
    assert outcome.path == root / "Rejected" / "task.md"
    return str(parsed(outcome.path).meta["error"])


# -- the attacks ------------------------------------------------------------------------------


def test_a_reply_id_with_a_path_cannot_turn_a_reply_into_a_page_post(
    graph: GraphStandIn, app: App, vault_root: Path
):
    in_reply_to = f"{graph.page_id}/feed#"  # sent as is: POST /<page>/feed#/comments

    error = rejected_error(app, vault_root, {**REPLY, "in_reply_to": in_reply_to})
    with pytest.raises(PermanentError, match="does not exist"):
        facebook(graph).execute(
            forged(**REPLY, in_reply_to=in_reply_to), marker=MARKER, dry_run=False
        )

    assert "in_reply_to must be a Graph id (digits, or digits_digits) to go to facebook" in error
    assert graph.posts == []  # no page post ...
    assert graph.comments == {}  # ... and no comment anywhere else
    assert graph.requests == [("POST", f"/v25.0/{graph.page_id}%2Ffeed%23/comments")]


def test_a_dm_recipient_that_is_not_digits_is_rejected(x_api: XServer, app: App, vault_root: Path):
    recipient = "../../tweets#"  # sent as is: POST /2/dm_conversations/with/../../tweets

    error = rejected_error(app, vault_root, {**DM, "recipient": recipient})
    with pytest.raises(PermanentError, match="404"):
        x_connector(x_api).execute(
            forged(**DM, recipient=recipient), marker=X_MARKER, dry_run=False
        )

    assert "recipient must be an X id (digits only) to go to twitter" in error
    assert x_api.state.tweets == []  # the DM did not become a public tweet
    assert x_api.state.dms == []
    assert x_api.state.requests[-1] == (
        "POST",
        "/2/dm_conversations/with/..%2F..%2Ftweets%23/messages",
    )


@pytest.mark.parametrize(
    ("platforms", "recipient"),
    [
        (["facebook"], "user-9"),
        (["twitter"], "@dana"),
        (["twitter"], "1_2"),  # a Graph id, not an X one
        (["twitter"], "\u0661\u0662\u0663"),  # Arabic-Indic digits are digits to \d, not to X
        (["facebook"], "\uff11\uff12\uff13"),  # full-width digits
        (["facebook"], "12/messages"),
        (["facebook"], "12?recipient=13"),
        (["facebook"], "12%2F13"),
    ],
)
def test_a_recipient_that_is_not_an_id_of_its_platform_is_rejected(
    platforms: list[str], recipient: str
):
    found = problems({**DM, "platforms": platforms, "recipient": recipient})

    assert [field for field, _ in found] == ["recipient"]
    assert found[0][1].startswith("recipient must be ")


def test_an_id_must_fit_every_platform_it_goes_to():
    both = {**REPLY, "platforms": ["facebook", "twitter"], "in_reply_to": "123_456"}
    three = {**both, "platforms": ["facebook", "instagram", "twitter"], "image_url": IMAGE}

    assert parse_action({**REPLY, "in_reply_to": "123_456"}).in_reply_to == "123_456"
    assert problems(both) == [
        ("in_reply_to", "in_reply_to must be an X id (digits only) to go to twitter")
    ]
    assert parse_action({**three, "in_reply_to": "1861234567890123456"})
    assert problems({**three, "in_reply_to": "a"}) == [
        (
            "in_reply_to",
            "in_reply_to must be a Graph id (digits, or digits_digits) to go to facebook, "
            "instagram",
        ),
        ("in_reply_to", "in_reply_to must be an X id (digits only) to go to twitter"),
    ]


def test_an_id_given_on_a_post_is_checked_too():
    assert [f for f, _ in problems({**REPLY, "kind": "post", "in_reply_to": "1/feed"})] == [
        "in_reply_to"
    ]


# -- quoting, the second line -----------------------------------------------------------------


def test_a_path_segment_is_quoted_whole_and_dot_segments_are_refused():
    assert paths.segment("104/feed#") == "104%2Ffeed%23"
    assert paths.segment("a?b=c&d%e f") == "a%3Fb%3Dc%26d%25e%20f"
    assert paths.path("123_456", "comments") == "123_456/comments"
    for dots in ("", ".", ".."):
        with pytest.raises(PermanentError, match="cannot be put into a URL path"):
            paths.segment(dots)


def test_the_graph_connectors_quote_every_id_they_put_into_a_path(graph: GraphStandIn):
    fb = facebook(graph, page_id="1/2?x")
    reply = forged(**REPLY, in_reply_to="9/feed")
    ig_reply = forged(**{**REPLY, "platforms": ["instagram"]}, in_reply_to="9#x")
    base = f"{graph.url}/v25.0"

    assert fb.describe(forged(**{**REPLY, "kind": "post"}), marker=MARKER)["url"] == (
        f"{base}/1%2F2%3Fx/feed"
    )
    assert fb.describe(reply, marker=MARKER)["url"] == f"{base}/9%2Ffeed/comments"
    assert instagram(graph).describe(ig_reply, marker=MARKER)["url"] == f"{base}/9%23x/replies"


def test_an_instagram_reply_to_a_dot_segment_sends_and_records_nothing(graph: GraphStandIn):
    memory = ScratchMemory()
    reply = forged(**{**REPLY, "platforms": ["instagram"]}, in_reply_to="..")

    with pytest.raises(PermanentError, match="cannot be put into a URL path"):
        instagram(graph, memory).execute(reply, marker=MARKER, dry_run=False)

    assert graph.requests == []
    assert memory.recall(MARKER) == {}  # a lookup will not think a reply may have gone out


def test_dry_run_requests_quote_ids_into_their_urls(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FACEBOOK_GRAPH_URL", raising=False)
    monkeypatch.delenv("TWITTER_API_URL", raising=False)
    monkeypatch.delenv("INSTAGRAM_ACCOUNT_ID", raising=False)
    monkeypatch.setenv("FACEBOOK_PAGE_ID", "1/2")
    reply = forged(**REPLY, in_reply_to="9/feed#")
    dm = forged(**DM, recipient="../../tweets")
    graph = "https://graph.facebook.com/v25.0"

    assert social.facebook_request(reply, MARKER)["url"] == f"{graph}/9%2Ffeed%23/comments"
    assert social.facebook_request(forged(**{**REPLY, "kind": "post"}), MARKER)["url"] == (
        f"{graph}/1%2F2/feed"
    )
    assert social.instagram_request(reply, MARKER)["url"] == f"{graph}/9%2Ffeed%23/replies"
    post = forged(**{**REPLY, "kind": "post", "image_url": IMAGE})
    assert social.instagram_request(post, MARKER)["url"] == (
        f"{graph}/<INSTAGRAM_ACCOUNT_ID>/media"  # a placeholder stays readable
    )
    assert social.twitter_request(dm, X_MARKER)["url"] == (
        "https://api.twitter.com/2/dm_conversations/with/..%2F..%2Ftweets/messages"
    )


def test_links_to_results_quote_the_remote_id():
    assert tweet_url("18/../x") == "https://x.com/i/web/status/18%2F..%2Fx"


def test_a_json2_call_stays_on_its_model_and_method():
    odoo = FakeOdoo()
    with running_odoo(odoo) as server:
        transport = Json2Transport(server.url, "acme", "admin", "secret")
        # Unquoted, "#" would end the path: POST /json/2/res.partner/search_read.
        with pytest.raises(PermanentError, match="Not Found"):
            transport.call("res.partner/search_read#", "x", params={"domain": []})
        assert transport.call("res.partner", "search_read", params={"domain": []})

    assert odoo.calls["res.partner.search_read"] == 1  # only the honest call


def test_an_x_lookup_reads_the_timeline_with_the_user_id_quoted(x_api: XServer):
    live = x_connector(x_api)
    sent = {"kind": "post", "text": "Hello", "at": "2026-01-01T00:00:00+00:00"}
    live.memory.remember(X_MARKER, "sending", sent)
    live._user = {"id": "1700000000000000001/../me", "username": "x"}  # as if X said so

    answer = live.lookup(X_MARKER)

    assert isinstance(answer, Undetermined)  # X: 404, the timeline of no one
    assert x_api.state.requests[-1] == ("GET", "/2/users/1700000000000000001%2F..%2Fme/tweets")


def test_a_page_id_from_the_settings_is_quoted_too(graph: GraphStandIn):
    with pytest.raises(PermanentError, match="does not exist"):
        facebook(graph, page_id="1/feed").execute(
            forged(**{**REPLY, "kind": "post"}), marker=MARKER, dry_run=False
        )

    assert graph.posts == []
    assert graph.requests == [("POST", "/v25.0/1%2Ffeed/feed")]
