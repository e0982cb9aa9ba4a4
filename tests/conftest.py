"""Shared fixtures: real vaults under tmp_path, a real ledger, a clock tests can move."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.app import App, open_app
from daemon.vault import Vault

VAULTD = [sys.executable, "-m", "daemon"]


class Clock:
    """A clock a test can move forward; the pipeline reads it instead of the real time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def note(meta: dict[str, Any] | str | None, body: str = "Context for the reviewer.\n") -> str:
    """Return the text of a task note with this frontmatter (a dict, raw YAML, or none)."""
    if meta is None:
        return body
    raw = meta if isinstance(meta, str) else yaml.safe_dump(meta, sort_keys=False)
    return f"---\n{raw}---\n{body}"


def make_files(root: Path, files: dict[str, str | bytes]) -> None:
    """Create files from {"Folder/name.md": text}."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def read_tree(root: Path, *, skip: tuple[str, ...] = ("Logs",)) -> dict[str, str]:
    """Return {"Folder/name.md": text} for every file under root (symlinks as "-> target")."""
    tree: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.split("/")[0] in skip or (path.is_dir() and not path.is_symlink()):
            continue
        if path.is_symlink():
            tree[relative] = f"-> {path.readlink()}"
        else:
            tree[relative] = path.read_bytes().decode("utf-8", errors="replace")
    return tree


def files_in(root: Path, folder: str) -> list[str]:
    return sorted(p.name for p in (root / folder).iterdir() if not p.name.startswith("."))


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until predicate() is truthy; return its value, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


@pytest.fixture
def vault_root(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    Vault(root).ensure_folders()
    return root


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(vault_root: Path, state_dir: Path, clock: Clock) -> Iterator[App]:
    """The whole of vaultd for one vault, in dry-run, with a clock the test controls."""
    application = open_app(vault_root, state_dir=state_dir)
    application.pipeline.clock = clock
    yield application
    application.close()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the real ~/.config and ~/.local/state."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    for name in (
        "VAULTD_VAULT",
        "VAULTD_CONFIG",
        "VAULTD_STATE_DIR",
        "VAULTD_LIVE",
        "VAULTD_FAILPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
