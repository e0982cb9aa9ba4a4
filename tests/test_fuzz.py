"""Parser fuzzing: whatever bytes a note holds, only vaultd's own errors come out."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import notes
from daemon.errors import NoteError, ValidationFailed
from daemon.taskfile import Unreadable, read_task_file, validate_note

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
