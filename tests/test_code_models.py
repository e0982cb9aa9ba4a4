"""The `code_task` model, its policy and its config, without git (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from code_support import code_task

from daemon.core.code_config import CodeConfig
from daemon.core.config import load_config
from daemon.core.errors import ConfigError, ValidationFailed
from daemon.core.models import CodeTask, parse_action
from daemon.core.policy import Facts, Policy, decide

SHA = "a" * 40
PREPARED = {
    "branch": "vaultd/x",
    "base_sha": SHA,
    "head_sha": "b" * 40,
    "diff_sha256": "c" * 64,
    "diff_bytes": 10,
}


def test_a_task_file_cannot_write_what_vaultd_prepared():
    with pytest.raises(ValidationFailed) as error:
        parse_action({**code_task(), "prepared": PREPARED})
    assert error.value.problems[0][0] == "prepared"


def test_the_prepared_stamp_is_part_of_the_payload_hash():
    bare = parse_action(code_task())
    prepared = parse_action(code_task(), prepared=PREPARED)
    moved = parse_action(code_task(), prepared={**PREPARED, "head_sha": "d" * 40})
    assert isinstance(prepared, CodeTask) and prepared.prepared is not None
    assert len({bare.payload_hash(), prepared.payload_hash(), moved.payload_hash()}) == 3


def test_checks_are_an_argument_list_never_a_shell_string():
    assert parse_action(code_task(checks=["pytest", "-q"])).payload()["checks"] == ["pytest", "-q"]
    with pytest.raises(ValidationFailed):
        parse_action(code_task(checks="pytest -q; rm -rf /"))


@pytest.mark.parametrize("policy", [Policy(), Policy(approval_required_kinds=[])])
def test_a_code_task_always_needs_a_person(policy: Policy):
    decision = decide(parse_action(code_task()), policy, Facts())
    assert decision.needs_approval and decision.rule == "code_change"


def test_a_repo_must_be_named_by_an_absolute_path_in_the_config(tmp_path: Path):
    config = tmp_path / "vaultd.toml"
    config.write_text('[code.repos]\ndemo = "relative/path"\n"../x" = "/srv/x"\n')
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert str(config) in str(error.value) and "code.repos" in str(error.value)
    assert "absolute" in str(error.value) and "'../x'" in str(error.value)


def test_the_default_agent_command_is_claude_with_the_spec():
    assert CodeConfig().agent_command == ["claude", "-p", "{spec}"]
