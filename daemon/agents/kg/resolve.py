"""Resolving a link target to one file of the vault, as Obsidian does, without guessing.

A target resolves by its exact vault-relative path (`.md` implied), else by the same path
ignoring case, else, when it names no folder, by a file name that is unique in the vault
(ignoring case, as Obsidian does). A target that matches nothing is `missing`, one that
matches several is `ambiguous` (with its candidates), one that climbs out of the vault with
`..` or starts at `/` is `invalid`. Nothing is matched fuzzily: a wrong edge is worse than
none (basic-memory PR #861).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

RESOLVED, MISSING, AMBIGUOUS, INVALID = "resolved", "missing", "ambiguous", "invalid"


@dataclass(frozen=True)
class Resolution:
    status: str
    path: str | None = None
    candidates: tuple[str, ...] = ()
    reason: str = ""


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def normal_target(target: str) -> str:
    """Return a link target as the graph keys an unresolved one: NFC, `\\` as `/`, no
    leading `./`, blanks collapsed, casefolded."""
    text = unicodedata.normalize("NFC", target).replace("\\", "/").strip()
    while text.startswith("./"):
        text = text[2:]
    return " ".join(text.split()).casefold()


class Resolver:
    """Resolves targets against a fixed list of vault-relative file paths."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._folded: dict[str, list[str]] = defaultdict(list)
        self._names: dict[str, list[str]] = defaultdict(list)
        for path in sorted(set(paths)):
            nfc = unicodedata.normalize("NFC", path)
            self._exact.add(nfc)
            self._folded[_fold(nfc)].append(path)
            self._names[_fold(nfc.rsplit("/", 1)[-1])].append(path)

    def resolve(self, target: str) -> Resolution:
        """Given a link target as written (`Folder/Note`, `Note.md`, `image.png`), return
        where it leads."""
        text = unicodedata.normalize("NFC", target).replace("\\", "/").strip()
        while text.startswith("./"):
            text = text[2:]
        if text.startswith("/"):
            return Resolution(INVALID, reason="an absolute path, not a vault link")
        if ".." in text.split("/"):
            return Resolution(INVALID, reason="the path climbs out with '..'")
        if not text:
            return Resolution(INVALID, reason="an empty link")
        # `Note` means `Note.md`; `v1.2 notes` too; `image.png` also names a file as it is.
        tries = [text] if text.lower().endswith(".md") else [text + ".md", text]
        for candidate in tries:
            if candidate in self._exact:
                return Resolution(RESOLVED, candidate)
        for candidate in tries:
            found = self._folded.get(_fold(candidate), [])
            if len(found) == 1:
                return Resolution(RESOLVED, found[0])
            if found:
                return Resolution(AMBIGUOUS, candidates=tuple(found), reason=_several(found))
        if "/" in text:
            return Resolution(MISSING, reason="no note at this path")
        for candidate in tries:
            found = self._names.get(_fold(candidate), [])
            if len(found) == 1:
                return Resolution(RESOLVED, found[0])
            if found:
                return Resolution(AMBIGUOUS, candidates=tuple(found), reason=_several(found))
        return Resolution(MISSING, reason="no note of this name")


def _several(found: list[str]) -> str:
    return f"{len(found)} notes have this name: " + ", ".join(found[:5])
