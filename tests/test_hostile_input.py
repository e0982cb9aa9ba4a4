"""Hostile input (issue 5, item 6), with the real daemon running: `Runner.run_forever()` in a
thread, with the real watcher (inotify), the real pipeline, ledger and audit log.

Each case drops hostile files into the vault while the daemon runs, then checks that:

* each file is rejected (into Rejected/: byte for byte with a `.rejected.md` note beside it
  when it cannot be parsed, or with `error:` stamped in and its body intact when it can) or
  ignored (left exactly where it was), or, for hostile *values* that are plain text, handled
  as the ordinary task it is — never by touching anything outside the vault;
* within 1 s of the file becoming stable (its last write plus the stability window);
* with under 50 MB of extra memory: the peak resident set (VmHWM, reset through
  /proc/self/clear_refs before the case) over what was resident before, which counts
  libyaml's C allocations as well as Python's;
* and that the daemon is still running afterwards and does a normal task.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import audit, files_in, make_files, note, parsed, wait_for
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from daemon.core import ledger
from daemon.core.config import Config, Timing
from daemon.service.app import App
from daemon.service.runner import Runner

STABILITY_MS = 100
WITHIN_SECONDS = 1.0
EXTRA_MEMORY_MB = 50
BODY = "The body a person wrote.\n\n  with trailing spaces   \n"


# -- the daemon, and what it costs -------------------------------------------------------


@contextmanager
def daemon(app: App) -> Iterator[Runner]:
    """Run the real `Runner.run_forever()` in a thread until the block ends.

    The block starts once a probe task is done: the start-up scan has run and the observer
    (started before it) is live, so everything the test drops arrives by file events.
    """
    config = Config(daemon=Timing(stability_ms=STABILITY_MS, rescan_seconds=3600))
    runner = Runner(app.pipeline, config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run_forever()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
            raise

    make_files(app.vault.root, {"Needs_Action/probe.md": post("Is the daemon up?")})
    thread = threading.Thread(target=run, name="vaultd-runner", daemon=True)
    thread.start()
    try:
        wait_for(lambda: "probe.md" in files_in(app.vault.root, "Done") or errors, timeout=10)
        yield runner
        assert thread.is_alive() and not errors, errors
    finally:
        runner.stop_event.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the daemon did not stop"
    assert not errors, errors


def post(text: str, **extra: object) -> str:
    return note({"type": "social_post", "platforms": ["facebook"], "text": text, **extra}, BODY)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


class PeakMemory:
    """The peak resident memory of this process (which runs the daemon) over a baseline."""

    def __enter__(self) -> PeakMemory:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # VmHWM := VmRSS
        self.baseline_kb = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.extra_mb = (_status_kb("VmHWM") - self.baseline_kb) / 1024


def can_measure_memory() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under root: a symlink's target, or a file's SHA-256 (never followed)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = f"-> {path.readlink()}"
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.relative_to(root).as_posix()] = digest
    return found


# -- what happens to each file -----------------------------------------------------------


@dataclass
class Dropped:
    """One hostile file: where it was dropped, and what must become of it."""

    relative: str  # "Needs_Action/x.md"
    fate: str  # unreadable | rejected | ignored | handled
    says: str = ""  # in the sidecar, the stamped error, or the note
    data: bytes | None = None  # the bytes it was dropped with (small files)
    digest: str | None = None  # their SHA-256
    link: str | None = None  # the target, for a symlink

    @property
    def name(self) -> str:
        return self.relative.split("/")[1]

    def settled(self, root: Path) -> bool:
        if self.fate == "ignored":
            return True  # seen once the sentinel dropped after it is done
        if self.fate == "handled":
            return not os.path.lexists(root / self.relative)
        return os.path.lexists(root / "Rejected" / self.name) and (
            self.fate == "rejected" or (root / "Rejected" / f"{self.name}.rejected.md").exists()
        )

    def check(self, root: Path) -> None:
        if self.fate == "ignored":
            path = root / self.relative
            assert path.read_bytes() == self.data, self.relative
            assert not os.path.lexists(root / "Rejected" / self.name)
            return
        if self.fate == "handled":
            [landed] = [
                root / folder / self.name
                for folder in ("Done", "Pending_Approval", "Rejected")
                if (root / folder / self.name).exists()
            ]
            assert parsed(landed).body == BODY
            assert self.says in landed.read_text(encoding="utf-8"), landed
            return
        landed = root / "Rejected" / self.name
        if self.fate == "rejected":
            rejected = parsed(landed)
            assert rejected.meta["status"] == "rejected"
            assert self.says in rejected.meta["error"], rejected.meta["error"]
            assert rejected.body == BODY
            return
        if self.link is not None:
            assert landed.is_symlink() and str(landed.readlink()) == self.link
        else:
            with landed.open("rb") as moved:
                digest = hashlib.file_digest(moved, "sha256").hexdigest()
            assert digest == self.digest, "an unreadable file is moved unchanged"
        sidecar = parsed(root / "Rejected" / f"{self.name}.rejected.md")
        assert sidecar.meta["status"] == "rejected"
        assert self.says in sidecar.meta["error"], sidecar.meta["error"]


class Drop:
    """Writes hostile files into a vault and remembers what they must become."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.root = root
        self.outside = outside
        self.files: list[Dropped] = []

    def write(self, relative: str, data: bytes | str, fate: str, says: str = "") -> None:
        raw = data.encode() if isinstance(data, str) else data
        (self.root / relative).write_bytes(raw)
        digest = hashlib.sha256(raw).hexdigest()
        self.files.append(Dropped(relative, fate, says, raw, digest))

    def write_big(self, relative: str, megabytes: int, says: str) -> None:
        """A file of `megabytes` MiB, written 1 MiB at a time (no 50 MB buffer in the test)."""
        head = post("a huge note").encode()
        chunk = b"x" * (1024 * 1024)
        digest = hashlib.sha256()
        with (self.root / relative).open("wb") as out:
            out.write(head)
            digest.update(head)
            for _ in range(megabytes):
                out.write(chunk)
                digest.update(chunk)
        self.files.append(Dropped(relative, "unreadable", says, digest=digest.hexdigest()))

    def symlink(self, relative: str, target: str | Path, says: str) -> None:
        (self.root / relative).symlink_to(target)
        self.files.append(Dropped(relative, "unreadable", says, link=str(target)))


