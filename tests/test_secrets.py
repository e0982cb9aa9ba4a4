"""Secrets from the environment never reach the vault, the logs or the state directory."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import forkserver
import pytest
from conftest import files_in, make_files, note, parsed
from standins.all import StandIns, running_all

from daemon.cli.main import main as cli_main
from daemon.connectors.base import Absent, Health, Lookup
from daemon.core.errors import ConnectorError
from daemon.core.models import Action
from daemon.core.policy import Facts
from daemon.service.app import open_app

CANARY = "canary-s3cr3t-7f2a91"


class LeakyService:
    """Stands in for a service that echoes credentials back in answers and errors."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return {"url": f"https://user:{CANARY}@example.test/feed", "marker": marker}

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        if self.fail:
            raise ConnectorError(f"401: token {CANARY} expired")
        return {"id": "1", "echo": f"Bearer {CANARY}", "access_token": "anything"}

    def lookup(self, marker: str) -> Lookup:
        return Absent()

    def check(self) -> Health:
        return Health(True, "stand-in")

    def facts(self, action: Action) -> Facts:
        return Facts()


def every_byte_under(*roots: Path) -> bytes:
    return b"".join(p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file())


def test_a_secret_in_the_environment_never_reaches_vault_logs_or_state(
    vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FACEBOOK_PAGE_TOKEN", CANARY)
    app = open_app(vault_root, state_dir=state_dir)
    app.pipeline.connectors["facebook"] = LeakyService("facebook")
    app.pipeline.connectors["twitter"] = LeakyService("twitter", fail=True)
    post = {"type": "social_post", "text": "Hello"}
    make_files(
        vault_root,
        {
            "Needs_Action/ok.md": note({**post, "platforms": ["facebook"]}),
            "Needs_Action/bad.md": note({**post, "text": "Bye", "platforms": ["twitter"]}),
        },
    )
    for name in ("ok.md", "bad.md"):
        app.pipeline.process(vault_root / "Needs_Action" / name)
    app.close()

    assert (vault_root / "Done/ok.md").exists()
    assert (vault_root / "Failed/bad.md").exists()
    everything = every_byte_under(vault_root, state_dir)
    assert CANARY.encode() not in everything
    assert b"[redacted]" in (vault_root / "Done/ok.md").read_bytes()


# -- canaries through real work: the CLI, dry-run and live, and every report --------------

# One canary per secret setting vaultd reads (daemon/core/settings.py: names with PASSWORD,
# SECRET, TOKEN, API_KEY or ending in _KEY). Some hold characters a URL or a form encodes
# (+ / =), so an encoded copy in an error message would show too.
CANARIES = {
    "ODOO_PASSWORD": "canary-odoo+pw/4Kq9=",
    "FACEBOOK_PAGE_TOKEN": "canary-fb-EAAB+tok/Zx81=",
    "TWITTER_API_KEY": "canary-x-consumer-key-51c2",
    "TWITTER_API_SECRET": "canary-x-consumer-secret-93ad",
    "TWITTER_ACCESS_TOKEN": "1700000000000000001-canary-x-access-token",
    "TWITTER_ACCESS_SECRET": "canary-x-access-secret-0b7e",
    "VAULTD_SMTP_PASSWORD": "canary-unrelated-password-77",  # any secret in the environment
    # Signs completion webhooks: base64 of "canary-webhook-secret-42".
    "VAULTD_WEBHOOK_SECRET": "whsec_Y2FuYXJ5LXdlYmhvb2stc2VjcmV0LTQy",
}


def forms(secret: str) -> set[str]:
    """The secret as it could appear: raw, percent-encoded, form-encoded, XML-escaped."""
    return {secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "\\/")}


def assert_no_canary(everything: bytes) -> None:
    leaks = [
        f"{name} as {form!r}"
        for name, secret in CANARIES.items()
        for form in forms(secret)
        if form.encode() in everything
    ]
    assert not leaks, leaks


def cli(*args: str | Path) -> str:
    """Run the real vaultd CLI as a subprocess; return what it printed (stdout and stderr)."""
    done = forkserver.run([str(arg) for arg in args], timeout=60)
    assert done.returncode in (0, 1), done  # 1: `check` reports a broken connector
    return done.stdout + done.stderr


