"""Walking the vault into the index: which files are notes, which are skipped and why, and
which must be read again.

A file whose mtime and size are what the index holds is not opened; one whose bytes hash
to the stored SHA-256 is not parsed again. Only the rest is read and extracted. When only
the content of notes changed (each kept its path and vaultd id), the graph's rows are
written again for what those notes' facts reach (daemon/agents/kg/incremental.py);
otherwise the whole graph is derived again from the stored facts (graph.py), so a link to
a note that has just appeared resolves at this build, not at some later full re-index.
Symbolic links are never followed, and a file is opened with O_NOFOLLOW, so a link swapped
in after the walk is not read either.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daemon.agents.kg.extract import NoteFacts, extract, title_of
from daemon.agents.kg.graph import derive
from daemon.agents.kg.incremental import Change, simple, update
from daemon.agents.kg.ledger_source import LEDGER, LedgerFact, digest, read_ledger
from daemon.agents.kg.store import KgError
from daemon.core.vault import is_ignored, is_sync_conflict

# Larger notes are skipped, not read: a note of 4 MiB is a pasted log or a data dump.
MAX_KG_NOTE_BYTES = 4 * 1024 * 1024
NOT_MARKDOWN = "not a Markdown note"


@dataclass
class BuildReport:
    """What one build did: files seen, and how many were opened, parsed or reused."""

    seen: int = 0
    unchanged: int = 0  # mtime and size as stored: not opened
    same_content: int = 0  # opened, same SHA-256: not parsed again
    extracted: int = 0
    removed: int = 0
    derived: bool = False  # whether the graph was derived again (not when nothing changed)
    incremental: bool = False  # derived for the changed notes alone (incremental.py)
    read_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    path: str  # vault-relative, with /
    status: str  # "note", or "skipped" with a reason
    reason: str = ""
    mtime_ns: int = 0
    size: int = 0


def walk(root: Path) -> Iterator[Entry]:
    """Yield every file of the vault in path order, dot-folders (.obsidian, .trash, .git)
    and dot-files left out, each as a note or skipped with its reason. A folder that
    cannot be listed is itself skipped with the reason, never silently left out."""
    unreadable: list[OSError] = []
    top = os.fspath(root)
    # Paths as strings, not pathlib: building Path objects was most of a walk of 50,000.
    for folder, dirs, files in os.walk(top, onerror=unreadable.append, followlinks=False):
        yield from _unreadable(root, unreadable)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        inside = folder[len(top) + 1 :].replace(os.sep, "/") if folder != top else ""
        prefix = inside + "/" if inside else ""
        # Dot-files (.gitkeep, .DS_Store) are left out as the dot-folders are: Obsidian
        # does not show them, and vaultd never reads them.
        listed = [f for f in files if not f.startswith(".")]
        linked = [d for d in dirs if os.path.islink(folder + os.sep + d)]  # noqa: PTH114
        for name in sorted([*listed, *linked]):
            yield _entry(folder + os.sep + name, prefix + name, name)
    yield from _unreadable(root, unreadable)


def _unreadable(root: Path, errors: list[OSError]) -> Iterator[Entry]:
    while errors:
        error = errors.pop(0)
        where = Path(error.filename or root)
        relative = where.relative_to(root).as_posix() if where != root else "."
        yield Entry(relative, "skipped", f"a folder that cannot be read ({error.strerror})")


def _entry(path: str, relative: str, name: str) -> Entry:
    try:
        info = os.lstat(path)
    except OSError as error:
        return Entry(relative, "skipped", f"cannot be read ({error.strerror})")
    if stat.S_ISLNK(info.st_mode):
        return Entry(relative, "skipped", "a symbolic link: never followed")
    if not stat.S_ISREG(info.st_mode):
        return Entry(relative, "skipped", "not a regular file")
    mtime, size = info.st_mtime_ns, info.st_size
    if is_sync_conflict(name):
        return Entry(relative, "skipped", "a sync-conflict copy", mtime, size)
    if is_ignored(name):
        return Entry(relative, "skipped", "a temporary or backup file", mtime, size)
    if not name.lower().endswith(".md"):
        return Entry(relative, "skipped", NOT_MARKDOWN, mtime, size)
    if size > MAX_KG_NOTE_BYTES:
        limit = MAX_KG_NOTE_BYTES // (1024 * 1024)
        return Entry(
            relative, "skipped", f"{size:,} bytes, over the {limit} MiB limit", mtime, size
        )
    return Entry(relative, "note", "", mtime, size)


def read_note(root: Path, relative: str) -> bytes | str:
    """Return the bytes of a note, or why they cannot be read. Never follows a link: not
    the note's own name, nor any folder on its way (each is opened with O_NOFOLLOW from
    the one before it), so a folder swapped for a link after the walk is not read through."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    flags = os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0)
    *folders, name = relative.split("/")
    if any(part in ("", ".", "..") for part in [*folders, name]):
        return "not a path inside the vault"
    try:
        where = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    try:
        for folder in folders:
            inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=where)
            os.close(where)
            where = inner
        descriptor = os.open(name, flags, dir_fd=where)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link: never followed"
        if error.errno == errno.ENOTDIR:  # what O_DIRECTORY | O_NOFOLLOW says of a link
            return "a folder on its path is a symbolic link (never followed) or not a folder"
        return f"cannot be read ({error.strerror})"
    finally:
        os.close(where)
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        # Asked for the size it has (and one byte more, to see a note that grew since):
        # read(4 MiB) allocated 4 MiB for every note, a millisecond each.
        data = handle.read(min(info.st_size, MAX_KG_NOTE_BYTES) + 1)
        if len(data) > info.st_size:
            data += handle.read(MAX_KG_NOTE_BYTES + 1 - len(data))
    if len(data) > MAX_KG_NOTE_BYTES:
        return f"over the {MAX_KG_NOTE_BYTES // (1024 * 1024)} MiB limit"
    return data


