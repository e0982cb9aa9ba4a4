"""The REST API's runs, by group: a caller reads and executes only the runs of callers that
share one of its groups (a run of a caller without groups: that caller only), and any
other run is a 404 exactly like one that does not exist. A run over the API obeys its
skill's required_groups and approval_required.

A real uvicorn server, a real HTTP client, real skills and the real pipeline (test_api.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInService, files_in
from test_api import POST, Served, bearer, process, token, work

from daemon.core.models import Action
from daemon.core.policy import Facts

UNKNOWN = "run-20260101-00000000"


class KnownOdoo(StandInService):
    """An Odoo that knows every invoice: a small payment is one the policy would approve."""

    def facts(self, action: Action) -> Facts:
        return Facts(partner_known=True, invoice_known=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    yield served
    served.close()


def create(served: Served, headers: dict[str, str], skill: str = "quick") -> str:
    answer = served.client.post(
        "/api/v1/runs", json={"skill_key": skill, "inputs": {"n": 1}}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


def test_a_rest_key_cannot_read_a_run_of_a_key_in_another_group(served: Served):
    run_id = create(served, served.as_agent())  # agent: marketing
    outsider = bearer(served.keys.create("outsider", ["sales"]))
    colleague = bearer(served.keys.create("colleague", ["marketing", "sales"]))

    hidden = served.client.get(f"/api/v1/runs/{run_id}", headers=outsider)
    missing = served.client.get(f"/api/v1/runs/{UNKNOWN}", headers=outsider)
    executed = served.client.post(f"/api/v1/runs/{run_id}/execute", headers=outsider)
    shared = served.client.get(f"/api/v1/runs/{run_id}", headers=colleague)

    # Indistinguishable from a run that does not exist: the id cannot be probed.
    assert (hidden.status_code, missing.status_code, executed.status_code) == (404, 404, 404)
    assert hidden.json()["error"] == missing.json()["error"].replace(UNKNOWN, run_id)
    assert executed.json() == hidden.json()
    assert served.client.get(f"/api/v1/runs/{run_id}", headers=outsider).status_code == 404
    assert served.app.ledger.rows("SELECT state FROM skill_runs")[0]["state"] == "draft"
    assert shared.status_code == 200 and shared.json()["run_id"] == run_id


def test_a_run_of_a_key_without_groups_is_read_by_that_key_only(served: Served):
    loner = bearer(served.keys.create("loner", []))
    other_loner = bearer(served.keys.create("other-loner", []))
    run_id = create(served, loner)

    assert served.client.get(f"/api/v1/runs/{run_id}", headers=loner).status_code == 200
    for headers in (other_loner, served.as_agent(), bearer(token(groups=[]))):
        assert served.client.get(f"/api/v1/runs/{run_id}", headers=headers).status_code == 404
    assert served.client.post(f"/api/v1/runs/{run_id}/execute", headers=loner).status_code == 200


def test_a_token_reads_the_runs_of_a_key_in_its_group(served: Served):
    bookkeeper = bearer(served.keys.create("bookkeeper", ["finance"]))
    run_id = create(served, bookkeeper)
    by_token = served.client.get(f"/api/v1/runs/{run_id}", headers=bearer(token()))  # finance
    marketing = served.client.get(
        f"/api/v1/runs/{run_id}", headers=bearer(token(sub="ad-bot", groups=["marketing"]))
    )
    assert by_token.status_code == 200
    assert marketing.status_code == 404


def test_a_run_nobody_over_the_api_requested_is_404_to_every_key(served: Served):
    """A run from the CLI or a `type: skill` task file has no API caller to share with."""
    runs = served.server.api.state.vaultd.runs
    local = runs.create("quick", {"n": 1}, requested_by="cli").run.id
    answer = served.client.get(f"/api/v1/runs/{local}", headers=served.as_agent())
    assert answer.status_code == 404


def test_a_run_over_the_api_obeys_its_skills_approval_required(served: Served):
    """register-payment says approval_required: its request waits for a person, always,
    even a small payment against a known invoice, which the policy alone would approve."""
    served.app.pipeline.connectors["odoo"] = KnownOdoo("odoo")
    finance = bearer(served.keys.create("bookkeeper", ["finance"]))
    body = {"skill_key": "register-payment", "inputs": {"invoice": "INV/1", "amount": 5}}
    created = served.client.post("/api/v1/runs", json={**body, "execute": True}, headers=finance)
    assert created.status_code == 202, created.text
    assert created.json()["state"] == "queued"

    work(served.app)
    assert served.client.get(created.headers["Location"], headers=finance).json()["state"] == (
        "awaiting_approval"
    )
    process(served.app)
    [name] = files_in(served.root, "Pending_Approval")
    [task] = served.app.ledger.rows("SELECT * FROM tasks")
    assert (task["approval"], task["rule"]) == ("required", "skill_requires_approval")
    assert files_in(served.root, "Done") == files_in(served.root, "Approved") == []
    assert name.startswith("register-payment-")


def test_a_post_run_over_the_api_waits_for_a_person_whatever_the_policy_says(served: Served):
    created = served.client.post(
        "/api/v1/runs",
        json={"skill_key": "post-social-media", "inputs": POST, "execute": True},
        headers=served.as_agent(),
    )
    work(served.app)
    process(served.app)
    [task] = served.app.ledger.rows("SELECT * FROM tasks")
    answer = served.client.get(created.headers["Location"], headers=served.as_agent())
    assert answer.json()["state"] == "awaiting_approval"
    assert task["rule"] == "skill_requires_approval"  # a scheduled post the policy would pass


def test_executing_a_draft_needs_the_skills_group_even_for_a_caller_who_sees_it(
    served: Served,
):
    """A draft of a finance run, seen by a key sharing another group, is still not run by it."""
    both = bearer(served.keys.create("both", ["finance", "marketing"]))
    body = {"skill_key": "register-payment", "inputs": {"invoice": "INV/1", "amount": 5}}
    run_id = served.client.post("/api/v1/runs", json=body, headers=both).json()["run_id"]

    seen = served.client.get(f"/api/v1/runs/{run_id}", headers=served.as_agent())
    executed = served.client.post(f"/api/v1/runs/{run_id}/execute", headers=served.as_agent())
    assert seen.status_code == 200
    assert executed.status_code == 403
    assert "requires one of the groups finance" in executed.json()["error"]
