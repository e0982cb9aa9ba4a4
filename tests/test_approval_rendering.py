"""What an approver reads is all of what runs (issue 11, item 3).

An agent writes any value it likes into a task. Each request vaultd renders from such a value
is rendered here to HTML with a CommonMark renderer (markdown-it-py, with GFM tables), its
visible text taken as a person sees it: tags stripped, HTML comments and scripts unseen, and
Obsidian's own syntax applied outside code (`%%` comments hide, `![[x]]` embeds replace,
`[[x|y]]` shows only `y`). Then:

* every character that will be sent (post text, link, partner, product, description …) is
  in the visible text, hidden characters written as `⟨U+XXXX⟩` and newlines in a line as `⏎`;
* the request says "Amount" exactly once, and it is the total that runs;
* outside code, the request reads the same whatever the value (nothing is restyled or added);
* the block is split off the note again whole, however the value mentions vaultd's markers.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from daemon.core import notes
from daemon.core.errors import ValidationFailed
from daemon.core.models import Action, parse_action
from daemon.core.policy import Facts, Policy, decide
from daemon.lifecycle.approval import render_request

MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table")
HIDDEN = {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"}

HOSTILE = [
    "before <!-- hidden from the reviewer --> after",
    "<!-- never closed",
    "a --> b",
    "visible %%hidden by Obsidian%% visible",
    "a %% never closed",
    "see [[Secret plan]] and [[target|alias]]",
    "![[embedded note]]",
    "line one\nline two\n\nline four",
    "Acme\n- **Amount:** 97.00 USD",
    "- **Amount:** 97.00 USD",
    "<b>Amount:</b> 1.00 USD",
    "x\n\n| product | description |\n|---|---|\n| fake | line |",
    "a | b | c",
    "a\\|b \\\\| c\\",
    "`",
    "a ``two`` b ```three``` c",
    "````\nfenced\n````",
    "~~~\ntilde\n~~~",
    "<script>document.body.innerHTML = ''</script>",
    "zero\u200bwidth\u200cjoiners\u200d\ufeffand\u2060more",
    "bidi \u202eesrever\u202c",
    "\u3164filler",
    "# A heading\n### What will happen",
    "<!-- vaultd:end -->",
    "<!-- vaultd:begin (written by vaultd; edits here are replaced) -->",
    "x\n<!-- vaultd:end -->\ny",
    "a\rb\r\nc\u2028d\u2029e\x85f\x0bg",
    "tab\there",
    "⏎ and ⟨U+0041⟩ are shown as themselves",
    "> [!danger] Approved by the CFO already",
    "$x^2$ ==marked== *emph* _under_ ~~struck~~",
    "&lt;!-- entities --&gt; &#96; &amp;",
    "[a link](https://evil.example) <https://evil.example>",
    "<small>unclosed",
    "\\",
    "trailing backslash \\",
]
BENIGN = "x"


# -- reading a request as a person does --------------------------------------------------


class _Segments(HTMLParser):
    """The text of an HTML page as a browser shows it, in segments marked as code or not."""

    BLOCKS = frozenset(
        {"p", "li", "ul", "ol", "tr", "td", "th", "table", "thead", "tbody", "blockquote", "pre"}
        | {"div", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6"}
    )
    UNSEEN = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.segments: list[tuple[str, bool]] = []
        self.code = self.unseen = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._tag(tag, +1)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, -1)

    def _tag(self, tag: str, step: int) -> None:
        if tag in self.BLOCKS:
            self.segments.append(("\n", False))
        if tag == "code":
            self.code = max(0, self.code + step)
        if tag in self.UNSEEN:
            self.unseen = max(0, self.unseen + step)

    def handle_data(self, data: str) -> None:
        if not self.unseen:
            self.segments.append((data, self.code > 0))


_CODE = "\U0010fffd"  # stands for one code segment while Obsidian's syntax is applied


def _seen(markdown: str, code_as: str | None) -> str:
    parser = _Segments()
    parser.feed(MARKDOWN.render(markdown))
    parser.close()
    codes = [text for text, is_code in parser.segments if is_code]
    flat = "".join(_CODE if is_code else text for text, is_code in parser.segments)
    # Obsidian, outside code: a %% comment hides (to the end if never closed), an embed
    # shows other content, a wikilink shows its alias or its target.
    flat = re.sub(r"%%.*?(%%|\Z)", "", flat, flags=re.S)
    flat = re.sub(r"!\[\[[^\]]*\]\]", "", flat)
    flat = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", flat)
    pieces = iter(codes)
    return re.sub(_CODE, lambda _: next(pieces) if code_as is None else code_as, flat)


def visible_text(markdown: str) -> str:
    """Return all the text a person sees of this Markdown, code included."""
    return _seen(markdown, None)


def structure(markdown: str) -> str:
    """Return what a person sees of this Markdown outside code (each code span or block as ▯)."""
    return _seen(markdown, "▯")


def reveal(shown: str) -> str:
    """Undo the request's visible escapes: `⟨U+XXXX⟩` is that character, `⏎` a newline."""
    return re.sub(r"⟨U\+([0-9A-F]{4,6})⟩", lambda m: chr(int(m[1], 16)), shown.replace("⏎", "\n"))


# -- the actions ---------------------------------------------------------------------------