def rebuild(
    db: sqlite3.Connection,
    root: Path,
    *,
    full: bool = False,
    ledger: Path | None = None,
    facts: list[LedgerFact] | None = None,
) -> BuildReport:
    """Bring the index up to date with the vault at `root` (and the ledger at `ledger`, if
    given, or the `facts` already read from it); with `full`, read every note again.
    Return what was done. One note's failure is recorded, never raised."""
    try:  # a vault that is not there now (moved, a drive not mounted) is not an empty one
        with os.scandir(root):
            pass
    except OSError as error:
        raise KgError(
            f"{root}: the vault cannot be read ({error.strerror}); the graph is kept as it was"
        ) from None
    report = BuildReport()
    if facts is None:
        facts = read_ledger(ledger) if ledger is not None else []
    seen: set[str] = set()
    changes: list[Change] = []  # notes whose content alone changed
    other = False  # whether anything else did (a file added, removed or skipped, the ledger)
    db.execute("BEGIN IMMEDIATE")  # a second rebuild waits for this one, then sees its rows
    try:
        stored = {
            row[0]: row[1:]
            for row in db.execute("SELECT path, mtime_ns, size, sha256, status, reason FROM files")
        }
        for entry in walk(root):
            report.seen += 1
            seen.add(entry.path)
            changed = _refresh(db, root, entry, stored.get(entry.path), full=full, report=report)
            if isinstance(changed, Change):
                changes.append(changed)
            elif changed:
                other = True
            report.derived |= bool(changed)
        for gone in sorted(set(stored) - seen):
            _forget_text(db, gone)
            db.execute("DELETE FROM files WHERE path = ?", (gone,))
            report.removed += 1
            report.derived = other = True
        known = db.execute("SELECT digest FROM sources WHERE name = ?", (LEDGER,)).fetchone()
        stated = digest(facts)
        if (known[0] if known else digest([])) != stated:
            report.derived = other = True  # the ledger says more (or other) than before
            db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?)", (LEDGER, stated))
        if not (full or other) and changes and simple(changes):
            update(db, changes)  # only what those notes' facts reach
            report.incremental = True
        elif report.derived or full:
            derive(db, facts)
            report.derived = True
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return report


