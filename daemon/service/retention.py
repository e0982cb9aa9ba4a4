"""Log retention: old daily audit files are gzipped into `Logs/archive/`, never lost.

`Logs/YYYY-MM-DD.json` older than `archive_after_days` becomes
`Logs/archive/YYYY-MM-DD.json.gz`: written under a temporary dot-name, fsynced, verified
against the original, renamed into place, and only then is the original removed. An archive
that is already there (a crash after writing it) is verified line for line before the
original goes; one that differs (corrupt, or not ours) is never overwritten, and both files
are kept and reported. Archives older than `delete_after_days` are deleted only when that is
set. Today's and recent files, other files and anything outside `Logs/` are never touched,
and a second run does nothing more than the first.
"""

from __future__ import annotations

import gzip
import os
import shutil
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from daemon.core.audit import ARCHIVE_FOLDER, ARCHIVED_NAME, DAILY_NAME, log_day
from daemon.core.schedule_config import Logs

_CHUNK = 1 << 20
# The config already refuses less; a Logs built without validation still never goes below.
MINIMUM_DAYS = 90


@dataclass
class Retention:
    """What one run did, by the day of each file."""

    archived: list[date] = field(default_factory=list)
    deleted: list[date] = field(default_factory=list)
    # Days left as they were, and why: an archive with other content (both files kept),
    # or an error reading or writing them. Nothing of theirs was removed.
    kept: dict[date, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.archived or self.deleted)


def apply_retention(logs_folder: Path, config: Logs, *, today: date) -> Retention:
    """Archive daily files older than `archive_after_days`; delete old archives if asked."""
    done = Retention()
    if not logs_folder.is_dir() or logs_folder.is_symlink():
        return done
    archive = logs_folder / ARCHIVE_FOLDER
    if archive.is_symlink() or (archive.exists() and not archive.is_dir()):
        return done  # Not a folder vaultd made: leave it and everything it points to alone.

    archive_before = today - timedelta(days=max(config.archive_after_days, MINIMUM_DAYS))
    for path in sorted(logs_folder.iterdir()):
        day = log_day(path, DAILY_NAME)
        if day is None or day >= archive_before or not _regular(path):
            continue
        target = archive / f"{path.name}.gz"
        try:
            archive.mkdir(exist_ok=True)
            problem = _archive_one(path, target)
        except OSError as error:
            problem = f"not archived: {error}"
        if problem:
            done.kept[day] = problem
        else:
            done.archived.append(day)

    if config.delete_after_days is not None and archive.is_dir():
        delete_before = today - timedelta(days=max(config.delete_after_days, MINIMUM_DAYS))
        for path in sorted(archive.iterdir()):
            day = log_day(path, ARCHIVED_NAME)
            if day is None or day >= delete_before or not _regular(path):
                continue
            if (logs_folder / f"{day.isoformat()}.json").exists():
                continue  # A conflict: the original is still there, so the archive is kept too.
            try:
                path.unlink()
            except OSError as error:
                done.kept[day] = f"not deleted: {error}"
                continue
            done.deleted.append(day)
        _fsync_dir(archive)
    return done


def _archive_one(original: Path, target: Path) -> str | None:
    """Move one daily file into its archive; return why not when it stays where it is."""
    if not target.exists():
        temporary = target.with_name(f".{target.name}.tmp")
        with original.open("rb") as source, temporary.open("wb") as raw:
            # The name in the gzip header is the original's; mtime 0 keeps the bytes stable.
            with gzip.GzipFile(filename=original.name, mode="wb", fileobj=raw, mtime=0) as out:
                shutil.copyfileobj(source, out, _CHUNK)
            raw.flush()
            os.fsync(raw.fileno())
        if not same_content(original, temporary):
            temporary.unlink()
            return "the archive written did not read back the same; kept the original"
        temporary.replace(target)
        _fsync_dir(target.parent)
    elif not same_content(original, target):
        return f"{target.name} already exists with other content; kept both"
    original.unlink()
    _fsync_dir(original.parent)
    return None


def same_content(original: Path, archived: Path) -> bool:
    """True when `archived` gunzips to exactly the bytes of `original` (streamed, not loaded)."""
    try:
        with original.open("rb") as plain, gzip.open(archived, "rb") as packed:
            while True:
                expected = plain.read(_CHUNK)
                actual = packed.read(len(expected) or 1)
                while expected and len(actual) < len(expected):
                    more = packed.read(len(expected) - len(actual))
                    if not more:
                        break
                    actual += more
                if expected != actual:
                    return False
                if not expected:
                    return True
    except (OSError, EOFError, zlib.error):
        return False  # Not gzip, truncated or corrupt: not an archive of this file.


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # Some file systems cannot fsync a directory; the rename is still atomic.
    finally:
        os.close(descriptor)