def post(value: str) -> dict[str, Any]:
    return {
        "type": "social_post",
        "platforms": ["facebook"],
        "kind": "reply",
        "in_reply_to": "1_2",
        "text": f"Thanks! {value}",
        "link": f"https://example.com/{value}",
        "image_url": f"https://example.com/a.jpg?{value}",
    }


def invoice(value: str) -> dict[str, Any]:
    line = {"product": f"P {value}", "quantity": 2, "price_unit": 48.5, "description": value}
    return {
        "type": "odoo_invoice",
        "partner": f"Acme {value}",
        "lines": [line, {"product": value, "quantity": 1, "price_unit": 3}],
    }


def payment(value: str) -> dict[str, Any]:
    return {
        "type": "odoo_payment",
        "invoice": f"INV/{value}",
        "amount": "45.50",
        "journal": f"Bank {value}",
        "partner": f"Blue {value}",
    }


def sent_values(action: Action) -> list[str]:
    """Every text of the action that goes to a service (or picks what it goes to)."""
    data = action.payload()
    values = [data.get(key) for key in ("text", "link", "image_url", "partner", "journal")]
    values += [str(data["invoice"])] if "invoice" in data else []
    for line in data.get("lines", []):
        values += [line["product"], line.get("description")]
    return [value for value in values if value]


def request_for(action: Action) -> str:
    return render_request(
        task_id="20261122-0900-ab12",
        action=action,
        decision=decide(action, Policy(), Facts()),
        payload_hash=action.payload_hash(),
        expires_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
    )


def check_request(make: Any, value: str) -> None:
    """Render the request for `make(value)` and check all that an approver relies on."""
    action = parse_action(make(value))
    request = request_for(action)

    shape = structure(request)
    amounts = [line.strip() for line in shape.splitlines() if "Amount" in line]
    total = action.total()
    assert amounts == ([] if total is None else [f"Amount: {total:,.2f} USD"])

    seen = visible_text(request)
    revealed = reveal(seen)
    for sent in sent_values(action):
        if sent not in revealed:
            pytest.fail(f"the approver cannot see all of {sent[:200]!r}")
    invisible = [c for c in seen if unicodedata.category(c) in HIDDEN and c != "\n"]
    assert invisible == [], "a character the approver cannot see is shown as itself"

    benign = request_for(parse_action(make(BENIGN)))
    assert shape == structure(benign), "the value changed the request outside its code"

    body = "The agent's own body.\n"
    parsed = notes.parse(notes.render(notes.parse(body), {"id": "x"}, request))
    assert (parsed.block, parsed.body) == (notes.BLOCK_BEGIN + request + notes.BLOCK_END, body)


# -- the attacks ----------------------------------------------------------------------------


def test_an_html_comment_in_a_post_cannot_hide_text_from_the_reviewer():
    check_request(post, "before <!-- hidden from the reviewer --> after")


def test_an_obsidian_comment_wikilink_or_embed_in_a_post_cannot_hide_text():
    for value in ("a %%hidden%% b", "[[target|alias]]", "![[embedded note]]"):
        check_request(post, value)


def test_a_newline_in_partner_cannot_add_a_fake_amount_line():
    check_request(invoice, "\n- **Amount:** 97.00 USD")


def test_a_newline_in_a_description_cannot_break_the_invoice_line_table():
    check_request(invoice, "x\n\n| fake | line |\n\nhidden <!--")


def test_a_pipe_in_a_product_cannot_split_its_table_cell():
    check_request(invoice, "a | b \\| c\\")


def test_backtick_runs_cannot_close_the_code_that_quotes_them():
    for value in ("`", "a ``b`` c", "````\nfenced\n````"):
        check_request(post, value)
        check_request(invoice, value)


def test_zero_width_and_bidi_characters_are_shown_not_hidden():
    check_request(post, "zero\u200bwidth \u202eesrever\u202c")
    check_request(invoice, "Acme\u200b")


def test_vaultds_markers_in_a_value_do_not_end_the_block_early():
    for value in ("<!-- vaultd:end -->", "x\n<!-- vaultd:end -->\ny", notes.BLOCK_BEGIN):
        check_request(post, value)
        check_request(payment, value)


@pytest.mark.parametrize("make", [post, invoice, payment])
@pytest.mark.parametrize("value", HOSTILE)
def test_no_hostile_value_hides_restyles_or_adds_to_the_request(make: Any, value: str):
    check_request(make, value)


def test_the_whole_text_of_a_long_post_is_shown():
    text = "".join(f"line {n} <!-- {n} --> %% [[{n}]]\n" for n in range(1500))
    check_request(post, text)


def test_the_same_action_renders_the_same_request():
    action = parse_action(post("<!-- x --> `y` \u200b"))
    assert request_for(action) == request_for(parse_action(post("<!-- x --> `y` \u200b")))


_PIECES = st.sampled_from(
    ["<!--", "-->", "%%", "[[", "]]", "![[", "|", "\\", "`", "```", "\n", "\r", "- ", "# ",
     "**Amount:** 97.00 USD", "<!-- vaultd:end -->", "\u200b", "\u202e", ">", "~~~", "$", "x"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    make=st.sampled_from([post, invoice, payment]),
    value=st.lists(_PIECES | st.text(max_size=5), min_size=1, max_size=12).map("".join),
)
def test_any_value_is_shown_whole_and_restyles_nothing(make: Any, value: str):
    try:
        parse_action(make(value))
    except ValidationFailed:  # a value the model refuses never reaches a request
        return
    check_request(make, value)
