"""The `vaultd` commands besides `run`: status, approve, reject, check, logs.

Every test works on a real vault made by `vaultd init` and real state made by
`vaultd run --once`; most call `daemon.cli.main.main` in-process, a few run the real command.
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import forkserver
import pytest
from conftest import drop_posts_to_broken_services, files_in, make_files, note

from daemon.cli.main import main
from daemon.core import notes
from daemon.core.audit import AuditLog, read_entries
from daemon.core.errors import ConnectorError, OutcomeUnknown
from daemon.core.ledger import Ledger
from daemon.service.app import App

COMMANDS = ("init", "run", "status", "approve", "reject", "check", "logs")


@dataclass
class Demo:
    """The template vault after one `vaultd run --once`: three requests wait, one post is done."""

    vault: Path
    state: Path

    def decide(self, command: str, *rest: str) -> list[str]:
        """Return the argv of `approve` or `reject` on the demo's vault and ledger."""
        return self.args(command, "--state-dir", str(self.state), *rest)

    def args(self, command: str, *rest: str) -> list[str]:
        return [command, "--vault", str(self.vault), *rest]

    def run_once(self) -> None:
        assert main(self.args("run", "--once", "--state-dir", str(self.state))) == 0

    def pending_id(self, name: str) -> str:
        text = (self.vault / "Pending_Approval" / name).read_text(encoding="utf-8")
        task_id = notes.parse(text).meta["id"]
        assert isinstance(task_id, str)
        return task_id

    def ledger(self) -> Ledger:
        return Ledger(self.state / "ledger.sqlite3", readonly=True)

    def entries(self) -> list[dict[str, Any]]:
        return list(read_entries(self.vault / "Logs"))


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    made = Demo(tmp_path / "vault", tmp_path / "state")
    assert main(["init", str(made.vault)]) == 0
    made.run_once()
    return made


