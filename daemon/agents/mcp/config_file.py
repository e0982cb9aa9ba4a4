"""Writing the `.mcp.json` of `vaultd mcp config --output FILE`: all of it, or nothing.

The block is written to a temporary file beside FILE, fsynced, then moved into place, so
FILE is either absent (or as it was) or complete; a failure before that leaves nothing
behind. FILE is refused when it

- lies in the vault: `.mcp.json` names the commands Claude Code starts, and anyone who
  syncs the vault, or an agent writing to it, could change them;
- exists, unless `force` (and the env file or the config file are never replaced);
- is a symbolic link (even with `force`): vaultd neither writes through one nor replaces it;
- is a folder, or its folder does not exist.

The checks run (`check_output`) before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from daemon.core.errors import ConfigError
from daemon.core.vault import inside


def check_output(
    output: Path, *, vault: Path, force: bool, keep: tuple[Path | None, ...] = ()
) -> Path:
    """Given the --output path, return where the file will be written (its folder resolved).

    `keep`: files it must never replace (the env file, the config file). Raise ConfigError,
    naming the path and what to do, if it may not be written there.
    """
    given = output.expanduser()
    if not given.name or given.name in (".", ".."):
        raise ConfigError(f"{output}: --output must name a file, such as .mcp.json")
    folder = given.parent.resolve()
    target = folder / given.name
    if not folder.is_dir():
        raise ConfigError(f"{output}: no such folder {folder}")
    if inside(target, vault):
        raise ConfigError(
            f"{output}: refusing to write .mcp.json inside the vault: it names the commands "
            "Claude Code starts, and whoever syncs or writes to the vault could change them. "
            "Write it at your project's root, outside the vault"
        )
    if target.is_symlink():
        raise ConfigError(
            f"{output}: is a symbolic link; vaultd neither writes through one nor replaces "
            "it. Name the real file, or remove the link"
        )
    if target.is_dir():
        raise ConfigError(f"{output}: is a folder; name the file, such as {output}/.mcp.json")
    for kept in keep:
        if kept is not None and kept.expanduser().resolve() == target.resolve():
            raise ConfigError(f"{output}: is the file given to --env-file or --config")
    if target.exists() and not force:
        raise ConfigError(
            f"{output}: already exists; left as it was. Merge the servers into it by hand "
            "(`vaultd mcp config` without --output prints them), or pass --force to replace it"
        )
    return target


def write_output(target: Path, block: dict[str, Any], *, force: bool) -> None:
    """Given a path from check_output, write the block there as JSON, atomically.

    Without `force` an existing file is never replaced, even one that appeared since the
    check. Raise ConfigError if it exists (without `force`) or cannot be written; then no
    temporary file is left behind.
    """
    text = json.dumps(block, indent=2) + "\n"
    try:
        descriptor, name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise ConfigError(f"{target}: cannot write it: {error.strerror or error}") from None
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        temporary.chmod(0o666 & ~_umask())  # as any new file, not mkstemp's 0600
        if force:
            temporary.replace(target)  # replaces a link itself, never its target
        else:
            _link_new(temporary, target)
    except OSError as error:
        raise ConfigError(f"{target}: cannot write it: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _fsync_folder(target.parent)


def _link_new(temporary: Path, target: Path) -> None:
    """Give the temporary file the target's name; raise ConfigError if the name is taken."""
    try:
        os.link(temporary, target)  # fails, atomically, if the target exists
    except FileExistsError:
        raise ConfigError(
            f"{target}: already exists (it appeared a moment ago); left as it was. Pass "
            "--force to replace it"
        ) from None
    except OSError:  # a file system without hard links: check, then move
        if os.path.lexists(target):
            raise ConfigError(f"{target}: already exists; left as it was") from None
        temporary.replace(target)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
