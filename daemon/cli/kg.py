"""`vaultd kg`: the knowledge graph of the vault (rebuild, status, export, search,
neighborhood, context), kept in the state directory (daemon/agents/kg/)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daemon.agents.kg import query
from daemon.agents.kg.build import rebuild
from daemon.agents.kg.context import fetch_context
from daemon.agents.kg.reads import GraphReads
from daemon.agents.kg.store import KgError, connect, kg_path
from daemon.cli.common import open_vault
from daemon.core.config import default_config_path, load_config, state_dir_for
from daemon.core.quoting import visible


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    kg = commands.add_parser(
        "kg", help="the knowledge graph of the vault: links, tags and entities, with evidence"
    )
    sub = kg.add_subparsers(dest="kg_command", metavar="KG_COMMAND", required=True)

    build = sub.add_parser("rebuild", help="bring the graph up to date (unchanged notes not read)")
    add_vault(build, config=True, state=True)
    build.add_argument("--full", action="store_true", help="read and parse every note again")
    build.add_argument("--json", action="store_true", help="print JSON instead of text")
    build.set_defaults(func=cmd_rebuild)

    status = sub.add_parser("status", help="coverage: notes indexed, failed and skipped, and why")
    add_vault(status, state=True)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=cmd_status)

    export = sub.add_parser(
        "export", help="the whole graph as sorted JSON lines, the same bytes on every machine"
    )
    add_vault(export, state=True)
    export.add_argument("--output", type=Path, help="write to this file instead of stdout")
    export.set_defaults(func=cmd_export)

    search = sub.add_parser("search", help="full-text search of the notes (FTS5, BM25 ranking)")
    add_vault(search, state=True)
    search.add_argument("text", metavar="TEXT", help="the words to find (all of them)")
    search.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    search.add_argument("--json", action="store_true", help="print JSON instead of text")
    search.set_defaults(func=cmd_search)

    near = sub.add_parser(
        "neighborhood",
        help="what a note, tag or entity is linked to, with evidence",
        description="REF is a node key, a note path, a [[link]], a vaultd id, a #tag, "
        "a partner's name or an invoice number.",
    )
    add_vault(near, state=True)
    _walk_arguments(near, "what to start from")
    near.add_argument("--edge", help="follow only edges of this type (links_to, tagged …)")
    near.set_defaults(func=cmd_neighborhood)

    context = sub.add_parser(
        "context",
        help="a node's neighbours with evidence, each row checked against the vault now",
        description="Like neighborhood, and every evidence row says whether its note has "
        "changed since the last rebuild (stale) and where its quoted line is now.",
    )
    add_vault(context, state=True)
    _walk_arguments(context, "what to start from (as for neighborhood)")
    context.set_defaults(func=cmd_context)


def _say(text: str) -> None:
    """Print a line of text read from notes: every character a terminal would hide or act
    on (an escape sequence in a quoted line) is shown escaped instead."""
    print(visible(text))


@contextmanager
def _index(path: Path, *, create: bool) -> Iterator[sqlite3.Connection]:
    """Open the index; an SQLite error on the way (a locked or full disk) names the file."""
    db = connect(path, create=create)
    try:
        yield db
    except sqlite3.Error as error:
        raise KgError(f"{path}: {error}") from None
    finally:
        db.close()


def _walk_arguments(parser: argparse.ArgumentParser, ref_help: str) -> None:
    """The arguments of a walk from a node (neighborhood, context): REF, --depth, --json."""
    parser.add_argument("ref", metavar="REF", help=ref_help)
    parser.add_argument(
        "--depth", type=int, default=1, help=f"edges to follow (1 to {query.MAX_DEPTH})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _path(args: argparse.Namespace) -> tuple[Path, Path]:
    vault = open_vault(args)
    return vault.root, kg_path(vault.root, args.state_dir)


def _ledger(args: argparse.Namespace, root: Path) -> Path | None:
    """The ledger's file, if `[kg] sources` lists the ledger."""
    config = load_config(getattr(args, "config", None) or default_config_path())
    return GraphReads.of(root, state_dir_for(root, args.state_dir), config).ledger


