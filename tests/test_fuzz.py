"""Parser fuzzing: whatever bytes a note holds, only vaultd's own errors come out."""

from __future__ import annotations

import contextlib
import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.core import notes
from daemon.core.errors import NoteError, ValidationFailed
from daemon.core.taskfile import Unreadable, read_task_file, validate_note
from daemon.core.vault import is_ignored, is_sync_conflict

YAML_BITS = st.sampled_from(
    [
        "type: social_post\n",
        "platforms: [facebook]\n",
        "text: hi\n",
        "&a ",
        "*a ",
        "!!python/object ",
        "? ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        ": ",
        "'",
        '"',
        "\\",
        "\t",
        "#",
        "<<: ",
        "!!binary ",
        "...\n",
        "---\n",
        "\r\n",
        "\x85",
        "\ufeff",
        "%YAML 1.1\n",
        "!tag ",
        "2026-02-30\n",
        "1e999\n",
    ]
)
FRONTMATTER = st.lists(st.one_of(YAML_BITS, st.text(max_size=8)), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(frontmatter=FRONTMATTER, body=st.text(max_size=40))
def test_any_frontmatter_parses_or_raises_a_note_error(frontmatter: str, body: str):
    text = f"---\n{frontmatter}\n---\n{body}"
    try:
        note = notes.parse(text)
    except NoteError:
        return
    with contextlib.suppress(ValidationFailed):
        validate_note(note)
    # Whatever parsed can be stamped, and keeps its body.
    assert notes.parse(notes.render(note, {"id": "x"})).body == note.body


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300))
def test_any_bytes_on_disk_are_read_or_refused_as_unreadable(tmp_path: Path, data: bytes):
    path = tmp_path / "fuzz.md"
    path.write_bytes(data)
    try:
        loaded = read_task_file(path)
    except Unreadable:
        return
    with contextlib.suppress(ValidationFailed):  # anything else escaping fails the test
        validate_note(loaded.note)


NAME_CHARS = string.ascii_letters + string.digits + " ._-()~#%&[]{}'!@+=,;" + "äé日"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stem=st.text(alphabet=NAME_CHARS, min_size=1, max_size=40))
def test_any_file_name_leaves_needs_action_with_its_body_intact(app, vault_root: Path, stem: str):
    path = vault_root / "Needs_Action" / f"{stem}.md"
    if path.exists() or stem.startswith((".", "~")) or stem.endswith("~"):
        return  # dot, temp and backup names are ignored by design
    path.write_text("---\ntype: social_post\nplatforms: [facebook]\ntext: hello\n---\nbody\n")
    outcome = app.pipeline.process(path)
    if outcome.status == "ignored":  # a sync-conflict name is left for a person
        return
    assert outcome.path is not None
    assert outcome.path.parent.name != "Needs_Action"
    assert notes.parse(outcome.path.read_text()).body == "body\n"


# Any character a Linux file name may hold (not "/" or NUL; lone surrogates are the
# undecodable-bytes case, tested on its own below), with any suffix or none.
ANY_NAME = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=60,
).filter(lambda name: name not in (".", "..") and len(name.encode()) <= 200)
STATUSES = {"ignored", "rejected", "pending_approval", "done"}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=ANY_NAME, markdown=st.booleans())
def test_any_file_name_is_handled_without_an_exception_and_nothing_is_lost(
    app, vault_root: Path, name: str, markdown: bool
):
    name = f"{name}.md" if markdown else name
    path = vault_root / "Needs_Action" / name
    if path.exists():
        return
    content = b"---\ntype: social_post\nplatforms: [facebook]\ntext: hello\n---\nbody\n"
    path.write_bytes(content)

    outcome = app.pipeline.process(path)  # anything raised here fails the test

    assert outcome.status in STATUSES, outcome
    if outcome.status == "ignored":
        assert path.read_bytes() == content  # left exactly where it was
        path.unlink()
        return
    assert outcome.path is not None
    assert outcome.path.parent.name in ("Rejected", "Pending_Approval", "Done")
    if outcome.path.suffix == ".md" and not (
        outcome.path.with_name(f"{outcome.path.name}.rejected.md").exists()
    ):
        assert notes.parse(outcome.path.read_text(encoding="utf-8")).body == "body\n"
    else:
        assert outcome.path.read_bytes() == content  # refused unread, moved unchanged


def test_file_name_predicates_take_any_text():
    @settings(max_examples=300, deadline=None)
    @given(name=st.text(max_size=80))
    def check(name: str) -> None:
        assert isinstance(is_ignored(name), bool)
        assert isinstance(is_sync_conflict(name), bool)

    check()


# -- names the fuzzer above leaves out, each a bug reproduced exactly ---------------------


@pytest.mark.parametrize("content", ["valid", "unreadable"])
def test_a_file_name_of_250_bytes_is_handled_without_an_exception(
    app, vault_root: Path, content: str
):
    path = vault_root / "Needs_Action" / ("n" * 247 + ".md")
    text = "---\ntype: social_post\nplatforms: [facebook]\ntext: long\n---\nbody\n"
    path.write_text(text if content == "valid" else "---\n: : bad\n---\n", encoding="utf-8")

    outcome = app.pipeline.process(path)

    assert outcome.status in ("done", "rejected")
    assert outcome.path is not None and outcome.path.exists()


@pytest.mark.parametrize("content", ["valid", "unreadable"])
def test_a_file_name_that_is_not_utf8_is_handled_without_an_exception(
    app, vault_root: Path, content: str
):
    raw = os.fsencode(vault_root / "Needs_Action") + b"/caf\xe9 latin-1.md"
    path = Path(os.fsdecode(raw))  # "caf\udce9 latin-1.md", as os.listdir returns it
    text = b"---\ntype: social_post\nplatforms: [facebook]\ntext: name\n---\nbody\n"
    path.write_bytes(text if content == "valid" else b"---\n: : bad\n---\n")
    assert os.fsencode(path) == raw

    outcome = app.pipeline.process(path)

    assert outcome.status in ("done", "rejected")
    assert outcome.path is not None and outcome.path.exists()
