"""The note format: byte-exact bodies, the user's frontmatter kept, strict YAML."""

import pytest

from daemon.core import notes
from daemon.core.errors import NoteError
from daemon.core.models import SocialPost
from daemon.core.taskfile import validate_note

USER = "# written by the agent\ntype: social_post\nplatforms:\n- facebook\ntext: 'hi: there'\n"
BODY = "First line.\n\n  indented, trailing spaces   \n\n\n"


def test_render_keeps_user_frontmatter_lines_and_body_byte_for_byte():
    note = notes.parse(f"---\n{USER}---\n{BODY}")
    text = notes.render(note, {"id": "20261122-abcdef", "status": "pending_approval"})
    assert text == f"---\n{USER}id: 20261122-abcdef\nstatus: pending_approval\n---\n{BODY}"


def test_render_replaces_earlier_stamps_instead_of_adding_new_ones():
    note = notes.parse(f"---\n{USER}id: old\nresult:\n  facebook:\n    id: 1\n---\n{BODY}")
    again = notes.parse(notes.render(note, {"id": "new", "status": "done"}))
    assert again.meta == {**note.user_meta, "id": "new", "status": "done"}
    assert again.body == BODY


def test_rendered_block_sits_above_the_body_and_is_split_off_again():
    note = notes.parse(f"---\n{USER}---\n{BODY}")
    text = notes.render(note, {"id": "x"}, block="## Request\n")
    parsed = notes.parse(text)
    assert parsed.body == BODY
    assert parsed.block == notes.BLOCK_BEGIN + "## Request\n" + notes.BLOCK_END
    assert notes.parse(notes.render(parsed, {"id": "x"}, block="")).block == ""


def test_a_note_without_frontmatter_gets_one_and_keeps_its_body():
    text = notes.render(notes.parse(BODY), {"status": "rejected", "error": "no frontmatter"})
    assert text == f"---\nstatus: rejected\nerror: no frontmatter\n---\n{BODY}"


def test_crlf_notes_keep_their_line_endings():
    source = "---\r\ntype: social_post\r\n---\r\nBody\r\n"
    text = notes.render(notes.parse(source), {"id": "x"})
    assert text == "---\r\ntype: social_post\r\nid: x\r\n---\r\nBody\r\n"


def test_user_meta_leaves_out_reserved_keys():
    note = notes.parse("---\ntype: social_post\nid: x\nstatus: done\nerror: e\n---\n")
    assert note.user_meta == {"type": "social_post"}
    assert note.stamps == {"id": "x", "status": "done", "error": "e"}


def test_unusual_layouts_fall_back_to_a_clean_dump_with_the_same_data():
    # A flow mapping spanning lines confuses the line-based edit; the data must survive.
    note = notes.parse("---\n{type: social_post,\n id: old}\n---\nBody\n")
    again = notes.parse(notes.render(note, {"id": "new"}))
    assert again.meta == {"type": "social_post", "id": "new"}
    assert again.body == "Body\n"


@pytest.mark.parametrize(
    ("frontmatter", "message"),
    [
        ("a: &x 1\nb: *x\n", "anchor &x"),
        ("a: [*x]\n", "alias"),
        ("a: !!python/object:os.system {}\n", "tag not allowed"),
        ("a: !!python/name:os.system\n", "tag not allowed"),
        ("a: 1\na: 2\n", "appears twice"),
        ("type: social_post\n<<: {type: odoo_payment}\n", "merge keys"),
        ("a: " + "[" * 60 + "]" * 60 + "\n", "nested deeper"),
        ("a: [unclosed\n", "invalid YAML at line"),
        ("- a\n- b\n", "key: value pairs"),
        ("just text\n", "key: value pairs"),
        ("1: x\n", "is not text"),
    ],
)
def test_hostile_or_broken_frontmatter_raises_note_error(frontmatter, message):
    with pytest.raises(NoteError, match=message):
        notes.parse(f"---\n{frontmatter}---\nbody\n")