def billion_laughs(d: Drop) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "---\ntype: social_post\n" + "\n".join(lines) + "\n---\n" + BODY
    d.write("Needs_Action/laughs.md", text, "unreadable", "anchor &a is not allowed")


def nesting_10000_levels(d: Drop) -> None:
    deep_list = "---\ntype: social_post\ntext: " + "[" * 10_000 + "]" * 10_000 + "\n---\n"
    deep_map = "---\ntype: social_post\ntext: " + "{a: " * 10_000 + "b" + "}" * 10_000
    d.write("Needs_Action/deep list.md", deep_list + BODY, "unreadable", "nested deeper")
    d.write("Needs_Action/deep map.md", deep_map + "\n---\n" + BODY, "unreadable", "nested deeper")


def file_of_50_mb(d: Drop) -> None:
    d.write_big("Needs_Action/huge.md", 50, "it was not read")


def file_of_50_mb_in_approved(d: Drop) -> None:
    d.write_big("Approved/huge.md", 50, "it was not read")


def binary_file(d: Drop) -> None:
    noise = random.Random(5).randbytes(256 * 1024)
    d.write("Needs_Action/noise.md", noise, "unreadable", "noise.md ")
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + noise[:4096]
    d.write("Needs_Action/photo.png", png, "unreadable", "not a Markdown (.md) file")


def invalid_utf8(d: Drop) -> None:
    latin1 = "---\ntype: social_post\nplatforms: [facebook]\ntext: café\n---\n".encode("latin-1")
    d.write("Needs_Action/latin1.md", latin1 + BODY.encode(), "unreadable", "not UTF-8")
    d.write("Needs_Action/overlong.md", b"---\ntext: \xc0\xaf\n---\n", "unreadable", "not UTF-8")


def duplicate_keys(d: Drop) -> None:
    text = "---\ntype: social_post\nplatforms: [facebook]\ntext: one\ntext: two\n---\n" + BODY
    d.write("Needs_Action/twice.md", text, "unreadable", "appears twice")
    nested = "---\ntype: odoo_invoice\npartner: A\nlines:\n  - {product: X, product: Y}\n---\n"
    d.write("Needs_Action/twice nested.md", nested + BODY, "unreadable", "appears twice")


def sixty_thousand_keys(d: Drop) -> None:
    keys = "".join(f"k{n}: {n}\n" for n in range(60_000))
    text = "---\ntype: social_post\nplatforms: [facebook]\ntext: hi\n" + keys + "---\n" + BODY
    d.write("Needs_Action/keys.md", text, "unreadable", "more than 20,000 values")


