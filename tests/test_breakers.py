"""A circuit breaker per live connector: open after repeated failures, wait, close again."""

from pathlib import Path

from conftest import StandInService, make_files, note, wait_for

from daemon.connectors.breakers import Guarded
from daemon.core.config import BreakerConfig
from daemon.core.errors import PermanentError, TransientError
from daemon.service.app import App


def post(root: Path, name: str) -> Path:
    make_files(
        root,
        {
            f"Needs_Action/{name}": note(
                {"type": "social_post", "platforms": ["twitter"], "text": f"Post {name}"}
            )
        },
    )
    return root / "Needs_Action" / name


def breaker_state(app: App) -> str:
    (row,) = [b for b in app.ledger.breakers() if b["name"] == "twitter"]
    return str(row["state"])


def test_a_service_failing_five_times_is_not_called_again_until_the_breaker_half_opens(
    app: App, vault_root: Path
):
    service = StandInService("twitter", always=TransientError("503 Service Unavailable"))
    config = BreakerConfig(fail_max=5, reset_seconds=0.3, success_threshold=2)
    app.pipeline.connectors["twitter"] = Guarded(service, config, app.ledger)

    outcomes = [app.pipeline.process(post(vault_root, f"p{n}.md")).status for n in range(5)]
    assert outcomes == ["failed"] * 5
    assert breaker_state(app) == "open"

    waiting = app.pipeline.process(post(vault_root, "p5.md"))
    assert waiting.status == "deferred"
    assert len(service.calls) == 5  # the open breaker sent nothing
    assert waiting.path is not None
    assert "circuit open" in waiting.path.read_text()

    service.always = None
    done = wait_for(lambda: app.pipeline.process(waiting.path).status == "done", timeout=5)
    assert done
    assert breaker_state(app) == "half-open"  # one success of the two needed
    assert app.pipeline.process(post(vault_root, "p6.md")).status == "done"
    assert breaker_state(app) == "closed"


def test_refusals_by_a_healthy_service_do_not_open_the_breaker(app: App, vault_root: Path):
    service = StandInService("twitter", always=PermanentError("duplicate content"))
    config = BreakerConfig(fail_max=2, reset_seconds=60, success_threshold=1)
    app.pipeline.connectors["twitter"] = Guarded(service, config, app.ledger)

    outcomes = [app.pipeline.process(post(vault_root, f"p{n}.md")).status for n in range(4)]

    assert outcomes == ["failed"] * 4
    assert len(service.calls) == 4
    assert breaker_state(app) == "closed"


def test_an_open_breaker_shows_in_status_and_on_the_dashboard(app: App, vault_root: Path):
    from daemon.reports.dashboard import render_dashboard
    from daemon.reports.status import build_snapshot

    service = StandInService("twitter", always=TransientError("503"))
    config = BreakerConfig(fail_max=1, reset_seconds=60, success_threshold=1)
    app.pipeline.connectors["twitter"] = Guarded(service, config, app.ledger)
    app.pipeline.process(post(vault_root, "p0.md"))

    snapshot = build_snapshot(app.vault, app.ledger)

    assert [(b["name"], b["state"]) for b in snapshot.breakers] == [("twitter", "open")]
    assert "Circuit breaker **twitter** is open" in render_dashboard(snapshot)
