"""The skill tool `code.request_change`: a skill asks for a code change as a `code_task` file
in Needs_Action/, with its origin, to go through the same approval as any other; it can
never write what vaultd approved, prepared or decided."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import files_in
from test_skills import make_skill, runs_with

from daemon.service.app import App

ASK = """\
def run(inputs, tools):
    return tools.call("code.request_change", repo="demo", base="main", target="main",
                      task="Fix the footer", **inputs)
"""


def test_a_skill_asks_for_a_code_change_as_a_task_file_that_waits_for_the_pipeline(
    app: App, vault_root: Path, tmp_path: Path
):
    make_skill(tmp_path / "skills", "coder", ASK, tools=["code.request_change"])
    runs = runs_with(app, tmp_path / "skills")
    run = runs.create("coder", {}, requested_by="t", execute=True).run
    assert run.state == "awaiting_approval", run.error
    [name] = files_in(vault_root, "Needs_Action")
    meta = yaml.safe_load((vault_root / "Needs_Action" / name).read_text().split("---")[1])
    assert meta["type"] == "code_task" and meta["repo"] == "demo"
    assert meta["task"] == "Fix the footer"
    assert meta["origin"]["run"] == run.id and meta["origin"]["skill"] == "coder"


@pytest.mark.parametrize(
    "forged",
    [
        {"code": {"head": "a" * 40, "diff_sha256": "b" * 64}},
        {"prepared": {"head": "a" * 40}},
        {"approval": "human_approved"},
        {"approved_version": "sha256:" + "c" * 64},
        {"id": "20261201-aaaaaa"},
        {"origin": {"run": "someone-else"}},
        {"type": "social_post"},
    ],
)
def test_a_skill_cannot_set_what_vaultd_approved_prepared_or_decided(
    app: App, vault_root: Path, tmp_path: Path, forged: dict
):
    make_skill(tmp_path / "skills", "coder", ASK, tools=["code.request_change"])
    runs = runs_with(app, tmp_path / "skills")
    run = runs.create("coder", forged, requested_by="t", execute=True).run
    assert run.state == "failed"
    assert "is vaultd's to write, not a skill's" in (run.error or "")
    assert files_in(vault_root, "Needs_Action") == []


def test_a_skill_without_the_tool_in_its_manifest_cannot_ask_for_code(
    app: App, vault_root: Path, tmp_path: Path
):
    make_skill(tmp_path / "skills", "poster", ASK, tools=["social.post"])
    run = runs_with(app, tmp_path / "skills").create("poster", {}, requested_by="t", execute=True)
    assert run.run.state == "failed"
    assert "not among this skill's tools" in (run.run.error or "")
    assert files_in(vault_root, "Needs_Action") == []
