"""Who can approve: what `vaultd check` finds an agents' OS user could do to the vault, the
state directory and the env file; `vaultd run --live` refusing while it can; and
`vaultd agents setup` setting it right. Real files, real modes; the agent is a uid that owns
nothing (no user needs to exist) except where the command line needs a real one."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.agents import check as agents_check
from daemon.agents.check import Scope, find_problems
from daemon.agents.confinement import GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, UserInfo
from daemon.cli.main import main
from daemon.core.config import load_config
from daemon.core.errors import ConfigError

AGENT = UserInfo("agent", 54321, frozenset({54321}))
ROOT = os.geteuid() == 0


def has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


needs_root = pytest.mark.skipif(not ROOT, reason="changing owners needs root")
needs_nobody = pytest.mark.skipif(not has_user("nobody"), reason="no OS user named nobody")


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder others can pass through (tmp_path's parents are private to its owner)."""
    made = Path(tempfile.mkdtemp(prefix="vaultd-agents-", dir="/tmp"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made)


@pytest.fixture
def scope(place: Path) -> Scope:
    vault = place / "vault"
    assert main(["init", str(vault)]) == 0
    state = place / "state"
    state.mkdir()
    (state / "ledger.sqlite3").write_text("")
    env = place / "vaultd.env"
    env.write_text("ODOO_PASSWORD=secret123\n")
    config = place / "config.toml"
    config.write_text("")
    return Scope(vault, state, env, config)


def found(scope: Scope, user: UserInfo = AGENT) -> dict[str, str]:
    return {p.path: p.what for p in find_problems(user, scope)}


def test_a_fresh_vault_lets_others_read_the_state_directory_and_the_env_file(scope: Scope):
    assert found(scope) == {
        str(scope.state_dir): "agent can read it",
        str(scope.state_dir / "ledger.sqlite3"): "agent can read it",
        str(scope.env_file): "agent can read it",
    }


def private(scope: Scope) -> Scope:
    scope.state_dir.chmod(0o700)
    assert scope.env_file is not None
    scope.env_file.chmod(0o600)
    return scope


def test_a_vault_folder_others_may_write_is_reported(scope: Scope):
    (scope.vault / "Approved").chmod(0o757)
    (scope.vault / "Dashboard.md").write_text("")
    (scope.vault / "Dashboard.md").chmod(0o646)
    assert found(private(scope)) == {
        str(scope.vault / "Approved"): "agent can create, rename or delete entries in it",
        str(scope.vault / "Dashboard.md"): "agent can change it",
    }


def test_needs_action_may_be_writable_if_sticky_else_a_persons_note_can_be_renamed(scope: Scope):
    inbox = scope.vault / "Needs_Action"
    notes = sorted(inbox.iterdir())
    inbox.chmod(0o1777)
    assert found(private(scope)) == {}
    inbox.chmod(0o777)
    assert found(scope) == {str(n): "agent can rename, delete or replace it" for n in notes}
    note = notes[0]
    inbox.chmod(0o1777)
    note.chmod(0o646)
    assert found(scope) == {str(note): "agent can change it"}


def test_a_folder_above_the_vault_others_may_write_lets_them_swap_the_vault(
    scope: Scope, place: Path
):
    place.chmod(0o777)
    problems = found(private(scope))
    assert problems[str(scope.vault)] == "agent can rename, delete or replace it"
    assert problems[str(scope.state_dir)] == "agent can rename, delete or replace it"
    place.chmod(0o1777)  # sticky, as /tmp: nobody renames what is not theirs
    assert found(scope) == {}


def test_group_bits_count_through_the_users_supplementary_groups(scope: Scope):
    member = UserInfo("member", 54321, frozenset({54321, os.getegid()}))
    (scope.vault / "Approved").chmod(0o775)
    assert found(private(scope), member) == {
        str(scope.vault / "Approved"): "member can create, rename or delete entries in it"
    }
    assert found(scope) == {}  # not a member: the other bits apply


def test_the_config_and_the_code_vaultd_runs_must_not_be_writable(scope: Scope, place: Path):
    skills = place / "skills"
    skills.mkdir()
    (skills / "execute.py").write_text("")
    (skills / "execute.py").chmod(0o646)
    assert scope.config is not None
    scope.config.chmod(0o646)
    with_code = Scope(scope.vault, scope.state_dir, scope.env_file, scope.config, (skills,))
    assert found(private(with_code)) == {
        str(scope.config): "agent can change it",
        str(skills / "execute.py"): "agent can change it",
    }


def test_a_missing_state_directory_is_a_problem_it_would_be_made_readable(scope: Scope):
    shutil.rmtree(scope.state_dir)
    assert "does not exist yet" in found(scope)[str(scope.state_dir)]


def test_the_agent_must_be_neither_root_nor_the_user_vaultd_runs_as(scope: Scope):
    root = UserInfo("root", 0, frozenset({0}))
    assert "is root" in found(private(scope), root)["root"]
    problems = {p.path: p.what for p in find_problems(AGENT, scope, daemon_uid=AGENT.uid)}
    assert "is the user vaultd runs as" in problems["agent"]


def acl_bytes(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_an_acl_that_grants_the_agent_write_is_reported(scope: Scope):
    approved = scope.vault / "Approved"
    none = 0xFFFFFFFF
    grant = acl_bytes(
        (USER_OBJ, 7, none), (USER, 7, AGENT.uid), (GROUP_OBJ, 5, none), (MASK, 7, none),
        (OTHER, 5, none),
    )  # fmt: skip
    try:
        os.setxattr(approved, "system.posix_acl_access", grant)
        os.setxattr(approved, "system.posix_acl_default", grant)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("this file system has no POSIX ACLs")
        raise
    problems = find_problems(AGENT, private(scope))
    assert [(p.path, p.what) for p in problems] == [
        (str(approved), "agent can create, rename or delete entries in it"),
        (str(approved), "its default ACL lets agent change files made in it"),
    ]


def test_an_acl_that_cannot_be_read_or_evaluated_is_a_problem_not_a_guess(
    scope: Scope, monkeypatch: pytest.MonkeyPatch
):
    done = scope.vault / "Done"
    rejected = scope.vault / "Rejected"
    real = os.getxattr

    def getxattr(path: str, attribute: str, *, follow_symlinks: bool = True) -> bytes:
        if path == str(done) and attribute.endswith("access"):
            return b"\x07\x00\x00\x00" + bytes(8)
        if path == str(rejected) and attribute.endswith("access"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, attribute, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(agents_check.os, "getxattr", getxattr)
    problems = found(private(scope))
    assert "has an ACL vaultd cannot evaluate (ACL attribute version 7" in problems[str(done)]
    assert "its ACL cannot be read (Permission denied)" in problems[str(rejected)]


@needs_root
def test_the_agents_own_files_are_theirs_in_needs_action_but_not_elsewhere(scope: Scope):
    inbox = scope.vault / "Needs_Action"
    inbox.chmod(0o1777)
    mine = inbox / "mine.md"
    mine.write_text("")
    os.chown(mine, AGENT.uid, AGENT.uid)
    left = scope.vault / "Rejected" / "empty.md"
    left.write_text("")
    os.chown(left, AGENT.uid, AGENT.uid)
    assert found(private(scope)) == {str(left): "agent can change it"}


# -- the command line -----------------------------------------------------------------------


def args_of(scope: Scope, *rest: str) -> list[str]:
    return ["--vault", str(scope.vault), "--state-dir", str(scope.state_dir), *rest]


def test_check_without_an_agents_user_says_plainly_that_any_process_of_the_user_can_approve(
    scope: Scope, capsys: pytest.CaptureFixture[str]
):
    assert main(["check", *args_of(scope)]) == 0
    out = capsys.readouterr().out
    assert "agents: no [agents] user in the config, so any process running as " in out
    assert "can approve: move a note into Approved/ or run `vaultd approve`" in out


@needs_nobody
def test_check_lists_what_the_agents_user_could_read_and_exits_1(
    scope: Scope, capsys: pytest.CaptureFixture[str]
):
    assert scope.config is not None
    scope.config.write_text('[agents]\nuser = "nobody"\n')
    flags = args_of(scope, "--config", str(scope.config), "--env-file", str(scope.env_file))
    assert main(["check", *flags]) == 1
    captured = capsys.readouterr()
    assert f"agents: {scope.state_dir}: nobody can read it" in captured.out
    assert f"agents: {scope.env_file}: nobody can read it" in captured.out
    assert "problem(s) in the agents' confinement" in captured.err
    private(scope)
    assert main(["check", *flags]) == 0
    assert "agents: nobody can write only Needs_Action/ and Plans/" in capsys.readouterr().out


def test_check_reports_an_agents_user_that_does_not_exist(
    scope: Scope, capsys: pytest.CaptureFixture[str]
):
    assert scope.config is not None
    scope.config.write_text('[agents]\nuser = "no-such-user-vaultd"\n')
    assert main(["check", *args_of(scope, "--config", str(scope.config))]) == 1
    assert "agents: [agents] user: no OS user named 'no-such-user-vaultd'" in (
        capsys.readouterr().out
    )


@needs_nobody
def test_run_live_refuses_to_start_while_the_agents_user_could_get_through(
    scope: Scope, capsys: pytest.CaptureFixture[str]
):
    assert scope.config is not None
    scope.config.write_text('[agents]\nuser = "nobody"\n')
    flags = args_of(scope, "--config", str(scope.config), "--env-file", str(scope.env_file))
    assert main(["run", "--once", "--live", *flags]) == 1
    err = capsys.readouterr().err
    assert "not starting live: [agents] user nobody could get past the approval" in err
    assert f"  {scope.env_file}: nobody can read it" in err
    assert list((scope.vault / "Pending_Approval").iterdir()) == []  # nothing was processed


def test_the_agents_table_takes_only_a_user_name(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text('[agents]\nuser = "claude"\n')
    assert load_config(config).agents.user == "claude"
    config.write_text('[agents]\nuser = "claude"\ngroup = "x"\n')
    with pytest.raises(ConfigError, match=r"agents\.group"):
        load_config(config)
    config.write_text('[agents]\nuser = "a b"\n')
    with pytest.raises(ConfigError, match=r"agents\.user"):
        load_config(config)


def test_setup_refuses_a_user_that_does_not_exist(scope: Scope, capsys: pytest.CaptureFixture[str]):
    assert main(["agents", "setup", *args_of(scope, "--user", "no-such-user-vaultd")]) == 1
    assert "no OS user named 'no-such-user-vaultd'" in capsys.readouterr().err


@needs_nobody
def test_setup_refuses_without_the_privileges_to_make_the_changes(
    scope: Scope, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    owner = scope.vault.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)
    before = stat.S_IMODE((scope.vault / "Needs_Action").stat().st_mode)
    assert main(["agents", "setup", *args_of(scope, "--user", "nobody")]) == 1
    assert "must run as root or as the vault's owner" in capsys.readouterr().err
    assert stat.S_IMODE((scope.vault / "Needs_Action").stat().st_mode) == before


def test_setup_refuses_root_as_the_agents_user(scope: Scope, capsys: pytest.CaptureFixture[str]):
    assert main(["agents", "setup", *args_of(scope, "--user", "root")]) == 1
    assert "root, which no mode bit confines" in capsys.readouterr().err


@needs_root
@needs_nobody
def test_setup_makes_the_check_pass_and_says_what_it_changed(
    scope: Scope, capsys: pytest.CaptureFixture[str]
):
    (scope.vault / "Approved").chmod(0o777)
    flags = args_of(scope, "--env-file", str(scope.env_file), "--config", str(scope.config))
    assert main(["agents", "setup", *flags, "--user", "nobody"]) == 0
    out = capsys.readouterr().out
    nogroup = pwd.getpwnam("nobody").pw_gid
    inbox = (scope.vault / "Needs_Action").stat()
    assert (stat.S_IMODE(inbox.st_mode), inbox.st_gid) == (0o1775, nogroup)
    assert f"changed {scope.vault / 'Approved'}: mode 0777 → 0775" in out
    assert f"changed {scope.state_dir}: mode 0755 → 0700" in out
    assert f"changed {scope.env_file}: mode 0644 → 0600" in out
    assert "Add to" in out and '[agents]\nuser = "nobody"' in out
    nobody = agents_check.user_info("nobody")
    assert find_problems(nobody, scope, daemon_uid=os.geteuid()) == []
    assert main(["agents", "setup", *flags, "--user", "nobody"]) == 0
    assert "nothing to change" in capsys.readouterr().out


def test_agents_without_a_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    assert main(["agents"]) == 2
    assert "setup" in capsys.readouterr().out
