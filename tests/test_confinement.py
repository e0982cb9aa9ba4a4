"""The permission calculus (daemon/agents/confinement.py): owners, groups, modes, sticky folders,
every directory above a path, and POSIX ACLs, as the kernel decides them."""

from __future__ import annotations

import stat
import struct

import pytest

from daemon.agents.confinement import (
    GROUP,
    GROUP_OBJ,
    MASK,
    OTHER,
    READ,
    REPLACE,
    USER,
    USER_OBJ,
    WRITE,
    Acl,
    AclEntry,
    AclError,
    Node,
    UserInfo,
    can,
    mode_of_acl,
    parse_acl,
    permits,
)

PERSON = 1000
AGENT = UserInfo("agent", 2000, frozenset({2000, 3000}))
ROOT = UserInfo("root", 0, frozenset({0}))


def folder(path: str, mode: int, uid: int = PERSON, gid: int = PERSON, acl: Acl | None = None):
    return Node(path, uid, gid, stat.S_IFDIR | mode, acl)


def file(path: str, mode: int, uid: int = PERSON, gid: int = PERSON, acl: Acl | None = None):
    return Node(path, uid, gid, stat.S_IFREG | mode, acl)


ROOT_DIR = folder("/", 0o755, uid=0, gid=0)
VAULT = folder("/v", 0o755)


def chain(*nodes: Node) -> list[Node]:
    return [ROOT_DIR, VAULT, *nodes]


def test_the_owner_bits_apply_to_the_owner_only_even_when_others_may_do_more():
    note = file("/v/n.md", 0o077, uid=AGENT.uid)
    assert not can(AGENT, chain(note), READ)
    assert can(UserInfo("x", 4000, frozenset()), chain(note), READ)


def test_the_group_bits_apply_to_members_even_when_others_may_do_more():
    note = file("/v/n.md", 0o606, gid=3000)
    assert not can(AGENT, chain(note), READ)  # 3000 is a supplementary group of the agent
    assert not can(AGENT, chain(note), WRITE)
    assert can(AGENT, chain(file("/v/n.md", 0o646, gid=4000)), WRITE)


def test_reading_needs_search_permission_on_every_directory_above():
    private = folder("/v/State", 0o700)
    ledger = file("/v/State/ledger", 0o644)
    assert not can(AGENT, chain(private, ledger), READ)
    assert can(AGENT, chain(folder("/v/State", 0o711), ledger), READ)


def test_writing_a_folder_needs_write_and_search_on_it():
    assert not can(AGENT, chain(folder("/v/Approved", 0o752)), WRITE)  # -w- for others
    assert can(AGENT, chain(folder("/v/Approved", 0o757)), WRITE)


def test_replacing_an_entry_needs_write_on_its_folder():
    note = file("/v/Pending/n.md", 0o666, uid=AGENT.uid)
    assert not can(AGENT, chain(folder("/v/Pending", 0o755), note), REPLACE)
    assert can(AGENT, chain(folder("/v/Pending", 0o757), note), REPLACE)


def test_a_sticky_folder_lets_only_the_entrys_or_the_folders_owner_replace_it():
    inbox = folder("/v/Needs_Action", 0o1770, gid=2000)
    theirs = file("/v/Needs_Action/task.md", 0o644)
    mine = file("/v/Needs_Action/mine.md", 0o644, uid=AGENT.uid)
    assert can(AGENT, chain(inbox), WRITE)  # it may create files
    assert not can(AGENT, chain(inbox, theirs), REPLACE)
    assert can(AGENT, chain(inbox, mine), REPLACE)
    assert can(AGENT, chain(folder("/v/Needs_Action", 0o0770, gid=2000), theirs), REPLACE)


def test_root_may_do_anything_and_nobody_replaces_the_root_directory():
    assert can(ROOT, chain(folder("/v/S", 0o000), file("/v/S/x", 0o000)), WRITE)
    assert can(ROOT, chain(folder("/v/P", 0o1700, uid=5), file("/v/P/x", 0o000, uid=6)), REPLACE)
    assert not can(ROOT, [ROOT_DIR], REPLACE)
    assert not permits(ROOT, file("/bin/x", 0o644), 1)


