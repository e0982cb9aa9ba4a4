"""The README's audit queries, run with the real `jq` over the log of a real daemon.

The queries are read out of README.md, so what a person copies is what is tested. The
scenario gives the log one of each kind of entry the queries tell apart: an action approved
by policy, one approved by a person, an invalid task, a request a person refused, and a live
call that failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_files
from tests.e2e.e2e_support import meta, ok, vaultd

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries() -> dict[str, str]:
    """Return {comment: command} for the jq lines in the README's audit-query block."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- audit-queries -->\n```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no ```sh block after <!-- audit-queries -->"
    queries, comment = {}, ""
    for line in block.group(1).splitlines():
        if line.startswith("#"):
            comment = line.lstrip("# ").strip()
        elif line.startswith("jq "):
            queries[comment] = line
    return queries


def jq(command: str, cwd: Path) -> list[Any]:
    """Run a README jq line in a shell in `cwd`; return the JSON values it printed."""
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    values, decoder, text = [], json.JSONDecoder(), done.stdout.strip()
    while text:
        value, end = decoder.raw_decode(text)
        values.append(value)
        text = text[end:].strip()
    return values


@pytest.fixture
def jq_installed() -> None:
    if shutil.which("jq"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("jq is missing: .ci/run must install it (apt-get install jq)")
    pytest.skip("jq is not installed (CI installs it)")


def test_the_readmes_jq_queries_answer_the_seeds_questions(jq_installed: None, tmp_path: Path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    ok(vaultd("init", vault))
    run = ("run", "--vault", vault, "--state-dir", state, "--once")
    make_files(vault, {"Needs_Action/typo.md": "---\ntype: sociall_post\n---\nbody\n"})
    ok(vaultd(*run))
    pending = vault / "Pending_Approval"
    ids = {p.stem: meta(p.read_text())["id"] for p in pending.iterdir()}
    (pending / "invoice_acme_december.md").rename(vault / "Approved/invoice_acme_december.md")
    (pending / "reply_to_customer.md").rename(vault / "Rejected/reply_to_customer.md")
    ok(vaultd(*run))
    (pending / "payment_blue_cafe.md").rename(vault / "Approved/payment_blue_cafe.md")
    live = vaultd(*run, "--live")  # no Odoo settings: the payment fails, with the reason
    assert live.returncode == 0, live.stderr
    assert (vault / "Failed/payment_blue_cafe.md").exists()

    queries = readme_queries()
    assert len(queries) == 4, queries

    (by_type,) = jq(queries["actions executed, by type (one entry per execution)"], tmp_path)
    assert by_type == [
        {"action": "odoo_invoice", "count": 1},
        {"action": "social_post", "count": 1},
    ]

    (every_entry,) = jq(queries["entries by action type (the seed's count)"], tmp_path)
    counts = {row["action"]: row["count"] for row in every_entry}
    assert counts["social_post"] >= 4  # requested, refused, approved, executed …

    errors = jq(queries["failures, outcomes unknown and rejections"], tmp_path)
    found = Counter((e["event"], e["result"]["outcome"]) for e in errors)
    assert found == Counter(
        {("rejected_invalid", "invalid"): 1, ("rejected", "rejected"): 1, ("failed", "failed"): 1}
    ), found
    assert {e["result"]["status"] for e in errors} == {"error"}
    (refused,) = [e for e in errors if e["event"] == "rejected"]
    assert refused["task_id"] == ids["reply_to_customer"]
    assert refused["approval_status"] == "human_rejected"

    approved = jq(queries["what a person approved"], tmp_path)
    assert {e["task_id"] for e in approved} == {
        ids["invoice_acme_december"],
        ids["payment_blue_cafe"],
    }
    assert Counter(e["event"] for e in approved) == Counter(
        {"approved": 2, "executed": 1, "failed": 1}
    )


def test_every_entry_that_did_work_has_its_measured_duration_and_an_outcome(tmp_path: Path):
    vault, state = tmp_path / "vault", tmp_path / "state"
    ok(vaultd("init", vault))
    make_files(vault, {"Needs_Action/typo.md": "---\ntype: sociall_post\n---\nbody\n"})
    ok(vaultd("run", "--vault", vault, "--state-dir", state, "--once"))
    (vault / "Pending_Approval/invoice_acme_december.md").rename(
        vault / "Approved/invoice_acme_december.md"
    )
    ok(vaultd("run", "--vault", vault, "--state-dir", state, "--once"))
    entries = [
        json.loads(line)
        for path in sorted((vault / "Logs").glob("*.json"))
        for line in path.read_text().splitlines()
    ]
    worked = [e for e in entries if e["event"] in OUTCOME_EVENTS]
    assert {e["event"] for e in worked} == set(OUTCOME_EVENTS)
    for entry in worked:
        assert isinstance(entry["duration_ms"], int), entry
        assert entry["duration_ms"] >= 0
        assert entry["result"]["status"] == OUTCOME_EVENTS[entry["event"]][0], entry
        assert entry["result"]["outcome"] == OUTCOME_EVENTS[entry["event"]][1], entry
    executed = [e for e in worked if e["event"] == "executed"]
    assert all(e["result"]["dry_run"] is True for e in executed)


OUTCOME_EVENTS = {
    "auto_approved": ("success", "approved"),
    "executed": ("success", "done"),
    "approval_requested": ("success", "pending_approval"),
    "approved": ("success", "approved"),
    "rejected_invalid": ("error", "invalid"),
}