def traversal_in_file_names(d: Drop) -> None:
    # A name cannot hold "/", so ".." in a name can only be text; names starting with a dot
    # are dot-files, which vaultd ignores by design.
    for number, name in enumerate(
        [
            "..\\..\\outside\\victim.md",
            "..%2F..%2Foutside%2Fvictim.md",
            "..\u2215etc\u2215passwd.md",
        ]
    ):
        d.write(f"Needs_Action/{name}", post(f"dot name {number}"), "ignored")
    for number, name in enumerate(["a..b...md", "x..\\..\\victim.md", "\u202egpj.md"]):
        d.write(f"Needs_Action/{name}", post(f"name number {number}"), "handled", "id: ")


def traversal_in_fields(d: Drop) -> None:
    victim = "../../outside/victim.md"
    d.write("Needs_Action/link.md", post("hi", link=victim), "rejected", "link: must be an http")
    d.write(
        "Needs_Action/image.md",
        note(
            {
                "type": "social_post",
                "platforms": ["instagram"],
                "text": "hi",
                "image_url": f"file://{d.outside / 'victim.md'}",
            },
            BODY,
        ),
        "rejected",
        "image_url: must be an http",
    )
    d.write("Needs_Action/text.md", post(victim), "handled", "status: done")
    forged_id = post("forged id", id=victim, status="approved")
    d.write("Approved/id.md", forged_id, "handled", "never issued an approval request")
    invoice = note(
        {
            "type": "odoo_invoice",
            "partner": victim,
            "lines": [{"product": victim, "quantity": 1, "price_unit": 500}],
        },
        BODY,
    )
    d.write("Needs_Action/invoice.md", invoice, "handled", "status: pending_approval")


def symlinks_out_of_the_vault(d: Drop) -> None:
    says = "is a symbolic link; vaultd never follows links"
    d.symlink("Needs_Action/victim.md", d.outside / "victim.md", says)
    d.symlink("Needs_Action/passwd.md", "/etc/passwd", says)
    d.symlink("Needs_Action/relative.md", "../../outside/victim.md", says)
    d.symlink("Needs_Action/a folder.md", d.outside, says)
    d.symlink("Needs_Action/dangling.md", d.outside / "nothing-here.md", says)
    d.symlink("Approved/victim.md", d.outside / "victim.md", says)


def sync_conflict_copies(d: Drop) -> None:
    for folder in ("Needs_Action", "Approved", "Pending_Approval"):
        for name in (
            "post.sync-conflict-20261122-101010-ABCDEF7.md",
            "post (conflicted copy 2026-11-22).md",
            "post (Conflict).md",
        ):
            d.write(f"{folder}/{name}", post(f"{folder} {name}"), "ignored")


CASES: list[Callable[[Drop], None]] = [
    billion_laughs,
    nesting_10000_levels,
    file_of_50_mb,
    file_of_50_mb_in_approved,
    binary_file,
    invalid_utf8,
    duplicate_keys,
    sixty_thousand_keys,
    traversal_in_file_names,
    traversal_in_fields,
    symlinks_out_of_the_vault,
    sync_conflict_copies,
]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the vault that path tricks aim at; nothing may change in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.md").write_text(post("the victim, outside the vault"), encoding="utf-8")
    return folder


@pytest.mark.skipif(not can_measure_memory(), reason="needs a writable /proc/self/clear_refs")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_hostile_files_are_refused_quickly_cheaply_and_the_daemon_carries_on(
    case: Callable[[Drop], None], app: App, vault_root: Path, outside: Path, tmp_path: Path
):
    outside_before = tree_digest(outside)
    passwd = Path("/etc/passwd").read_bytes()
    drop = Drop(vault_root, outside)
    with daemon(app):
        with PeakMemory() as memory:
            case(drop)
            stable_at = time.monotonic() + STABILITY_MS / 1000
            # A normal task dropped last is handled after the hostile ones: when it is done,
            # the ignored ones have been looked at too.
            make_files(vault_root, {"Needs_Action/sentinel.md": post("after the storm")})
            wait_for(
                lambda: (
                    all(f.settled(vault_root) for f in drop.files)
                    and "sentinel.md" in files_in(vault_root, "Done")
                ),
                timeout=10,
                interval=0.005,
            )
            took = time.monotonic() - stable_at
        # Still running, and still doing ordinary work.
        make_files(vault_root, {"Needs_Action/afterwards.md": post("business as usual")})
        wait_for(lambda: "afterwards.md" in files_in(vault_root, "Done"), timeout=5)

    assert took < WITHIN_SECONDS, f"{case.__name__} took {took:.2f}s after becoming stable"
    assert memory.extra_mb < EXTRA_MEMORY_MB, f"{case.__name__} used {memory.extra_mb:.0f} MB"
    for dropped in drop.files:
        dropped.check(vault_root)
    events = [entry["event"] for entry in audit(vault_root)]
    assert "internal_error" not in events
    assert events.count("rejected_unreadable") == sum(f.fate == "unreadable" for f in drop.files)
    assert tree_digest(outside) == outside_before
    assert Path("/etc/passwd").read_bytes() == passwd
    assert not list(tmp_path.glob("*.md")), "nothing is written next to the vault"