def run_vaultd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`vaultd *args` in a process of its own (forked by the suite's fork server)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    return forkserver.run(args, env={**environment, **(env or {})}, timeout=30)


# -- the command line as a whole ----------------------------------------------------------


def test_help_lists_every_command_with_a_one_line_help():
    result = run_vaultd("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        lines = [line for line in result.stdout.splitlines() if line.split()[:1] == [command]]
        assert lines, f"{command} is missing from --help"
        assert len(lines[0].split()) > 2, f"{command} has no help text"


def test_a_command_without_vault_is_a_usage_error_exiting_2(tmp_path: Path):
    result = run_vaultd("status")
    assert result.returncode == 2
    assert "--vault is required" in result.stderr


def test_vault_comes_from_VAULTD_VAULT_when_not_given(
    demo: Demo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("VAULTD_VAULT", str(demo.vault))
    assert main(["status", "--state-dir", str(demo.state)]) == 0
    assert "Waiting for approval: 3" in capsys.readouterr().out


def test_a_missing_vault_exits_1_and_names_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    missing = tmp_path / "nowhere"
    assert main(["status", "--vault", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err


# -- status -------------------------------------------------------------------------------


def test_status_of_a_vault_never_run_counts_its_files_and_says_there_is_no_ledger_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    vault = tmp_path / "vault"
    main(["init", str(vault)])
    capsys.readouterr()
    assert main(["status", "--vault", str(vault), "--state-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "has not run on this vault yet" in out
    assert "Needs_Action" in out and " 4" in out
    assert not (tmp_path / "s").exists(), "status must not create the state directory"


def test_status_shows_each_pending_request_with_id_age_rule_reason_and_expiry(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    capsys.readouterr()
    assert main(demo.args("status", "--state-dir", str(demo.state))) == 0
    out = capsys.readouterr().out
    invoice = demo.pending_id("invoice_acme_december.md")
    assert f"{invoice}  Pending_Approval/invoice_acme_december.md" in out
    assert "odoo_invoice, 970.00 USD, waiting " in out
    assert "rule amount_threshold: 970.00 USD is at or over the 100.00 USD threshold" in out
    assert "expires 20" in out and "(in 1d 23h)" in out
    assert "rule social_interaction" in out
    assert "Waiting for approval: 3" in out
    assert "Failed or outcome unknown: 0" in out
    assert "executed" in out and "Done/winter_promotion_post.md" in out


def test_status_json_is_machine_readable(demo: Demo, capsys: pytest.CaptureFixture[str]):
    capsys.readouterr()
    assert main(demo.args("status", "--state-dir", str(demo.state), "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {
        "Needs_Action": 0,
        "Pending_Approval": 3,
        "Approved": 0,
        "Rejected": 0,
        "Done": 1,
        "Failed": 0,
    }
    by_file = {item["file"]: item for item in data["pending"]}
    invoice = by_file["Pending_Approval/invoice_acme_december.md"]
    assert invoice["id"] == demo.pending_id("invoice_acme_december.md")
    assert invoice["rule"] == "amount_threshold"
    assert invoice["amount"] == "970.00 USD"
    assert invoice["age_seconds"] >= 0 and invoice["age"].endswith("s")
    assert invoice["expires_at"].endswith("Z")
    assert data["problems"] == []
    assert "executed" in [entry["event"] for entry in data["recent"]]
    stamps = [entry["timestamp"] for entry in data["recent"]]
    assert stamps == sorted(stamps)
    assert data["ledger"] == str((demo.state / "ledger.sqlite3").resolve())


def test_status_lists_failed_and_outcome_unknown_tasks_with_their_error(
    app: App, vault_root: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
):
    drop_posts_to_broken_services(
        app,
        vault_root,
        facebook=ConnectorError("page token expired"),
        twitter=OutcomeUnknown("connection reset after sending"),
    )
    assert files_in(vault_root, "Failed") == ["fb.md", "x.md"]

    assert main(["status", "--vault", str(vault_root), "--state-dir", str(state_dir)]) == 0
    out = capsys.readouterr().out
    assert "Failed or outcome unknown: 2" in out
    assert "Failed/fb.md  [failed]" in out and "page token expired" in out
    assert "Failed/x.md  [outcome unknown]" in out and "connection reset after sending" in out

    main(["status", "--vault", str(vault_root), "--state-dir", str(state_dir), "--json"])
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [(p["file"], p["state"]) for p in problems] == [
        ("Failed/fb.md", "failed"),
        ("Failed/x.md", "outcome_unknown"),
    ]
    assert all(p["id"] for p in problems)


def test_status_shows_only_the_last_ten_actions(demo: Demo, capsys: pytest.CaptureFixture[str]):
    audit = AuditLog(demo.vault / "Logs")
    for number in range(15):
        audit.write(f"event_{number}", action=None, task_id=None, file=None)
    capsys.readouterr()
    main(demo.args("status", "--state-dir", str(demo.state), "--json"))
    recent = json.loads(capsys.readouterr().out)["recent"]
    assert [entry["event"] for entry in recent] == [f"event_{n}" for n in range(5, 15)]


def test_status_reports_sync_conflict_copies_without_counting_them(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    make_files(demo.vault, {"Pending_Approval/reply.sync-conflict-20261122-abc.md": "x"})
    capsys.readouterr()
    main(demo.args("status", "--state-dir", str(demo.state), "--json"))
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["Pending_Approval"] == 3
    assert data["sync_conflicts"] == ["Pending_Approval/reply.sync-conflict-20261122-abc.md"]


# -- approve ------------------------------------------------------------------------------


def test_approve_moves_the_request_to_Approved_and_the_next_run_executes_it(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    task_id = demo.pending_id("invoice_acme_december.md")
    before = (demo.vault / "Pending_Approval/invoice_acme_december.md").read_bytes()
    assert main(demo.decide("approve", task_id)) == 0
    assert f"approved {task_id}" in capsys.readouterr().out
    assert "invoice_acme_december.md" not in files_in(demo.vault, "Pending_Approval")
    # What a person's move does, plus the version approved: nothing else in it changed.
    after = notes.parse((demo.vault / "Approved/invoice_acme_december.md").read_text())
    shown = notes.parse(before.decode())
    assert after.user_meta == shown.user_meta and after.body == shown.body
    assert after.block == shown.block
    assert after.stamps == {
        **shown.stamps,
        "approved_version": shown.meta["approval"]["payload_hash"],
    }

    demo.run_once()
    assert "invoice_acme_december.md" in files_in(demo.vault, "Done")
    with closing(demo.ledger()) as ledger:
        task = ledger.task(task_id)
    assert task is not None and task.state == "done" and task.approval == "human_approved"


def test_approve_accepts_a_unique_prefix_of_the_id(demo: Demo):
    task_id = demo.pending_id("reply_to_customer.md")
    assert main(demo.decide("approve", task_id[:-1])) == 0
    assert files_in(demo.vault, "Approved") == ["reply_to_customer.md"]


def test_approve_with_an_ambiguous_prefix_exits_1_and_lists_the_matches(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    day = demo.pending_id("reply_to_customer.md")[:8]
    assert main(demo.decide("approve", day)) == 1
    err = capsys.readouterr().err
    assert "matches 3 pending requests" in err
    for name in files_in(demo.vault, "Pending_Approval"):
        assert f"{demo.pending_id(name)}  Pending_Approval/{name}" in err
    assert files_in(demo.vault, "Approved") == []


def test_approve_unknown_id_exits_1_and_names_the_id(demo: Demo):
    result = run_vaultd(
        "approve", "--vault", str(demo.vault), "--state-dir", str(demo.state), "20990101-ffffff"
    )
    assert result.returncode == 1
    assert "20990101-ffffff" in result.stderr
    assert "no pending request" in result.stderr
    assert len(files_in(demo.vault, "Pending_Approval")) == 3


def test_approve_a_task_that_is_already_done_says_where_it_is(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    text = (demo.vault / "Done/winter_promotion_post.md").read_text(encoding="utf-8")
    done_id = notes.parse(text).meta["id"]
    assert main(demo.decide("approve", done_id)) == 1
    err = capsys.readouterr().err
    assert (
        f"{done_id} is not waiting for approval: it is done, at Done/winter_promotion_post.md"
        in err
    )


def test_approve_refuses_a_request_that_became_invalid(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    path = demo.vault / "Pending_Approval/reply_to_customer.md"
    task_id = demo.pending_id("reply_to_customer.md")
    path.write_text(path.read_text().replace("kind: reply", "kind: shout"))
    demo.run_once()
    assert main(demo.decide("approve", task_id)) == 1
    assert "is not valid, so it cannot be approved: kind:" in capsys.readouterr().err
    assert files_in(demo.vault, "Approved") == []


def test_approve_never_overwrites_a_note_of_the_same_name_in_Approved(demo: Demo):
    make_files(demo.vault, {"Approved/invoice_acme_december.md": "someone else's note\n"})
    assert (
        main(
            demo.args(
                "approve",
                "--state-dir",
                str(demo.state),
                demo.pending_id("invoice_acme_december.md"),
            )
        )
        == 0
    )
    assert files_in(demo.vault, "Approved") == [
        "invoice_acme_december (2).md",
        "invoice_acme_december.md",
    ]
    assert (demo.vault / "Approved/invoice_acme_december.md").read_text() == (
        "someone else's note\n"
    )


# -- reject -------------------------------------------------------------------------------


def test_reject_writes_the_reason_into_the_note_and_moves_it_to_Rejected(demo: Demo):
    task_id = demo.pending_id("reply_to_customer.md")
    before = notes.parse((demo.vault / "Pending_Approval/reply_to_customer.md").read_text())
    assert main(demo.decide("reject", task_id, "--reason", "wrong tone")) == 0
    assert files_in(demo.vault, "Pending_Approval") == [
        "invoice_acme_december.md",
        "payment_blue_cafe.md",
    ]
    after = notes.parse((demo.vault / "Rejected/reply_to_customer.md").read_text())
    assert after.meta["rejection_reason"] == "wrong tone"
    # The user's keys, vaultd's earlier stamps and the body are all kept.
    assert after.user_meta == before.user_meta
    assert after.body == before.body and after.block == before.block
    assert {k: v for k, v in after.stamps.items() if k != "rejection_reason"} == before.stamps


def test_reject_then_run_records_the_rejection_with_its_reason_in_ledger_and_audit_log(
    demo: Demo,
):
    task_id = demo.pending_id("reply_to_customer.md")
    assert (
        main(
            demo.args(
                "reject",
                "--state-dir",
                str(demo.state),
                task_id,
                "--reason",
                "we do not reply to this",
            )
        )
        == 0
    )
    demo.run_once()

    with closing(demo.ledger()) as ledger:
        task = ledger.task(task_id)
    assert task is not None
    assert (task.state, task.approval, task.error) == (
        "rejected",
        "human_rejected",
        "we do not reply to this",
    )
    assert task.file == "Rejected/reply_to_customer.md"
    rejected = [e for e in demo.entries() if e["event"] == "rejected"]
    assert len(rejected) == 1
    assert rejected[0]["task_id"] == task_id
    assert rejected[0]["error"] == "we do not reply to this"
    assert rejected[0]["actor"] == "human"
    note_meta = notes.parse((demo.vault / "Rejected/reply_to_customer.md").read_text()).meta
    assert note_meta["status"] == "rejected"


def test_reject_without_a_reason_is_a_usage_error(demo: Demo):
    task_id = demo.pending_id("reply_to_customer.md")
    with pytest.raises(SystemExit) as exit_info:
        main(demo.decide("reject", task_id))
    assert exit_info.value.code == 2
    assert len(files_in(demo.vault, "Pending_Approval")) == 3


def test_reject_unknown_id_exits_1_and_changes_nothing(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    assert main(demo.decide("reject", "nope", "--reason", "x")) == 1
    assert "'nope'" in capsys.readouterr().err
    assert files_in(demo.vault, "Rejected") == []


# -- check --------------------------------------------------------------------------------


def test_check_of_the_template_vault_says_all_files_are_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    vault = tmp_path / "vault"
    main(["init", str(vault)])
    capsys.readouterr()
    assert main(["check", "--vault", str(vault)]) == 0
    assert "all 4 files valid" in capsys.readouterr().out


def test_check_prints_every_problem_with_folder_file_and_field_and_exits_1(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    make_files(
        demo.vault,
        {
            "Needs_Action/bad_post.md": note(
                {"type": "social_post", "platforms": ["myspace"], "colour": "red"}
            ),
            "Needs_Action/bad_yaml.md": "---\ntype: [unclosed\n---\nbody\n",
            "Needs_Action/notes.txt": "not markdown\n",
            "Approved/no_type.md": note({"text": "hi"}),
        },
    )
    capsys.readouterr()
    assert main(demo.args("check")) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    post_problems = [line for line in lines if line.startswith("Needs_Action/bad_post.md: ")]
    fields = {line.split(": ")[1] for line in post_problems}
    assert {"platforms.0", "text", "colour"} <= fields, post_problems
    assert any(line.startswith("Needs_Action/bad_yaml.md: (file): frontmatter") for line in lines)
    assert "Needs_Action/notes.txt: (file): is not a Markdown (.md) file" in lines
    assert any(line.startswith("Approved/no_type.md: type: missing") for line in lines)
    assert "in 4 of 7 file(s)" in captured.err


def test_check_reports_skipped_sync_conflicts_and_ignored_files_without_failing(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    make_files(
        demo.vault,
        {
            "Pending_Approval/reply.sync-conflict-20261122-abc.md": "---\ntype: [\n---\n",
            "Needs_Action/.DS_Store": b"\x00\x01",
            "Needs_Action/draft.md~": "backup",
        },
    )
    capsys.readouterr()
    assert main(demo.args("check")) == 0
    out = capsys.readouterr().out
    assert "skipped Pending_Approval/reply.sync-conflict-20261122-abc.md: sync-conflict" in out
    assert "skipped Needs_Action/.DS_Store: ignored" in out
    assert "skipped Needs_Action/draft.md~: ignored" in out
    assert "all 3 files valid" in out


def test_check_reports_a_bad_config_file_naming_the_setting(
    demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = tmp_path / "config.toml"
    config.write_text("[policy]\napproval_expiry_hours = -1\nsurprise = 1\n")
    capsys.readouterr()
    assert main(demo.args("check", "--config", str(config))) == 1
    out = capsys.readouterr().out
    assert f"{config}: policy.approval_expiry_hours:" in out
    assert f"{config}: policy.surprise:" in out


# -- logs ---------------------------------------------------------------------------------


def test_logs_prints_one_line_per_entry_with_time_event_action_task_and_file(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    capsys.readouterr()
    assert main(demo.args("logs", "--since", "today")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(demo.entries()) == 5
    invoice = demo.pending_id("invoice_acme_december.md")
    line = next(line for line in lines if invoice in line)
    assert line.split()[2:] == [
        "UTC",
        "approval_requested",
        "odoo_invoice",
        invoice,
        "Pending_Approval/invoice_acme_december.md",
    ]


def test_logs_filter_by_action_type_or_event_name(demo: Demo, capsys: pytest.CaptureFixture[str]):
    capsys.readouterr()
    main(demo.args("logs", "--action", "odoo_invoice"))
    assert len(capsys.readouterr().out.splitlines()) == 1
    main(demo.args("logs", "--action", "approval_requested"))
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_logs_filter_by_result_status_or_event(demo: Demo, capsys: pytest.CaptureFixture[str]):
    capsys.readouterr()
    main(demo.args("logs", "--status", "done", "--json"))
    done = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [entry["event"] for entry in done] == ["executed"]
    main(demo.args("logs", "--status", "auto_approved", "--json"))
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert events == ["auto_approved", "executed"]


def test_logs_json_prints_every_entry_as_one_json_line(
    demo: Demo, capsys: pytest.CaptureFixture[str]
):
    capsys.readouterr()
    main(demo.args("logs", "--json"))
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == demo.entries()


def test_logs_since_leaves_out_older_days(demo: Demo, capsys: pytest.CaptureFixture[str]):
    old = {"timestamp": "2020-01-01T10:00:00.000Z", "event": "ancient", "action": None}
    make_files(demo.vault, {"Logs/2020-01-01.json": json.dumps(old) + "\n"})
    capsys.readouterr()
    main(demo.args("logs", "--since", "7d"))
    assert "ancient" not in capsys.readouterr().out
    main(demo.args("logs", "--since", "2019-12-31"))
    assert "ancient" in capsys.readouterr().out
    main(demo.args("logs", "--action", "ancient"))
    assert "2020-01-01 10:00:00 UTC" in capsys.readouterr().out


def test_logs_with_a_bad_since_is_a_usage_error(demo: Demo):
    result = run_vaultd("logs", "--vault", str(demo.vault), "--since", "last tuesday")
    assert result.returncode == 2
    assert "use YYYY-MM-DD, today, or a number of days" in result.stderr


def test_logs_shows_the_error_of_an_entry(demo: Demo, capsys: pytest.CaptureFixture[str]):
    make_files(demo.vault, {"Needs_Action/empty.md": "\n  \n"})  # blank, not still empty
    demo.run_once()
    capsys.readouterr()
    main(demo.args("logs", "--action", "rejected_invalid"))
    out = capsys.readouterr().out
    assert "rejected_invalid" in out and "error: empty.md: (file): the file is empty" in out


def test_the_cli_does_not_import_the_heavy_libraries_of_other_commands():
    """`vaultd run` in dry-run starts in half a second and 60 MB: the MCP SDK, the web
    stack and the live connectors' clients are imported only by the commands that use them."""
    import subprocess
    import sys

    heavy = ["mcp", "fastapi", "uvicorn", "tweepy", "pyfacebook", "requests", "httpx", "jwt"]
    # Imported on first use: the scheduler by `vaultd run` (not --once), the templates by
    # the first approval request. Each costs about a tenth of a second on every start of
    # the other commands, the suite's daemons included.
    heavy += ["apscheduler", "jinja2"]
    probe = (
        "import sys, daemon.cli.main, daemon.service.app; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"