def test_unclosed_frontmatter_is_an_error():
    with pytest.raises(NoteError, match="no closing"):
        notes.parse("---\ntype: social_post\n")


def test_nul_bytes_are_refused():
    with pytest.raises(NoteError, match="NUL"):
        notes.parse("---\ntype: x\n---\n\x00")


def test_empty_frontmatter_is_an_empty_mapping():
    assert notes.parse("---\n---\nbody\n").meta == {}


def test_a_byte_order_mark_is_not_mistaken_for_text_and_is_kept():
    note = notes.parse("\ufeff---\ntype: social_post\n---\nBody\n")
    assert note.meta == {"type": "social_post"}
    assert notes.render(note, {"id": "x"}) == "\ufeff---\ntype: social_post\nid: x\n---\nBody\n"


def test_a_byte_order_mark_inside_the_frontmatter_is_refused():
    # Found by hypothesis: libyaml reads it as the start of a new document, so the note
    # parsed as written but not once vaultd had added its keys.
    with pytest.raises(NoteError, match="byte-order mark"):
        notes.parse("---\n\r\n\ufefftype: social_post\n\n---\n")


@pytest.mark.parametrize(
    "text",
    [
        "type: social_post\ntext: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "type: social_post\ntext: " + "{a: " * 10_000 + "b" + "}" * 10_000 + "\n",
        "type: social_post\ntext: " + "[" * 33 + "]" * 33 + "\n",
    ],
    ids=["list_10000", "map_10000", "list_33"],
)
def test_deep_flow_nesting_is_refused_by_vaultd_before_the_yaml_library_reads_it(
    text: str, monkeypatch: pytest.MonkeyPatch
):
    def library_must_not_see_it(*args: object, **kwargs: object) -> None:
        raise AssertionError("the YAML library was asked to parse a document vaultd refuses")

    monkeypatch.setattr(notes.yaml, "parse", library_must_not_see_it)
    with pytest.raises(NoteError) as refused:
        notes._refuse_structure(text)
    assert str(refused.value) == f"frontmatter is nested deeper than {notes.MAX_DEPTH} levels"


@pytest.mark.parametrize(
    "text",
    [
        'text: "' + "[" * 100 + '"\n',
        "text: '" + "{" * 100 + "'\n",
        "text: it's ok # " + "[" * 100 + "\n",
        "lines: [" + ", ".join("[1, 2]" for _ in range(100)) + "]\n",
        "text: " + "[" * 31 + "]" * 31 + "\n",  # with the mapping: 32 levels
        'text: "a\\" ' + "[" * 40 + '"\n',
    ],
    ids=["double_quoted", "single_quoted", "comment", "wide", "at_the_limit", "escaped_quote"],
)
def test_brackets_in_quotes_comments_or_side_by_side_are_not_nesting(text: str):
    assert not notes.flow_depth_exceeds(text, notes.MAX_DEPTH)
    notes._refuse_structure(text)  # and the full check accepts it


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("104954_12345", "104954_12345"),  # a Facebook object id; YAML 1.1: 10495412345
        ("0123", "0123"),  # YAML 1.1: octal 83
        ("0x1F", "0x1F"),  # 31
        ("1:30", "1:30"),  # sexagesimal 90
        ("1_000", "1_000"),  # 1000
        ("42", 42),
        ("-7", -7),
        ("+5", 5),
        ("12345678901234567890", 12345678901234567890),
    ],
)
def test_an_unquoted_number_is_a_number_only_as_written_in_plain_decimal(
    written: str, read: object
):
    note = notes.parse(f"---\ntype: social_post\nin_reply_to: {written}\n---\nbody\n")
    assert note.meta["in_reply_to"] == read


def test_a_reply_to_an_unquoted_facebook_id_goes_to_that_id():
    text = (
        "---\ntype: social_post\nplatforms: [facebook]\nkind: reply\n"
        "in_reply_to: 104954_12345\ntext: Thanks!\n---\n"
    )
    action = validate_note(notes.parse(text))
    assert isinstance(action, SocialPost)
    assert action.in_reply_to == "104954_12345"
