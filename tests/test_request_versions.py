"""A reviewed request cannot be swapped (issue 11, item 1): versions, banners, and
`vaultd approve ID@version` found through the ledger.

The attack: an agent edits a pending 150 USD invoice to 9,700 USD after the person read it.
vaultd re-renders it as a new version, says what changed at the top, and the person's
`vaultd approve ID`, typed after reading the 150 USD version, approves nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import files_in, move, outbox, parsed, write_note

from daemon.cli.main import main
from daemon.core.request_versions import changes, version_of
from daemon.service.app import App

INVOICE = (
    "type: odoo_invoice\n"
    "partner: Acme Corp\n"
    "lines:\n"
    "  - product: Consulting\n"
    "    quantity: 1\n"
    "    price_unit: {price}\n"
)
BODY = "December retainer.\n"


def request(app: App, root: Path, price: int = 150) -> tuple[Path, str, str]:
    """Drop an invoice that needs a person; return its request, task id and version."""
    outcome = app.pipeline.process(
        write_note(root, "Needs_Action/acme.md", INVOICE.format(price=price), BODY)
    )
    assert outcome.status == "pending_approval" and outcome.path is not None
    meta = parsed(outcome.path).meta
    return outcome.path, meta["id"], version_of(meta["approval"]["payload_hash"])


def swap(app: App, path: Path, price: int) -> str:
    """Edit the pending invoice's price as an agent would, let vaultd see it; return the
    new version."""
    text = path.read_text().replace("price_unit: 150", f"price_unit: {price}")
    path.write_text(text)
    assert app.pipeline.process(path).status == "pending_approval"
    return version_of(parsed(path).meta["approval"]["payload_hash"])


def approve(app: App, ref: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["approve", "--vault", str(app.vault.root), "--state-dir", str(app.state_dir), ref])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_request_shows_its_version_as_id_at_version(app: App, vault_root: Path):
    path, task_id, version = request(app, vault_root)
    assert f"`{task_id}@{version}`" in path.read_text()
    assert "approve --vault " in path.read_text()


def test_an_invoice_swapped_from_150_to_9700_after_review_is_not_approved_by_the_bare_id(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    path, task_id, first = request(app, vault_root)
    second = swap(app, path, 9700)
    assert second != first

    code, said = approve(app, task_id, capsys)

    assert code == 1
    assert f"{task_id}@{second}" in said and "nothing was approved" in said
    assert files_in(vault_root, "Pending_Approval") == ["acme.md"]
    assert outbox(app.state_dir) == []


def test_a_changed_request_opens_with_a_banner_listing_each_changed_field(
    app: App, vault_root: Path
):
    path, _, first = request(app, vault_root)
    second = swap(app, path, 9700)
    text = path.read_text()
    block = text[text.index("<!-- vaultd:begin") :]
    assert block.index("Changed at ") < block.index("Approval needed")
    assert "since first requested at " in block
    assert f"{first} → {second}" in block
    assert "lines[0].price_unit" in block and "150" in block and "9700" in block


def test_approve_of_the_version_read_refuses_once_the_request_changed(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    path, task_id, first = request(app, vault_root)
    swap(app, path, 9700)

    code, said = approve(app, f"{task_id}@{first}", capsys)

    assert code == 1 and f"not {first}" in said
    assert files_in(vault_root, "Approved") == []


def test_approve_of_an_edit_vaultd_has_not_shown_yet_approves_nothing(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    path, task_id, first = request(app, vault_root)
    path.write_text(path.read_text().replace("price_unit: 150", "price_unit: 9700"))

    code, said = approve(app, f"{task_id}@{first}", capsys)

    assert code == 1 and "changed since vaultd showed it" in said
    assert files_in(vault_root, "Approved") == []


def test_approve_of_the_current_version_approves_it_and_says_what_it_approved(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    path, task_id, _ = request(app, vault_root)
    second = swap(app, path, 9700)

    code, said = approve(app, f"{task_id}@{second}", capsys)

    assert code == 0, said
    assert f"approved {task_id}@{second}" in said
    assert "invoice to Acme Corp: 9,700.00 USD, 1 line(s)" in said
    assert files_in(vault_root, "Approved") == ["acme.md"]
    assert app.pipeline.process(vault_root / "Approved/acme.md").status == "done"


def test_the_bare_id_approves_a_request_that_never_changed(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    _, task_id, version = request(app, vault_root)
    code, said = approve(app, task_id, capsys)
    assert code == 0, said
    assert f"approved {task_id}@{version}" in said
    assert "150.00 USD" in said


def test_a_request_swapped_while_vaultd_approve_moves_it_is_sent_back_not_executed(
    app: App, vault_root: Path
):
    # `approve` stamped the version it approved; before its rename, an agent swapped the
    # payload and the daemon re-rendered the request (a new version in the ledger).
    path, _, first = request(app, vault_root)
    from daemon.core import notes

    stamped = parsed(path)
    approved_hash = stamped.meta["approval"]["payload_hash"]
    path.write_text(notes.render(stamped, {**stamped.stamps, "approved_version": approved_hash}))
    swap(app, path, 9700)
    assert parsed(path).meta["approved_version"] == approved_hash  # kept through re-render

    outcome = app.pipeline.process(move(vault_root, path, "Approved"))

    assert outcome.status == "pending_approval"
    assert outbox(app.state_dir) == []
    assert f"approved version {first}" in parsed(outcome.path).meta["note"]
    assert "approved_version" not in parsed(outcome.path).meta  # the next approval is fresh


def test_approve_finds_the_request_through_the_ledger_not_an_id_written_in_a_file(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    path, task_id, version = request(app, vault_root)
    # An agent plants a note claiming the same id, with a bigger amount, that sorts first.
    forged = path.read_text().replace("price_unit: 150", "price_unit: 9700")
    (vault_root / "Pending_Approval/0-forged.md").write_text(forged)

    code, said = approve(app, f"{task_id}@{version}", capsys)

    assert code == 0, said
    assert files_in(vault_root, "Approved") == ["acme.md"]
    assert "0-forged.md" in files_in(vault_root, "Pending_Approval")


def test_changes_names_nested_fields_by_path():
    before = {"partner": "A", "lines": [{"price_unit": "150"}]}
    after = {"partner": "B", "lines": [{"price_unit": "9700"}, {"price_unit": "1"}]}
    assert changes(before, after) == [
        ("partner", '"A"', '"B"'),
        ("lines[0].price_unit", '"150"', '"9700"'),
        ("lines[1].price_unit", "(none)", '"1"'),
    ]
