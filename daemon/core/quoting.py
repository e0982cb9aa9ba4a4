"""Quoting values into the Markdown a person reads before they approve it.

This module owns how a value that vaultd did not write itself (a post's text, a partner, a
product, a reason that names them …) is put into a note: always inside code, as a code span
or a fenced code block, so that nothing in the value can restyle, hide or add to the text
around it. Inside code, CommonMark and Obsidian give no meaning to HTML (`<!-- -->`,
`<script>`), Obsidian comments (`%%`), wikilinks and embeds (`[[x]]`, `![[x]]`), headings,
list items or emphasis, so a value cannot hide a part of itself, add a line such as a second
"Amount", or end vaultd's block early. No value ever starts a line: a code span sits inside
a line of the template, and each line of a code block starts with `> `, which is what lets
`notes._split_block` end the block at the first line that is the end marker.

Every character is shown; those a reader could not see (control and format characters such
as zero-width spaces and bidi overrides, line and paragraph separators, private-use and
unassigned code points, fillers) are written as `⟨U+200B⟩`, and a newline inside one line
of text as `⏎`. `⟨` and `⏎` themselves are written the same way, so each shown text stands
for exactly one value. The quoting is deterministic: vaultd re-renders a request and
compares it byte for byte to find edits.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

NEWLINE = "⏎"
_ESCAPE_OPEN = "⟨"
# Letters that draw nothing although Unicode does not call them format characters.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u034f\u17b4\u17b5\u180e")
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"})
_BACKTICKS = re.compile(r"`+")


def escaped(char: str) -> str:
    """Given one character, return how it is shown when it cannot be shown as itself."""
    return f"{_ESCAPE_OPEN}U+{ord(char):04X}⟩"


# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt), which draw
# nothing whatever their category (variation selectors are Mn), and the blank Braille cell.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip


@lru_cache(maxsize=4096)
def _hidden(char: str) -> bool:
    point = ord(char)
    return (
        unicodedata.category(char) in _HIDDEN_CATEGORIES
        or char in _FILLERS
        or char in (_ESCAPE_OPEN, NEWLINE)
        or any(low <= point <= high for low, high in _IGNORABLE)
    )


# The characters _hidden finds that str.isprintable() lets through: the fillers, vaultd's
# own escapes and the ignorable ranges (some of them are letters, marks or symbols).
_HIDDEN_PRINTABLE = re.compile(
    "["
    + re.escape("".join(sorted(_FILLERS)) + _ESCAPE_OPEN + NEWLINE)
    + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in _IGNORABLE)
    + "]"
)


def visible(value: str, *, keep_newlines: bool = False) -> str:
    """Given a value, return it with every character a reader could not see escaped.

    A newline becomes `⏎` (the value is shown on one line), or stays a newline if
    `keep_newlines` (the value is shown in a code block); every other hidden character,
    and `⟨` and `⏎` themselves, becomes `⟨U+XXXX⟩`.
    """
    # Most values hide nothing: a text printable but for its newlines (no Cc, Cf, Cs, Co,
    # Cn, Zl or Zp) needs only the few characters isprintable() allows checked, not each one.
    if not _HIDDEN_PRINTABLE.search(value) and value.replace("\n", "").isprintable():
        return value if keep_newlines else value.replace("\n", NEWLINE)
    shown = []
    for char in value:
        if char == "\n":
            shown.append("\n" if keep_newlines else NEWLINE)
        elif _hidden(char):
            shown.append(escaped(char))
        else:
            shown.append(char)
    return "".join(shown)


def _fence(text: str, shortest: int) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    return "`" * max(shortest, longest + 1)


def code(value: object) -> str:
    """Given a value, return a CommonMark code span that shows it, whole, on one line.

    The fence is longer than any run of backticks in the value, and a space pads a value
    that starts or ends with a backtick or a space (CommonMark drops one on each side).
    An empty value is shown as nothing.
    """
    return _span(visible(str(value)))


def cell(value: object) -> str:
    """Given a value, return a code span for one cell of a GFM table row.

    A `|` would end the cell even inside code: it is written `\\|`, which GFM shows as `|`.
    A backslash right before a `|` is shown escaped, so that no renderer can read the pair
    as an escaped backslash followed by a cell's end.
    """
    text = re.sub(r"\\(?=\|)", escaped("\\"), visible(str(value)))
    return _span(text).replace("|", "\\|")


def _span(text: str) -> str:
    if not text:
        return ""
    fence = _fence(text, 1)
    if text[0] in "` " or text[-1] in "` ":
        text = f" {text} "
    return f"{fence}{text}{fence}"


def block(value: str, prefix: str = "> ") -> str:
    """Given a (multi-line) value, return a fenced code block that shows it whole, its
    newlines kept, each line starting with `prefix` (a block quote by default).

    The prefix means no line of the value ever starts a line of the note, so none can be
    read as vaultd's block markers. The fence is longer than any run of backticks inside.
    """
    text = visible(value, keep_newlines=True)
    fence = _fence(text, 3)
    bare = prefix.rstrip()
    lines = [fence, *text.split("\n"), fence]
    return "\n".join(prefix + line if line else bare for line in lines)
