"""`vaultd mcp config --output FILE`: the whole `.mcp.json` or none of it, never in the vault.

Through the real CLI entry point (`daemon.cli.main.main`) on real files under tmp_path; the
shell-redirection case runs the CLI as a subprocess in tests/e2e/test_e2e_mcp.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from daemon.agents.mcp.config_file import write_output
from daemon.cli.main import main
from daemon.cli.mcp import SERVER_NAMES
from daemon.core.errors import ConfigError


def config(vault: Path, *args: str | Path) -> int:
    return main(["mcp", "config", "--vault", str(vault), *map(str, args)])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The folder Claude Code starts in, beside (not in) the vault."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "vaultd.env"
    path.write_text("ODOO_PASSWORD=odoo-canary-1618\n", encoding="utf-8")
    return path


def test_a_missing_env_file_with_output_leaves_no_file_and_says_how_to_make_it(
    vault_root: Path, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    missing = tmp_path / "nowhere" / "vaultd.env"
    output = project / ".mcp.json"

    code = config(vault_root, "--env-file", missing, "--output", output)

    captured = capsys.readouterr()
    assert code == 1
    assert names(project) == []  # no .mcp.json, empty or not, and no temporary file
    assert captured.out == ""
    assert f"{missing}: env file not found" in captured.err  # the error names the file
    assert "outside the vault" in captured.err
    assert "ODOO_URL=" in captured.err  # an example line
    assert "FACEBOOK_PAGE_TOKEN" in captured.err and "TWITTER_API_KEY" in captured.err
    assert f"Nothing was written to {output}" in captured.err


def test_a_missing_env_file_without_output_says_to_use_output_not_a_redirection(
    vault_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    missing = tmp_path / "missing.env"

    code = config(vault_root, "--env-file", missing)

    err = capsys.readouterr().err
    assert code == 1
    assert f"{missing}: env file not found" in err
    assert "Use --output .mcp.json instead of `> .mcp.json`" in err


def test_output_writes_the_servers_as_valid_json_and_stdout_stays_empty(
    vault_root: Path, project: Path, env_file: Path, capsys: pytest.CaptureFixture[str]
):
    output = project / ".mcp.json"

    code = config(vault_root, "--env-file", env_file, "--output", output)

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == ""
    assert f"wrote {output}" in captured.err
    assert names(project) == [".mcp.json"]  # the temporary file was renamed, not left
    text = output.read_text(encoding="utf-8")
    servers = json.loads(text)["mcpServers"]
    assert set(servers) == set(SERVER_NAMES.values())
    for server in servers.values():
        args = server["args"]
        assert args[args.index("--env-file") + 1] == str(env_file)
    assert "odoo-canary-1618" not in text
    assert output.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600


def test_without_output_the_block_still_goes_to_stdout(
    vault_root: Path, env_file: Path, capsys: pytest.CaptureFixture[str]
):
    code = config(vault_root, "--env-file", env_file)

    assert code == 0
    assert set(json.loads(capsys.readouterr().out)["mcpServers"]) == set(SERVER_NAMES.values())


def test_an_existing_file_is_kept_unless_force_replaces_it(
    vault_root: Path, project: Path, capsys: pytest.CaptureFixture[str]
):
    output = project / ".mcp.json"
    output.write_text('{"mcpServers": {"mine": {}}}\n', encoding="utf-8")

    kept = config(vault_root, "--output", output)
    assert kept == 1
    assert "already exists; left as it was" in capsys.readouterr().err
    assert json.loads(output.read_text(encoding="utf-8")) == {"mcpServers": {"mine": {}}}

    replaced = config(vault_root, "--output", output, "--force")
    assert replaced == 0
    assert set(json.loads(output.read_text(encoding="utf-8"))["mcpServers"]) == set(
        SERVER_NAMES.values()
    )
    assert names(project) == [".mcp.json"]


def test_output_is_refused_in_the_vault_through_a_symlink_and_over_the_env_file(
    vault_root: Path, project: Path, env_file: Path, capsys: pytest.CaptureFixture[str]
):
    target = project / "elsewhere.json"
    target.write_text("keep me\n", encoding="utf-8")
    link = project / ".mcp.json"
    link.symlink_to(target)
    into_vault = project / "vault-link.json"
    into_vault.symlink_to(vault_root / ".mcp.json")  # dangling, pointing into the vault
    before = sorted(p.name for p in vault_root.rglob("*"))

    in_vault = config(vault_root, "--output", vault_root / ".mcp.json", "--force")
    in_vault_err = capsys.readouterr().err
    through_link = config(vault_root, "--output", link, "--force")
    link_err = capsys.readouterr().err
    dangling = config(vault_root, "--output", into_vault, "--force")
    dangling_err = capsys.readouterr().err
    over_env = config(vault_root, "--env-file", env_file, "--output", env_file, "--force")
    over_env_err = capsys.readouterr().err
    serving = main(["mcp", "--vault", str(vault_root), "--output", str(project / "x.json")])
    serving_err = capsys.readouterr().err

    assert (in_vault, through_link, dangling, over_env, serving) == (1, 1, 1, 1, 1)
    assert "inside the vault" in in_vault_err
    assert "is a symbolic link" in link_err
    assert "inside the vault" in dangling_err or "is a symbolic link" in dangling_err
    assert "is the file given to --env-file" in over_env_err
    assert "--output and --force go with `vaultd mcp config`" in serving_err
    assert sorted(p.name for p in vault_root.rglob("*")) == before
    assert target.read_text(encoding="utf-8") == "keep me\n"
    assert link.is_symlink() and into_vault.is_symlink()
    assert env_file.read_text(encoding="utf-8") == "ODOO_PASSWORD=odoo-canary-1618\n"
    assert names(project) == [".mcp.json", "elsewhere.json", "vault-link.json"]


def test_output_in_a_missing_folder_or_naming_a_folder_is_refused(
    vault_root: Path, project: Path, capsys: pytest.CaptureFixture[str]
):
    no_folder = config(vault_root, "--output", project / "nope" / ".mcp.json")
    no_folder_err = capsys.readouterr().err
    a_folder = config(vault_root, "--output", project)
    a_folder_err = capsys.readouterr().err

    assert (no_folder, a_folder) == (1, 1)
    assert "no such folder" in no_folder_err
    assert "is a folder" in a_folder_err
    assert names(project) == []


def test_a_file_appearing_after_the_checks_is_still_not_replaced_without_force(project: Path):
    target = project / ".mcp.json"
    target.write_text("theirs\n", encoding="utf-8")  # made between check and write

    with pytest.raises(ConfigError, match="already exists"):
        write_output(target, {"mcpServers": {}}, force=False)

    assert target.read_text(encoding="utf-8") == "theirs\n"
    assert names(project) == [".mcp.json"]  # no temporary file left


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
