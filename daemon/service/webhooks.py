"""Wiring: the webhook worker of one running daemon (daemon/agents/webhooks/), with the run
(or the batch) as `GET /api/v1/runs/{id}` (`/batches/{id}`) shows it as each delivery's
body."""

from __future__ import annotations

from typing import Any

from daemon.agents.api.views import batch_json, run_json
from daemon.agents.queue.batches import Batches
from daemon.agents.queue.service import RunQueue
from daemon.agents.skills.run_errors import RunError
from daemon.agents.skills.runs import Runs
from daemon.agents.webhooks import events
from daemon.agents.webhooks.delivery import Deliverer
from daemon.agents.webhooks.outbox import Outbox
from daemon.agents.webhooks.worker import WebhookWorker
from daemon.lifecycle.app import App


def webhook_worker(app: App, runs: Runs) -> WebhookWorker:
    """Given an app and its run service, return its (not yet started) webhook worker."""
    queue = RunQueue(runs, app.config.queue)

    def view(run_id: str) -> dict[str, Any] | None:
        try:
            return run_json(runs.view(run_id), queue.scheduling(run_id))
        except RunError:
            return None  # the run is gone: nothing to tell

    batches = Batches(queue)

    def batch_view(batch_id: str) -> dict[str, Any] | None:
        found = batches.view(batch_id)
        return batch_json(found, queue.scheduling) if found is not None else None

    config = app.config.webhooks
    deliverer = Deliverer(Outbox(app.ledger), config, app.settings, app.audit)
    return WebhookWorker(
        deliverer, expand=lambda: events.expand(app.ledger, config, view, batch_view)
    )
