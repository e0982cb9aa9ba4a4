"""The audit log: daily JSON-lines files, the seed's fields, secrets redacted."""

import json
import os
import shutil
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
        ("reconciled", {"lookup": "unfinished"}, "success", "unfinished"),
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


def _write(log: AuditLog, task_id: str) -> dict:
    return log.write("executed", action="social_post", task_id=task_id, file="Done/a.md")


def test_the_days_file_is_opened_once_for_many_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    opened: list[str] = []
    real_os_open, real_path_open = os.open, Path.open

    def os_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    def path_open(self, *args, **kwargs):
        opened.append(str(self))
        return real_path_open(self, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(Path, "open", path_open)
    log = AuditLog(tmp_path / "Logs", Redactor([]))
    for n in range(50):
        _write(log, f"t{n}")
    (path,) = (tmp_path / "Logs").iterdir()
    assert opened == [str(path)]
    lines = path.read_text().splitlines()
    assert [json.loads(line)["task_id"] for line in lines] == [f"t{n}" for n in range(50)]


def test_each_line_is_in_the_file_when_write_returns(tmp_path: Path):
    """Nothing waits in a buffer of the process: a kill -9 after `write` loses no line."""
    log = AuditLog(tmp_path / "Logs", Redactor([]))
    for n in range(3):
        entry = _write(log, f"t{n}")
        path = tmp_path / "Logs" / f"{entry['timestamp'][:10]}.json"
        assert json.loads(path.read_text().splitlines()[-1]) == entry


def test_a_log_file_deleted_or_moved_away_is_written_again_at_its_name(tmp_path: Path):
    log = AuditLog(tmp_path / "Logs", Redactor([]))
    path = tmp_path / "Logs" / f"{_write(log, 't1')['timestamp'][:10]}.json"
    path.rename(tmp_path / "moved.json")
    _write(log, "t2")
    shutil.rmtree(tmp_path / "Logs")
    _write(log, "t3")
    assert [
        json.loads(x)["task_id"] for x in (tmp_path / "moved.json").read_text().splitlines()
    ] == ["t1"]
    assert [json.loads(x)["task_id"] for x in path.read_text().splitlines()] == ["t3"]


def test_two_logs_on_one_folder_append_whole_lines_in_turn(tmp_path: Path):
    """A `vaultd approve` beside the running daemon: each line stays whole and in order."""
    first, second = (
        AuditLog(tmp_path / "Logs", Redactor([])),
        AuditLog(tmp_path / "Logs", Redactor([])),
    )
    for n in range(20):
        _write(first if n % 2 else second, f"t{n}")
    first.close()
    _write(first, "t20")
    entries = list(read_entries(tmp_path / "Logs"))
    assert [entry["task_id"] for entry in entries] == [f"t{n}" for n in range(21)]
