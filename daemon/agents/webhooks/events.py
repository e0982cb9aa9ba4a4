"""Which webhook events happened: a run that became succeeded, failed or awaiting_approval,
and a batch whose last run ended (`batch.finished`).

A TRIGGER on `skill_runs` writes each such change into `webhook_events` in the same
transaction as the change itself, whatever code made it (a worker, the queue's recovery, a
cancel, a refresh after approval): an event can be neither lost by a crash nor forgotten by
a new code path. The webhook worker then expands each event into its deliveries
(daemon/agents/webhooks/outbox.py), in one transaction: the URLs subscribed to it in the
config and the run's own `webhook`, with the run as `GET /api/v1/runs/{id}` shows it.

A `run.failed` of an attempt that the queue has since retried is not the run's end: it is
dropped when the run is no longer failed, so a receiver hears of a failure only when it is
final. Each attempt is its own subject (`run_id#attempt`): a run executed again after a
failure that fails again is told again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from daemon.agents.webhooks.outbox import SCHEMA as OUTBOX_SCHEMA
from daemon.agents.webhooks.outbox import enqueue_in
from daemon.core.ledger_db import LedgerDatabase
from daemon.core.timestamps import now_iso
from daemon.core.webhook_config import WebhooksConfig, check_url

log = logging.getLogger(__name__)

RUN_EVENTS = ("succeeded", "failed", "awaiting_approval")
SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_events (
    id           INTEGER PRIMARY KEY,
    event        TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    expanded_at  TEXT
);
CREATE INDEX IF NOT EXISTS webhook_events_waiting ON webhook_events(expanded_at, id);
CREATE TRIGGER IF NOT EXISTS webhook_run_changed AFTER UPDATE OF state ON skill_runs
WHEN NEW.state IN ('succeeded', 'failed', 'awaiting_approval') AND NEW.state IS NOT OLD.state
BEGIN
    INSERT INTO webhook_events (event, run_id, attempt, created_at)
    VALUES ('run.' || NEW.state, NEW.id, NEW.attempt, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS webhook_batch_finished AFTER UPDATE OF state ON skill_runs
WHEN NEW.batch_id IS NOT NULL AND NEW.state IS NOT OLD.state
 AND NEW.state IN ('succeeded', 'failed', 'cancelled')
 AND NOT EXISTS (SELECT 1 FROM skill_runs o WHERE o.batch_id = NEW.batch_id
                 AND o.state NOT IN ('succeeded', 'failed', 'cancelled'))
BEGIN
    INSERT INTO webhook_events (event, run_id, attempt, created_at)
    VALUES ('batch.finished', NEW.batch_id, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS webhook_run_inserted AFTER INSERT ON skill_runs
WHEN NEW.state IN ('succeeded', 'failed', 'awaiting_approval')
BEGIN
    INSERT INTO webhook_events (event, run_id, attempt, created_at)
    VALUES ('run.' || NEW.state, NEW.id, NEW.attempt, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
"""

# The run as GET /api/v1/runs/{id} answers it, or None if it is gone.
RunView = Callable[[str], dict[str, Any] | None]


def install(ledger: LedgerDatabase) -> None:
    """Given a writable ledger with the skill runs' tables, create the webhook tables, the
    triggers, and the runs' `webhook` column (a ledger from before webhooks has none)."""
    ledger.ensure_schema(OUTBOX_SCHEMA)
    # A ledger from before webhooks, or before batches (the trigger reads batch_id).
    ledger.add_text_columns("skill_runs", "webhook", "batch_id")
    ledger.ensure_schema(SCHEMA)


def expand(
    ledger: LedgerDatabase,
    config: WebhooksConfig,
    view: RunView,
    batch_view: RunView = lambda _batch_id: None,
    limit: int = 100,
) -> int:
    """Turn waiting events into deliveries (a batch's with `batch_view` as its body); return
    how many events were expanded."""
    events = ledger.rows(
        "SELECT e.id, e.event, e.run_id, e.attempt, r.state, r.webhook FROM webhook_events e"
        " LEFT JOIN skill_runs r ON r.id = e.run_id"
        " WHERE e.expanded_at IS NULL ORDER BY e.id LIMIT ?",
        (limit,),
    )
    for event in events:
        urls = config.subscribers(event["event"])
        if event["event"] == "batch.finished":
            urls += _batch_webhook(ledger, event["run_id"])
            body = batch_view(event["run_id"]) if urls else None
            if body is not None and body.get("state") not in ("succeeded", "failed"):
                body = None  # a run of it was retried since: not finished after all
        else:
            if event["webhook"]:
                urls.append(event["webhook"])
            body = view(event["run_id"]) if urls and _still_so(event) else None
        with ledger.transaction() as db:
            if body is not None:
                allowed = [url for url in urls if _allowed(url, config)]
                subject = f"{event['run_id']}#{event['attempt']}"
                enqueue_in(db, event["event"], subject, body, allowed)
            db.execute(
                "UPDATE webhook_events SET expanded_at = ? WHERE id = ?", (now_iso(), event["id"])
            )
    return len(events)


def _batch_webhook(ledger: LedgerDatabase, batch_id: str) -> list[str]:
    rows = ledger.rows("SELECT webhook FROM run_batches WHERE id = ?", (batch_id,))
    return [rows[0]["webhook"]] if rows and rows[0]["webhook"] else []


def _still_so(event: dict[str, Any]) -> bool:
    """A failure is told only if it is still the run's state (not retried since)."""
    return event["event"] != "run.failed" or event["state"] == "failed"


def _allowed(url: str, config: WebhooksConfig) -> bool:
    try:
        check_url(url, config.allowed_hosts)
    except ValueError as error:
        # Checked when the run was asked for; the config may have changed since.
        log.warning("webhooks: not delivering to %s: %s", url, error)
        return False
    return True