def test_a_symbolic_links_own_bits_grant_no_write():
    link = Node("/v/Approved/l", PERSON, PERSON, stat.S_IFLNK | 0o777)
    assert not can(AGENT, chain(folder("/v/Approved", 0o755), link), WRITE)


def test_an_empty_chain_is_an_error():
    with pytest.raises(ValueError, match="root"):
        can(AGENT, [], READ)


# -- ACLs -----------------------------------------------------------------------------------


def acl(*entries: tuple[int, int, int | None]) -> Acl:
    return Acl(tuple(AclEntry(tag, perm, qualifier) for tag, perm, qualifier in entries))


def test_a_named_user_entry_grants_within_the_mask():
    grant = acl((USER_OBJ, 7, None), (USER, 7, AGENT.uid), (GROUP_OBJ, 5, None), (MASK, 7, None))
    # With an ACL, the mode's group bits are the mask: rwx here.
    assert can(AGENT, chain(folder("/v/Approved", 0o775, acl=grant)), WRITE)
    # The same entry under a mask of r-x grants no write.
    assert not can(AGENT, chain(folder("/v/Approved", 0o755, acl=grant)), WRITE)


def test_a_named_user_entry_denies_even_where_others_may():
    deny = acl((USER_OBJ, 7, None), (USER, 0, AGENT.uid), (GROUP_OBJ, 5, None), (MASK, 5, None))
    assert not can(AGENT, chain(file("/v/n.md", 0o656, acl=deny)), READ)


def test_any_matching_group_entry_grants_and_no_match_falls_to_other():
    groups = acl(
        (USER_OBJ, 6, None),
        (GROUP_OBJ, 4, None),
        (GROUP, 6, 3000),
        (MASK, 6, None),
        (OTHER, 0, None),
    )
    assert can(AGENT, chain(file("/v/n.md", 0o660, acl=groups)), WRITE)  # via group 3000
    stranger = UserInfo("s", 4000, frozenset({4000}))
    assert not can(stranger, chain(file("/v/n.md", 0o660, acl=groups)), READ)
    # A member of a matching group never falls through to other, even when other allows.
    only_read = acl((USER_OBJ, 6, None), (GROUP, 4, 3000), (MASK, 4, None), (OTHER, 6, None))
    assert not can(AGENT, chain(file("/v/n.md", 0o646, acl=only_read)), WRITE)


def test_a_minimal_acl_is_just_the_mode_bits():
    minimal = acl((USER_OBJ, 6, None), (GROUP_OBJ, 4, None), (OTHER, 4, None))
    assert not can(AGENT, chain(file("/v/n.md", 0o644, acl=minimal)), WRITE)
    assert can(AGENT, chain(file("/v/n.md", 0o646, acl=minimal)), WRITE)


def raw(version: int, *entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", version) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_the_linux_acl_attribute_is_parsed_with_its_named_entries():
    data = raw(2, (USER_OBJ, 7, 0xFFFFFFFF), (USER, 6, 2000), (GROUP_OBJ, 5, 0xFFFFFFFF),
               (MASK, 7, 0xFFFFFFFF), (OTHER, 0, 0xFFFFFFFF))  # fmt: skip
    parsed = parse_acl(data)
    assert parsed.of(USER) == [AclEntry(USER, 6, 2000)]
    assert parsed.of(USER_OBJ) == [AclEntry(USER_OBJ, 7, None)]
    assert parsed.extended


@pytest.mark.parametrize(
    "data",
    [
        raw(1, (USER_OBJ, 7, 0)),
        raw(2, (0x40, 7, 0)),
        raw(2, (USER_OBJ, 7, 0)) + b"\x00",
        b"\x02\x00",
    ],
    ids=["version", "tag", "length", "short"],
)
def test_an_acl_attribute_that_is_not_the_linux_layout_is_refused(data: bytes):
    with pytest.raises(AclError):
        parse_acl(data)


def test_a_default_acl_gives_new_files_its_bits():
    default = acl((USER_OBJ, 6, None), (GROUP_OBJ, 4, None), (GROUP, 6, 3000), (MASK, 6, None),
                  (OTHER, 4, None))  # fmt: skip
    assert stat.S_IMODE(mode_of_acl(default)) == 0o664
    created = Node("/v/Approved/new", -1, PERSON, mode_of_acl(default), default)
    assert permits(AGENT, created, 2)
