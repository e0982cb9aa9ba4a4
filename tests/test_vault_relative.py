"""`Vault.relative`: the path as the vault shows it, by its text where it can (every step of
every file asks it), and exactly as `Path.relative_to` says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.vault import Vault


@pytest.mark.parametrize(
    "inside", ["Done/a.md", "Done/x y (2).md", "Notes/area-01/topic/n.md", "Needs_Action/ü.md"]
)
def test_a_path_inside_the_vault_is_shown_from_its_root(tmp_path: Path, inside: str):
    vault = Vault(tmp_path)
    path = vault.root / inside
    assert vault.relative(path) == path.relative_to(vault.root).as_posix() == inside


def test_the_root_itself_is_shown_as_a_dot(tmp_path: Path):
    vault = Vault(tmp_path)
    assert vault.relative(vault.root) == "."


@pytest.mark.parametrize("outside", ["../other.md", "../vaultx/a.md"])
def test_a_path_outside_the_vault_is_refused(tmp_path: Path, outside: str):
    """A sibling whose name starts with the vault's is not inside it."""
    vault = Vault(tmp_path / "vault")
    path = Path(str(vault.root) + "x") / "a.md" if "vaultx" in outside else tmp_path / "o.md"
    with pytest.raises(ValueError):
        vault.relative(path)
    with pytest.raises(ValueError):
        vault.relative(Path("Done/a.md"))  # relative: not a place in the vault
