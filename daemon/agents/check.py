"""Which paths the agents' OS user could write or read that it must not.

The agents' user (`[agents] user`) may create files in `Needs_Action/` and `Plans/` and
change what it made there; it may read the rest of the vault. It must not change anything
else in the vault, rename or delete a person's note, read or change vaultd's state
directory or env file, or change the config or the code vaultd runs. This module looks at
the real files (owner, group, mode, POSIX ACLs) and asks daemon/agents/confinement.py what the
user can do, every directory above each path included.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemon.agents.confinement import (
    READ,
    REPLACE,
    WRITE,
    Acl,
    AclError,
    Node,
    Op,
    UserInfo,
    W,
    can,
    mode_of_acl,
    parse_acl,
    permits,
)
from daemon.core.errors import ConfigError
from daemon.core.vault import NEEDS_ACTION, PLANS

AGENT_FOLDERS = (NEEDS_ACTION, PLANS)
_NO_ACL = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}


def user_info(name: str) -> UserInfo:
    """Given an OS user name, return its uid and every group it is in (supplementary too).

    Raise ConfigError if there is no such user.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"no OS user named {name!r} (create it first, e.g. useradd)") from None
    return UserInfo(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def group_name(gid: int) -> str:
    """Return a group's name, or its number if it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@dataclass(frozen=True)
class Problem:
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass(frozen=True)
class Scope:
    """What must be protected from the agents: the vault and what vaultd keeps outside it."""

    vault: Path
    state_dir: Path
    env_file: Path | None = None
    config: Path | None = None
    code: tuple[Path, ...] = ()


class Inspector:
    """Reads paths once each and collects what the user can do that it must not."""

    def __init__(self, user: UserInfo) -> None:
        self.user = user
        self.problems: dict[tuple[str, str], Problem] = {}
        self._nodes: dict[str, Node | None] = {}

    def problem(self, path: str, what: str) -> None:
        self.problems.setdefault((path, what), Problem(path, what))

    def node(self, path: str) -> Node | None:
        """Return the path as lstat and its ACL attributes show it; None (and a problem) if
        it cannot be inspected."""
        if path in self._nodes:
            return self._nodes[path]
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            found = None
        except OSError as error:
            self.problem(path, f"cannot be inspected ({error.strerror})")
            found = None
        else:
            link = stat.S_ISLNK(info.st_mode)
            isdir = stat.S_ISDIR(info.st_mode)
            found = Node(
                path,
                info.st_uid,
                info.st_gid,
                info.st_mode,
                None if link else self._acl(path, "system.posix_acl_access"),
                self._acl(path, "system.posix_acl_default") if isdir else None,
            )
        self._nodes[path] = found
        return found

    def _acl(self, path: str, attribute: str) -> Acl | None:
        getxattr = getattr(os, "getxattr", None)
        if getxattr is None:
            self.problem(
                "(this system)",
                "ACLs cannot be read here (no getxattr); vaultd cannot tell whether a path has one",
            )
            return None
        try:
            data = getxattr(path, attribute, follow_symlinks=False)
        except OSError as error:
            if error.errno in _NO_ACL:
                return None
            self.problem(
                path,
                f"its ACL cannot be read ({error.strerror}), so what "
                f"{self.user.name} may do to it is unknown",
            )
            return None
        try:
            return parse_acl(data)
        except AclError as error:
            self.problem(
                path,
                f"has an ACL vaultd cannot evaluate ({error}), so what "
                f"{self.user.name} may do to it is unknown",
            )
            return None

    def chain(self, path: Path) -> list[Node] | None:
        """Return the nodes from `/` down to an absolute path; None if one is missing."""
        nodes = []
        current = Path(path.anchor)
        for index, part in enumerate(path.parts):
            current = current / part if index else current
            found = self.node(str(current))
            if found is None:
                return None
            nodes.append(found)
        return nodes

    def forbid(self, chain: list[Node], ops: Iterable[Op]) -> None:
        """Record a problem for each of these operations the user can do on the chain's end."""
        target = chain[-1]
        name = self.user.name
        for op in ops:
            if op != REPLACE and target.is_symlink:
                continue
            if not can(self.user, chain, op):
                continue
            if op == READ:
                self.problem(target.path, f"{name} can read it")
            elif op == WRITE and target.is_dir:
                self.problem(target.path, f"{name} can create, rename or delete entries in it")
            elif op == WRITE:
                self.problem(target.path, f"{name} can change it")
            else:
                self.problem(target.path, f"{name} can rename, delete or replace it")
        folder = target.default_acl
        if folder is not None and WRITE in ops:
            created = Node(target.path, -1, target.gid, mode_of_acl(folder), folder)
            if permits(self.user, created, W):
                self.problem(target.path, f"its default ACL lets {name} change files made in it")

    def guard_above(self, path: Path) -> list[Node] | None:
        """Check that no directory above `path` lets the user swap it (or an ancestor) for
        its own; return the chain of `path`."""
        nodes = self.chain(path)
        if nodes is None:
            return None
        for end in range(2, len(nodes) + 1):
            self.forbid(nodes[:end], (REPLACE,))
        return nodes

    def walk(self, chain: list[Node], ops_for: _Rules, depth: int = 0) -> None:
        """Check a path and, for a directory, everything below it (links not followed)."""
        self.forbid(chain, ops_for(chain, depth))
        target = chain[-1]
        if not target.is_dir:
            return
        try:
            names = sorted(entry.name for entry in Path(target.path).iterdir())
        except OSError as error:
            self.problem(target.path, f"cannot be listed ({error.strerror})")
            return
        for name in names:
            found = self.node(str(Path(target.path, name)))
            if found is not None:
                self.walk([*chain, found], ops_for, depth + 1)


class _Rules:
    """Which operations are forbidden on a node at some depth below a walked root."""

    def __init__(self, ops: tuple[Op, ...]) -> None:
        self.ops = ops

    def __call__(self, chain: list[Node], depth: int) -> tuple[Op, ...]:
        return self.ops


class _AgentFolder(_Rules):
    """Needs_Action/ and Plans/: the user may create anything, and change only its own."""

    def __init__(self, user: UserInfo) -> None:
        super().__init__(())
        self.user = user

    def __call__(self, chain: list[Node], depth: int) -> tuple[Op, ...]:
        node = chain[-1]
        if depth == 0:
            return (REPLACE,)
        if node.uid == self.user.uid:
            return ()
        return (REPLACE,) if node.is_dir else (WRITE, REPLACE)


def find_problems(user: UserInfo, scope: Scope, *, daemon_uid: int | None = None) -> list[Problem]:
    """Given the agents' user and what vaultd keeps, return every path the user could write
    or read that it must not (and every path whose ACL cannot be evaluated), sorted."""
    inspector = Inspector(user)
    if user.uid == 0:
        inspector.problem(
            user.name, "is root, which can do anything: agents need a user of their own"
        )
    if daemon_uid is not None and user.uid == daemon_uid and user.uid != 0:
        inspector.problem(user.name, "is the user vaultd runs as: its processes can approve")
    _check_vault(inspector, scope.vault)
    state = inspector.guard_above(scope.state_dir)
    if state is None:
        inspector.problem(
            str(scope.state_dir), "does not exist yet: `vaultd agents setup` creates it private"
        )
    else:
        inspector.walk(state, _Rules((READ, WRITE)))
    for path, ops in ((scope.env_file, (READ, WRITE)), (scope.config, (WRITE,))):
        if path is not None:
            found = inspector.guard_above(path.expanduser().resolve())
            if found is not None:
                inspector.forbid(found, ops)
    for code in scope.code:
        found = inspector.guard_above(code.resolve())
        if found is not None:
            inspector.walk(found, _Rules((WRITE,)))
    return sorted(inspector.problems.values(), key=lambda p: (p.path, p.what))


def _check_vault(inspector: Inspector, vault: Path) -> None:
    root = inspector.guard_above(vault.resolve())
    if root is None:
        return
    inspector.forbid(root, (WRITE,))
    agent_rules = _AgentFolder(inspector.user)
    other_rules = _Rules((WRITE,))
    for name in sorted(entry.name for entry in Path(root[-1].path).iterdir()):
        entry = inspector.node(str(Path(root[-1].path, name)))
        if entry is None:
            continue
        rules = agent_rules if name in AGENT_FOLDERS else other_rules
        inspector.walk([*root, entry], rules)
        if entry.is_symlink and Path(entry.path).is_dir():
            # vaultd follows a folder that is a link: check where it leads, and above it.
            target = inspector.guard_above(Path(entry.path).resolve())
            if target is not None:
                inspector.walk(target, rules)


def agent_cannot_work(user: UserInfo, vault: Path) -> list[str]:
    """Return why the user cannot create files in Needs_Action/ and Plans/ (safe, but then
    the agents cannot hand vaultd work); [] if it can."""
    inspector = Inspector(user)
    notes = []
    for folder in AGENT_FOLDERS:
        chain = inspector.chain(vault.resolve() / folder)
        if chain is None or not can(user, chain, WRITE):
            blocked = next((n.path for n in (chain or [])[:-1] if not permits(user, n, 1)), None)
            why = f" (it cannot pass through {blocked})" if blocked else ""
            notes.append(f"{user.name} cannot create files in {folder}/{why}")
    return notes