def cmd_rebuild(args: argparse.Namespace) -> int:
    root, path = _path(args)
    ledger = _ledger(args, root)
    with _index(path, create=True) as db:
        report = rebuild(db, root, full=args.full, ledger=ledger)
        cover = query.coverage(db)
    if args.json:
        done = {k: v for k, v in vars(report).items() if k != "read_paths"}
        print(json.dumps({"index": str(path), "build": done, "coverage": cover}, indent=2))
        return 0
    _say(
        f"knowledge graph of {root}: {cover['indexed']} note(s) indexed, {cover['failed']} "
        f"failed, {cover['skipped']} file(s) skipped; {cover['graph']['nodes']} nodes, "
        f"{cover['graph']['edges']} edges ({cover['graph']['unresolved_edges']} unresolved)"
    )
    _say(
        f"read {report.extracted} note(s); {report.unchanged} unchanged, "
        f"{report.same_content} with the same content, {report.removed} gone; index {path}"
    )
    if cover["failed"]:
        _say("see `vaultd kg status` for the notes that failed and why")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    _, path = _path(args)
    with _index(path, create=False) as db:
        cover = query.coverage(db)
    if args.json:
        print(json.dumps({"index": str(path), **cover}, indent=2, ensure_ascii=False))
        return 0
    graph = cover["graph"]
    _say(f"index: {path}")
    _say(
        f"notes indexed: {cover['indexed']}  failed: {cover['failed']}  skipped files: "
        f"{cover['skipped']}"
    )
    _say(
        f"nodes: {graph['nodes']}  edges: {graph['edges']} "
        f"({graph['unresolved_edges']} unresolved)  evidence rows: {graph['evidence']}"
    )
    for file in cover["files"]:
        _say(f"  {file['status']:<8} {file['path']}: {file['reason']}")
    for notice in cover["notices"]:
        _say(f"  notice   {notice['path']}: {notice['message']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _, path = _path(args)
    with _index(path, create=False) as db:
        text = "".join(line + "\n" for line in query.export_lines(db))
    if args.output:
        args.output.write_text(text, encoding="utf-8", newline="\n")
    else:
        sys.stdout.write(text)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    _, path = _path(args)
    with _index(path, create=False) as db:
        results = query.search(db, args.text, limit=args.limit)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    elif not results:
        print(f"no note matches {args.text!r}", file=sys.stderr)
    for result in [] if args.json else results:
        _say(f"{result['score']:>9.3f}  {result['path']}  {result['snippet']}")
    return 0


def cmd_neighborhood(args: argparse.Namespace) -> int:
    _, path = _path(args)
    with _index(path, create=False) as db:
        found = query.neighborhood(db, args.ref, depth=args.depth, edge_type=args.edge)
    return _show(found, as_json=args.json)


def cmd_context(args: argparse.Namespace) -> int:
    root, path = _path(args)
    with _index(path, create=False) as db:
        found = fetch_context(db, root, args.ref, depth=args.depth, ledger=_ledger(args, root))
    return _show(found, as_json=args.json)


def _show(found: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return 0
    labels = {
        n["key"]: n["label"] if n["type"] in ("note", "tag") else f"{n['label']} ({n['type']})"
        for n in found["nodes"]
    }
    _say(
        f"{found['start']} (depth {found['depth']}): {len(found['nodes'])} node(s), "
        f"{len(found['edges'])} edge(s)"
        + (f", stopped at {query.MAX_NODES} nodes (nearest first)" if found["truncated"] else "")
    )
    for edge in found["edges"]:
        field = f" [{edge['field']}]" if edge["field"] else ""
        state = "" if edge["status"] == "resolved" else f"  ({edge['status']}: {edge['reason']})"
        _say(f"  {labels[edge['src']]} -{edge['type']}{field}-> {labels[edge['dst']]}{state}")
        for row in edge["evidence"]:
            lines = row["lines"]
            where = f"{lines[0]}" if lines[0] == lines[1] else f"{lines[0]}-{lines[1]}"
            _say(f"      {row['path']}:{where} @{row['sha256'][:12]}  {row['quote']}")
            if row.get("stale"):
                now = row["now"]
                at = f"{now['path']}:{now['lines'][0]}" if now["lines"] else now["path"] or "-"
                _say(f"        STALE ({now['why']}); now at {at}")
    return 0
