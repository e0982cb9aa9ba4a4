"""The audit log: daily JSON-lines files, the seed's fields, secrets redacted."""

import json
from datetime import date
from pathlib import Path

import pytest

from daemon.core.audit import REDACTED, AuditLog, Redactor, parse_since, read_entries


def test_each_entry_is_one_json_line_in_todays_utc_file(tmp_path: Path):
    log = AuditLog(tmp_path / "Logs", Redactor([]))
    entry = log.write(
        "executed",
        action="social_post",
        task_id="t1",
        file="Done/a.md",
        parameters={"text": "hi", "content_hash": "sha256:x"},
        result={"status": "done"},
        approval_status="auto_approved",
        duration_ms=5,
    )
    (path,) = (tmp_path / "Logs").iterdir()
    assert path.name == entry["timestamp"][:10] + ".json"
    assert entry["timestamp"].endswith("Z")
    (line,) = path.read_text().splitlines()
    assert json.loads(line) == entry
    assert set(entry) >= {
        "timestamp",
        "action",
        "actor",
        "task_id",
        "file",
        "parameters",
        "result",
        "approval_status",
        "duration_ms",
        "error",
    }


def test_secret_keys_and_known_secret_values_are_redacted(tmp_path: Path):
    log = AuditLog(tmp_path / "Logs", Redactor(["hunter2-very-secret"]))
    entry = log.write(
        "failed",
        action="odoo_invoice",
        task_id="t1",
        file=None,
        parameters={"password": "p", "api_key": "k", "nested": {"access_token": "t"}},
        error="login failed for hunter2-very-secret at odoo",
    )
    text = (tmp_path / "Logs" / f"{entry['timestamp'][:10]}.json").read_text()
    for secret in ("hunter2-very-secret", '"p"', '"k"', '"t"'):
        assert secret not in text
    assert entry["parameters"]["nested"]["access_token"] == REDACTED
    assert entry["error"] == f"login failed for {REDACTED} at odoo"


def test_redactor_takes_secret_values_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ODOO_PASSWORD", "s3cr3t-from-env")
    monkeypatch.setenv("HOME_DIR_NAME", "not-a-secret")
    redact = Redactor()
    assert redact("x s3cr3t-from-env y") == f"x {REDACTED} y"
    assert redact("not-a-secret") == "not-a-secret"


def test_read_entries_skips_torn_lines_and_filters_by_day(tmp_path: Path):
    logs = tmp_path / "Logs"
    logs.mkdir()
    (logs / "2026-11-20.json").write_text('{"event": "a"}\n{"event": "b"\n')
    (logs / "2026-11-21.json").write_text('{"event": "c"}\n')
    (logs / "notes.json").write_text('{"event": "not a log"}\n')
    assert [e["event"] for e in read_entries(logs)] == ["a", "c"]
    assert [e["event"] for e in read_entries(logs, since=date(2026, 11, 21))] == ["c"]


def test_parse_since_understands_dates_today_and_days():
    assert parse_since("2026-11-20") == date(2026, 11, 20)
    assert (parse_since("today") - parse_since("7d")).days == 7


@pytest.mark.parametrize(
    ("event", "result", "status", "outcome"),
    [
        ("executed", {"status": "done", "facebook": {"id": "1"}}, "success", "done"),
        ("outcome_unknown", {"status": "outcome_unknown"}, "error", "outcome_unknown"),
        ("failed", {}, "error", "failed"),
        ("expired", {}, "error", "expired"),
        ("rejected", {}, "error", "rejected"),
        ("rejected_invalid", {}, "error", "invalid"),
        ("reconciled", {"lookup": "found"}, "success", "found"),
        ("reconciled", {"lookup": "undetermined"}, "error", "outcome_unknown"),
        ("run_cancelled", {}, "error", "cancelled"),
    ],
)
def test_an_entry_with_an_outcome_says_success_or_error_and_keeps_vaultds_own_state(
    tmp_path: Path, event: str, result: dict, status: str, outcome: str
):
    entry = AuditLog(tmp_path, Redactor([])).write(
        event, action=None, task_id="t", file=None, result=result
    )
    assert entry["result"]["status"] == status
    assert entry["result"]["outcome"] == outcome
    assert {k: v for k, v in entry["result"].items() if k not in ("status", "outcome")} == {
        k: v for k, v in result.items() if k != "status"
    }


def test_an_entry_without_an_outcome_has_no_status_and_a_caller_state_becomes_its_outcome(
    tmp_path: Path,
):
    log = AuditLog(tmp_path, Redactor([]))
    plain = log.write("rescan_after_overflow", action=None, task_id=None, file=None)
    assert plain["result"] == {}
    waiting = log.write(
        "deferred", action=None, task_id="t", file=None, result={"status": "waiting"}
    )
    assert waiting["result"] == {"outcome": "waiting"}
