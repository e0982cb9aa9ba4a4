"""`vaultd agents claude-settings`: the block holds Claude Code's documented keys, denies
edits to every vault folder but Needs_Action/ and Plans/ and reads of the state directory
and the env file, and turns the sandbox on with no way around it.

No copy of Claude Code's settings schema ships in a package this project can install (the
npm package `@anthropic-ai/claude-code` carries none; SchemaStore's is not packaged), so
SETTINGS below restates the part of SchemaStore's `claude-code-settings.json` the block uses:
the key names, their nesting, which objects take no other keys, and the rule syntax
`Tool(specifier)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from daemon.agents.claude_settings import claude_settings
from daemon.cli.main import main
from daemon.core.errors import ConfigError

TOOLS = "Agent|Bash|Edit|Glob|Grep|MultiEdit|NotebookEdit|Read|Skill|WebFetch|WebSearch|Write"
PATHS = {"type": "array", "items": {"type": "string", "minLength": 1}}
SETTINGS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "$schema": {"type": "string"},
        "permissions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "deny": {
                    "type": "array",
                    "uniqueItems": True,
                    "items": {"type": "string", "pattern": rf"^(({TOOLS})(\([^)]+\))?|mcp__.*)$"},
                },
                "allow": {"type": "array"},
                "ask": {"type": "array"},
            },
        },
        "sandbox": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "failIfUnavailable": {"type": "boolean"},
                "allowUnsandboxedCommands": {"type": "boolean"},
                "autoAllowBashIfSandboxed": {"type": "boolean"},
                "excludedCommands": {"type": "array"},
                "filesystem": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "allowWrite": PATHS,
                        "denyWrite": PATHS,
                        "denyRead": PATHS,
                        "allowRead": PATHS,
                    },
                },
            },
        },
    },
}


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Path]:
    vault = tmp_path / "vault"
    assert main(["init", str(vault)]) == 0
    (vault / ".obsidian").mkdir(exist_ok=True)
    (vault / "Dashboard.md").write_text("")
    return {
        "vault": vault,
        "state": tmp_path / "state",
        "env": tmp_path / "vaultd.env",
        "config": tmp_path / "config.toml",
    }


def block(made: dict[str, Path]) -> dict[str, Any]:
    return claude_settings(made["vault"], made["state"], made["env"], made["config"])


def test_the_block_has_claude_codes_documented_keys_and_rule_syntax(made: dict[str, Path]):
    jsonschema.validate(block(made), SETTINGS)


def test_edits_are_denied_in_every_vault_folder_but_needs_action_and_plans(
    made: dict[str, Path],
):
    deny = block(made)["permissions"]["deny"]
    vault = made["vault"]
    for folder in ("Pending_Approval", "Approved", "Rejected", "Done", "Failed", "Logs"):
        assert f"Edit(/{vault}/{folder}/**)" in deny
    assert f"Edit(/{vault}/Briefings/**)" in deny
    assert f"Edit(/{vault}/.obsidian/**)" in deny  # Obsidian's plugins run as the person
    assert f"Edit(/{vault}/Dashboard.md)" in deny
    assert f"Edit(/{vault}/*.md)" in deny
    assert not [rule for rule in deny if "Needs_Action" in rule or "Plans" in rule]
    assert all(rule.startswith(("Edit(//", "Read(//")) for rule in deny)  # `//`: absolute


def test_the_state_directory_and_env_file_can_be_neither_read_nor_edited(made: dict[str, Path]):
    deny = block(made)["permissions"]["deny"]
    for rule in (f"/{made['state']}/**", f"/{made['env']}"):
        assert f"Read({rule})" in deny
        assert f"Edit({rule})" in deny
    assert f"Edit(/{made['config']})" in deny
    assert f"Read(/{made['config']})" not in deny  # the config holds no secret


def test_the_sandbox_is_on_cannot_be_left_and_fences_the_same_paths(made: dict[str, Path]):
    sandbox = block(made)["sandbox"]
    assert sandbox["enabled"] is True
    assert sandbox["failIfUnavailable"] is True
    assert sandbox["allowUnsandboxedCommands"] is False
    files = sandbox["filesystem"]
    vault = made["vault"]
    assert f"/{vault}/Approved" in files["denyWrite"]
    assert f"/{vault}/Pending_Approval" in files["denyWrite"]
    assert f"/{made['state']}" in files["denyWrite"]
    assert files["denyRead"] == [f"/{made['state']}", f"/{made['env']}"]
    assert files["allowWrite"] == [f"/{vault}/Needs_Action", f"/{vault}/Plans"]
    assert not set(files["allowWrite"]) & set(files["denyWrite"])


def test_a_path_a_rule_would_read_as_a_pattern_is_refused(tmp_path: Path):
    odd = tmp_path / "my (work) vault"
    odd.mkdir()
    with pytest.raises(ConfigError, match=r"\( \)"):
        claude_settings(odd, tmp_path / "state")


def test_the_command_prints_the_block_as_json_and_says_what_it_leaves_out(
    made: dict[str, Path], capsys: pytest.CaptureFixture[str]
):
    flags = ["--vault", str(made["vault"]), "--state-dir", str(made["state"])]
    made["env"].write_text("")
    assert main(["agents", "claude-settings", *flags, "--env-file", str(made["env"])]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    jsonschema.validate(printed, SETTINGS)
    assert f"Read(/{made['env'].resolve()}/" not in captured.out
    assert f"Read(/{made['env'].resolve()})" in printed["permissions"]["deny"]
    assert "MCP servers and hooks run outside it" in captured.err
