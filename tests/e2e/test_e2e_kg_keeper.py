"""The running daemon keeps a built knowledge graph current (daemon/service/graph_keeper.py):
a note edited, added or removed while `vaultd run` runs shows in `vaultd kg` without a
rebuild; a vault whose graph was never built gets no index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_files, wait_for
from e2e_support import Daemon, ok, vaultd

from daemon.agents.kg.build import rebuild
from daemon.agents.kg.reads import GraphReads
from daemon.agents.kg.store import connect, kg_path
from daemon.core.config import load_config
from daemon.core.vault import Vault
from daemon.service.graph_keeper import GraphKeeper

pytestmark = pytest.mark.e2e

QUICK = "[kg]\nrefresh_seconds = 0.2\n"


def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    vault, state, config = tmp_path / "vault", tmp_path / "state", tmp_path / "config.toml"
    Vault(vault).ensure_folders()
    make_files(vault, {"Plans/plan.md": "# Plan\nWork with [[Acme]]\n", "Clients/Acme.md": "x\n"})
    config.write_text(QUICK, encoding="utf-8")
    return vault, state, config


def links_of(vault: Path, state: Path, ref: str) -> set[str]:
    where = ["--vault", str(vault), "--state-dir", str(state)]
    found = json.loads(ok(vaultd("kg", "neighborhood", ref, *where, "--json")).stdout)
    return {edge["dst"] for edge in found["edges"] if edge["type"] == "links_to"}


def test_a_note_edited_while_the_daemon_runs_is_in_the_graph_without_a_rebuild(tmp_path: Path):
    vault, state, config = setup(tmp_path)
    where = ["--vault", str(vault), "--state-dir", str(state), "--config", str(config)]
    ok(vaultd("kg", "rebuild", *where))
    assert links_of(vault, state, "Plans/plan.md") == {"note:Clients/Acme.md"}
    daemon = Daemon(vault, state, "--config", str(config))
    try:
        make_files(vault, {"Clients/Globex.md": "y\n"})
        (vault / "Plans/plan.md").write_text("# Plan\nNow [[Globex]] too\n", encoding="utf-8")
        wait_for(
            lambda: links_of(vault, state, "Plans/plan.md") == {"note:Clients/Globex.md"},
            timeout=60,
        )
        (vault / "Clients/Globex.md").unlink()
        wait_for(
            lambda: links_of(vault, state, "Plans/plan.md") == {"unresolved:globex"}, timeout=60
        )
        assert daemon.alive(), daemon.output()
    finally:
        daemon.terminate()
    assert "knowledge graph: refresh failed" not in daemon.output()


def test_a_graph_nobody_built_is_not_made_and_an_unchanged_one_is_not_derived(tmp_path: Path):
    vault, state, config = setup(tmp_path)
    graph = GraphReads.of(vault, state, load_config(config))
    keeper = GraphKeeper(graph, 0.2)
    assert keeper.refresh() is None and not kg_path(vault, state).exists()

    db = connect(kg_path(vault, state), create=True)
    rebuild(db, vault)
    db.close()
    again = keeper.refresh()
    assert again is not None and not again.derived and again.extracted == 0
    (vault / "Clients/Acme.md").write_text("changed\n", encoding="utf-8")
    changed = keeper.refresh()
    assert changed is not None and changed.derived and changed.extracted == 1  # that note alone
