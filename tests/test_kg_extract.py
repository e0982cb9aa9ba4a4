"""The knowledge graph reads one note into facts: links, embeds, tags and entities, each at
the line a person sees, never from code, never from a value that only looks like a link."""

from __future__ import annotations

import hashlib

from daemon.agents.kg.extract import Fact, extract
from daemon.agents.kg.markdown import scan


def facts_of(text: str, path: str = "Notes/a.md") -> list[Fact]:
    return extract(path, text.encode()).facts


def kinds(text: str) -> list[tuple[str, str, int]]:
    return [(f.kind, f.value, f.line_start) for f in facts_of(text)]


def test_wikilinks_with_heading_block_alias_and_embed_are_read_with_their_parts():
    body = "See [[Plan#Goals|the goals]], [[Log#^abc123]] and ![[chart.png]].\n"
    links, _ = scan(body, 1)
    assert [(x.target, x.anchor, x.alias, x.embed) for x in links] == [
        ("Plan", "Goals", "the goals", False),
        ("Log", "^abc123", "", False),
        ("chart.png", "", "", True),
    ]


def test_a_pipe_escaped_in_a_table_still_separates_the_alias():
    links, _ = scan("| [[Acme Corp\\|Acme]] | 3 |\n", 1)
    assert [(x.target, x.alias) for x in links] == [("Acme Corp", "Acme")]


def test_links_and_tags_inside_code_are_ignored():
    text = (
        "Real [[One]] #real\n"
        "```python\n"
        "x = '[[Not In Fence]]'  # #nottag\n"
        "```\n"
        "~~~~\n"
        "[[Tilde Fence]]\n"
        "```\n"  # a shorter fence of another kind does not close a ~~~~ fence
        "[[Still Inside]]\n"
        "~~~~\n"
        "Inline `[[In Span]] #span` and ``[[Double `tick`]]`` then [[Two]]\n"
    )
    assert kinds(text) == [
        ("link", "One", 1),
        ("link", "Two", 10),
        ("tag", "real", 1),
    ]


def test_headings_issue_numbers_and_url_fragments_are_not_tags():
    text = "# Heading\n## Sub\nFixes #123 and see http://x.test/#frag, then #Q1/Plans and #ok-2\n"
    assert [(f.value, f.line_start) for f in facts_of(text) if f.kind == "tag"] == [
        ("q1/plans", 3),
        ("ok-2", 3),
    ]


def test_frontmatter_link_properties_tags_and_entities_have_their_lines():
    text = (
        "---\n"
        "id: task-1\n"
        'related: "[[Acme Corp]]"\n'
        "people:\n"
        '  - "[[Jane Doe]]"\n'
        "  - plain text\n"
        "tags: [clients, '#Q1']\n"
        "partner: Acme Corporation\n"
        "platforms: [facebook, twitter]\n"
        "lines:\n"
        "  - product: Consulting hour\n"
        "---\n"
        "Body [[Plan]]\n"
    )
    got = {(f.kind, f.field, f.value, f.entity, f.line_start) for f in facts_of(text)}
    assert got == {
        ("property", "related", "Acme Corp", "", 3),
        ("property", "people", "Jane Doe", "", 5),
        ("tag", "tags", "clients", "", 7),
        ("tag", "tags", "q1", "", 7),
        ("entity", "partner", "Acme Corporation", "partner", 8),
        ("entity", "platforms", "facebook", "platform", 9),
        ("entity", "platforms", "twitter", "platform", 9),
        ("entity", "lines", "Consulting hour", "product", 11),
        ("link", "", "Plan", "", 13),
    }
    assert extract("a.md", text.encode()).vaultd_id == "task-1"


def test_a_value_that_only_contains_a_link_in_a_quoted_string_is_not_a_link():
    text = '---\ntext: \'Read "[[Secret Plan]]" today\'\nnote: "see [[Other]] too"\n---\nBody\n'
    assert [f for f in facts_of(text) if f.kind in ("property", "link")] == []


def test_evidence_quotes_the_line_and_pins_the_sha256_of_the_bytes():
    data = b"---\ntags: [a]\n---\nfirst\nsecond [[Target]]\n"
    note = extract("x.md", data)
    assert note.sha256 == hashlib.sha256(data).hexdigest()
    link = next(f for f in note.facts if f.kind == "link")
    assert (link.line_start, link.line_end, link.quote) == (5, 5, "second [[Target]]")
    assert (note.line_count, note.first_line) == (5, "---")


def test_body_lines_are_counted_past_vaultds_block_and_crlf():
    text = (
        "---\r\ntype: x\r\n---\r\n"
        "<!-- vaultd:begin (written by vaultd; edits here are replaced) -->\r\n"
        "[[In Block]]\r\n<!-- vaultd:end -->\r\n"
        "line seven [[Seven]]\r\n"
    )
    assert kinds(text) == [("link", "Seven", 7)]


def test_a_note_whose_frontmatter_fails_is_failed_with_its_reason_and_its_body_still_read():
    text = "---\na: &anchor 1\nb: *anchor\n---\nBody [[Still Read]] #kept\n"
    note = extract("bad.md", text.encode())
    assert note.status == "failed"
    assert "alias" in note.reason or "anchor" in note.reason
    assert [(f.kind, f.value, f.line_start) for f in note.facts] == [
        ("link", "Still Read", 5),
        ("tag", "kept", 5),
    ]


def test_duplicate_keys_and_unclosed_frontmatter_fail_without_raising():
    dup = extract("d.md", b"---\npartner: A\npartner: B\n---\n")
    unclosed = extract("u.md", b"---\npartner: A\n[[Link]]\n")
    assert (dup.status, unclosed.status) == ("failed", "failed")
    assert "appears twice" in dup.reason
    assert unclosed.facts == []  # all of it was frontmatter that never closed


def test_binary_and_non_utf8_files_fail_with_a_reason():
    assert extract("b.md", b"\x00\x01[[X]]").status == "failed"
    latin = extract("l.md", "caf\xe9 [[X]]".encode("latin-1"))
    assert (latin.status, latin.reason) == ("failed", "not UTF-8 text (byte 3)")


def test_ten_thousand_links_in_one_note_are_all_read():
    body = "".join(f"[[n{i}]]\n" for i in range(10_000))
    assert len(facts_of(body)) == 10_000
