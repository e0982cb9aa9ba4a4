"""Asynchronous runs over the REST API: 202 at once, a Location to follow, one run for many
identical POSTs, and what a hostile caller tries against the queue.

The server is the real uvicorn app on a loopback port (test_api.Served); the workers are
the real ones of `vaultd run`, worked in the test's thread (`work`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api import Served, bearer, work


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    yield served
    served.close()


def test_an_executed_run_is_accepted_at_once_queued_and_followed_at_its_location(
    served: Served,
):
    created = served.client.post(
        "/api/v1/runs",
        json={"skill_key": "quick", "inputs": {"n": 7}, "execute": True, "priority": 3},
        headers=served.as_agent(),
    )

    assert created.status_code == 202, created.text
    body = created.json()
    assert (body["state"], body["attempt"], body["trace"]) == ("queued", 0, [])
    assert body["queue"]["priority"] == 3 and body["queue"]["tries"] == 0
    location = created.headers["Location"]
    assert location == f"/api/v1/runs/{body['run_id']}"
    assert served.client.get(location, headers=served.as_agent()).json()["state"] == "queued"

    assert work(served.app) == 1

    done = served.client.get(location, headers=served.as_agent()).json()
    assert (done["state"], done["output"], done["attempt"]) == ("succeeded", {"echo": {"n": 7}}, 1)
    assert done["queue"]["tries"] == 1 and done["queue"]["lease_owner"] is None


def test_twenty_concurrent_identical_posts_make_one_run_and_nineteen_409s_naming_it(
    served: Served,
):
    body = {"skill_key": "quick", "inputs": {"same": True}, "execute": True}
    start = threading.Barrier(20)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=served.server.url, timeout=30) as client:
            start.wait()
            answers.append(client.post("/api/v1/runs", json=body, headers=served.as_agent()))

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] + [409] * 19, [answer.text for answer in answers]
    [accepted] = [answer for answer in answers if answer.status_code == 202]
    run_id = accepted.json()["run_id"]
    for refused in (answer for answer in answers if answer.status_code == 409):
        assert refused.json()["run_id"] == run_id
        assert refused.headers["Location"] == f"/api/v1/runs/{run_id}"
    assert len(served.app.ledger.rows("SELECT id FROM skill_runs")) == 1
    assert len(served.app.ledger.rows("SELECT run_id FROM run_callers")) == 1


def test_a_duplicate_from_a_caller_sharing_no_group_is_409_without_the_runs_id(served: Served):
    body = {"skill_key": "quick", "inputs": {}, "execute": True}
    first = served.client.post("/api/v1/runs", json=body, headers=served.as_agent())
    stranger = bearer(served.keys.create("stranger", ["sales"]))

    refused = served.client.post("/api/v1/runs", json=body, headers=stranger)

    assert refused.status_code == 409
    assert "run_id" not in refused.json() and "Location" not in refused.headers
    assert first.json()["run_id"] not in refused.text


def test_an_explicit_identity_key_makes_different_inputs_one_run(served: Served):
    headers = served.as_agent()
    one = {"skill_key": "quick", "inputs": {"n": 1}, "execute": True, "identity_key": "nightly"}
    first = served.client.post("/api/v1/runs", json=one, headers=headers)
    second = served.client.post("/api/v1/runs", json={**one, "inputs": {"n": 2}}, headers=headers)
    assert (first.status_code, second.status_code) == (202, 409)
    assert second.json()["run_id"] == first.json()["run_id"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"state": "succeeded"}, "body/state"),  # a forged state is not a field
        ({"priority": -1}, "body/priority"),
        ({"eta": "2026-12-01T10:00:00"}, "body/eta"),  # no time zone: refused, not guessed
        ({"max_retries": 1000}, "body/max_retries"),
        ({"identity_key": "../../etc"}, "body/identity_key"),
        ({"depends_on": ["run-1/../2"]}, "body/depends_on/0"),
        ({"depends_on": ["run-20260101-00000000"]}, "depends_on"),  # no such run
    ],
)
def test_a_queue_field_out_of_bounds_is_422_naming_it_and_nothing_is_enqueued(
    served: Served, extra: dict[str, object], field: str
):
    answer = served.client.post(
        "/api/v1/runs",
        json={"skill_key": "quick", "execute": True, **extra},
        headers=served.as_agent(),
    )
    assert answer.status_code == 422, answer.text
    assert [problem["field"] for problem in answer.json()["problems"]] == [field]
    assert served.app.ledger.rows("SELECT id FROM skill_runs") == []


def test_a_run_id_with_a_slash_or_dots_is_404_like_any_unknown_run(served: Served):
    headers = served.as_agent()
    for run_id in ("run-x%2F..%2F..", "..", "run-x%00"):
        answer = served.client.get(f"/api/v1/runs/{run_id}", headers=headers)
        assert answer.status_code == 404, run_id
    assert served.client.get("/api/v1/runs/a/b", headers=headers).status_code == 404


def test_a_run_with_an_eta_waits_for_it(served: Served):
    created = served.client.post(
        "/api/v1/runs",
        json={"skill_key": "quick", "execute": True, "eta": "2099-01-01T00:00:00Z"},
        headers=served.as_agent(),
    )
    assert created.status_code == 202
    assert created.json()["queue"]["eta"].startswith("2099-01-01T00:00:00")
    assert work(served.app) == 0
    assert (
        served.client.get(created.headers["Location"], headers=served.as_agent()).json()["state"]
        == "queued"
    )


def test_an_explicit_identity_key_holds_within_its_skill_only(served: Served):
    headers = served.as_agent()
    body = {"execute": True, "identity_key": "nightly"}
    quick = served.client.post("/api/v1/runs", json={**body, "skill_key": "quick"}, headers=headers)
    other = served.client.post(
        "/api/v1/runs", json={**body, "skill_key": "once-an-hour"}, headers=headers
    )
    assert (quick.status_code, other.status_code) == (202, 202)


def test_queue_fields_on_a_draft_are_422_not_silently_dropped(served: Served):
    answer = served.client.post(
        "/api/v1/runs", json={"skill_key": "quick", "priority": 1}, headers=served.as_agent()
    )
    assert answer.status_code == 422
    assert "priority: only with execute: true" in answer.json()["error"]
