"""Shared fixtures: real vaults under tmp_path, a real ledger, a clock tests can move."""

from __future__ import annotations

import compileall
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.connectors.base import Absent, Found, Health, Lookup
from daemon.core import notes
from daemon.core.audit import read_entries
from daemon.core.errors import ConnectorError, OutcomeUnknown
from daemon.core.models import Action
from daemon.core.policy import Facts
from daemon.core.vault import Vault
from daemon.lifecycle.lookups import LookupSchedule
from daemon.service.app import App, open_app

# Where PYTHONDONTWRITEBYTECODE is set (as here and on CI), pytest rewrote the asserts of all
# 90 test modules again on every run, in every worker: 8 s of collection. Its cache of them
# (and Python's own bytecode) goes to the ignored __pycache__ folders, as on any machine.
sys.dont_write_bytecode = False

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


def write_note(root: Path, relative: str, frontmatter: str, body: str) -> Path:
    """Write a note with this raw frontmatter and body at root/relative; return its path."""
    make_files(root, {relative: f"---\n{frontmatter}---\n{body}"})
    return root / relative


def move(root: Path, path: Path, folder: str, name: str | None = None) -> Path:
    """Move a file into another folder as a person does in Obsidian: one rename."""
    target = root / folder / (name or path.name)
    os.rename(path, target)  # noqa: PTH104 - one rename, as in Obsidian
    return target


def parsed(path: Path) -> notes.Note:
    """Parse a note as it is on disk (bytes decoded as UTF-8, so CRLF line endings survive)."""
    return notes.parse(path.read_bytes().decode("utf-8"))


def outbox(state_dir: Path) -> list[dict[str, Any]]:
    """Return every request the dry-run connectors 'sent' (the remote service's view)."""
    path = state_dir / "dry_run_outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def audit(root: Path) -> list[dict[str, Any]]:
    """Return the entries of the vault's audit log (Logs/), oldest first."""
    return list(read_entries(root / "Logs"))


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


class StandInService:
    """Stands in for a remote service (a Connector): records what reaches it, fails as told.

    `fail` is how many calls to refuse with ConnectorError; `lost` how many to answer with
    OutcomeUnknown after doing the work; `always` an error to raise on every call instead;
    `lookup_answer` what a marker lookup returns (by default: what this stand-in created).
    """

    def __init__(
        self, name: str, *, fail: int = 0, lost: int = 0, always: ConnectorError | None = None
    ) -> None:
        self.name = name
        self.fail = fail
        self.lost = lost
        self.always = always
        self.calls: list[str] = []
        self.created: dict[str, dict[str, Any]] = {}
        self.lookup_answer: Lookup | None = None

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return {"service": self.name, "marker": marker}

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        self.calls.append(marker)
        if self.always is not None:
            raise self.always
        if self.fail:
            self.fail -= 1
            raise ConnectorError(f"{self.name} answered 503 Service Unavailable")
        self.created[marker] = {"id": f"{self.name}-{len(self.calls)}"}
        if self.lost:
            self.lost -= 1
            raise OutcomeUnknown(f"{self.name}: connection reset after sending")
        return self.created[marker]

    def lookup(self, marker: str) -> Lookup:
        if self.lookup_answer is not None:
            return self.lookup_answer
        return Found(self.created[marker]) if marker in self.created else Absent()

    def check(self) -> Health:
        return Health(self.always is None, "stand-in")

    def facts(self, action: Action) -> Facts:
        return Facts()


def drop_posts_to_broken_services(
    app: App, root: Path, *, facebook: ConnectorError, twitter: ConnectorError
) -> None:
    """Drop fb.md (a Facebook post) and x.md (an X post) into Needs_Action/, process both.

    Each service raises its given error on every call, so both land in Failed/.
    """
    app.pipeline.connectors["facebook"] = StandInService("facebook", always=facebook)
    app.pipeline.connectors["twitter"] = StandInService("twitter", always=twitter)
    post = {"type": "social_post", "text": "Hello"}
    make_files(
        root,
        {
            "Needs_Action/fb.md": note({**post, "platforms": ["facebook"]}),
            "Needs_Action/x.md": note({**post, "platforms": ["twitter"]}),
        },
    )
    for name in ("fb.md", "x.md"):
        app.pipeline.process(root / "Needs_Action" / name)


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
    # A lookup that cannot tell sends the call to a person at once (tests of the schedule
    # set their own): the suite's notes never wait in Approved/ for a later lookup.
    application.pipeline.executor.lookups = LookupSchedule(budget=0)
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
        "VAULTD_FAILPOINT_ONCE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Give each test the environment it started with: load_settings() fills os.environ from
    an env file (as the daemon does), and a later test must not see those values."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


# The suite's vaults and ledgers live in RAM when the machine has a tmpfs: fsync costs
# nothing there, which halves the time of tests that commit to SQLite and rename files.
# No verdict depends on the disk: a kill -9 leaves the page cache intact either way, and
# the power cuts of the state machine are simulated. `--basetemp DIR` chooses another place;
# the benchmarks (bench/) always measure the real disk.
RAM = Path("/dev/shm")
_RAM_BASETEMP = pytest.StashKey[Path]()


def ram_dir() -> Path | None:
    """Return the machine's tmpfs if this user may write there, else None."""
    return RAM if RAM.is_dir() and os.access(RAM, os.W_OK) else None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once, in the controller, before any worker
        _compile_the_package()
    ram = ram_dir()
    if config.option.basetemp or ram is None:
        return  # given (xdist gives each worker a folder inside the controller's), or no RAM
    config.option.basetemp = tempfile.mkdtemp(prefix="vaultd-tests-", dir=ram)
    config.stash[_RAM_BASETEMP] = Path(config.option.basetemp)


def _compile_the_package() -> None:
    """Write daemon/'s bytecode once: the suite starts vaultd about 260 times, and where
    PYTHONDONTWRITEBYTECODE is set (as on CI) each start compiled all 120 modules again
    (a fifth of a second each time). py_compile writes whatever that variable says."""
    compileall.compile_dir(Path(__file__).resolve().parents[1] / "daemon", quiet=2, workers=1)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Free the RAM of a run that passed; keep a failed run's files to look at."""
    made = session.config.stash.get(_RAM_BASETEMP, None)
    if made is not None and exitstatus == 0:
        shutil.rmtree(made, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the seed of every random kill -9 run, passed or failed, to replay it with
    VAULTD_SEED=N (it travels from xdist workers as a user property)."""
    lines = []
    for key in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "kill_seed" and getattr(report, "when", "call") == "call":
                    lines.append(f"{report.nodeid}: {key}, replay with VAULTD_SEED={value}")
    if lines:
        terminalreporter.write_sep("-", "random kill -9 seeds")
        for line in lines:
            terminalreporter.write_line(line)
