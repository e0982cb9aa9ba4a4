"""The knowledge graph of the vault: notes, tags and frontmatter entities as nodes, wikilinks,
link properties and tags as edges, every one with evidence pinned to the SHA-256 of the note
it came from. Built deterministically (no LLM) into SQLite in the state directory.

`markdown` reads links and tags from a body, `extract` turns one note into facts, `resolve`
resolves links as Obsidian does (without guessing), `store` is the SQLite index, `build`
walks the vault and refreshes it, `query` answers search, neighborhood and export.
"""