def report(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """Run a vaultd command through the CLI's own `main` in this process (the reports start
    no daemon, and a subprocess would only add its start-up time); return what it printed."""
    capsys.readouterr()
    code = cli_main([str(arg) for arg in args])
    captured = capsys.readouterr()
    assert code in (0, 1), captured  # 1: `check` reports a broken connector
    return captured.out + captured.err


@pytest.fixture
def canary_standins(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIns]:
    """The loopback Odoo, Graph API and X API, accepting only the canary credentials; the
    environment points vaultd at them with those credentials."""
    with running_all() as standins:
        odoo = standins.odoo.odoo
        odoo.users = {"admin": (2, CANARIES["ODOO_PASSWORD"])}
        odoo.api_keys = {CANARIES["ODOO_PASSWORD"]: 2}
        standins.graph.token = CANARIES["FACEBOOK_PAGE_TOKEN"]
        standins.x.state.consumer_key = CANARIES["TWITTER_API_KEY"]
        for name, value in {**standins.env(), **CANARIES}.items():
            monkeypatch.setenv(name, value)
        yield standins


def test_canary_secrets_never_reach_vault_logs_ledger_state_or_any_report(
    canary_standins: StandIns,
    vault_root: Path,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    printed: list[str] = []
    # A call in doubt goes to a person at once (no lookups later): its error is printed too.
    monkeypatch.setenv("VAULTD_LOOKUP_SCHEDULE", "2,30,0")
    run = ("run", "--vault", vault_root, "--state-dir", state_dir, "--once")
    post = {"type": "social_post", "platforms": ["facebook", "twitter"], "text": "Dry run"}
    invoice = {
        "type": "odoo_invoice",
        "partner": "Acme Corp",
        "lines": [{"product": "Consulting", "quantity": 3, "price_unit": 85}],
    }

    # Dry-run: a post approved by policy, an invoice a person approves with the CLI.
    make_files(
        vault_root,
        {"Needs_Action/dry post.md": note(post), "Needs_Action/dry invoice.md": note(invoice)},
    )
    printed.append(cli(*run))
    task_id = parsed(vault_root / "Pending_Approval/dry invoice.md").meta["id"]
    printed.append(
        report(capsys, "approve", "--vault", vault_root, "--state-dir", state_dir, task_id)
    )
    printed.append(cli(*run))
    assert files_in(vault_root, "Done") == ["dry invoice.md", "dry post.md"]

    # Live, against the stand-ins: calls that work, and calls that fail, one of them with an
    # Odoo error that echoes the key back, over both Odoo protocols.
    live_post = {
        **post,
        "platforms": ["facebook", "instagram", "twitter"],
        "text": "Live",
        "image_url": "https://example.com/a.jpg",
    }
    small = {**invoice, "recurring": True, "lines": [{**invoice["lines"][0], "quantity": 1}]}
    make_files(
        vault_root,
        {"Needs_Action/live post.md": note(live_post), "Needs_Action/live invoice.md": note(small)},
    )
    printed.append(cli(*run, "--live"))
    assert files_in(vault_root, "Done") == [
        "dry invoice.md",
        "dry post.md",
        "live invoice.md",
        "live post.md",
    ]
    echo = f"Invalid API key {CANARIES['ODOO_PASSWORD']} for database acme"
    canary_standins.odoo.odoo.faults["account.move.create"] = ("AccessDenied", echo)
    canary_standins.x.state.write_failures = 1
    failing = {**small, "lines": [{**small["lines"][0], "price_unit": 20}]}
    make_files(
        vault_root,
        {
            "Needs_Action/failing invoice 1.md": note(failing),
            "Needs_Action/failing tweet.md": note({**post, "platforms": ["twitter"]}),
        },
    )
    printed.append(cli(*run, "--live"))
    monkeypatch.setenv("ODOO_PROTOCOL", "json2")
    canary_standins.odoo.odoo.faults["account.move.create"] = ("UserError", echo)
    failing = {**small, "lines": [{**small["lines"][0], "price_unit": 30}]}
    make_files(vault_root, {"Needs_Action/failing invoice 2.md": note(failing)})
    printed.append(cli(*run, "--live"))
    failed = files_in(vault_root, "Failed")
    assert failed == ["failing invoice 1.md", "failing invoice 2.md", "failing tweet.md"]
    for name in ("failing invoice 1.md", "failing invoice 2.md"):
        assert "[redacted] for database acme" in (vault_root / "Failed" / name).read_text()

    # Every report.
    week = datetime.now(UTC).strftime("%G-W%V")
    printed.append(report(capsys, "status", "--vault", vault_root, "--state-dir", state_dir))
    printed.append(
        report(capsys, "status", "--vault", vault_root, "--state-dir", state_dir, "--json")
    )
    printed.append(report(capsys, "check", "--vault", vault_root))
    printed.append(report(capsys, "logs", "--vault", vault_root, "--json"))
    printed.append(
        report(
            capsys,
            "briefing",
            *("--vault", vault_root, "--state-dir", state_dir, "--week", week, "--partial"),
        )
    )
    assert (vault_root / "Dashboard.md").exists()
    assert list((vault_root / "Briefings").glob("*.md"))
    assert list(state_dir.glob("ledger.sqlite3*"))

    assert_no_canary(every_byte_under(vault_root, state_dir) + "".join(printed).encode())
    # The canaries were really used: the stand-ins accept nothing else.
    assert canary_standins.graph.posts and canary_standins.x.state.posts() >= 1
    assert canary_standins.odoo.odoo.table("account.move")


def test_vaultd_check_with_services_unreachable_prints_no_secret(
    canary_standins: StandIns,
    vault_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    # A token as Facebook issues them (letters and digits), so only the raw form matters.
    monkeypatch.setenv("FACEBOOK_PAGE_TOKEN", "EAABcanary0fb0page0token0alnum")
    canaries_now = {**CANARIES, "FACEBOOK_PAGE_TOKEN": "EAABcanary0fb0page0token0alnum"}
    for name in ("FACEBOOK_GRAPH_URL", "TWITTER_API_URL", "ODOO_URL"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")  # nothing listens on the discard port

    printed = report(capsys, "check", "--vault", vault_root)

    assert "NOT" in printed
    leaks = [name for name, secret in canaries_now.items() if secret in printed]
    assert not leaks, (leaks, printed)


def test_a_live_call_to_an_unreachable_service_leaves_no_encoded_secret(
    canary_standins: StandIns, vault_root: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FACEBOOK_GRAPH_URL", "http://127.0.0.1:9/")
    post = {"type": "social_post", "platforms": ["facebook"], "text": "Into the void"}
    make_files(vault_root, {"Needs_Action/void.md": note(post)})

    printed = cli("run", "--vault", vault_root, "--state-dir", state_dir, "--once", "--live")

    assert files_in(vault_root, "Failed") == ["void.md"]
    assert_no_canary(every_byte_under(vault_root, state_dir) + printed.encode())