# -- a file deleted while vaultd reads it ------------------------------------------------


def test_files_deleted_around_the_moment_they_are_read_lose_nothing_and_stop_nothing(
    app: App, vault_root: Path
):
    """Thirty files, each deleted at a different moment around its stability time: before it
    is stable, while it is read, after. Whatever survived its deletion is handled normally."""
    chance = random.Random(6)
    dropped: dict[str, bytes] = {}
    with daemon(app):
        for number in range(30):
            name = f"gone {number}.md"
            body = BODY + "x" * chance.choice([10, 200_000, 900_000])
            if number % 3:
                text = note({"type": "social_post", "platforms": ["facebook"],
                             "text": f"post {number}"}, body)  # fmt: skip
            else:
                text = "---\n: not yaml\n---\n" + body
            path = vault_root / "Needs_Action" / name
            path.write_text(text, encoding="utf-8")
            dropped[name] = text.encode()
            time.sleep(chance.uniform(0.5, 1.5) * STABILITY_MS / 1000)
            path.unlink(missing_ok=True)
        # On X: the posts above may have used up Facebook's daily budget of auto-approval.
        make_files(
            vault_root, {"Needs_Action/sentinel.md": post("still here", platforms=["twitter"])}
        )
        wait_for(lambda: "sentinel.md" in files_in(vault_root, "Done"), timeout=10)

    assert files_in(vault_root, "Needs_Action") == []
    for folder in ("Done", "Rejected", "Approved", "Pending_Approval", "Failed"):
        for name in files_in(vault_root, folder):
            if name.endswith(".rejected.md"):
                # A note about a file is never left without the file it is about.
                assert (vault_root / folder / name.removesuffix(".rejected.md")).exists()
                continue
            if name in dropped:
                # Moved unchanged (refused unread), or stamped with its body intact. (A file
                # deleted in the instant between vaultd's link and unlink lands unchanged but
                # without its note: the bug the next test shows.)
                landed = (vault_root / folder / name).read_bytes()
                if landed != dropped[name]:
                    assert parsed(vault_root / folder / name).body == notes_body(dropped[name])


def notes_body(raw: bytes) -> str:
    return raw.decode().split("\n---\n", 1)[1]


class _DeleteWhenRewritten(FileSystemEventHandler):
    """Deletes `victim` the moment vaultd starts rewriting it: when its temp file appears,
    after vaultd has read and judged the file and before it moves it."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim
        self.fired = threading.Event()
        self.deleted = False  # False if vaultd had already moved it: the race was lost

    def on_created(self, event: FileSystemEvent) -> None:
        # vaultd's temp files are `.vaultd-<random>.tmp`; only the victim is being rewritten.
        if Path(str(event.src_path)).name.startswith(".vaultd-"):
            try:
                self.victim.unlink()
                self.deleted = True
            except FileNotFoundError:
                pass
            self.fired.set()


def test_a_file_deleted_while_vaultd_handles_it_is_ignored_cleanly(app: App, vault_root: Path):
    victim = vault_root / "Needs_Action" / "vanishing.md"
    handler = _DeleteWhenRewritten(victim)
    observer = Observer()
    observer.schedule(handler, str(vault_root / "Needs_Action"), recursive=False)
    observer.start()
    try:
        with daemon(app):
            big = note({"type": "social_post", "platforms": ["facebook"], "text": "see me"},
                       BODY + "x" * 900_000)  # fmt: skip
            victim.write_text(big, encoding="utf-8")
            assert handler.fired.wait(timeout=10), "vaultd never rewrote the file"
            make_files(vault_root, {"Needs_Action/sentinel.md": post("still here")})
            wait_for(lambda: "sentinel.md" in files_in(vault_root, "Done"), timeout=10)
    finally:
        observer.stop()
        observer.join(timeout=5)

    if not handler.deleted:
        pytest.skip("vaultd moved the file before the test could delete it; nothing shown")
    assert not victim.exists()
    assert [f for f in files_in(vault_root, "Approved") if f != "sentinel.md"] == []
    events = [entry["event"] for entry in audit(vault_root)]
    assert "internal_error" not in events
    assert not app.ledger.tasks(ledger.APPROVED), "a task for no file"
