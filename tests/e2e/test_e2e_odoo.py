"""The real `vaultd run --live --once` invoicing through the loopback Odoo stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import files_in, make_files, move, note
from e2e_support import meta, ok, vaultd
from standins.odoo import FakeOdoo, StandInServer, running_odoo

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["xmlrpc", "json2"])
def odoo_env(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StandInServer]:
    with running_odoo(FakeOdoo()) as server:
        for name, value in {
            "ODOO_URL": server.url,
            "ODOO_DB": "acme",
            "ODOO_USERNAME": "admin",
            "ODOO_PASSWORD": "secret",
            "ODOO_PROTOCOL": str(request.param),
        }.items():
            monkeypatch.setenv(name, value)
        yield server


def run_live(vault: Path, state: Path) -> None:
    ok(vaultd("run", "--vault", vault, "--state-dir", state, "--once", "--live"))


def test_an_approved_invoice_is_created_once_and_lands_in_done(
    odoo_env: StandInServer, vault_root: Path, state_dir: Path
):
    odoo = odoo_env.odoo
    task = {
        "type": "odoo_invoice",
        "partner": "Acme Corp",
        "recurring": True,
        "lines": [{"product": "Consulting", "quantity": 10, "price_unit": 85}],
    }
    make_files(vault_root, {"Needs_Action/acme.md": note(task)})

    run_live(vault_root, state_dir)  # over $100: it waits for a human
    assert files_in(vault_root, "Pending_Approval") == ["acme.md"]
    assert odoo.table("account.move") == []
    move(vault_root, vault_root / "Pending_Approval/acme.md", "Approved")
    run_live(vault_root, state_dir)
    run_live(vault_root, state_dir)  # nothing more to do

    assert files_in(vault_root, "Done") == ["acme.md"]
    done = (vault_root / "Done/acme.md").read_text(encoding="utf-8")
    [invoice] = odoo.table("account.move")
    task_id = meta(done)["id"]
    assert invoice["ref"] == f"vaultd:{task_id}:odoo"
    assert invoice["state"] == "posted"
    assert invoice["amount_total"] == 850.0
    assert "INV/2026/00001" in done
    assert f"{odoo_env.url}/web#id={invoice['id']}&model=account.move" in done
    assert odoo.calls["account.move.create"] == 1
    assert odoo.calls["account.move.action_post"] == 1
