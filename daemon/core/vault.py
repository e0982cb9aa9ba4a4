"""The vault on disk: its folders, which files vaultd looks at, and safe file operations.

Moves never overwrite (a clash gets " (2)" before the suffix), rewrites are atomic and only
happen if the file is still what vaultd read, and symlinks are never followed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from daemon.core.errors import VaultError

NEEDS_ACTION = "Needs_Action"
PENDING = "Pending_Approval"
APPROVED = "Approved"
REJECTED = "Rejected"
DONE = "Done"
FAILED = "Failed"
LOGS = "Logs"
BRIEFINGS = "Briefings"
PLANS = "Plans"

# Folders whose files move through the lifecycle, in lifecycle order.
PIPELINE_FOLDERS = (NEEDS_ACTION, PENDING, APPROVED, REJECTED, DONE, FAILED)
# Folders whose files vaultd acts on when they appear or change.
ACTIVE_FOLDERS = (NEEDS_ACTION, PENDING, APPROVED, REJECTED, FAILED)
ALL_FOLDERS = (*PIPELINE_FOLDERS, LOGS, BRIEFINGS, PLANS)

MAX_NOTE_BYTES = 1024 * 1024
# The longest file name most filesystems take, in bytes.
MAX_NAME_BYTES = 255

_CONFLICT = re.compile(r"\.sync-conflict-|\(conflicted copy|\(Conflict\)|\.conflict\b", re.I)


def is_ignored(name: str) -> bool:
    """Return True for names vaultd never touches: dot-files, temp files, editor backups."""
    return name.startswith((".", "~")) or name.endswith(("~", ".tmp", ".swp", ".part"))


def is_sync_conflict(name: str) -> bool:
    """Return True for the copies sync tools make when two machines edit one file."""
    return bool(_CONFLICT.search(name))


def inside(path: Path, vault: Path) -> bool:
    """Return whether a path is the vault or lies within it (links and `~` resolved).

    Whatever must not travel with a synced vault (state, secrets, code) is checked with it.
    """
    resolved, root = path.expanduser().resolve(), vault.expanduser().resolve()
    return resolved == root or root in resolved.parents


class Vanished(VaultError):
    """The file was deleted (or moved away) while vaultd was handling it."""


def fit_name(stem: str, suffix: str) -> str:
    """Return stem + suffix, the stem cut short if the name would pass MAX_NAME_BYTES."""
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8", "surrogateescape"))
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) <= room:
        return stem + suffix
    return encoded[:room].decode("utf-8", "ignore") + suffix


def _temp_name() -> str:
    # Short, so that a note with the longest possible name can still be rewritten.
    return f".vaultd-{secrets.token_hex(6)}.tmp"


@dataclass(frozen=True)
class Signature:
    """What identifies one version of a file without reading it."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> Signature | None:
        try:
            stat = path.lstat()
        except (FileNotFoundError, NotADirectoryError):  # gone, or its folder replaced
            return None
        return cls.from_stat(stat)

    @classmethod
    def from_stat(cls, stat: os.stat_result) -> Signature:
        """Given a file's lstat, return its signature."""
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino)

    def ctime_at(self, path: Path) -> int | None:
        """Return the ctime of the file at `path` if it still has this signature (one
        lstat), else None. A write in place changes the ctime, which no one can set back."""
        try:
            stat = path.lstat()
        except OSError:
            return None
        return stat.st_ctime_ns if Signature.from_stat(stat) == self else None


