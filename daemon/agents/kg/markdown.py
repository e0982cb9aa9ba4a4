"""Reading wikilinks and inline tags out of a Markdown body, never out of code.

Fenced code blocks (``` and ~~~) and inline code spans are blanked before anything is
matched, keeping every other character where it was, so a match's line is the line a person
sees. Indented code blocks are not recognised: in notes, four spaces are far more often a
nested list than code.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TICKS = re.compile(r"`+")
WIKILINK = re.compile(r"(!?)\[\[([^\[\]\n]+?)\]\]")
# Obsidian's tag: after a line start or a blank, letters, digits, _ - /, not only digits.
_TAG = re.compile(r"(?:(?<=\s)|^)#([\w/-]+)")
_NOT_ONLY_DIGITS = re.compile(r"[^\W\d]")
MAX_QUOTE = 300


@dataclass(frozen=True)
class Link:
    """One `[[target#anchor|alias]]` (or `![[...]]` when `embed`) at a line of the note."""

    target: str
    anchor: str
    alias: str
    embed: bool
    line: int
    quote: str


@dataclass(frozen=True)
class Tag:
    name: str
    line: int
    quote: str


def quote(line: str) -> str:
    """Return a line as evidence quotes it: without its line ending, cut at MAX_QUOTE."""
    text = line.rstrip("\r\n")
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "…"


def masked_lines(body: str) -> Iterator[tuple[str, str]]:
    """Yield (line as written, line with code blanked) for every line of a body."""
    fence = ""
    for line in body.splitlines():
        opening = _FENCE.match(line)
        if fence:
            mark = opening.group(1) if opening else ""
            closes = mark[:1] == fence[0] and len(mark) >= len(fence)
            if closes and not line.strip().strip(fence[0]):
                fence = ""
            yield line, ""
            continue
        if opening:
            fence = opening.group(1)
            yield line, ""
            continue
        yield line, blank_code_spans(line)


def blank_code_spans(line: str) -> str:
    """Return a line with its code spans blanked: a run of backticks opens one that the
    next run of exactly as many closes (CommonMark). Found run by run, in O(n log n): the
    regular expression this replaces backtracked cubically, and one line of 2,000 backticks
    held the interpreter for 52 s."""
    runs = [(m.start(), m.end()) for m in _TICKS.finditer(line)]
    if len(runs) < 2:
        return line
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, (start, end) in enumerate(runs):
        by_length[end - start].append(index)
    pieces, done, index = [], 0, 0
    while index < len(runs):
        start, end = runs[index]
        same = by_length[end - start]
        later = bisect.bisect_right(same, index)
        if later == len(same):  # no closing run: these backticks are text
            index += 1
            continue
        close = same[later]
        pieces += [line[done:start], " " * (runs[close][1] - start)]
        done, index = runs[close][1], close + 1
    return "".join([*pieces, line[done:]])


def split_link(inner: str) -> tuple[str, str, str]:
    """Given the text between `[[` and `]]`, return (target, anchor, alias).

    `\\|` is the pipe escaped inside a table: it still separates the alias.
    """
    inner = inner.replace("\\|", "|")
    target, _, alias = inner.partition("|")
    target, _, anchor = target.partition("#")
    return target.strip(), anchor.strip(), alias.strip()


def scan(body: str, first_line: int) -> tuple[list[Link], list[Tag]]:
    """Given a body and the file line it starts at, return its links and tags in order."""
    links: list[Link] = []
    tags: list[Tag] = []
    for offset, (line, visible) in enumerate(masked_lines(body)):
        if not visible:
            continue
        number = first_line + offset
        for match in WIKILINK.finditer(visible):
            target, anchor, alias = split_link(match.group(2))
            if target:  # [[#heading]] points into the note itself: not an edge
                links.append(Link(target, anchor, alias, bool(match.group(1)), number, quote(line)))
        without_links = WIKILINK.sub(lambda m: " " * len(m.group(0)), visible)
        for match in _TAG.finditer(without_links):
            if not _NOT_ONLY_DIGITS.search(match.group(1)):
                continue  # "#1" is an issue number, not a tag (as Obsidian reads it)
            tags.append(Tag(normal_tag(match.group(1)), number, quote(line)))
    return links, tags


def normal_tag(name: str) -> str:
    """Return a tag as the graph keys it: Obsidian's tags ignore case and a leading #."""
    return name.strip().lstrip("#").strip("/").casefold()
