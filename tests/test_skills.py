"""Skills: the registry, and runs of real `execute.py` files in real child processes.

A run's world-changing tool calls become task files; the real pipeline then takes them
through the approval lifecycle, and the run follows them to the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import files_in, move, outbox

from daemon.agents.skills.registry import load_registry
from daemon.agents.skills.runs import Forbidden, InputsInvalid, NotExecutable, Runs, Throttled
from daemon.agents.skills.service import open_runs
from daemon.core.config import SkillsConfig
from daemon.service.app import App
from daemon.service.runner import Runner

BUILTIN = {"create-invoice", "generate-briefing", "post-social-media", "register-payment"}


def make_skill(root: Path, name: str, code: str, **manifest: Any) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    data = {
        "name": name,
        "description": f"test skill {name}",
        "parameters": {"type": "object", "properties": {}},
        "tools": [],
        **manifest,
    }
    (folder / "skill.json").write_text(json.dumps(data), encoding="utf-8")
    (folder / "execute.py").write_text(code, encoding="utf-8")
    return folder


def runs_with(app: App, skills_dir: Path | None = None) -> Runs:
    dirs = [skills_dir] if skills_dir else []
    return open_runs(app, load_registry(SkillsConfig(dirs=dirs), vault=app.vault.root))


def process(app: App) -> None:
    Runner(app.pipeline, app.config).run_once()


def test_the_built_in_skills_load_and_validate():
    registry = load_registry(SkillsConfig())
    assert {skill.key for skill in registry.listed()} == BUILTIN
    assert registry.problems == []
    post = registry.get("post-social-media")
    assert post is not None and post.manifest.destructive_tools() == ["social.post"]
    assert post.manifest.approval_required is True


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"skill.json": "{not json"}, "skill.json is not valid JSON"),
        ({"execute.py": "def run(inputs, tools):\n    return 1\n"}, "no skill.json"),
        ({"skill.json": json.dumps({"name": "x-y", "description": "d"})}, "no execute.py"),
        (
            {"skill.json": json.dumps({"name": "Bad Name", "description": "d"})},
            "skill.json: name: ",
        ),
        (
            {"skill.json": json.dumps({"name": "x-y", "description": "d", "tools": ["shell"]})},
            "skill.json: tools.0: ",
        ),
        (
            {
                "skill.json": json.dumps(
                    {"name": "x-y", "description": "d", "parameters": {"type": "nonsense"}}
                )
            },
            "not a valid JSON Schema",
        ),
        (
            {
                "skill.json": json.dumps({"name": "x-y", "description": "d"}),
                "execute.py": "def main():\n    pass\n",
            },
            "defines no top-level function run(inputs, tools)",
        ),
        (
            {
                "skill.json": json.dumps({"name": "x-y", "description": "d"}),
                "execute.py": "def run(:\n",
            },
            "execute.py does not compile",
        ),
    ],
)
def test_an_invalid_skill_is_reported_with_its_folder_and_skipped(
    tmp_path: Path, files: dict[str, str], problem: str
):
    folder = tmp_path / "skills" / "broken"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")

    registry = load_registry(SkillsConfig(dirs=[tmp_path / "skills"]))

    assert {skill.key for skill in registry.listed()} == BUILTIN
    assert len(registry.problems) == 1
    assert registry.problems[0].folder == folder
    assert problem in registry.problems[0].message


def test_every_builtin_skills_schema_is_valid_as_the_start_up_assumes():
    # load_skill does not check the built-in schemas against the metaschema on each start
    # (it costs jsonschema's import); this test is where they are checked.
    from jsonschema import Draft202012Validator

    builtins = [s for s in load_registry(SkillsConfig(dirs=[])).listed() if s.builtin]
    assert {skill.key for skill in builtins} == BUILTIN
    for skill in builtins:
        Draft202012Validator.check_schema(skill.manifest.parameters)
        assert skill.manifest.parameters["type"] == "object"


def test_a_skill_outside_the_builtin_folder_has_its_schema_checked_whatever_its_name(
    tmp_path: Path,
):
    make_skill(
        tmp_path / "a",
        "my-poster",
        "def run(inputs, tools):\n    return 1\n",
        parameters={"type": "object", "properties": {"x": {"type": 5}}},
    )
    registry = load_registry(SkillsConfig(dirs=[tmp_path / "a"]))
    assert "my-poster" not in registry.skills
    assert "not a valid JSON Schema" in registry.problems[0].message


def test_skill_folders_inside_the_vault_are_refused(vault_root: Path):
    make_skill(vault_root / "skills", "synced", "def run(inputs, tools):\n    return 1\n")
    registry = load_registry(SkillsConfig(dirs=[vault_root / "skills"]), vault=vault_root)
    assert "synced" not in registry.skills
    assert "must lie outside the vault" in registry.problems[0].message


def test_a_second_skill_of_the_same_name_is_reported(tmp_path: Path):
    make_skill(tmp_path / "a", "post-social-media", "def run(inputs, tools):\n    return 1\n")
    registry = load_registry(SkillsConfig(dirs=[tmp_path / "a"]))
    assert registry.get("post-social-media").builtin  # type: ignore[union-attr]
    assert "already defined" in registry.problems[0].message


def test_a_post_requested_by_a_skill_waits_for_approval_and_the_run_follows_it_to_done(
    app: App, vault_root: Path
):
    runs = runs_with(app)

    view = runs.create(
        "post-social-media",
        {"text": "Winter sale starts Monday", "platforms": ["facebook"]},
        requested_by="test",
        execute=True,
    )

    assert view.run.state == "awaiting_approval"
    [step] = view.trace
    assert (step.tool, step.state) == ("social.post", "requested")
    [name] = files_in(vault_root, "Needs_Action")
    assert step.task_file == f"Needs_Action/{name}"

    process(app)  # the skill demands approval, although the policy would post this at once
    assert files_in(vault_root, "Pending_Approval") == [name]
    assert "skill_requires_approval" in (vault_root / "Pending_Approval" / name).read_text()
    assert runs.view(view.run.id).run.state == "awaiting_approval"
    assert outbox(app.state_dir) == []

    move(vault_root, vault_root / "Pending_Approval" / name, "Approved")
    process(app)

    finished = runs.view(view.run.id)
    assert finished.run.state == "succeeded"
    assert finished.trace[0].state == "done"
    assert finished.trace[0].output["task_file"] == f"Done/{name}"
    assert [record["target"] for record in outbox(app.state_dir)] == ["facebook"]
    events = [json.loads(line)["event"] for line in _log_lines(vault_root)]
    assert {"run_created", "run_awaiting_approval", "run_succeeded"} <= set(events)


def test_a_rejected_request_fails_its_run_with_the_reason(app: App, vault_root: Path):
    runs = runs_with(app)
    view = runs.create("post-social-media", {"text": "Hi"}, requested_by="t", execute=True)
    process(app)
    [name] = files_in(vault_root, "Pending_Approval")
    move(vault_root, vault_root / "Pending_Approval" / name, "Rejected")
    process(app)

    run = runs.view(view.run.id).run
    assert run.state == "failed"
    assert "rejected" in (run.error or "")
    assert outbox(app.state_dir) == []


def test_a_skill_that_overruns_its_timeout_is_killed_and_its_run_fails(app: App, tmp_path: Path):
    code = "import time\n\ndef run(inputs, tools):\n    time.sleep(30)\n"
    make_skill(tmp_path / "skills", "slow", code, timeout_s=0.5)
    runs = runs_with(app, tmp_path / "skills")

    view = runs.create("slow", {}, requested_by="t", execute=True)

    assert view.run.state == "failed"
    assert view.run.error == "timed out after 0.5 s (timeout_s)"


def test_rate_limit_and_cooldown_refuse_with_a_clear_error_and_leave_the_run_a_draft(
    app: App, tmp_path: Path
):
    code = "def run(inputs, tools):\n    return 'ok'\n"
    make_skill(tmp_path / "skills", "twice-an-hour", code, rate_limit=2)
    make_skill(tmp_path / "skills", "cool", code, cooldown_seconds=3600)
    runs = runs_with(app, tmp_path / "skills")

    for _ in range(2):
        assert runs.create("twice-an-hour", {}, requested_by="t", execute=True).run.state == (
            "succeeded"
        )
    with pytest.raises(Throttled, match=r"ran 2 times in the last hour \(rate_limit 2/hour\)"):
        runs.create("twice-an-hour", {}, requested_by="t", execute=True)

    assert runs.create("cool", {}, requested_by="t", execute=True).run.state == "succeeded"
    draft = runs.create("cool", {}, requested_by="t")
    with pytest.raises(Throttled, match="cooling down: one run per 3600 s") as refused:
        runs.execute(draft.run.id)
    assert refused.value.retry_at is not None
    assert runs.view(draft.run.id).run.state == "draft"


def test_a_guardrail_violation_is_refused_before_any_file_is_written(
    app: App, vault_root: Path, tmp_path: Path
):
    code = (
        "def run(inputs, tools):\n"
        "    return tools.call('social.post', platforms=['twitter'], text='hello')\n"
    )
    make_skill(
        tmp_path / "skills",
        "fb-only",
        code,
        tools=["social.post"],
        guardrails={"allowed_platforms": ["facebook"]},
    )
    runs = runs_with(app, tmp_path / "skills")

    view = runs.create("fb-only", {}, requested_by="t", execute=True)

    assert view.run.state == "failed"
    assert "guardrail allowed_platforms: twitter not allowed" in (view.run.error or "")
    assert [(s.tool, s.state) for s in view.trace] == [("social.post", "refused")]
    assert files_in(vault_root, "Needs_Action") == []


def test_an_invoice_over_the_skills_max_amount_is_refused(app: App, vault_root: Path):
    runs = runs_with(app)
    lines = [{"product": "Consulting", "quantity": 200, "price_unit": 90}]
    view = runs.create(
        "create-invoice", {"partner": "Acme", "lines": lines}, requested_by="t", execute=True
    )
    assert view.run.state == "failed"
    assert "guardrail max_amount: 18000 is over this skill's limit of 10000" in (
        view.run.error or ""
    )
    assert files_in(vault_root, "Needs_Action") == []


def test_a_tool_the_manifest_does_not_name_is_refused(app: App, tmp_path: Path):
    code = "def run(inputs, tools):\n    return tools.call('social.post', text='x')\n"
    make_skill(tmp_path / "skills", "sneaky", code, tools=["vault.status"])
    runs = runs_with(app, tmp_path / "skills")
    view = runs.create("sneaky", {}, requested_by="t", execute=True)
    assert view.run.state == "failed"
    assert view.run.error == "tool 'social.post' is not among this skill's tools"


def test_inputs_are_checked_against_the_schema_naming_each_field(app: App):
    runs = runs_with(app)
    with pytest.raises(InputsInvalid) as invalid:
        runs.create("post-social-media", {"platforms": ["myspace"]}, requested_by="t")
    # The field each problem names is vaultd's; the wording is jsonschema's, so unasserted.
    assert any(where == "(inputs)" and "'text'" in why for where, why in invalid.value.problems)
    assert any(where == "platforms/0" for where, _ in invalid.value.problems)


def test_required_groups_are_checked_for_remote_callers(app: App):
    runs = runs_with(app)
    inputs = {"invoice": "INV/2026/00001", "amount": 10}
    with pytest.raises(Forbidden, match="requires one of the groups finance"):
        runs.create("register-payment", inputs, requested_by="api", groups={"marketing"})
    assert runs.create("register-payment", inputs, requested_by="api", groups={"finance"})


def test_only_a_draft_or_failed_run_can_be_executed(app: App):
    runs = runs_with(app)
    done = runs.create("generate-briefing", {}, requested_by="t", execute=True)
    assert done.run.state == "succeeded", done.run.error
    assert done.run.output["path"].startswith("Briefings/")
    with pytest.raises(NotExecutable, match="only a draft or failed run runs"):
        runs.execute(done.run.id)


def test_a_failed_run_can_be_executed_again_as_a_new_attempt(app: App, tmp_path: Path):
    flag = tmp_path / "fail-once"
    flag.write_text("x")
    code = (
        "import pathlib\n\n"
        "def run(inputs, tools):\n"
        f"    flag = pathlib.Path({str(flag)!r})\n"
        "    if flag.exists():\n"
        "        flag.unlink()\n"
        "        raise RuntimeError('first attempt fails')\n"
        "    return tools.call('vault.status')\n"
    )
    make_skill(tmp_path / "skills", "flaky", code, tools=["vault.status"])
    runs = runs_with(app, tmp_path / "skills")

    first = runs.create("flaky", {}, requested_by="t", execute=True)
    assert first.run.state == "failed"
    assert "RuntimeError: first attempt fails" in (first.run.error or "")

    second = runs.execute(first.run.id)
    assert second.run.state == "succeeded"
    assert second.run.attempt == 2
    assert "Needs_Action" in second.run.output["counts"]
    assert [(s.attempt, s.tool) for s in second.trace] == [(2, "vault.status")]


def test_a_skill_gets_no_credentials_in_its_environment(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ODOO_PASSWORD", "canary-odoo-password-51c2")
    code = "import os\n\ndef run(inputs, tools):\n    return dict(os.environ)\n"
    make_skill(tmp_path / "skills", "nosy", code)
    runs = runs_with(app, tmp_path / "skills")
    view = runs.create("nosy", {}, requested_by="t", execute=True)
    assert view.run.state == "succeeded"
    assert "ODOO_PASSWORD" not in view.run.output
    assert "canary-odoo-password-51c2" not in json.dumps(view.run.output)


def test_a_copy_of_a_requested_task_file_does_not_stand_in_for_the_request(
    app: App, vault_root: Path
):
    runs = runs_with(app)
    view = runs.create("post-social-media", {"text": "Hi"}, requested_by="t", execute=True)
    [name] = files_in(vault_root, "Needs_Action")
    original = (vault_root / "Needs_Action" / name).read_text()
    (vault_root / "Needs_Action" / "copy.md").write_text(original.replace("Hi", "Hi!"))
    process(app)
    for pending in files_in(vault_root, "Pending_Approval"):
        if pending != name:
            move(vault_root, vault_root / "Pending_Approval" / pending, "Approved")
    process(app)

    # The copy ran (a person approved it) but the run's own request still waits.
    assert runs.view(view.run.id).run.state == "awaiting_approval"


def _log_lines(vault_root: Path) -> list[str]:
    return [line for path in sorted((vault_root / "Logs").glob("*.json")) for line in path.open()]


SKILL_TASK = """---
type: skill
skill: post-social-media
params:
  text: Winter sale starts Monday
  platforms: [facebook]
