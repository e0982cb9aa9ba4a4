"""Reading a task file safely: what is refused before any content is trusted."""

import os
import threading
from pathlib import Path

import pytest

from daemon.core.taskfile import Unreadable, read_task_file


def test_a_named_pipe_is_refused_at_once_instead_of_hanging_the_daemon(vault_root: Path):
    fifo = vault_root / "Needs_Action" / "pipe.md"
    os.mkfifo(fifo)
    outcome: list[str] = []

    def read() -> None:
        try:
            read_task_file(fifo)
        except Unreadable as error:
            outcome.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert outcome == ["is not a regular file"]


def test_a_directory_named_like_a_note_is_refused(vault_root: Path):
    folder = vault_root / "Needs_Action" / "folder.md"
    folder.mkdir()
    with pytest.raises(Unreadable):
        read_task_file(folder)
