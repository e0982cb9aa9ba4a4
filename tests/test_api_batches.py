"""Batches over the REST API (issue 14): POST /api/v1/batches enqueues its runs all at once
or not at all, GET /api/v1/batches/{id} follows them as one, and `batch.finished` is told to
its webhook once its last run ended.

The attacks: one bad run among good ones (nothing may be half-enqueued), a run identical to
an unfinished one, two identical runs in one batch, a batch of 10,000, a burst past a
skill's rate limit hidden in one batch, and another caller reading the batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api import Served, work

from daemon.agents.webhooks import events
from daemon.core.webhook_config import WebhooksConfig


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    yield served
    served.close()


def runs_in(served: Served) -> int:
    return len(served.app.ledger.rows("SELECT id FROM skill_runs"))


def test_a_batch_is_accepted_at_once_and_its_state_comes_from_its_runs(served: Served):
    made = served.client.post(
        "/api/v1/batches",
        json={"runs": [{"skill_key": "quick", "inputs": {"n": n}} for n in range(3)]},
        headers=served.as_agent(),
    )
    assert made.status_code == 202, made.text
    batch = made.json()
    assert made.headers["Location"] == f"/api/v1/batches/{batch['batch_id']}"
    assert (batch["state"], batch["size"], batch["counts"]) == ("queued", 3, {"queued": 3})
    assert [run["inputs"] for run in batch["runs"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert work(served.app) == 3
    done = served.client.get(made.headers["Location"], headers=served.as_agent()).json()
    assert (done["state"], done["counts"]) == ("succeeded", {"succeeded": 3})
    assert all(run["output"] == {"echo": {"n": n}} for n, run in enumerate(done["runs"]))


@pytest.mark.parametrize(
    ("runs", "field"),
    [
        ([{"skill_key": "quick", "inputs": {}}, {"skill_key": "no-such-skill"}], None),
        ([{"skill_key": "quick", "inputs": {"n": 1}}] * 2, "runs[1]"),
        ([{"skill_key": "quick", "inputs": {}, "priority": -1}], "body/runs/0/priority"),
        ([{"skill_key": "quick", "inputs": {"n": n}} for n in range(10_000)], "body/runs"),
        ([], "body/runs"),
        ([{"skill_key": "once-an-hour", "inputs": {"n": n}} for n in range(2)], "runs"),
    ],
    ids=["unknown-skill", "twice-in-one-batch", "bad-field", "ten-thousand", "empty", "pace"],
)
def test_a_batch_with_one_bad_run_enqueues_none_and_says_which(
    served: Served, runs: list[dict], field: str | None
):
    answer = served.client.post("/api/v1/batches", json={"runs": runs}, headers=served.as_agent())
    assert 400 <= answer.status_code < 500, answer.text
    if field is not None:
        assert field in answer.text, answer.text
    assert runs_in(served) == 0
    assert served.app.ledger.rows("SELECT id FROM run_batches") == []


def test_a_batch_with_a_run_identical_to_an_unfinished_one_is_409_and_enqueues_nothing(
    served: Served,
):
    first = served.client.post(
        "/api/v1/runs",
        json={"skill_key": "quick", "inputs": {"n": 9}, "execute": True},
        headers=served.as_agent(),
    ).json()
    answer = served.client.post(
        "/api/v1/batches",
        json={
            "runs": [
                {"skill_key": "quick", "inputs": {"n": 8}},
                {"skill_key": "quick", "inputs": {"n": 9}},
            ]
        },
        headers=served.as_agent(),
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["run_id"] == first["run_id"]
    assert runs_in(served) == 1


def test_another_caller_cannot_read_a_batch(served: Served):
    made = served.client.post(
        "/api/v1/batches",
        json={"runs": [{"skill_key": "quick", "inputs": {}}]},
        headers=served.as_agent(),
    ).json()
    other = served.keys.create("stranger", ["sales"])
    answer = served.client.get(
        f"/api/v1/batches/{made['batch_id']}", headers={"Authorization": f"Bearer {other}"}
    )
    assert answer.status_code == 404
    assert "no batch" in answer.text


def test_batch_finished_is_told_once_when_its_last_run_ended(served: Served):
    hook = "http://127.0.0.1:9/batch"
    made = served.client.post(
        "/api/v1/batches",
        json={
            "runs": [{"skill_key": "quick", "inputs": {"n": n}} for n in range(2)],
            "webhook": hook,
        },
        headers=served.as_agent(),
    ).json()
    ledger = served.app.ledger

    def batch_view(batch_id: str) -> dict:
        return served.client.get(f"/api/v1/batches/{batch_id}", headers=served.as_agent()).json()

    config = WebhooksConfig()
    events.expand(ledger, config, lambda _run_id: None, batch_view)
    assert ledger.rows("SELECT * FROM webhook_outbox") == []  # not finished yet
    assert work(served.app) == 2
    events.expand(ledger, config, lambda _run_id: None, batch_view)
    rows = ledger.rows("SELECT event, subject, url, body FROM webhook_outbox")
    assert [(r["event"], r["subject"], r["url"]) for r in rows] == [
        ("batch.finished", f"{made['batch_id']}#0", hook)
    ]
    assert json.loads(rows[0]["body"])["state"] == "succeeded"


def test_a_batch_webhook_outside_loopback_is_refused_naming_the_field(served: Served):
    answer = served.client.post(
        "/api/v1/batches",
        json={"runs": [{"skill_key": "quick"}], "webhook": "http://10.0.0.1/hook"},
        headers=served.as_agent(),
    )
    assert answer.status_code == 422 and "webhook" in answer.text
    assert runs_in(served) == 0
