"""Our own rate limits: over the limit an action waits in Approved/ until the window opens."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import StandInService, make_files, note, parsed
from pydantic import ValidationError

from daemon.core.limits import RateLimits
from daemon.lifecycle.pipeline import Pipeline
from daemon.service.app import App


def post(root: Path, name: str, platforms: list[str]) -> Path:
    make_files(
        root,
        {
            f"Needs_Action/{name}": note(
                {"type": "social_post", "platforms": platforms, "text": f"Post {name}"}
            )
        },
    )
    return root / "Needs_Action" / name


def limited(app: App, **per_hour: int) -> Pipeline:
    """The app's pipeline again, with rate limits, sharing its ledger (as after a restart)."""
    old = app.pipeline
    return Pipeline(
        old.vault,
        old.ledger,
        old.audit,
        old.policy,
        old.connectors,
        clock=old.clock,
        limits=RateLimits(per_hour=per_hour),
    )


def test_over_the_limit_a_post_waits_until_the_oldest_call_leaves_the_hour(
    app: App, vault_root: Path
):
    twitter = StandInService("twitter")
    app.pipeline.connectors["twitter"] = twitter
    pipeline = limited(app, twitter=2)
    before = datetime.now(UTC)

    statuses = [
        pipeline.process(post(vault_root, f"p{n}.md", ["twitter"])).status for n in range(2)
    ]
    waiting = limited(app, twitter=2).process(post(vault_root, "p2.md", ["twitter"]))

    assert statuses == ["done", "done"]
    assert waiting.status == "deferred"
    assert len(twitter.calls) == 2
    assert waiting.retry_at is not None
    assert before + timedelta(hours=1) <= waiting.retry_at <= datetime.now(UTC) + timedelta(hours=1)
    assert waiting.path is not None
    stamped = parsed(waiting.path)
    assert stamped.meta["status"] == "waiting"
    assert "rate limit: 2 twitter call(s) per hour reached" in stamped.meta["note"]


def test_a_limit_on_an_action_type_counts_calls_on_every_platform(app: App, vault_root: Path):
    for name in ("facebook", "twitter"):
        app.pipeline.connectors[name] = StandInService(name)
    pipeline = limited(app, social_post=3)

    first = pipeline.process(post(vault_root, "a.md", ["facebook", "twitter"]))
    second = pipeline.process(post(vault_root, "b.md", ["facebook", "twitter"]))

    assert first.status == "done"
    assert second.status == "deferred"
    assert second.path is not None
    assert list(parsed(second.path).meta["result"]) == ["dry_run", "facebook"]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"myspace": 3}, "neither a connector nor an action type"),
        ({"twitter": 0}, "at least 1"),
    ],
)
def test_unknown_names_and_zero_limits_are_config_errors(limits, message):
    with pytest.raises(ValidationError, match=message):
        RateLimits(per_hour=limits)