---
Asked for by the marketing agent.
"""


def test_a_skill_task_file_starts_its_run_and_lands_in_done_with_the_run_id(
    app: App, vault_root: Path
):
    (vault_root / "Needs_Action" / "ask.md").write_text(SKILL_TASK)

    process(app)

    assert files_in(vault_root, "Done") == ["ask.md"]
    done = (vault_root / "Done" / "ask.md").read_text()
    assert done.endswith("---\nAsked for by the marketing agent.\n")
    [run] = runs_with(app).listed()
    assert f"run: {run.id}" in done
    assert "status: awaiting_approval" in done
    assert run.requested_by.startswith("task:")  # type: ignore[union-attr]
    # The run's request is a task file of its own: the next look puts it up for approval.
    process(app)
    [request] = files_in(vault_root, "Pending_Approval")
    assert request.startswith("post-social-media-run-")
    assert outbox(app.state_dir) == []


def test_a_skill_task_naming_an_unknown_skill_or_field_is_rejected_with_the_reason(
    app: App, vault_root: Path
):
    (vault_root / "Needs_Action" / "ask.md").write_text(
        SKILL_TASK.replace("post-social-media", "post-to-myspace").replace(
            "params:", "priority: high\nparams:"
        )
    )
    process(app)
    assert files_in(vault_root, "Rejected") == ["ask.md"]
    text = (vault_root / "Rejected" / "ask.md").read_text()
    assert "priority: not a field of a skill task" in text
    assert runs_with(app).listed() == []


def test_a_skill_task_with_bad_params_is_rejected_naming_the_field(app: App, vault_root: Path):
    (vault_root / "Needs_Action" / "ask.md").write_text(SKILL_TASK.replace("facebook", "fax"))
    process(app)
    assert files_in(vault_root, "Rejected") == ["ask.md"]
    text = (vault_root / "Rejected" / "ask.md").read_text()
    assert "inputs for post-social-media: platforms/0:" in text
    assert "'fax'" in text


def test_a_crash_before_the_skill_task_moves_never_starts_its_run_twice(
    vault_root: Path, state_dir: Path
):
    from daemon.core import failpoints
    from daemon.service.app import open_app

    (vault_root / "Needs_Action" / "ask.md").write_text(SKILL_TASK)
    first = open_app(vault_root, state_dir=state_dir)
    failpoints.arm(["mid-move"])
    try:
        with pytest.raises(failpoints.Crashed):
            first.pipeline.process(vault_root / "Needs_Action" / "ask.md")
    finally:
        failpoints.disarm()
        first.close()
    assert files_in(vault_root, "Needs_Action")[0] == "ask.md"

    again = open_app(vault_root, state_dir=state_dir)
    try:
        process(again)
        assert files_in(vault_root, "Done") == ["ask.md"]
        runs = open_runs(again).listed()
        assert len(runs) == 1
        requests = [
            name
            for folder in ("Needs_Action", "Pending_Approval")
            for name in files_in(vault_root, folder)
            if name.startswith("post-social-media-")
        ]
        assert len(requests) == 1
    finally:
        again.close()


def test_two_callers_executing_one_draft_at_once_run_it_once(app: App, tmp_path: Path):
    import threading

    counter = tmp_path / "ran"
    code = (
        "import pathlib, time\n\n"
        "def run(inputs, tools):\n"
        f"    with pathlib.Path({str(counter)!r}).open('a') as out:\n"
        "        out.write('x')\n"
        "    time.sleep(0.3)\n"
        "    return 'ok'\n"
    )
    make_skill(tmp_path / "skills", "once", code)
    runs = runs_with(app, tmp_path / "skills")
    draft = runs.create("once", {}, requested_by="t")
    answers: list[str] = []

    def execute() -> None:
        try:
            answers.append(runs.execute(draft.run.id).run.state)
        except NotExecutable as refused:
            answers.append(f"refused: {refused}")

    threads = [threading.Thread(target=execute) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counter.read_text() == "x"
    assert sorted(answers)[-1] == "succeeded"
    assert sum(answer.startswith("refused: ") for answer in answers) == 3
