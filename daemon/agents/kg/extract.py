"""One note's bytes into facts: its identity, links, tags and entities, each with the line
range and the quoted line it came from.

The frontmatter is parsed by vaultd's own safe parser (daemon/core/notes.py), never by a
plain YAML load. A note whose frontmatter cannot be parsed is `failed` with the reason, and
its body is still read for links and tags: a note is indexed as far as it can be.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, fields
from typing import Any

from daemon.agents.kg.markdown import WIKILINK, normal_tag, quote, scan, split_link
from daemon.core import notes
from daemon.core.errors import NoteError

# A frontmatter key holding one of these names an entity of that kind.
ENTITY_KEYS = {
    "partner": "partner",
    "customer": "partner",
    "vendor": "partner",
    "invoice": "invoice",
    "invoice_number": "invoice",
    "platform": "platform",
    "platforms": "platform",
    "product": "product",
}
TAG_KEYS = ("tags", "tag")
_WHOLE_LINK = re.compile(r"^\s*(!?)\[\[([^\[\]\n]+)\]\]\s*$")
# Possessive (`*+`): the key's characters are never given back, so a long line with no
# colon fails at once (backtracking into it was quadratic: 4 s for one 40 KB line).
_KEY_LINE = re.compile(r"^(['\"]?)([^\s:'\"#-][^:'\"]*+)\1\s*:(\s|$)")
_MAX_ID = 200


@dataclass(frozen=True)
class Fact:
    """What one place of a note says.

    `kind` is `link` (a body wikilink), `embed`, `property` (a frontmatter link property),
    `tag` or `entity`; `field` is the frontmatter key ("" in the body); `value` is the link
    target, the tag or the entity's name; `entity` its kind (partner, invoice …).
    """

    kind: str
    value: str
    line_start: int
    line_end: int
    quote: str
    field: str = ""
    entity: str = ""
    anchor: str = ""
    alias: str = ""


@dataclass
class NoteFacts:
    """Everything the graph knows of one note, as read from bytes with this SHA-256."""

    path: str
    sha256: str
    size: int
    status: str  # indexed | failed
    reason: str = ""
    vaultd_id: str | None = None
    line_count: int = 0
    first_line: str = ""
    facts: list[Fact] = field(default_factory=list)
    search_text: str = ""

    def to_json(self) -> dict[str, Any]:
        """The fields but `search_text`, as dataclasses.asdict gives them (every value is a
        str, an int or None: asdict's deep copy of each, a tenth of a build, copies nothing)."""
        data = {name: getattr(self, name) for name in _NOTE_FIELDS}
        data["facts"] = [
            {name: getattr(fact, name) for name in _FACT_FIELDS} for fact in self.facts
        ]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NoteFacts:
        facts = [Fact(**fact) for fact in data.pop("facts")]
        return cls(**data, facts=facts)


_FACT_FIELDS = tuple(f.name for f in fields(Fact))
_NOTE_FIELDS = tuple(f.name for f in fields(NoteFacts) if f.name != "search_text")


def title_of(path: str) -> str:
    """Return a note's title as Obsidian shows it: the file name without `.md`."""
    name = path.rsplit("/", 1)[-1]
    return name[:-3] if name.lower().endswith(".md") else name


def normal_name(name: str) -> str:
    """Return an entity's name as the graph keys it: NFC, casefolded, blanks collapsed."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def extract(path: str, data: bytes) -> NoteFacts:
    """Given a note's vault-relative path and its bytes, return its facts. Never raises for
    bad content: a note that cannot be read is returned `failed` with the reason."""
    sha = hashlib.sha256(data).hexdigest()
    result = NoteFacts(path, sha, len(data), "indexed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        result.status, result.reason = "failed", f"not UTF-8 text (byte {error.start})"
        return result
    lines = text.splitlines()
    result.line_count = len(lines)
    result.first_line = quote(lines[0]) if lines else ""
    try:
        note = notes.parse(text)
    except NoteError as error:
        result.status, result.reason = "failed", f"frontmatter: {error}"
        body, meta, raw = _body_after_frontmatter(text), {}, None
    else:
        body, meta, raw = note.body, note.meta, note.frontmatter
    if "\x00" in body:
        return result  # a binary file: its bytes hold no links worth trusting
    body_start = text.removeprefix("\ufeff")[: len(text.removeprefix("\ufeff")) - len(body)]
    links, tags = scan(body, body_start.count("\n") + 1)
    result.vaultd_id = _vaultd_id(meta)
    if raw is not None:
        result.facts.extend(_frontmatter_facts(meta, raw.splitlines()))
    for link in links:
        kind = "embed" if link.embed else "link"
        result.facts.append(
            Fact(
                kind, link.target, link.line, link.line, link.quote, "", "", link.anchor, link.alias
            )
        )
    result.facts.extend(Fact("tag", tag.name, tag.line, tag.line, tag.quote) for tag in tags)
    values = " ".join(str(v) for v in _scalars(meta))
    result.search_text = f"{values}\n{body}"
    return result


def _body_after_frontmatter(text: str) -> str:
    """The body of a note whose frontmatter failed to parse: after its closing line."""
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != "---":
        return text
    for index in range(1, len(lines)):
        if lines[index].rstrip("\r\n") in ("---", "..."):
            return "".join(lines[index + 1 :])
    return ""  # never closed: all of it was frontmatter


def _vaultd_id(meta: dict[str, Any]) -> str | None:
    value = meta.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if text and len(text) <= _MAX_ID and text.isprintable() else None


def _key_ranges(raw_lines: list[str]) -> dict[str, tuple[int, int]]:
    """Return each top-level key's line range in the file (frontmatter starts at line 2)."""
    starts: list[tuple[str, int]] = []
    for index, line in enumerate(raw_lines):
        match = _KEY_LINE.match(line)
        if match and not line[0].isspace():
            starts.append((match.group(2).strip(), index))
    ranges: dict[str, tuple[int, int]] = {}
    for position, (key, index) in enumerate(starts):
        end = starts[position + 1][1] - 1 if position + 1 < len(starts) else len(raw_lines) - 1
        while end > index and not raw_lines[end].strip():
            end -= 1
        ranges.setdefault(key, (index + 2, end + 2))
    return ranges


def _frontmatter_facts(meta: dict[str, Any], raw_lines: list[str]) -> list[Fact]:
    ranges = _key_ranges(raw_lines)
    facts: list[Fact] = []
    for key in sorted(meta):
        start, end = ranges.get(key, (2, len(raw_lines) + 1))

        def where(value: str, start: int = start, end: int = end) -> tuple[int, str]:
            for number in range(start, end + 1):
                if value in raw_lines[number - 2]:
                    return number, quote(raw_lines[number - 2])
            return start, quote(raw_lines[start - 2]) if raw_lines else ""

        for value, entity in _values_of(key, meta[key]):
            line, text = where(value)
            whole = _WHOLE_LINK.match(value)
            if whole:
                target, anchor, alias = split_link(whole.group(2))
                if target:
                    facts.append(Fact("property", target, line, line, text, key, "", anchor, alias))
            elif key.lower() in TAG_KEYS:
                for name in re.split(r"[,\s]+", value):
                    if normal_tag(name):
                        facts.append(Fact("tag", normal_tag(name), line, line, text, key))
            elif entity and normal_name(value):
                facts.append(Fact("entity", value.strip(), line, line, text, key, entity))
    return facts


def _values_of(key: str, value: Any) -> list[tuple[str, str]]:
    """Return (text, entity kind or "") for the strings a top-level value holds: itself,
    its list items, and entity keys of the mappings in a list (an invoice's `lines`)."""
    entity = ENTITY_KEYS.get(key.lower(), "")
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [(str(value), entity)]
    found: list[tuple[str, str]] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str | int) and not isinstance(item, bool):
                found.append((str(item), entity))
            elif isinstance(item, dict):
                for inner, inner_value in item.items():
                    kind = ENTITY_KEYS.get(str(inner).lower(), "")
                    if kind and isinstance(inner_value, str | int):
                        found.append((str(inner_value), kind))
    return found


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return [value] if isinstance(value, str | int | float) else []


def links_in(text: str) -> list[str]:
    """Return the targets of the wikilinks in a text (for a REF written as `[[link]]`)."""
    return [split_link(m.group(2))[0] for m in WIKILINK.finditer(text)]
