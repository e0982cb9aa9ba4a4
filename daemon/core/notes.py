"""Reading and writing task notes without disturbing what people wrote.

A note is optional YAML frontmatter between `---` lines, then a Markdown body. vaultd adds
its own keys (`RESERVED_KEYS`) at the end of the frontmatter and may put a rendered block
at the very top of the body between `BLOCK_BEGIN` and `BLOCK_END`. Everything else — the
user's keys, their comments and order, and the body — is kept byte for byte.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from typing import Any

import yaml
from frontmatter.default_handlers import YAMLHandler

from daemon.core.errors import NoteError

# Keys vaultd writes. They are never part of the action payload.
RESERVED_KEYS = (
    "id",
    "status",
    "approval",
    "result",
    "error",
    "note",
    "rejection_reason",
    "origin",  # written by vaultd into the task files of skill runs (see daemon/core/origin.py)
    "approved_version",  # the hash `vaultd approve` approved (daemon/core/request_versions.py)
    "code",  # what vaultd prepared for a code task: its commits and diff (models.Prepared)
)

BLOCK_BEGIN = "<!-- vaultd:begin (written by vaultd; edits here are replaced) -->\n"
BLOCK_END = "<!-- vaultd:end -->\n"
# The end marker as a whole line (trailing blanks allowed), with either line ending or none.
_BLOCK_END_LINE = re.compile(r"(?<=\n)" + re.escape(BLOCK_END.rstrip("\n")) + r"[ \t]*(?:\r?\n|\Z)")

MAX_DEPTH = 32
# Values (keys, scalars, lists, mappings) a frontmatter may hold. A real task has a few dozen;
# an invoice with a thousand lines has about 9,000. Far more is an attack on the parser and on
# the error message that lists every unknown key: refused before any node is built.
MAX_VALUES = 20_000
_TOP_LEVEL_KEY = re.compile(r"^(['\"]?)([A-Za-z_][\w-]*)\1\s*:(\s|$)")


try:  # libyaml: an order of magnitude faster
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


_FLOW_MARKS = re.compile(r"[\[\]{}\"'#\n\\]")
# A quote opens a quoted scalar only where a scalar may start.
_QUOTE_AFTER = frozenset(" \t\n[{,:-?")


def flow_depth_exceeds(raw: str, limit: int) -> bool:
    """Given YAML text, return whether its flow collections (`[`, `{`) nest deeper than
    `limit`, read from the text alone, before any YAML library sees it.

    Parsers keep limits of their own that differ by version (libyaml stops at its own depth
    with its own words): vaultd's limit must fire first, so a person always reads vaultd's
    message. Quoted scalars and comments are skipped; a bracket inside a plain or block
    scalar counts, so this can only over-count, never let a deep document through.
    """
    if raw.count("[") + raw.count("{") <= limit:
        return False  # the common case, decided in C
    depth, quote, escaped, comment = 0, "", False, False
    for match in _FLOW_MARKS.finditer(raw):
        mark, at = match.group(), match.start()
        before = raw[at - 1] if at else "\n"
        if comment:
            comment = mark != "\n"
        elif quote == '"':
            if escaped:
                escaped = False
            elif mark == "\\":
                escaped = True
            elif mark == '"':
                quote = ""
        elif quote == "'":
            if mark == "'":
                quote = ""  # '' (an escaped quote) closes and opens again: the same depth
        elif mark in "\"'" and before in _QUOTE_AFTER:
            quote = mark
        elif mark == "#" and before in " \t\n":
            comment = True
        elif mark in "[{":
            depth += 1
            if depth > limit:
                return True
        elif mark in "]}":
            depth = max(0, depth - 1)
    return False


def _refuse_structure(raw: str) -> None:
    """Refuse anchors, aliases, deep nesting and too many values, reading the parser's flat
    event stream.

    Aliases are how "billion laughs" documents blow up. Checking events, before any node
    tree is composed, also means a 10,000-level document is refused without recursing, and a
    document of 100,000 keys without building them.
    """
    if "\ufeff" in raw:
        # A byte-order mark inside YAML starts a new document for libyaml: the note would
        # parse now and not after vaultd adds its keys.
        raise NoteError("the frontmatter contains a byte-order mark (U+FEFF); remove it")
    if flow_depth_exceeds(raw, MAX_DEPTH):
        raise NoteError(f"frontmatter is nested deeper than {MAX_DEPTH} levels")
    depth = values = 0
    for event in yaml.parse(raw, Loader=_BaseLoader):
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent):
            raise NoteError(f"YAML alias *{anchor} is not allowed in a task file")
        if anchor:
            raise NoteError(f"YAML anchor &{anchor} is not allowed in a task file")
        if isinstance(event, yaml.ScalarEvent | yaml.MappingStartEvent | yaml.SequenceStartEvent):
            values += 1
            if values > MAX_VALUES:
                raise NoteError(f"frontmatter holds more than {MAX_VALUES:,} values")
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise NoteError(f"frontmatter is nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


class _StrictLoader(_BaseLoader):
    """A safe loader that also refuses duplicate keys, keys that are not text, and values
    that parse but cannot be built. Run `_refuse_structure` first.

    Duplicate keys let the text a human reads differ from what a machine reads.
    """

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as error:
            # YAML that scans but cannot be built, such as the date 2026-02-30.
            line = node.start_mark.line + 2  # counted from the opening --- line
            raise NoteError(f"invalid value at line {line}: {error}") from None

    def construct_yaml_int(self, node: Any) -> Any:
        """An integer as written in plain decimal; anything else YAML 1.1 reads as one
        (`104954_12345`, `0123`, `0x1F`, `1:30`) stays the text the person wrote: read as a
        number, a Facebook id `104954_12345` became 10495412345, another object's id."""
        number = super().construct_yaml_int(node)
        text = str(node.value)
        return number if text.lstrip("+") == str(number) else text

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 2
                raise NoteError(f"a key at line {line} is a list or mapping, not plain text")
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise NoteError("YAML merge keys (<<) are not allowed in a task file")
            if key in seen:
                raise NoteError(f"key {key!r} appears twice", field=str(key))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


