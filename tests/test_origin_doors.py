"""The policy by origin (daemon/core/origin.py): what a door demands, how the ledger binds it to
the file, and how `stricter` turns the policy's decision into a person's approval.

Pure functions and a real SQLite ledger; no vault, no pipeline.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.core.config import Config, load_config
from daemon.core.errors import ConfigError
from daemon.core.ledger import APPROVED, DONE, PENDING, REJECTED, Ledger
from daemon.core.origin import (
    DOOR_SCHEMA,
    Demand,
    Origin,
    door_demand,
    door_stamp,
    issue,
    read_origin,
    stricter,
    written_as,
)
from daemon.core.policy import Decision

AUTO = Decision(False, "scheduled_post", "a scheduled post on facebook is approved by policy")
ASKED = Decision(True, "amount_threshold", "150.00 USD is at or over the threshold", Decimal(150))


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    opened = Ledger(tmp_path / "ledger.sqlite3")
    opened.ensure_schema(DOOR_SCHEMA)
    return opened


def demand(requires: bool | None, require_from: tuple[str, ...] = ("mcp", "api")) -> Demand | None:
    return door_demand(
        "mcp",
        "mcp:finance",
        action_type="odoo_invoice",
        skill_key="create-invoice",
        skill_requires=requires,
        require_from=require_from,
    )


def claim(ledger: Ledger, task_id: str, key: str | None, state: str, file: str) -> None:
    ledger.put_task(task_id, file=file, state=state, **({"origin": key} if key else {}))


# -- what a door demands -------------------------------------------------------------------


def test_a_skill_that_requires_approval_demands_a_person_at_every_door():
    for doors in (("mcp", "api"), ()):
        found = demand(True, doors)
        assert found is not None and found.rule == "skill_requires_approval"
        assert "create-invoice" in found.reason


def test_a_missing_or_invalid_skill_demands_a_person_whatever_the_doors():
    found = demand(None, ())
    assert found is not None and found.rule == "skill_missing"
    assert "create-invoice" in found.reason and "odoo_invoice" in found.reason


def test_a_door_in_require_approval_from_demands_a_person_for_what_the_skill_leaves_to_the_policy():
    found = demand(False)
    assert found is not None and found.rule == "origin_requires_approval"
    assert "mcp:finance" in found.reason and "require_approval_from" in found.reason
    assert demand(False, ("api",)) is None  # mcp left out: the policy decides
    assert demand(False, ()) is None


def test_a_door_stamp_says_so_only_when_a_person_must_approve():
    strict = door_stamp("mcp", "mcp", "post-social-media", demand(True))
    loose = door_stamp("mcp", "mcp:finance", "create-invoice", None)
    assert strict["approval_required"] is True and "approval_required" not in loose
    assert (strict["door"], strict["by"], strict["skill"]) == ("mcp", "mcp", "post-social-media")
    assert strict["step"] != loose["step"]  # a fresh token each time


# -- stricter ------------------------------------------------------------------------------


def test_stricter_turns_an_auto_approval_into_the_doors_demand():
    found = demand(False)
    assert found is not None
    origin = Origin("mcp:finance@ab", "create-invoice", True, found.rule, found.reason)
    decided = stricter(AUTO, origin)
    assert decided.needs_approval
    assert (decided.rule, decided.reason) == (found.rule, found.reason)


def test_stricter_keeps_a_decision_that_already_asks_and_one_no_origin_demands():
    strict = Origin("mcp@ab", None, True, "origin_requires_approval", "written through MCP")
    assert stricter(ASKED, strict) == ASKED
    assert stricter(AUTO, Origin("mcp@ab", "create-invoice", False)) == AUTO
    assert stricter(AUTO, Origin(None, None, False)) == AUTO


def test_stricter_names_the_skill_for_a_run_origin_as_before():
    decided = stricter(AUTO, Origin("run:r:t", "post-social-media", True))
    assert decided.rule == "skill_requires_approval"
    assert (
        decided.reason == "skill post-social-media requires a person's approval for every request"
    )


# -- the ledger binds the origin -----------------------------------------------------------


def issued(ledger: Ledger, file: str = "sale.md", requires: bool | None = True) -> dict[str, Any]:
    found = demand(requires)
    stamp = door_stamp("mcp", "mcp:finance", "create-invoice", found)
    issue(ledger, stamp, found, file)
    return stamp


def test_the_file_a_door_wrote_gets_its_origin_and_demand(ledger: Ledger):
    stamp = issued(ledger, requires=False)
    origin = read_origin({"origin": stamp}, "sale.md", ledger)
    assert origin.key == f"mcp:finance@{stamp['step']}"
    assert (origin.approval_required, origin.rule) == (True, "origin_requires_approval")
    assert stricter(AUTO, origin).needs_approval


def test_the_ledger_not_the_file_says_what_the_door_demanded(ledger: Ledger):
    stamp = issued(ledger, requires=False)
    lied = {**stamp, "approval_required": False, "by": "mcp:ops"}  # edited in the file
    origin = read_origin({"origin": lied}, "sale.md", ledger)
    assert origin.key == f"mcp:finance@{stamp['step']}"
    assert origin.approval_required


def test_a_copy_under_another_name_keeps_the_origin_and_its_demand(ledger: Ledger):
    stamp = issued(ledger)
    claim(ledger, "t1", f"mcp:finance@{stamp['step']}", PENDING, "Pending_Approval/sale.md")
    origin = read_origin({"origin": stamp}, "copy of sale.md", ledger)
    assert origin.key == f"mcp:finance@{stamp['step']}"
    assert (origin.approval_required, origin.rule) == (True, "skill_requires_approval")


def test_the_file_under_the_doors_name_keeps_its_origin_with_the_origin_cut_out(ledger: Ledger):
    stamp = issued(ledger)
    assert read_origin({}, "sale.md", ledger).key == f"mcp:finance@{stamp['step']}"
    # ... also moved back from Pending_Approval/ with its task still pending or approved.
    for state in (PENDING, APPROVED):
        claim(ledger, "t1", f"mcp:finance@{stamp['step']}", state, "Needs_Action/sale.md")
        assert read_origin({}, "sale.md", ledger).approval_required


def test_a_new_file_under_a_name_whose_door_task_ended_is_a_new_task(ledger: Ledger):
    stamp = issued(ledger)
    for state in (DONE, REJECTED):
        claim(ledger, "t1", f"mcp:finance@{stamp['step']}", state, "Done/sale.md")
        assert read_origin({}, "sale.md", ledger) == Origin(None, None, False)


def test_the_name_a_clash_gave_the_file_is_the_one_bound(ledger: Ledger):
    stamp = issued(ledger)
    written_as(ledger, stamp, "sale (2).md")
    assert read_origin({}, "sale (2).md", ledger).key == f"mcp:finance@{stamp['step']}"
    assert read_origin({}, "sale.md", ledger) == Origin(None, None, False)


def test_a_door_origin_no_row_backs_is_forged_and_only_asks_a_person(ledger: Ledger):
    forged = {"door": "api", "by": "apikey:boss", "step": "0123456789abcdef"}
    origin = read_origin({"origin": forged}, "forged.md", ledger)
    assert origin.key is None  # nobody is blamed
    assert (origin.approval_required, origin.rule) == (True, "unverified_origin")
    assert "boss" not in (origin.reason or "")  # the forger's words are not shown as vaultd's


def test_without_any_door_ever_the_run_origin_reads_as_before(tmp_path: Path):
    ledger = Ledger(tmp_path / "fresh.sqlite3")  # no door_origins table at all
    meta = {"origin": {"run": "r1", "step": "t1", "file": "x.md", "approval_required": True}}
    assert read_origin(meta, "x.md", ledger) == Origin("run:r1:t1", None, True)
    assert read_origin(meta, "y.md", ledger) == Origin(None, None, True)
    assert read_origin({}, "x.md", ledger) == Origin(None, None, False)


# -- the setting -----------------------------------------------------------------------------


def test_require_approval_from_defaults_to_both_doors_and_knows_only_those(tmp_path: Path):
    assert Config().policy.require_approval_from == ["mcp", "api"]
    path = tmp_path / "config.toml"
    path.write_text('[policy]\nrequire_approval_from = ["mcp"]\n', encoding="utf-8")
    assert load_config(path).policy.require_approval_from == ["mcp"]
    path.write_text('[policy]\nrequire_approval_from = ["files"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="require_approval_from"):
        load_config(path)
