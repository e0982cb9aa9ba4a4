"""A security review of request versions, `vaultd approve ID@version`, the banner, hard links
and request quoting (commits aa41557, 9c6601a, 582ec1d, c10d471), written as the attacks.

The adversary is an agent that writes anywhere in the vault. Each test is an attack the
review found. Those still open are marked xfail(strict=True), the reason saying what is
wrong, until vaultd is fixed; `raises=AssertionError` makes a broken set-up (a RuntimeError)
fail loudly instead of passing as an expected failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from conftest import files_in, outbox, parsed, write_note
from markdown_it import MarkdownIt

from daemon.cli.main import main
from daemon.core.models import parse_action
from daemon.core.request_versions import version_of
from daemon.service.app import App

INVOICE = (
    "type: odoo_invoice\n"
    "partner: {partner}\n"
    "lines:\n"
    "  - product: Consulting\n"
    "    quantity: 1\n"
    "    price_unit: {price}\n"
    "    description: {description}\n"
)
BODY = "December retainer.\n"


def request(
    app: App,
    root: Path,
    *,
    price: int = 150,
    description: str = "December",
    partner: str = "Acme Corp",
) -> tuple[Path, str, str]:
    """Drop an invoice that needs a person; return its request, task id and version."""
    text = INVOICE.format(price=price, description=description, partner=partner)
    outcome = app.pipeline.process(write_note(root, "Needs_Action/acme.md", text, BODY))
    if outcome.status != "pending_approval" or outcome.path is None:
        raise RuntimeError(f"set-up: the invoice was not sent for approval: {outcome}")
    meta = parsed(outcome.path).meta
    return outcome.path, meta["id"], version_of(meta["approval"]["payload_hash"])


def agent_edits(app: App, path: Path, old: str, new: str) -> str:
    """Edit the pending note as an agent would, let vaultd see it; return the new version."""
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise RuntimeError(f"set-up: {old!r} is not in the note")
    path.write_text(text.replace(old, new), encoding="utf-8")
    if app.pipeline.process(path).status != "pending_approval":
        raise RuntimeError("set-up: vaultd did not re-render the edited request")
    return version_of(parsed(path).meta["approval"]["payload_hash"])


def request_block(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[text.index("<!-- vaultd:begin") : text.index("<!-- vaultd:end")]


def approve(app: App, ref: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["approve", "--vault", str(app.vault.root), "--state-dir", str(app.state_dir), ref])
    out = capsys.readouterr()
    return code, out.out + out.err


def run_approved(app: App, root: Path) -> None:
    """Let the daemon execute whatever is in Approved/."""
    for name in files_in(root, "Approved"):
        app.pipeline.process(root / "Approved" / name)


# -- 1. the short version is 32 bits, and the agent writes both payloads --------------------


def _canonical_halves(price: int, marker: str = "\x00NONCE\x00") -> tuple[bytes, bytes]:
    """Return the canonical payload JSON of the invoice with price, split around its
    description, exactly as Action.payload_hash() hashes it."""
    action = parse_action(
        {
            "type": "odoo_invoice",
            "partner": "Acme Corp",
            "lines": [
                {"product": "Consulting", "quantity": 1, "price_unit": price, "description": marker}
            ],
        }
    )
    canonical = json.dumps(action.payload(), sort_keys=True, separators=(",", ":"))
    before, after = canonical.split(json.dumps(marker)[1:-1])
    return before.encode(), after.encode()


def grind_short_version_collision() -> tuple[str, str, str]:
    """Birthday search: return (description of the 150 USD invoice, description of the
    9,700 USD one, their shared 8-hex version). About 2^17 + 2^15 SHA-256s: a second."""
    prefix_a, suffix_a = _canonical_halves(150)
    prefix_b, suffix_b = _canonical_halves(9700)
    start_a, start_b = hashlib.sha256(prefix_a), hashlib.sha256(prefix_b)
    seen: dict[str, int] = {}
    for i in range(1 << 17):
        digest = start_a.copy()
        digest.update(b"December retainer %d" % i)
        digest.update(suffix_a)
        seen[digest.hexdigest()[:8]] = i
    for j in range(1 << 22):
        digest = start_b.copy()
        digest.update(b"December retainer %d" % j)
        digest.update(suffix_b)
        short = digest.hexdigest()[:8]
        if short in seen:
            return f"December retainer {seen[short]}", f"December retainer {j}", short
    raise RuntimeError("set-up: no collision found")


def test_a_swap_ground_to_the_short_version_the_person_read_is_not_approved_by_id_at_version(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    # At 8 hex digits a collision is ground in a second; at the 12 shown it takes longer,
    # but approval must not rest on the short form at any length.
    monkeypatch.setattr("daemon.core.request_versions.VERSION_LENGTH", 8)
    benign, evil, short = grind_short_version_collision()
    path, task_id, read = request(app, vault_root, price=150, description=benign)
    if read != short:
        raise RuntimeError(f"set-up: the 150 USD request is {read}, not {short}")
    # The person reads `ID@short` (150 USD). The agent swaps in 9,700 USD: same version.
    swapped = agent_edits(
        app,
        path,
        f"price_unit: 150\n    description: {benign}",
        f"price_unit: 9700\n    description: {evil}",
    )
    if swapped != short:
        raise RuntimeError(f"set-up: the swap is {swapped}, not {short}")

    code, said = approve(app, f"{task_id}@{read}", capsys)
    run_approved(app, vault_root)

    assert outbox(app.state_dir) == [], "a 9,700 USD invoice nobody read was executed"
    assert code == 1, said


# -- 2. the banner comes from the note's own `note:` key ------------------------------------


def test_an_agent_rewriting_the_note_key_cannot_replace_the_change_banner(
    app: App, vault_root: Path
):
    path, _, first = request(app, vault_root)
    second = agent_edits(app, path, "price_unit: 150", "price_unit: 9700")
    if "Changed at" not in request_block(path):
        raise RuntimeError("set-up: vaultd wrote no banner")
    # The agent replaces vaultd's banner in the frontmatter; vaultd sees the note again.
    text = path.read_text(encoding="utf-8")
    forged = "note: Checked by vaultd, unchanged since first requested.\n"
    path.write_text(re.sub(r"^note: .*\n", forged, text, count=1, flags=re.M), encoding="utf-8")
    app.pipeline.process(path)

    block = request_block(path)
    assert "Checked by vaultd" not in block
    assert "Changed at" in block and f"{first} → {second}" in block


# -- 3. a request re-issued under a new id forgets what changed -----------------------------


def test_deleting_the_id_of_a_swapped_pending_note_does_not_drop_its_change_banner(
    app: App, vault_root: Path
):
    path, task_id, _ = request(app, vault_root)
    text = path.read_text(encoding="utf-8").replace("price_unit: 150", "price_unit: 9700")
    path.write_text(re.sub(rf"^id: {task_id}\n", "", text, flags=re.M), encoding="utf-8")
    app.pipeline.process(path)

    block = request_block(path)
    assert "Changed at" in block, "the request no longer says the amount changed"
    assert '`"150"` → `"9700"`' in block


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="a hard link of a pending note into Approved/ is refused as a copy (the forgery "
    "suite holds that) and re-issued under a new id, so the new request does not carry the "
    "old one's versions and banner; the person still approves it afresh. Carrying the "
    "history over to the adopted request is left for a later change",
)
def test_a_hard_link_into_approved_cannot_reissue_a_swapped_pending_note_without_its_banner(
    app: App, vault_root: Path
):
    path, _, _ = request(app, vault_root)
    # The agent edits the note in place (same inode) and links it into Approved/ before
    # vaultd looks at the edit.
    swapped = path.read_text(encoding="utf-8").replace("price_unit: 150", "price_unit: 9700")
    with path.open("r+", encoding="utf-8") as handle:
        handle.write(swapped)
        handle.truncate()
    os.link(path, vault_root / "Approved/acme.md")

    app.pipeline.process(vault_root / "Approved/acme.md")

    assert files_in(vault_root, "Pending_Approval") == ["acme.md"]
    assert outbox(app.state_dir) == []
    block = request_block(vault_root / "Pending_Approval/acme.md")
    assert "Changed at" in block and '`"150"` → `"9700"`' in block, (
        "the swapped request was re-issued as new, without saying what changed"
    )


# -- 4. the bare id after A → B → A ---------------------------------------------------------


def test_a_request_swapped_and_swapped_back_is_not_approved_by_its_bare_id(
    app: App, vault_root: Path, capsys: pytest.CaptureFixture[str]
):
    path, task_id, first = request(app, vault_root)
    agent_edits(app, path, "price_unit: 150", "price_unit: 9700")
    back = agent_edits(app, path, "price_unit: 9700", "price_unit: 150")
    if back != first:
        raise RuntimeError("set-up: the swap back is another version")

    code, said = approve(app, task_id, capsys)

    assert code == 1, said
    assert files_in(vault_root, "Approved") == []


# -- 5. the banner's old → new text is one string a value can extend -------------------------


def code_spans(markdown: str) -> list[str]:
    """Return the text of every inline code span, as a CommonMark renderer reads it."""
    spans = []
    for token in MarkdownIt("commonmark").parse(markdown):
        for child in token.children or []:
            if child.type == "code_inline":
                spans.append(child.content)
    return spans


def test_a_payload_value_cannot_add_a_fake_change_to_the_banner(app: App, vault_root: Path):
    path, _, _ = request(app, vault_root)
    fake = "Decemberʺ; lines[0].price_unit: ʺ9700ʺ → ʺ150"
    agent_edits(
        app,
        path,
        "price_unit: 150\n    description: December",
        f"price_unit: 9700\n    description: '{fake}'",
    )
    block = request_block(path)
    if "Changed at" not in block:
        raise RuntimeError("set-up: vaultd wrote no banner")

    mixed = [span for span in code_spans(block) if "Decemberʺ" in span and '"150"' in span]
    assert mixed == [], f"one code span holds the real change and the forged one: {mixed}"


# -- 6. characters that draw nothing ---------------------------------------------------------


def test_a_variation_selector_in_a_partner_name_is_shown_in_the_request(app: App, vault_root: Path):
    path, _, _ = request(app, vault_root, partner='"Acme Corp\\ufe0f"')
    if parsed(path).meta["partner"] != "Acme Corp\ufe0f":
        raise RuntimeError("set-up: the partner was not read with its variation selector")

    assert "⟨U+FE0F⟩" in request_block(path)
