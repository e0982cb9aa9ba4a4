"""`vaultd skills ...` and `vaultd runs ...` as a person types them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import files_in

from daemon.cli.main import main


def vaultd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_skills_list_and_show_describe_the_built_in_skills(
    vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    code, out = vaultd(capsys, "skills", "list", "--vault", str(vault_root))
    assert code == 0
    assert re.search(r"^post-social-media\s+Post to Facebook", out, re.M)
    assert "tools: social.post; approval required; built-in" in out

    code, out = vaultd(capsys, "skills", "show", "post-social-media", "--vault", str(vault_root))
    assert code == 0
    shown = json.loads(out[: out.rindex("}") + 1])
    assert shown["parameters"]["required"] == ["text"]


def test_an_invalid_skill_folder_is_listed_as_skipped_and_fails_check(
    vault_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    (tmp_path / "skills" / "half").mkdir(parents=True)
    (tmp_path / "skills" / "half" / "skill.json").write_text('{"name": "half"}')
    config = tmp_path / "vaultd.toml"
    config.write_text(f'[skills]\ndirs = ["{tmp_path / "skills"}"]\n')

    code, out = vaultd(
        capsys, "skills", "list", "--vault", str(vault_root), "--config", str(config)
    )
    assert code == 1
    assert "skipped " in out and "half: skill.json: description: " in out

    code, out = vaultd(capsys, "check", "--vault", str(vault_root), "--config", str(config))
    assert code == 1
    assert "skill " in out and "skill.json: description: " in out


def test_runs_create_show_list_and_cancel(
    vault_root: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
):
    where = ("--vault", str(vault_root), "--state-dir", str(state_dir))
    inputs = json.dumps({"text": "Winter sale", "platforms": ["facebook"]})

    code, out = vaultd(capsys, "runs", "create", "post-social-media", "--input", inputs, *where)
    assert code == 0
    run_id = re.search(r"^run (run-\S+): draft$", out, re.M).group(1)  # type: ignore[union-attr]

    code, out = vaultd(capsys, "runs", "execute", run_id, *where)
    assert code == 0
    assert f"run {run_id}: awaiting_approval" in out
    assert "1.1 social.post [requested]" in out
    assert len(files_in(vault_root, "Needs_Action")) == 1

    code, out = vaultd(capsys, "runs", "list", *where)
    assert re.search(rf"^{run_id}\s+awaiting_approval\s+post-social-media", out, re.M)

    code, out = vaultd(capsys, "runs", "cancel", run_id, "--reason", "wrong week", *where)
    assert code == 0
    assert f"run {run_id}: cancelled" in out
    assert "error wrong week" in out
    # Its request was not taken in yet: vaultd rejects it ("run cancelled") when it is.
    [name] = files_in(vault_root, "Needs_Action")
    assert "  its requests:\n" in out
    assert f"Needs_Action/{name}: not yet taken in; vaultd rejects it (run cancelled)" in out

    code, out = vaultd(capsys, "runs", "cancel", run_id, *where)
    assert code == 1
    assert (
        "is cancelled; only a draft, a queued run or a run waiting for approval can be cancelled"
        in out
    )


def test_runs_create_with_bad_inputs_names_the_field(
    vault_root: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
):
    where = ("--vault", str(vault_root), "--state-dir", str(state_dir))
    code, out = vaultd(
        capsys, "runs", "create", "post-social-media", "--input", '{"text": 5}', *where
    )
    assert code == 1
    assert "inputs for post-social-media: text: " in out


def test_runs_cancel_says_a_request_already_executed_stays_done(
    vault_root: Path, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from daemon.service.app import open_app
    from daemon.service.runner import Runner

    skill = tmp_path / "skills" / "two-posts"
    skill.mkdir(parents=True)
    (skill / "skill.json").write_text(
        json.dumps(
            {
                "name": "two-posts",
                "description": "posts twice",
                "tools": ["social.post"],
                "approval_required": True,
            }
        )
    )
    (skill / "execute.py").write_text(
        "def run(inputs, tools):\n"
        "    tools.call('social.post', platforms=['facebook'], text='One')\n"
        "    tools.call('social.post', platforms=['facebook'], text='Two')\n"
    )
    config = tmp_path / "vaultd.toml"
    config.write_text(f'[skills]\ndirs = ["{tmp_path / "skills"}"]\n')
    where = ("--vault", str(vault_root), "--state-dir", str(state_dir), "--config", str(config))
    code, out = vaultd(capsys, "runs", "create", "two-posts", "--execute", *where)
    assert code == 0, out
    run_id = re.search(r"^run (run-\S+): queued$", out, re.M).group(1)  # type: ignore[union-attr]

    def process() -> None:
        app = open_app(vault_root, config_path=config, state_dir=state_dir)
        try:
            Runner(app.pipeline, app.config).run_once()
        finally:
            app.close()

    code, out = vaultd(capsys, "run", "--once", *where)  # its workers run it, then the files
    assert code == 0, out
    first, second = sorted(files_in(vault_root, "Pending_Approval"))
    (vault_root / "Pending_Approval" / first).rename(vault_root / "Approved" / first)
    process()

    code, out = vaultd(capsys, "runs", "cancel", run_id, *where)

    assert code == 0
    assert f"Done/{first}: already executed, stays done (cancelling cannot undo it)" in out
    assert f"Pending_Approval/{second}: withdrawn to Rejected/{second}" in out
    assert files_in(vault_root, "Rejected") == [second]
