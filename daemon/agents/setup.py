"""`vaultd agents setup`: owners, groups and modes that confine the agents' OS user.

After it, the agents' user can create files in `Needs_Action/` and `Plans/` (both owned
by the person, group the agents' primary group, mode 1770 plus what others had: sticky, so
it cannot rename or delete a person's note there), read the rest of the vault, and write
nothing else; the state directory (0700) and the env file (0600) belong to the person
alone. The person is the vault's owner (or the user running this, who must own the vault
unless root) and keeps full access. Nothing outside the vault, the state directory, the
env file and the config file is changed: a directory above them that lets the agents swap
one is reported, not fixed.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daemon.agents.check import (
    AGENT_FOLDERS,
    Problem,
    Scope,
    agent_cannot_work,
    find_problems,
    group_name,
    user_info,
)
from daemon.agents.confinement import UserInfo
from daemon.core.errors import VaultdError

_ACL_ATTRIBUTES = ("system.posix_acl_access", "system.posix_acl_default")


@dataclass
class Outcome:
    """What setup changed, what still lets the agents through, and what keeps them idle."""

    changes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class People:
    agent: UserInfo
    agent_gid: int
    person: int
    person_gid: int
    root: bool


def people(vault: Path, name: str) -> People:
    """Given a vault and the agents' user name, return who is who.

    Raise ConfigError if there is no such user, or VaultdError if it is root or the person,
    or if this process may not make the changes (not root, and not the vault's owner in the
    agents' primary group).
    """
    agent = user_info(name)
    agent_gid = pwd.getpwnam(name).pw_gid
    if agent.uid == 0:
        raise VaultdError(
            f"{name} is root, which no mode bit confines: agents need a user of their own"
        )
    euid = os.geteuid()
    owner = vault.stat().st_uid
    if euid not in (0, owner):
        raise VaultdError(
            f"vaultd agents setup must run as root or as the vault's owner (uid {owner}); "
            f"this is uid {euid}, which may not change {vault}"
        )
    person = owner if euid == 0 else euid
    if person == agent.uid:
        raise VaultdError(
            f"{vault} belongs to {name}, the agents' user: it would keep full access. Give "
            "the vault to the person first (chown -R PERSON VAULT), as root"
        )
    if euid != 0 and agent_gid not in {os.getegid(), *os.getgroups()}:
        raise VaultdError(
            f"to give group {group_name(agent_gid)} (the primary group of {name}) write access "
            "to Needs_Action/ and Plans/, run as root or join that group first"
        )
    try:
        person_gid = pwd.getpwuid(person).pw_gid
    except KeyError:
        person_gid = vault.stat().st_gid
    return People(agent, agent_gid, person, person_gid, euid == 0)


def setup(who: People, scope: Scope) -> Outcome:
    """Given who is who and what to protect, change owners, groups and modes; return what
    changed and every problem the check still finds (an ACL that grants the agents too much
    is removed first)."""
    done = Outcome()
    vault = scope.vault.resolve()
    for folder in AGENT_FOLDERS:
        (vault / folder).mkdir(exist_ok=True)
    for path, kind in _vault_paths(vault, who.agent.uid):
        if kind == "folder":
            _agent_folder(path, who, done)
        elif kind == "other":
            _readable_only(path, who, done)
    _private_tree(scope.state_dir, who, done, create=True)
    if scope.env_file is not None and scope.env_file.exists():
        _private_tree(scope.env_file.resolve(), who, done, create=False)
    if scope.config is not None and scope.config.exists():
        _readable_only(scope.config.resolve(), who, done)
    done.problems = find_problems(who.agent, scope, daemon_uid=who.person)
    stripped = False
    for problem in done.problems:
        if _remove_acls(problem.path, done):
            stripped = True
    if stripped:
        done.problems = find_problems(who.agent, scope, daemon_uid=who.person)
    done.notes = agent_cannot_work(who.agent, vault)
    return done


def _vault_paths(vault: Path, agent_uid: int) -> Iterator[tuple[Path, str]]:
    """Yield (path, kind) for the vault and everything in it, links not followed: kind is
    "folder" for Needs_Action/ and Plans/, "own" for the agents' own entries in them (left
    alone), "other" for the rest."""
    yield vault, "other"
    for top in sorted(vault.iterdir()):
        zone = top.name in AGENT_FOLDERS
        yield top, "folder" if zone else "other"
        if top.is_symlink() or not top.is_dir():
            continue
        for base, dirs, files in os.walk(top):
            dirs.sort()
            for name in [*sorted(files), *dirs]:
                path = Path(base, name)
                owned = zone and path.lstat().st_uid == agent_uid
                yield path, "own" if owned else "other"
            if zone:
                # Whatever the agents made, with all it holds, stays theirs.
                dirs[:] = [d for d in dirs if Path(base, d).lstat().st_uid != agent_uid]


def _agent_folder(path: Path, who: People, done: Outcome) -> None:
    info = path.lstat()
    others = stat.S_IMODE(info.st_mode) & 0o005
    _apply(path, who.person, who.agent_gid, 0o1770 | others, done)


def _readable_only(path: Path, who: People, done: Outcome) -> None:
    """The person's, readable by the agents, writable by neither the agents' groups nor others."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return
    folder = stat.S_ISDIR(info.st_mode)
    mode = stat.S_IMODE(info.st_mode) | (0o700 if folder else 0o600)
    mode &= ~0o002
    shared = info.st_gid in who.agent.gids
    if shared:
        mode &= ~0o020
    read = 0o5 if folder else 0o4
    mode |= read << 3 if shared else read
    owner = who.person if info.st_uid == who.agent.uid else info.st_uid
    _apply(path, owner, info.st_gid, mode, done)