def _refresh(
    db: sqlite3.Connection,
    root: Path,
    entry: Entry,
    stored: tuple[int, int, str | None, str, str] | None,
    *,
    full: bool,
    report: BuildReport,
) -> bool | Change:
    """Refresh one file's row; return whether what the graph is derived from changed: the
    note's facts before and after, if only its content did."""
    if entry.status == "skipped":
        if stored is not None and stored[3:] == ("skipped", entry.reason):
            if stored[:2] != (entry.mtime_ns, entry.size):
                _put(db, entry, sha256=None, status="skipped", reason=entry.reason, facts=None)
            return False
        _forget_text(db, entry.path)
        _put(db, entry, sha256=None, status="skipped", reason=entry.reason, facts=None)
        return True
    was_note = stored is not None and stored[3] in ("indexed", "failed")
    if was_note and not full and stored[:2] == (entry.mtime_ns, entry.size):  # type: ignore[index]
        report.unchanged += 1
        return False
    data = read_note(root, entry.path)
    report.read_paths.append(entry.path)
    if isinstance(data, str):
        _forget_text(db, entry.path)
        _put(db, entry, sha256=None, status="skipped", reason=data, facts=None)
        return True
    facts = extract(entry.path, data)
    if was_note and not full and stored[2] == facts.sha256:  # type: ignore[index]
        report.same_content += 1
        db.execute(
            "UPDATE files SET mtime_ns = ?, size = ? WHERE path = ?",
            (entry.mtime_ns, entry.size, entry.path),
        )
        return False
    report.extracted += 1
    before = None
    if was_note and not full:
        row = db.execute("SELECT facts FROM files WHERE path = ?", (entry.path,)).fetchone()
        before = NoteFacts.from_json(json.loads(row[0])) if row and row[0] else None
    _store(db, entry, facts)
    return Change(before, facts) if before is not None else True


def _store(db: sqlite3.Connection, entry: Entry, facts: NoteFacts) -> None:
    _forget_text(db, entry.path)
    facts_json = json.dumps(facts.to_json(), sort_keys=True, ensure_ascii=False)
    rowid = _put(
        db,
        entry,
        sha256=facts.sha256,
        status=facts.status,
        reason=facts.reason,
        facts=facts_json,
    )
    db.execute(
        "INSERT INTO search (rowid, path, title, body) VALUES (?, ?, ?, ?)",
        (rowid, entry.path, title_of(entry.path), facts.search_text),
    )


def _put(
    db: sqlite3.Connection,
    entry: Entry,
    *,
    sha256: str | None,
    status: str,
    reason: str,
    facts: str | None,
) -> int:
    """Insert or update a file's row, keeping its rowid (the key of its full text)."""
    db.execute(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
        " mtime_ns = excluded.mtime_ns, size = excluded.size, sha256 = excluded.sha256,"
        " status = excluded.status, reason = excluded.reason, facts = excluded.facts",
        (entry.path, entry.mtime_ns, entry.size, sha256, status, reason, facts),
    )
    return int(db.execute("SELECT rowid FROM files WHERE path = ?", (entry.path,)).fetchone()[0])


def _forget_text(db: sqlite3.Connection, path: str) -> None:
    """Drop a file's full text, found by its row's rowid (FTS5 looks rows up only so)."""
    row = db.execute("SELECT rowid FROM files WHERE path = ?", (path,)).fetchone()
    if row is not None:
        db.execute("DELETE FROM search WHERE rowid = ?", (row[0],))
