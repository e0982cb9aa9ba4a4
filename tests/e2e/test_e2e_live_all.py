"""Issue 3's "done when": `vaultd run --live` takes one task of every action type to Done/,
through the Odoo, Graph API and X stand-ins, each remote object created exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import files_in, make_files, move, note, outbox
from e2e_support import meta, ok, vaultd
from standins.all import StandIns, running_all

pytestmark = pytest.mark.e2e


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIns]:
    with running_all() as running:
        for name, value in running.env().items():
            monkeypatch.setenv(name, value)
        yield running


def run_live(vault: Path, state: Path) -> None:
    ok(vaultd("run", "--vault", vault, "--state-dir", state, "--once", "--live"))


def approve(vault: Path, name: str) -> None:
    move(vault, vault / "Pending_Approval" / name, "Approved")


def test_one_task_of_every_action_type_goes_live_exactly_once(
    standins: StandIns, vault_root: Path, state_dir: Path
):
    post = {
        "type": "social_post",
        "platforms": ["facebook", "instagram", "twitter"],
        "text": "Winter collection is live",
        "image_url": "https://example.com/winter.jpg",
    }
    invoice = {
        "type": "odoo_invoice",
        "partner": "Acme Corp",
        "recurring": True,
        "lines": [{"product": "Consulting", "quantity": 10, "price_unit": 85}],
    }
    make_files(
        vault_root, {"Needs_Action/post.md": note(post), "Needs_Action/invoice.md": note(invoice)}
    )

    run_live(vault_root, state_dir)  # the post is approved by policy; the invoice waits
    assert files_in(vault_root, "Pending_Approval") == ["invoice.md"]
    approve(vault_root, "invoice.md")
    run_live(vault_root, state_dir)
    number = meta((vault_root / "Done/invoice.md").read_text())["result"]["odoo"]["number"]

    payment = {"type": "odoo_payment", "invoice": number, "amount": 850, "journal": "Bank"}
    make_files(vault_root, {"Needs_Action/payment.md": note(payment)})
    run_live(vault_root, state_dir)
    approve(vault_root, "payment.md")
    run_live(vault_root, state_dir)
    run_live(vault_root, state_dir)  # nothing is left to do, and nothing runs again

    assert files_in(vault_root, "Done") == ["invoice.md", "payment.md", "post.md"]
    assert files_in(vault_root, "Failed") == []
    assert len(standins.graph.posts) == 1
    assert len(standins.graph.media) == 1
    assert standins.x.state.posts() == 1
    odoo = standins.odoo.odoo
    assert [m["state"] for m in odoo.table("account.move")] == ["posted"]
    assert len(odoo.table("account.payment")) == 1
    assert outbox(state_dir) == []  # nothing went through the dry-run connectors
