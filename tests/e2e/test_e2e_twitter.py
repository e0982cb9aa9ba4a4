"""The real `vaultd run --live --once` posting to X through the loopback X API stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import files_in, make_files, note, outbox
from e2e_support import audit_events, ok, vaultd
from standins.x_api import CONSUMER_KEY, XServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def x_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[XServer]:
    server = XServer().start()
    for name, value in {
        "TWITTER_API_KEY": CONSUMER_KEY,
        "TWITTER_API_SECRET": "x-test-consumer-secret",
        "TWITTER_ACCESS_TOKEN": "1700000000000000001-x-test-token",
        "TWITTER_ACCESS_SECRET": "x-test-token-secret",
        "TWITTER_API_URL": server.url,
    }.items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def run_live(vault: Path, state: Path) -> None:
    ok(vaultd("run", "--vault", vault, "--state-dir", state, "--once", "--live"))


def test_a_post_goes_to_x_exactly_once_and_lands_in_done(
    x_api: XServer, vault_root: Path, state_dir: Path
):
    make_files(
        vault_root,
        {
            "Needs_Action/launch.md": note(
                {
                    "type": "social_post",
                    "platforms": ["twitter"],
                    "text": "We launched",
                    "link": "https://example.com/launch",
                }
            )
        },
    )

    run_live(vault_root, state_dir)
    run_live(vault_root, state_dir)  # a second run finds nothing more to do

    [tweet] = x_api.state.tweets
    assert tweet.text.startswith("We launched https://t.co/")
    assert x_api.state.posts() == 1
    done = (vault_root / "Done/launch.md").read_text(encoding="utf-8")
    assert tweet.id in done
    assert "estimated_cost_usd: '0.20'" in done  # a post with a link, from the price table
    assert outbox(state_dir) == []  # nothing went through the dry-run connectors


def test_a_lost_answer_is_reconciled_without_a_second_tweet(
    x_api: XServer, vault_root: Path, state_dir: Path
):
    x_api.state.drop_after_accept = 1
    make_files(
        vault_root,
        {
            "Needs_Action/lost.md": note(
                {"type": "social_post", "platforms": ["twitter"], "text": "Answer lost"}
            )
        },
    )

    # The answer is lost after X took the tweet: vaultd looks it up at once, finds it, and
    # never posts again.
    run_live(vault_root, state_dir)

    [tweet] = x_api.state.tweets
    assert x_api.state.posts() == 1
    assert files_in(vault_root, "Done") == ["lost.md"]
    assert tweet.id in (vault_root / "Done/lost.md").read_text(encoding="utf-8")
    lookups = [e["result"]["lookup"] for e in audit_events(vault_root) if e.get("action") is None]
    assert "found" in lookups
