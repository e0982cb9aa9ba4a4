"""What an OS user can do to a path, worked out from owners, groups, mode bits and ACLs.

Pure: nothing here touches the file system. A path is described by the chain of its
components from `/` down (`Node`s: owner, group, mode and any POSIX ACL, as `lstat` and the
`system.posix_acl_access` attribute give them), and `can` answers for one user and one
operation the way the kernel decides it:

- every directory above the path needs search (x) permission;
- reading needs r on the path, writing needs w (on a directory: w and x, which lets the
  user create, rename and delete entries in it);
- replacing a path (renaming it away, deleting it, or renaming another file over it) needs
  w and x on its directory, and, when that directory is sticky, that the user owns the path
  or the directory.

A POSIX ACL is evaluated as access(2) does: the owner entry, then a named user entry
(limited by the mask), then every matching group entry (limited by the mask), then other.
Root may do anything, as with CAP_DAC_OVERRIDE and CAP_FOWNER.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["read", "write", "replace"]
READ: Op = "read"
WRITE: Op = "write"
REPLACE: Op = "replace"

R, W, X = 4, 2, 1

# Tags of the Linux ACL extended attribute (include/uapi/linux/posix_acl.h).
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")


class AclError(ValueError):
    """An ACL attribute that cannot be evaluated (unknown version, tag or layout)."""


@dataclass(frozen=True)
class UserInfo:
    """An OS user as the kernel sees it: its uid and every group it is in."""

    name: str
    uid: int
    gids: frozenset[int]


@dataclass(frozen=True)
class AclEntry:
    tag: int
    perm: int
    qualifier: int | None = None


@dataclass(frozen=True)
class Acl:
    entries: tuple[AclEntry, ...]

    def of(self, tag: int) -> list[AclEntry]:
        return [entry for entry in self.entries if entry.tag == tag]

    @property
    def extended(self) -> bool:
        """Whether the ACL says more than the mode bits (named entries or a mask)."""
        return any(entry.tag in (USER, GROUP, MASK) for entry in self.entries)


@dataclass(frozen=True)
class Node:
    """One path as `lstat` shows it, with its access ACL if it has an extended one."""

    path: str
    uid: int
    gid: int
    mode: int
    acl: Acl | None = None
    default_acl: Acl | None = field(default=None, compare=False)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def sticky(self) -> bool:
        return bool(self.mode & stat.S_ISVTX)


def parse_acl(data: bytes) -> Acl:
    """Given the bytes of a `system.posix_acl_access` (or `_default`) attribute, return the ACL.

    Raise AclError if the version, a tag or the length is not the Linux layout.
    """
    if len(data) < _HEADER.size or (len(data) - _HEADER.size) % _ENTRY.size:
        raise AclError(f"an ACL attribute of {len(data)} bytes is not the Linux layout")
    (version,) = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise AclError(f"ACL attribute version {version}, not {_VERSION}")
    entries = []
    for offset in range(_HEADER.size, len(data), _ENTRY.size):
        tag, perm, qualifier = _ENTRY.unpack_from(data, offset)
        if tag not in (USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER):
            raise AclError(f"unknown ACL entry tag {tag:#x}")
        named = tag in (USER, GROUP)
        entries.append(AclEntry(tag, perm & 7, qualifier if named else None))
    return Acl(tuple(entries))


def mode_of_acl(acl: Acl) -> int:
    """Given a default ACL, return the permission bits a new file under it starts from."""

    def perm(tag: int) -> int:
        found = acl.of(tag)
        return found[0].perm if found else 0

    group = perm(MASK) if acl.of(MASK) else perm(GROUP_OBJ)
    return stat.S_IFREG | perm(USER_OBJ) << 6 | group << 3 | perm(OTHER)


def permits(user: UserInfo, node: Node, want: int) -> bool:
    """Given a user, a path and the bits wanted (R, W, X or a sum), return whether the
    path's mode bits and ACL grant them all."""
    if user.uid == 0:
        # Root reads and writes anything; it executes a file only if some x bit is set.
        return not (want & X) or node.is_dir or bool(node.mode & 0o111)
    mode = node.mode
    if user.uid == node.uid:
        return _has((mode >> 6) & 7, want)
    acl = node.acl if node.acl is not None and node.acl.extended else None
    if acl is None:
        if node.gid in user.gids:
            return _has((mode >> 3) & 7, want)
        return _has(mode & 7, want)
    # The mode's group bits are the ACL's mask once the ACL has one.
    mask = (mode >> 3) & 7 if acl.of(MASK) else 7
    named = [entry for entry in acl.of(USER) if entry.qualifier == user.uid]
    if named:
        return _has(named[0].perm & mask, want)
    groups = [
        entry.perm
        for entry in acl.entries
        if (entry.tag == GROUP_OBJ and node.gid in user.gids)
        or (entry.tag == GROUP and entry.qualifier in user.gids)
    ]
    if groups:
        return any(_has(perm & mask, want) for perm in groups)
    return _has(mode & 7, want)


def can(user: UserInfo, chain: Sequence[Node], op: Op) -> bool:
    """Given a user, the chain of a path from `/` down to it, and an operation, return
    whether the user can do it.

    `read` and `write` act on the last node (`write` on a directory: create, rename and
    delete its entries); `replace` renames away, deletes or overwrites the last node
    through its directory. Raise ValueError on an empty chain.
    """
    if not chain:
        raise ValueError("a chain names at least the root directory")
    *above, target = chain
    if not all(permits(user, node, X) for node in above):
        return False
    if op == READ:
        return permits(user, target, R)
    if op == WRITE:
        if target.is_symlink:
            return False  # a link's own bits mean nothing; only its directory matters
        return permits(user, target, W | X if target.is_dir else W)
    if not above:
        return False  # `/` itself cannot be renamed or deleted
    folder = above[-1]
    if not permits(user, folder, W | X):
        return False
    return not folder.sticky or user.uid in (0, folder.uid, target.uid)


def _has(granted: int, want: int) -> bool:
    return granted & want == want