def _private_tree(root: Path, who: People, done: Outcome, *, create: bool) -> None:
    """Make a path (and all below it) the person's alone: owner only, no group or others."""
    if create and not root.exists():
        missing = [p for p in (root, *root.parents) if not p.exists()]
        for path in reversed(missing):
            path.mkdir(mode=0o700)
            os.chown(path, who.person, who.person_gid)
            done.changes.append(
                f"{path}: created, owner {_owner(who.person, who.person_gid)}, mode 0700"
            )
        return
    paths = [root] if not root.is_dir() else [root, *_below(root)]
    for path in paths:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        extra = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        mode = (stat.S_IMODE(info.st_mode) | extra) & ~0o077
        _apply(
            path,
            who.person,
            info.st_gid if info.st_uid == who.person else who.person_gid,
            mode,
            done,
        )


def _below(root: Path) -> Iterator[Path]:
    for base, dirs, files in os.walk(root):
        for name in [*sorted(dirs), *sorted(files)]:
            yield Path(base, name)


def _apply(path: Path, uid: int, gid: int, mode: int, done: Outcome) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return  # a link's own owner and bits mean nothing, and chmod would follow it
    what = []
    if (info.st_uid, info.st_gid) != (uid, gid):
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
        except PermissionError:
            done.changes.append(
                f"{path}: owner {_owner(info.st_uid, info.st_gid)} NOT changed (needs root)"
            )
        else:
            what.append(f"owner {_owner(info.st_uid, info.st_gid)} → {_owner(uid, gid)}")
    old = stat.S_IMODE(path.lstat().st_mode)
    if old != mode:
        path.chmod(mode)
        what.append(f"mode {old:04o} → {mode:04o}")
    if what:
        done.changes.append(f"{path}: {', '.join(what)}")


def _remove_acls(path: str, done: Outcome) -> bool:
    removed = False
    for attribute in _ACL_ATTRIBUTES:
        try:
            os.removexattr(path, attribute, follow_symlinks=False)
        except OSError:
            continue
        removed = True
        done.changes.append(f"{path}: {attribute.rsplit('_', 1)[1]} ACL removed")
    return removed


def _owner(uid: int, gid: int) -> str:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return f"{name}:{group_name(gid)}"
