"""X bills each request: the approval request and the Done note show the estimated cost."""

from decimal import Decimal
from pathlib import Path

from conftest import make_files, note, parsed

from daemon.core.costs import Prices, estimated_cost
from daemon.core.models import parse_action
from daemon.service.app import App

REPLY = {
    "type": "social_post",
    "platforms": ["twitter"],
    "kind": "reply",
    "in_reply_to": "1799",
    "text": "Thanks!",
}


def test_the_estimate_follows_the_price_table():
    prices = Prices(x_post=Decimal("0.02"))
    post = {"type": "social_post", "platforms": ["facebook", "twitter"], "text": "Hi"}
    assert estimated_cost(parse_action(post), prices) == Decimal("0.02")
    with_link = {**post, "link": "https://example.com"}
    assert estimated_cost(parse_action(with_link), prices) == Decimal("0.20")
    dm = {**post, "platforms": ["twitter"], "kind": "dm", "recipient": "42"}
    assert estimated_cost(parse_action(dm), prices) == Decimal("0.01")
    assert estimated_cost(parse_action({**post, "platforms": ["facebook"]}), prices) is None


def test_an_approval_request_for_x_shows_the_estimated_cost(app: App, vault_root: Path):
    make_files(vault_root, {"Needs_Action/reply.md": note(REPLY)})
    outcome = app.pipeline.process(vault_root / "Needs_Action/reply.md")
    assert outcome.path is not None
    assert "**Estimated cost:** 0.01 USD" in parsed(outcome.path).block


def test_the_done_note_of_an_x_post_carries_its_estimated_cost(app: App, vault_root: Path):
    post = {
        "type": "social_post",
        "platforms": ["twitter"],
        "text": "Hi",
        "link": "https://example.com",
    }
    make_files(vault_root, {"Needs_Action/post.md": note(post)})
    outcome = app.pipeline.process(vault_root / "Needs_Action/post.md")
    assert outcome.status == "done"
    assert outcome.path is not None
    assert parsed(outcome.path).meta["result"]["estimated_cost_usd"] == "0.20"