class _Handler(YAMLHandler):
    def load(self, fm: str, **kwargs: object) -> Any:
        _refuse_structure(fm)
        return super().load(fm, Loader=_StrictLoader)

    def export(self, metadata: dict[str, object], **kwargs: object) -> str:
        return str(super().export(metadata, Dumper=_Dumper, sort_keys=False, width=1000))


_handler = _Handler()


@dataclass
class Note:
    """A parsed task note.

    `frontmatter` is the raw text between the `---` lines (None if the note has none);
    `meta` is all of it parsed; `body` is the user's body without vaultd's block.
    """

    frontmatter: str | None
    meta: dict[str, Any]
    body: str
    block: str = ""
    newline: str = "\n"
    # A byte-order mark some Windows editors put first; kept so the file stays as it was.
    bom: str = ""

    @property
    def user_meta(self) -> dict[str, Any]:
        """Return the frontmatter without vaultd's keys: the action as the user wrote it."""
        return {k: v for k, v in self.meta.items() if k not in RESERVED_KEYS}

    @property
    def stamps(self) -> dict[str, Any]:
        return {k: v for k, v in self.meta.items() if k in RESERVED_KEYS}


def parse(text: str) -> Note:
    """Given the text of a note, return it parsed. Raise NoteError if it cannot be."""
    if "\x00" in text:
        raise NoteError("file contains NUL bytes; it is not a text note")
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    text = text.removeprefix(bom)
    newline = "\r\n" if text.startswith("---\r\n") else "\n"
    if not text.startswith("---" + newline):
        body, block = _split_block(text)
        return Note(None, {}, body, block, newline, bom)
    lines = text.splitlines(keepends=True)
    for index in range(1, len(lines)):
        if lines[index].rstrip("\r\n") in ("---", "..."):
            raw = "".join(lines[1:index])
            body, block = _split_block("".join(lines[index + 1 :]))
            return Note(raw, _load(raw), body, block, newline, bom)
    raise NoteError("frontmatter starts with --- but has no closing --- line")


