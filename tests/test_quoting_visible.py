"""`quoting.visible`: its quick path for printable text shows exactly what the slow one does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.core import quoting
from daemon.core.quoting import NEWLINE, escaped, visible


def shown_char_by_char(value: str, *, keep_newlines: bool = False) -> str:
    """The definition: every character looked at on its own."""
    out = []
    for char in value:
        if char == "\n":
            out.append("\n" if keep_newlines else NEWLINE)
        elif quoting._hidden(char):
            out.append(escaped(char))
        else:
            out.append(char)
    return "".join(out)


def test_every_code_point_of_the_bmp_and_a_sample_of_the_rest_is_shown_as_defined():
    points = [*range(0x10000), *range(0x10000, 0x110000, 7), *range(0xE0000, 0xE1000)]
    wrong = [
        hex(point)
        for point in points
        if visible(chr(point)) != shown_char_by_char(chr(point))
        or visible(f"a{chr(point)}b") != shown_char_by_char(f"a{chr(point)}b")
    ]
    assert wrong == []


def test_the_hidden_characters_that_isprintable_allows_are_still_escaped():
    # Fillers (Lo), variation selectors (Mn), the blank Braille cell (So), vaultd's escapes.
    for char in ("\u115f", "\u3164", "\uffa0", "\u034f", "\u180b", "\ufe0f", "\u2800", "⟨", "⏎"):
        assert char.isprintable(), hex(ord(char))  # so the quick path alone would miss it
        assert visible(f"pay {char}now") == f"pay {escaped(char)}now"
    assert visible("pay \U000e0041now") == f"pay {escaped(chr(0xE0041))}now"  # a tag (Cf)


@given(st.text(), st.booleans())
def test_any_text_is_shown_as_defined(value: str, keep_newlines: bool):
    assert visible(value, keep_newlines=keep_newlines) == shown_char_by_char(
        value, keep_newlines=keep_newlines
    )


def test_a_text_of_several_lines_is_shown_as_defined_in_both_modes():
    text = "First line 🎉\nsecond line\n\nthird ⟨not an escape⟩\n"
    for keep in (True, False):
        assert visible(text, keep_newlines=keep) == shown_char_by_char(text, keep_newlines=keep)
    assert visible("a\nb") == f"a{NEWLINE}b"
    assert visible("a\nb", keep_newlines=True) == "a\nb"
