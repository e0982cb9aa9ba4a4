"""Bad input (issue 2, item 12): every kind ends in Rejected/ (or is ignored and reported)
with a clear reason naming the file and the field, its body intact, nothing else disturbed.

Two kinds of rejection: a file vaultd can parse but that is not a valid task gets `status:
rejected` and `error:` stamped into its frontmatter (body untouched); a file vaultd cannot
parse (or must not read) is moved to Rejected/ byte for byte, with a sidecar note
`<name>.rejected.md` beside it saying why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import audit, files_in, make_files, note, outbox, parsed, read_tree

from daemon.core import ledger, notes
from daemon.core.taskfile import STAMPED_NOTE_BYTES
from daemon.core.vault import MAX_NOTE_BYTES
from daemon.reports.status import build_snapshot
from daemon.service.app import App

BODY = "Why this task exists.\n\n  keep these trailing spaces   \n\nGrüße ✓\n"

# Bystanders: notes that must come through every bad-input test untouched.
BYSTANDERS = {
    "Company_Handbook.md": "# Handbook\nBe kind.\n",
    "Plans/q1.md": "---\ntitle: Q1\n---\nPlan body\n",
    "Done/older.md": "---\ntype: social_post\nstatus: done\n---\nold\n",
    "Pending_Approval/other.md.tmp": "an editor's temp file\n",
}


@pytest.fixture
def bystanders(vault_root: Path) -> dict[str, str]:
    make_files(vault_root, BYSTANDERS)
    return dict(BYSTANDERS)


def assert_others_untouched(root: Path, bystanders: dict[str, str], *mine: str) -> None:
    tree = read_tree(root)
    for relative, text in bystanders.items():
        assert tree[relative] == text, relative
    assert set(tree) - set(bystanders) == set(mine), sorted(tree)


def reject_stamped(app: App, root: Path, name: str, content: str) -> notes.Note:
    """Drop a parseable but invalid file; check it is stamped and moved; return the note."""
    make_files(root, {f"Needs_Action/{name}": content})
    outcome = app.pipeline.process(root / "Needs_Action" / name)
    assert outcome.status == "rejected"
    assert outcome.path == root / "Rejected" / name
    rejected = parsed(outcome.path)
    assert rejected.meta["status"] == "rejected"
    assert rejected.meta["id"]
    task = app.ledger.task(rejected.meta["id"])
    assert task is not None
    assert (task.state, task.file) == (ledger.REJECTED, f"Rejected/{name}")
    entry = audit(root)[-1]
    assert entry["event"] == "rejected_invalid"
    assert entry["error"].startswith(f"{name}: ")  # the log names the file
    assert entry["file"] == f"Rejected/{name}"
    assert outbox(app.state_dir) == []
    return rejected


def reject_unread(app: App, root: Path, name: str, content: str | bytes) -> str:
    """Drop an unparseable file; check it moved unchanged with a sidecar; return the reason."""
    make_files(root, {f"Needs_Action/{name}": content})
    before = (root / "Needs_Action" / name).read_bytes()
    outcome = app.pipeline.process(root / "Needs_Action" / name)
    assert outcome.status == "rejected"
    assert outcome.path == root / "Rejected" / name
    assert outcome.path.read_bytes() == before  # exactly as it arrived
    sidecar = root / "Rejected" / f"{name}.rejected.md"
    explained = parsed(sidecar)
    assert explained.meta["status"] == "rejected"
    assert explained.meta["error"].startswith(f"{name} ")  # names the file
    assert f"[[{name}]]" in explained.body
    task = app.ledger.task(explained.meta["id"])
    assert task is not None
    assert (task.state, task.file) == (ledger.REJECTED, f"Rejected/{name}")
    entry = audit(root)[-1]
    assert entry["event"] == "rejected_unreadable"
    assert entry["error"].startswith(f"{name} ")
    assert outbox(app.state_dir) == []
    return str(explained.meta["error"])


# -- parseable, but not a valid task: stamped in place ---------------------------------------


def test_a_file_without_frontmatter_is_rejected_with_the_reason_stamped_in(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    rejected = reject_stamped(app, vault_root, "plain.md", BODY)

    assert "(frontmatter): no frontmatter" in rejected.meta["error"]
    assert rejected.body == BODY
    assert_others_untouched(vault_root, bystanders, "Rejected/plain.md")


def test_an_empty_file_waits_then_is_rejected_as_it_is(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    # Editors create a note first and fill it after: an empty one waits untouched for a
    # minute, then moves to Rejected/ exactly as it is, with the reason in a note beside it.
    path = vault_root / "Needs_Action/empty.md"
    path.touch()
    assert app.pipeline.process(path).status == "waiting"
    an_hour_ago = path.stat().st_mtime - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))

    assert app.pipeline.process(path).status == "rejected"

    assert (vault_root / "Rejected/empty.md").read_bytes() == b""
    beside = notes.parse((vault_root / "Rejected/empty.md.rejected.md").read_text())
    assert beside.meta["error"] == "empty.md is empty (untouched for 60 s)"
    assert_others_untouched(
        vault_root, bystanders, "Rejected/empty.md", "Rejected/empty.md.rejected.md"
    )


def test_a_file_with_only_whitespace_is_rejected_as_empty(app: App, vault_root: Path):
    rejected = reject_stamped(app, vault_root, "blank.md", "\n  \n")

    assert rejected.meta["error"] == "(file): the file is empty"
    assert rejected.body == "\n  \n"


def test_an_unknown_type_is_rejected_naming_the_field_and_the_value(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    content = note({"type": "tiktok_dance", "text": "hi"}, BODY)

    rejected = reject_stamped(app, vault_root, "dance.md", content)

    assert rejected.meta["error"].startswith('type: unknown action "tiktok_dance"')
    assert "social_post" in rejected.meta["error"]
    assert rejected.meta["type"] == "tiktok_dance"  # the user's keys are kept
    assert rejected.body == BODY
    assert_others_untouched(vault_root, bystanders, "Rejected/dance.md")


def test_a_missing_type_is_rejected_naming_the_field(app: App, vault_root: Path):
    rejected = reject_stamped(app, vault_root, "untyped.md", note({"text": "hi"}, BODY))

    assert rejected.meta["error"].startswith("type: missing")


def test_a_missing_field_is_rejected_naming_it(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    raw = "# the agent forgot the text\ntype: social_post\nplatforms: [facebook]\n"

    rejected = reject_stamped(app, vault_root, "no-text.md", f"---\n{raw}---\n{BODY}")

    assert rejected.meta["error"] == "text: missing"
    text = (vault_root / "Rejected" / "no-text.md").read_text(encoding="utf-8")
    assert text.startswith(f"---\n{raw}")  # the user's lines, comment included
    assert text.endswith(f"---\n{BODY}")
    assert_others_untouched(vault_root, bystanders, "Rejected/no-text.md")


def test_an_extra_field_is_rejected_naming_it(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    content = note(
        {"type": "social_post", "platforms": ["facebook"], "text": "hi", "colour": "red"}, BODY
    )

    rejected = reject_stamped(app, vault_root, "colour.md", content)

    assert rejected.meta["error"] == "colour: unknown field (not part of this action type)"
    assert rejected.body == BODY
    assert_others_untouched(vault_root, bystanders, "Rejected/colour.md")


def test_every_problem_in_a_file_is_listed_not_just_the_first(app: App, vault_root: Path):
    content = note(
        {"type": "odoo_invoice", "lines": [{"product": "X", "quantity": 0}], "colour": "red"}
    )

    rejected = reject_stamped(app, vault_root, "many.md", content)

    error = rejected.meta["error"]
    assert "lines.0.quantity" in error
    assert "lines.0.price_unit: missing" in error
    assert "colour: unknown field" in error


# -- cannot be parsed: moved unchanged, with a sidecar note ----------------------------------


def test_invalid_yaml_is_moved_to_rejected_unchanged_with_a_note_saying_where(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    content = "---\ntype: social_post\nplatforms: [facebook\ntext: hi\n---\n" + BODY

    reason = reject_unread(app, vault_root, "broken.md", content)

    assert "invalid YAML" in reason
    assert "line" in reason
    assert_others_untouched(
        vault_root, bystanders, "Rejected/broken.md", "Rejected/broken.md.rejected.md"
    )


def test_frontmatter_without_a_closing_line_is_rejected_unchanged(app: App, vault_root: Path):
    reason = reject_unread(app, vault_root, "open.md", "---\ntype: social_post\n" + BODY)

    assert "no closing ---" in reason


def test_frontmatter_that_is_not_key_value_pairs_is_rejected_unchanged(app: App, vault_root: Path):
    reason = reject_unread(app, vault_root, "list.md", "---\n- a\n- b\n---\n" + BODY)

    assert "key: value" in reason


def test_yaml_anchors_and_aliases_are_refused(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    content = "---\ntype: social_post\nplatforms: &p [facebook]\ntext: hi\nextra: *p\n---\n" + BODY

    reason = reject_unread(app, vault_root, "alias.md", content)

    assert "anchor &p is not allowed" in reason
    assert_others_untouched(
        vault_root, bystanders, "Rejected/alias.md", "Rejected/alias.md.rejected.md"
    )


def test_a_billion_laughs_document_is_refused_without_expanding_it(app: App, vault_root: Path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    reason = reject_unread(app, vault_root, "laughs.md", "---\n" + "\n".join(lines) + "\n---\n")

    assert "not allowed" in reason


def test_python_object_tags_are_refused_and_never_run(
    app: App, vault_root: Path, tmp_path: Path, bystanders: dict[str, str]
):
    marker = tmp_path / "pwned"
    content = (
        "---\ntype: social_post\nplatforms: [facebook]\n"
        f'text: !!python/object/apply:os.system ["touch {marker}"]\n---\n' + BODY
    )

    reason = reject_unread(app, vault_root, "evil.md", content)

    assert "YAML tag not allowed" in reason
    assert "python/object" in reason
    assert not marker.exists()
    assert_others_untouched(
        vault_root, bystanders, "Rejected/evil.md", "Rejected/evil.md.rejected.md"
    )


def test_duplicate_keys_are_refused_naming_the_key(app: App, vault_root: Path):
    content = "---\ntype: social_post\nplatforms: [facebook]\ntext: one\ntext: two\n---\n" + BODY

    reason = reject_unread(app, vault_root, "twice.md", content)

    assert "field text" in reason
    assert "appears twice" in reason


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("invoice_date: 2026-02-30", "day is out of range for month"),
        ("scheduled_for: 2026-12-01T25:00:00Z", "hour must be in 0..23"),
        ("quantity: !!int three", "invalid literal for int()"),
    ],
)
def test_yaml_that_scans_but_cannot_be_built_is_rejected_naming_the_line(
    app: App, vault_root: Path, value: str, problem: str
):
    content = f"---\ntype: odoo_invoice\npartner: Acme\n{value}\n---\n" + BODY

    reason = reject_unread(app, vault_root, "date.md", content)

    assert f"invalid value at line 4: {problem}" in reason


def test_a_list_used_as_a_key_is_rejected_not_crashed_on(app: App, vault_root: Path):
    content = "---\ntype: social_post\n? [a, b]\n: c\n---\n" + BODY

    reason = reject_unread(app, vault_root, "listkey.md", content)

    assert "key at line 3 is a list or mapping" in reason


def test_deeply_nested_frontmatter_is_refused(app: App, vault_root: Path):
    reason = reject_unread(
        app, vault_root, "deep.md", "---\nx: " + "[" * 100 + "]" * 100 + "\n---\n"
    )

    assert "nested deeper" in reason


def test_invalid_utf8_is_moved_unchanged_naming_the_byte(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    content = b"---\ntype: social_post\ntext: caf\xe9\n---\nbody\n"

    reason = reject_unread(app, vault_root, "latin1.md", content)

    assert "not UTF-8" in reason
    position = content.index(b"\xe9")
    assert f"byte {position}" in reason
    assert_others_untouched(
        vault_root, bystanders, "Rejected/latin1.md", "Rejected/latin1.md.rejected.md"
    )


def test_a_file_with_nul_bytes_is_moved_unchanged(app: App, vault_root: Path):
    reason = reject_unread(app, vault_root, "binary.md", b"---\ntype: x\n---\n\x00\x01\x02")

    assert "NUL" in reason


def test_a_non_markdown_file_is_moved_unchanged(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    content = b"\x89PNG\r\n\x1a\n\x00\x00binary"

    reason = reject_unread(app, vault_root, "photo.png", content)

    assert "not a Markdown (.md) file" in reason
    assert_others_untouched(
        vault_root, bystanders, "Rejected/photo.png", "Rejected/photo.png.rejected.md"
    )


def test_a_file_over_1_mib_is_rejected_without_being_read(
    app: App, vault_root: Path, bystanders: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    big = vault_root / "Needs_Action" / "huge.md"
    content = note(
        {"type": "social_post", "platforms": ["facebook"], "text": "hi"}, "x" * MAX_NOTE_BYTES
    )
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)

    reason = reject_unread(app, vault_root, "huge.md", content)

    assert str(big) not in opened
    assert str(vault_root / "Rejected" / "huge.md") not in opened
    assert "at most 1,048,576 bytes" in reason
    assert "it was not read" in reason
    assert_others_untouched(
        vault_root, bystanders, "Rejected/huge.md", "Rejected/huge.md.rejected.md"
    )


def test_a_task_of_exactly_1_mib_is_accepted_and_still_runs_after_vaultd_stamped_it(
    app: App, vault_root: Path
):
    def exactly_1_mib(meta: dict[str, Any]) -> str:
        head = note(meta, "")
        return head + "x" * (MAX_NOTE_BYTES - len(head))

    post = {"type": "social_post", "platforms": ["facebook"], "text": "hi"}
    invoice = {
        "type": "odoo_invoice",
        "partner": "Acme",
        "lines": [{"product": "Audit", "quantity": 1, "price_unit": 500}],
    }
    make_files(
        vault_root,
        {
            "Needs_Action/post.md": exactly_1_mib(post),
            "Needs_Action/inv.md": exactly_1_mib(invoice),
        },
    )

    auto = app.pipeline.process(vault_root / "Needs_Action" / "post.md")
    pending = app.pipeline.process(vault_root / "Needs_Action" / "inv.md")
    assert pending.path is not None
    assert pending.path.stat().st_size > MAX_NOTE_BYTES  # the request made it longer
    os.rename(pending.path, vault_root / "Approved" / "inv.md")  # noqa: PTH104
    approved = app.pipeline.process(vault_root / "Approved" / "inv.md")

    assert (auto.status, pending.status, approved.status) == ("done", "pending_approval", "done")
    assert files_in(vault_root, "Done") == ["inv.md", "post.md"]
    assert files_in(vault_root, "Rejected") == []
    assert parsed(vault_root / "Done" / "post.md").body == "x" * (
        MAX_NOTE_BYTES - len(note(post, ""))
    )


def test_a_huge_file_placed_in_approved_is_rejected_without_being_read(app: App, vault_root: Path):
    reason_file = vault_root / "Approved" / "huge.md"
    make_files(vault_root, {"Approved/huge.md": "x" * (STAMPED_NOTE_BYTES + 1)})

    outcome = app.pipeline.process(reason_file)

    assert outcome.status == "rejected"
    assert outbox(app.state_dir) == []
    sidecar = parsed(vault_root / "Rejected" / "huge.md.rejected.md")
    assert "it was not read" in sidecar.meta["error"]


# -- symlinks: never followed ----------------------------------------------------------------


def test_a_symlink_is_never_followed_and_its_target_is_left_untouched(
    app: App, vault_root: Path, tmp_path: Path, bystanders: dict[str, str]
):
    target = tmp_path / "secret.md"
    target.write_text(note({"type": "social_post", "platforms": ["facebook"], "text": "x"}))
    before = target.read_bytes()
    link = vault_root / "Needs_Action" / "link.md"
    link.symlink_to(target)

    outcome = app.pipeline.process(link)

    assert outcome.status == "rejected"
    moved = vault_root / "Rejected" / "link.md"
    assert outcome.path == moved
    assert moved.is_symlink()
    assert moved.readlink() == target
    assert target.read_bytes() == before
    assert not link.exists()
    sidecar = parsed(vault_root / "Rejected" / "link.md.rejected.md")
    assert sidecar.meta["error"] == ("link.md is a symbolic link; vaultd never follows links")
    assert outbox(app.state_dir) == []
    assert_others_untouched(
        vault_root, bystanders, "Rejected/link.md", "Rejected/link.md.rejected.md"
    )


def test_a_symlink_to_a_note_inside_the_vault_leaves_that_note_where_it_is(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    link = vault_root / "Approved" / "handbook.md"
    link.symlink_to(vault_root / "Company_Handbook.md")

    outcome = app.pipeline.process(link)

    assert outcome.status == "rejected"
    assert (vault_root / "Rejected" / "handbook.md").is_symlink()
    assert outbox(app.state_dir) == []
    assert_others_untouched(
        vault_root, bystanders, "Rejected/handbook.md", "Rejected/handbook.md.rejected.md"
    )


def test_a_symlink_in_pending_approval_is_left_alone_and_not_followed(
    app: App, vault_root: Path, tmp_path: Path
):
    target = tmp_path / "outside.md"
    target.write_text("outside\n")
    link = vault_root / "Pending_Approval" / "link.md"
    link.symlink_to(target)

    outcome = app.pipeline.process(link)

    assert outcome.status == "unreadable"
    assert link.is_symlink()
    assert target.read_text() == "outside\n"
    assert audit(vault_root)[-1]["event"] == "request_unreadable"


# -- never overwrite -------------------------------------------------------------------------


def test_a_name_clash_in_rejected_never_overwrites_and_both_files_survive(
    app: App, vault_root: Path, bystanders: dict[str, str]
):
    mine = "---\ntitle: a person's note that happens to share the name\n---\nkeep me\n"
    make_files(vault_root, {"Rejected/task.md": mine})
    make_files(vault_root, {"Needs_Action/task.md": note({"type": "nope"}, BODY)})

    outcome = app.pipeline.process(vault_root / "Needs_Action" / "task.md")

    assert outcome.path == vault_root / "Rejected" / "task (2).md"
    assert (vault_root / "Rejected" / "task.md").read_text() == mine
    assert parsed(vault_root / "Rejected" / "task (2).md").body == BODY
    task = app.ledger.task(parsed(outcome.path).meta["id"])
    assert task is not None
    assert task.file == "Rejected/task (2).md"
    assert_others_untouched(vault_root, bystanders, "Rejected/task.md", "Rejected/task (2).md")


def test_a_name_clash_for_an_unreadable_file_and_its_sidecar_never_overwrites(
    app: App, vault_root: Path
):
    make_files(
        vault_root,
        {
            "Rejected/x.md": "older x\n",
            "Rejected/x.md.rejected.md": "older sidecar\n",
            "Needs_Action/x.md": "---\n: : bad\n---\n",
        },
    )

    outcome = app.pipeline.process(vault_root / "Needs_Action" / "x.md")

    assert outcome.path == vault_root / "Rejected" / "x (2).md"
    assert outcome.path.read_text() == "---\n: : bad\n---\n"
    assert (vault_root / "Rejected" / "x.md").read_text() == "older x\n"
    assert (vault_root / "Rejected" / "x.md.rejected.md").read_text() == "older sidecar\n"
    sidecar = vault_root / "Rejected" / "x (2).md.rejected.md"
    assert "[[x (2).md]]" in parsed(sidecar).body
    assert files_in(vault_root, "Rejected") == [
        "x (2).md",
        "x (2).md.rejected.md",
        "x.md",
        "x.md.rejected.md",
    ]


def test_a_name_clash_in_pending_and_done_never_overwrites(app: App, vault_root: Path):
    invoice = note(
        {
            "type": "odoo_invoice",
            "partner": "Acme",
            "lines": [{"product": "Audit", "quantity": 1, "price_unit": 500}],
        },
        BODY,
    )
    make_files(
        vault_root,
        {
            "Pending_Approval/acme.md": "a person's own note\n",
            "Done/acme.md": "an older invoice\n",
            "Needs_Action/acme.md": invoice,
        },
    )

    pending = app.pipeline.process(vault_root / "Needs_Action" / "acme.md")
    assert pending.path == vault_root / "Pending_Approval" / "acme (2).md"
    assert pending.path is not None
    approved = vault_root / "Approved" / "acme (2).md"
    os.rename(pending.path, approved)  # noqa: PTH104
    done = app.pipeline.process(approved)

    assert done.status == "done"
    assert (vault_root / "Pending_Approval" / "acme.md").read_text() == "a person's own note\n"
    assert (vault_root / "Done" / "acme.md").read_text() == "an older invoice\n"
    assert files_in(vault_root, "Done") == ["acme (2).md", "acme.md"]
    assert parsed(vault_root / "Done" / "acme (2).md").body == BODY


# -- ignored, and reported -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "post.sync-conflict-20261122-101010-ABCDEF7.md",
        "post (conflicted copy 2026-11-22).md",
        "post (Conflict).md",
    ],
)
def test_sync_conflict_copies_are_ignored_left_in_place_and_reported(
    app: App, vault_root: Path, bystanders: dict[str, str], name: str
):
    content = note({"type": "social_post", "platforms": ["facebook"], "text": "hi"}, BODY)
    for folder in ("Needs_Action", "Approved", "Pending_Approval"):
        make_files(vault_root, {f"{folder}/{name}": content})

        outcome = app.pipeline.process(vault_root / folder / name)

        assert outcome.status == "ignored"
    assert_others_untouched(
        vault_root,
        bystanders,
        f"Needs_Action/{name}",
        f"Approved/{name}",
        f"Pending_Approval/{name}",
    )
    for folder in ("Needs_Action", "Approved", "Pending_Approval"):
        assert (vault_root / folder / name).read_text(encoding="utf-8") == content
    assert outbox(app.state_dir) == []
    assert app.ledger.counts() == {}
    snapshot = build_snapshot(app.vault, app.ledger)
    assert sorted(snapshot.sync_conflicts) == sorted(
        f"{folder}/{name}" for folder in ("Needs_Action", "Approved", "Pending_Approval")
    )


@pytest.mark.parametrize("name", [".hidden.md", "draft.md~", "note.md.tmp", "~lock.md"])
def test_dot_and_temp_files_are_ignored_and_left_alone(app: App, vault_root: Path, name: str):
    make_files(vault_root, {f"Needs_Action/{name}": "---\n: bad\n"})

    outcome = app.pipeline.process(vault_root / "Needs_Action" / name)

    assert outcome.status == "ignored"
    assert files_in(vault_root, "Rejected") == []
    assert (vault_root / "Needs_Action" / name).read_text() == "---\n: bad\n"
    assert audit(vault_root) == []


def test_a_file_outside_the_pipeline_folders_is_ignored(app: App, vault_root: Path):
    make_files(vault_root, {"Plans/task.md": note({"type": "nope"})})

    assert app.pipeline.process(vault_root / "Plans" / "task.md").status == "ignored"
    assert app.pipeline.process(vault_root / "Needs_Action" / "gone.md").status == "ignored"
    assert audit(vault_root) == []


def test_the_rejection_is_written_to_the_audit_log_as_json(app: App, vault_root: Path):
    make_files(vault_root, {"Needs_Action/bad.md": note({"type": "nope"})})
    app.pipeline.process(vault_root / "Needs_Action" / "bad.md")

    [line] = (vault_root / "Logs").glob("*.json")
    entry = json.loads(line.read_text(encoding="utf-8").splitlines()[-1])
    assert entry["event"] == "rejected_invalid"
    assert entry["error"].startswith('bad.md: type: unknown action "nope"')


def test_a_frontmatter_of_sixty_thousand_keys_is_refused_before_it_is_built(
    app: App, vault_root: Path
):
    keys = "".join(f"k{n}: {n}\n" for n in range(60_000))
    content = "---\ntype: social_post\nplatforms: [facebook]\ntext: hi\n" + keys + "---\n" + BODY

    reason = reject_unread(app, vault_root, "keys.md", content)

    assert "more than 20,000 values" in reason
    assert len(reason) < 200  # not a list of 60,000 unknown fields


def test_an_invoice_of_a_thousand_lines_is_still_read(app: App, vault_root: Path):
    lines = [
        {"product": "Consulting", "quantity": 1, "price_unit": 1, "description": f"hour {n}"}
        for n in range(1000)
    ]
    make_files(
        vault_root,
        {"Needs_Action/long.md": note({"type": "odoo_invoice", "partner": "A", "lines": lines})},
    )

    outcome = app.pipeline.process(vault_root / "Needs_Action" / "long.md")

    assert outcome.status == "pending_approval"