def _load(raw: str) -> dict[str, Any]:
    # The pipeline re-reads what it has just written; parsing YAML is its costliest step.
    return copy.deepcopy(_load_cached(raw))


@functools.lru_cache(maxsize=512)
def _load_cached(raw: str) -> dict[str, Any]:
    try:
        data = _handler.load(raw)
    except NoteError:
        raise
    except yaml.constructor.ConstructorError as error:
        tag = getattr(error, "problem", "") or str(error)
        raise NoteError(f"YAML tag not allowed ({tag.strip()})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 2}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise NoteError(f"invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise NoteError(f"frontmatter is nested deeper than {MAX_DEPTH} levels") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NoteError(f"frontmatter must be key: value pairs, not a {type(data).__name__}")
    bad_keys = [key for key in data if not isinstance(key, str)]
    if bad_keys:
        raise NoteError(f"frontmatter key {bad_keys[0]!r} is not text", field=str(bad_keys[0]))
    return data


def _split_block(body: str) -> tuple[str, str]:
    """Split vaultd's rendered block off the top of a body: return (body, block).

    The block ends at the first line that is the end marker and nothing else, found with
    either line ending: an editor may have saved the whole note with CRLF, and the block
    must still not become part of the user's body. The marker's text elsewhere on a line
    (inside a value the block quotes) does not end it: vaultd never writes a value at the
    start of a line of its block (see daemon/core/quoting.py).
    """
    begin = BLOCK_BEGIN.rstrip("\n")
    if body.startswith((begin + "\n", begin + "\r\n")):
        end = _BLOCK_END_LINE.search(body, len(begin))
        if end is not None:
            return body[end.end() :], body[: end.end()]
    return body, ""


def render(note: Note, stamps: dict[str, Any], block: str | None = None) -> str:
    """Return the note's text with vaultd's keys set to `stamps` (None values dropped).

    The user's frontmatter lines and the body are kept as they were. `block` replaces
    vaultd's rendered block; None keeps the current one, "" removes it.
    """
    nl = note.newline
    stamps = {k: v for k, v in stamps.items() if v is not None}
    user_lines = _strip_reserved(note.frontmatter or "")
    stamp_text = _handler.export(stamps).replace("\n", nl) + nl if stamps else ""
    frontmatter = user_lines + stamp_text
    if note.frontmatter is not None and not _loads_as(frontmatter, {**note.user_meta, **stamps}):
        # The line-based edit misread an unusual layout (a flow mapping `{type: ...}`, say,
        # to which key lines cannot be added): fall back to a clean dump.
        frontmatter = _handler.export({**note.user_meta, **stamps}).replace("\n", nl) + nl
    body_block = (
        note.block
        if block is None
        else (BLOCK_BEGIN + block + BLOCK_END).replace("\n", nl)
        if block
        else ""
    )
    head = f"---{nl}{frontmatter}---{nl}" if frontmatter.strip() else ""
    return note.bom + head + body_block + note.body


def _loads_as(frontmatter: str, wanted: dict[str, Any]) -> bool:
    # Compared in place, never handed out: the cached value needs no copy here.
    try:
        return _load_cached(frontmatter) == wanted
    except NoteError:
        return False


def _strip_reserved(frontmatter: str) -> str:
    """Remove top-level reserved keys (and their indented values) from raw frontmatter."""
    kept: list[str] = []
    skipping = False
    for line in frontmatter.splitlines(keepends=True):
        match = _TOP_LEVEL_KEY.match(line)
        if match:
            skipping = match.group(2) in RESERVED_KEYS
        elif line.strip() and not line[0].isspace() and not line.startswith(("-", "#")):
            skipping = False
        if not skipping:
            kept.append(line)
    text = "".join(kept)
    if text and not text.endswith("\n"):
        text += "\n"
    return text
