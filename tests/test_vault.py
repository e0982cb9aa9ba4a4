"""Safe file operations: moves that never overwrite, rewrites that never clobber an edit."""

import os
from pathlib import Path

import pytest

from daemon.core.vault import Signature, Vault, is_ignored, is_sync_conflict


def test_move_never_overwrites_and_numbers_the_clash(vault_root: Path):
    vault = Vault(vault_root)
    (vault_root / "Done/a.md").write_text("older")
    (vault_root / "Done/a (2).md").write_text("old too")
    source = vault_root / "Approved/a.md"
    source.write_text("new")
    landed = vault.move(source, "Done")
    assert landed == vault_root / "Done/a (3).md"
    assert [(vault_root / f"Done/{n}").read_text() for n in ("a.md", "a (2).md", "a (3).md")] == [
        "older",
        "old too",
        "new",
    ]
    assert not source.exists()


def test_move_of_a_symlink_moves_the_link_not_its_target(vault_root: Path, tmp_path: Path):
    target = tmp_path / "secret.txt"
    target.write_text("do not touch")
    link = vault_root / "Needs_Action/link.md"
    link.symlink_to(target)
    landed = Vault(vault_root).move(link, "Rejected")
    assert landed.is_symlink()
    assert target.read_text() == "do not touch"


def test_move_finishes_a_move_interrupted_between_link_and_unlink(vault_root: Path):
    source = vault_root / "Approved/a.md"
    source.write_text("x")
    os.link(source, vault_root / "Done/a.md")  # a crash right after the link
    landed = Vault(vault_root).move(source, "Done")
    assert landed == vault_root / "Done/a.md"
    assert not source.exists()
    assert sorted(p.name for p in (vault_root / "Done").iterdir()) == ["a.md"]


def test_write_is_skipped_when_the_file_changed_since_it_was_read(vault_root: Path):
    path = vault_root / "Pending_Approval/a.md"
    path.write_text("version 1")
    seen = Signature.of(path)
    path.write_text("version 2, a person's edit")
    assert Vault(vault_root).write(path, "vaultd's rewrite", seen) is False
    assert path.read_text() == "version 2, a person's edit"
    assert not list((vault_root / "Pending_Approval").glob(".*"))


def test_write_replaces_atomically_when_unchanged(vault_root: Path):
    path = vault_root / "Pending_Approval/a.md"
    path.write_text("version 1")
    assert Vault(vault_root).write(path, "rewritten", Signature.of(path)) is True
    assert path.read_text() == "rewritten"


def test_files_lists_oldest_first_and_leaves_out_ignored_names(vault_root: Path):
    folder = vault_root / "Needs_Action"
    for index, name in enumerate(["b.md", "a.md", ".hidden.md", "draft.md~", "x.tmp"]):
        (folder / name).write_text("x")
        os.utime(folder / name, ns=(index * 10**9, index * 10**9))
    (folder / "sub").mkdir()
    assert [p.name for p in Vault(vault_root).files("Needs_Action")] == ["b.md", "a.md"]


@pytest.mark.parametrize(
    "name",
    [".obsidian", ".DS_Store", "note.md.tmp", "note.md~", "~lock.md", ".vaultd-3fa9c1d2e4b5.tmp"],
)
def test_temp_and_dot_files_are_ignored(name: str):
    assert is_ignored(name)


@pytest.mark.parametrize(
    "name",
    [
        "post.sync-conflict-20261122-101010-ABCDEFG.md",
        "post (conflicted copy 2026-11-22).md",
        "post (Conflict).md",
    ],
)
def test_sync_conflict_copies_are_recognised(name: str):
    assert is_sync_conflict(name)
    assert not is_sync_conflict("post.md")


def test_check_exists_names_what_is_missing(tmp_path: Path):
    from daemon.core.errors import VaultError

    with pytest.raises(VaultError, match="no such vault"):
        Vault(tmp_path / "nope").check_exists()
    (tmp_path / "half").mkdir()
    (tmp_path / "half/Needs_Action").mkdir()
    with pytest.raises(VaultError, match="missing Pending_Approval"):
        Vault(tmp_path / "half").check_exists()


def test_folder_of_only_knows_direct_children_of_pipeline_folders(vault_root: Path):
    vault = Vault(vault_root)
    assert vault.folder_of(vault_root / "Approved/a.md") == "Approved"
    assert vault.folder_of(vault_root / "Approved/sub/a.md") is None
    assert vault.folder_of(vault_root / "Plans/a.md") is None