class Vault:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def folder(self, name: str) -> Path:
        return self.root / name

    def check_exists(self) -> None:
        if not self.root.is_dir():
            raise VaultError(f"{self.root}: no such vault (create one with `vaultd init PATH`)")
        missing = [name for name in PIPELINE_FOLDERS if not self.folder(name).is_dir()]
        if missing:
            raise VaultError(
                f"{self.root}: not a vaultd vault, missing {', '.join(missing)} "
                "(run `vaultd init` on it to add the folders)"
            )

    def ensure_folders(self) -> None:
        for name in ALL_FOLDERS:
            self.folder(name).mkdir(parents=True, exist_ok=True)

    def relative(self, path: Path) -> str:
        """Return the path as the vault shows it: "Folder/name.md". Raise ValueError if it
        is not inside the vault."""
        # Every step of every file asks this, several times: a path under the root is its
        # text after the root's (the same as relative_to, without building a Path).
        text, root = str(path), str(self.root)
        if os.sep == "/" and text.startswith(root) and text[len(root) : len(root) + 1] == "/":
            return text[len(root) + 1 :]
        return path.relative_to(self.root).as_posix()

    def folder_of(self, path: Path) -> str | None:
        """Return the pipeline folder a path is directly inside, or None."""
        if path.parent.parent != self.root:
            return None
        name = path.parent.name
        return name if name in PIPELINE_FOLDERS else None

    def files(self, folder: str) -> list[Path]:
        """Return the candidate files of a folder, oldest first, ignored names left out."""
        try:
            entries = list(os.scandir(self.folder(folder)))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if is_ignored(entry.name) or entry.is_dir(follow_symlinks=False):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime_ns
            except FileNotFoundError:
                continue
            found.append((mtime, entry.name, Path(entry.path)))
        return [path for _, _, path in sorted(found)]

    def move(self, path: Path, folder: str, name: str | None = None) -> Path:
        """Move a file (or a symlink itself) into a folder; return where it landed.

        Never overwrites: if the name is taken, " (2)", " (3)" … is added before the suffix.
        """
        target_dir = self.folder(folder)
        target_dir.mkdir(exist_ok=True)
        wanted = Path(name or path.name)
        for attempt in range(1, 10_000):
            suffix = "" if attempt == 1 else f" ({attempt})"
            target = target_dir / fit_name(wanted.stem, f"{suffix}{wanted.suffix}")
            if target == path:
                return path
            if _move_no_replace(path, target):
                return target
        raise VaultError(f"{path.name}: no free name in {folder}/")

    def settle_interrupted_move(self, path: Path, folder: str) -> Path | None:
        """Given a file on its way into `folder`, finish the move if a crash cut it between
        its link and its unlink (both names are the same file); return where the file is
        now, or None if it is not half-moved.

        Rewriting the old name first would split the two names into two notes, and the
        move would then land a second copy as "name (2).md".
        """
        try:
            links = path.lstat().st_nlink
        except FileNotFoundError:
            return None
        if links < 2:
            return None
        wanted = Path(path.name)
        for attempt in range(1, 10_000):
            suffix = "" if attempt == 1 else f" ({attempt})"
            target = self.folder(folder) / fit_name(wanted.stem, f"{suffix}{wanted.suffix}")
            if target == path or not os.path.lexists(target):
                return None  # names are taken in turn: the first free one ends the search
            if _same_file(path, target):
                _unlink_moved(path)
                return target
        return None

    def write(self, path: Path, text: str, expected: Signature | None = None) -> bool:
        """Atomically replace a file's text.

        If `expected` is given and the file changed since it was read, leave it alone and
        return False: a person's newer edit always wins over vaultd's rewrite.
        """
        return self.write_signed(path, text, expected) is not None

    def write_signed(
        self, path: Path, text: str, expected: Signature | None = None
    ) -> Signature | None:
        """Atomically replace a file's text, as `write` does; return the signature of the
        file written (a rename keeps it: its inode, size and mtime), or None if the file
        changed since it was read and was left alone.
        """
        tmp = path.with_name(_temp_name())
        data = memoryview(text.encode("utf-8"))
        # A raw descriptor: the text goes to the kernel in one write, with no buffer and no
        # terminal probe of a text file object in between. O_EXCL: the name is vaultd's own.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            try:
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
                written = Signature.from_stat(os.fstat(fd))
            finally:
                os.close(fd)
            if expected is not None and Signature.of(path) != expected:
                tmp.unlink()
                return None
            tmp.replace(path)
        except BaseException:
            # A failed write (disk full, a folder in the way) leaves no temp file behind.
            tmp.unlink(missing_ok=True)
            raise
        return written

    def create(self, folder: str, name: str, text: str) -> Path:
        """Write a new note into a folder under a free name; return its path."""
        tmp = self.folder(folder) / _temp_name()
        tmp.write_text(text, encoding="utf-8")
        return self.move(tmp, folder, name)


def _move_no_replace(source: Path, target: Path) -> bool:
    """Move source to target unless target exists; return False if it does.

    A hard link fails atomically when the name is taken, which a plain rename cannot do.
    Filesystems without hard links fall back to check-then-rename.
    """
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        if _same_file(source, target):
            # A crash between link and unlink left both names: finish the move.
            _unlink_moved(source)
            return True
        return False
    except FileNotFoundError:
        if not os.path.lexists(source):
            raise Vanished(f"{source.name}: deleted while vaultd was handling it") from None
        raise
    except OSError:
        if target.exists() or target.is_symlink():
            return False
        try:
            source.rename(target)
        except FileNotFoundError:
            raise Vanished(f"{source.name}: deleted while vaultd was handling it") from None
        return True
    _unlink_moved(source)
    return True


def _unlink_moved(source: Path) -> None:
    # Someone deleting the old name after the link changes nothing: the file has moved.
    with contextlib.suppress(FileNotFoundError):
        source.unlink()


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        sa, sb = a.lstat(), b.lstat()
        return (sa.st_ino, sa.st_dev) == (sb.st_ino, sb.st_dev)
    return False
