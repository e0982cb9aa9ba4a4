"""Log retention on real files: old days are gzipped into Logs/archive/, no line is ever lost."""

from __future__ import annotations

import gzip
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from daemon.cli.main import main
from daemon.core.audit import read_entries
from daemon.core.schedule_config import Logs
from daemon.core.vault import Vault
from daemon.service.retention import Retention, apply_retention

TODAY = date(2026, 12, 1)


def day(days_ago: int) -> date:
    return TODAY - timedelta(days=days_ago)


def lines_for(when: date, count: int = 3) -> str:
    return "".join(
        json.dumps({"timestamp": f"{when}T10:00:0{n}.000Z", "event": f"e{when}-{n}"}) + "\n"
        for n in range(count)
    )


def write_day(logs: Path, days_ago: int, text: str | None = None) -> Path:
    when = day(days_ago)
    path = logs / f"{when}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines_for(when) if text is None else text, encoding="utf-8")
    return path


def archived(logs: Path, days_ago: int) -> Path:
    return logs / "archive" / f"{day(days_ago)}.json.gz"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes, to show that nothing else changed."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "vault" / "Logs"
    folder.mkdir(parents=True)
    return folder


# -- archiving -----------------------------------------------------------------------------


def test_days_older_than_90_are_gzipped_into_the_archive_with_identical_content(logs: Path):
    originals = {ago: write_day(logs, ago).read_bytes() for ago in (91, 120, 400)}
    result = apply_retention(logs, Logs(), today=TODAY)
    assert sorted(result.archived) == [day(400), day(120), day(91)]
    assert result.deleted == []
    assert result.kept == {}
    for ago, content in originals.items():
        assert not (logs / f"{day(ago)}.json").exists()
        assert gzip.decompress(archived(logs, ago).read_bytes()) == content


def test_today_and_the_last_90_days_are_never_touched(logs: Path):
    for ago in (0, 1, 89, 90):
        write_day(logs, ago)
    before = tree(logs)
    assert apply_retention(logs, Logs(), today=TODAY) == Retention()
    assert tree(logs) == before
    assert not (logs / "archive").exists()


def test_archive_after_days_is_configurable(logs: Path):
    write_day(logs, 100)
    write_day(logs, 150)
    result = apply_retention(logs, Logs(archive_after_days=120), today=TODAY)
    assert result.archived == [day(150)]
    assert (logs / f"{day(100)}.json").exists()


def test_files_that_are_not_daily_logs_are_left_alone(logs: Path):
    old = day(200)
    foreign = {
        "notes.json": "{}\n",
        f"{old}.md": "a note\n",
        f"{old}.json.bak": "backup\n",
        f"{old:%Y%m%d}.json": "{}\n",
        f"{old}-copy.json": "{}\n",
        ".gitkeep": "",
        f"sub/{old}.json": lines_for(old),
    }
    for name, text in foreign.items():
        (logs / name).parent.mkdir(parents=True, exist_ok=True)
        (logs / name).write_text(text, encoding="utf-8")
    before = tree(logs)
    assert apply_retention(logs, Logs(), today=TODAY) == Retention()
    assert tree(logs) == before


def test_nothing_outside_the_logs_folder_is_touched(tmp_path: Path, logs: Path):
    outside = tmp_path / f"{day(200)}.json"
    outside.write_text(lines_for(day(200)), encoding="utf-8")
    (logs / f"{day(300)}.json").symlink_to(outside)
    write_day(logs, 200)
    result = apply_retention(logs, Logs(), today=TODAY)
    assert result.archived == [day(200)]
    assert outside.read_text(encoding="utf-8") == lines_for(day(200))
    assert (logs / f"{day(300)}.json").is_symlink()


def test_a_missing_logs_folder_is_nothing_to_do(tmp_path: Path):
    assert apply_retention(tmp_path / "Logs", Logs(), today=TODAY) == Retention()
    assert not (tmp_path / "Logs").exists()


def test_a_second_run_changes_nothing(logs: Path):
    for ago in (10, 95, 200):
        write_day(logs, ago)
    config = Logs(delete_after_days=150)
    first = apply_retention(logs, config, today=TODAY)
    assert first.archived == [day(200), day(95)]
    assert first.deleted == [day(200)]
    after_first = tree(logs)
    assert apply_retention(logs, config, today=TODAY) == Retention()
    assert tree(logs) == after_first


def test_no_temporary_file_is_left_behind(logs: Path):
    write_day(logs, 100)
    apply_retention(logs, Logs(), today=TODAY)
    assert [path.name for path in (logs / "archive").iterdir()] == [f"{day(100)}.json.gz"]


# -- deletion ------------------------------------------------------------------------------


def test_archives_are_never_deleted_unless_the_config_asks(logs: Path):
    write_day(logs, 5000)
    apply_retention(logs, Logs(), today=TODAY)
    result = apply_retention(logs, Logs(), today=TODAY)
    assert result.deleted == []
    assert archived(logs, 5000).exists()


def test_archives_past_delete_after_days_are_deleted_and_younger_ones_kept(logs: Path):
    for ago in (100, 364, 365, 366, 1000):
        write_day(logs, ago)
    apply_retention(logs, Logs(), today=TODAY)
    result = apply_retention(logs, Logs(delete_after_days=365), today=TODAY)
    assert result.deleted == [day(1000), day(366)]
    for ago in (100, 364, 365):
        assert archived(logs, ago).exists()
    for ago in (366, 1000):
        assert not archived(logs, ago).exists()


def test_deletion_leaves_other_files_in_the_archive_alone(logs: Path):
    archive = logs / "archive"
    archive.mkdir()
    (archive / "readme.txt").write_text("mine\n", encoding="utf-8")
    (archive / f"{day(1000)}.json").write_text("{}\n", encoding="utf-8")
    result = apply_retention(logs, Logs(delete_after_days=90), today=TODAY)
    assert result == Retention()
    assert sorted(path.name for path in archive.iterdir()) == [f"{day(1000)}.json", "readme.txt"]


# -- never lose a line ---------------------------------------------------------------------


def test_an_archive_left_by_a_crash_is_verified_and_the_original_then_removed(logs: Path):
    original = write_day(logs, 100)
    content = original.read_bytes()
    target = archived(logs, 100)
    target.parent.mkdir()
    target.write_bytes(gzip.compress(content))  # Written, renamed, then the crash.
    result = apply_retention(logs, Logs(), today=TODAY)
    assert result.archived == [day(100)]
    assert not original.exists()
    assert gzip.decompress(target.read_bytes()) == content


def test_a_temporary_file_left_by_a_crash_is_replaced(logs: Path):
    original = write_day(logs, 100)
    content = original.read_bytes()
    (logs / "archive").mkdir()
    (logs / "archive" / f".{day(100)}.json.gz.tmp").write_bytes(b"\x1f\x8b half written")
    assert apply_retention(logs, Logs(), today=TODAY).archived == [day(100)]
    assert gzip.decompress(archived(logs, 100).read_bytes()) == content
    assert [path.name for path in (logs / "archive").iterdir()] == [f"{day(100)}.json.gz"]


@pytest.mark.parametrize(
    "existing",
    [
        pytest.param(b"not gzip at all", id="not-gzip"),
        pytest.param(gzip.compress(b'{"event": "someone else"}\n'), id="other-content"),
        pytest.param(gzip.compress(b"x" * 5000)[:40], id="truncated"),
    ],
)
def test_an_archive_with_other_content_is_never_overwritten_and_the_original_kept(
    logs: Path, existing: bytes
):
    original = write_day(logs, 100)
    content = original.read_bytes()
    target = archived(logs, 100)
    target.parent.mkdir()
    target.write_bytes(existing)
    result = apply_retention(logs, Logs(delete_after_days=90), today=TODAY)
    assert result.archived == []
    assert result.deleted == []
    assert list(result.kept) == [day(100)]
    assert "kept both" in result.kept[day(100)]
    assert original.read_bytes() == content
    assert target.read_bytes() == existing


def test_an_archive_that_holds_only_part_of_the_original_is_a_conflict(logs: Path):
    original = write_day(logs, 100)
    content = original.read_bytes()
    target = archived(logs, 100)
    target.parent.mkdir()
    target.write_bytes(gzip.compress(content[:-10]))
    assert list(apply_retention(logs, Logs(), today=TODAY).kept) == [day(100)]
    assert original.read_bytes() == content


def test_a_failure_on_one_day_does_not_stop_the_others(logs: Path):
    write_day(logs, 100)
    write_day(logs, 200)
    (logs / "archive").mkdir()
    (logs / "archive" / f".{day(200)}.json.gz.tmp").mkdir()  # Cannot be written.
    result = apply_retention(logs, Logs(), today=TODAY)
    assert result.archived == [day(100)]
    assert list(result.kept) == [day(200)]
    assert (logs / f"{day(200)}.json").exists()


# -- reading archived days -----------------------------------------------------------------


@pytest.fixture
def mixed(logs: Path) -> Path:
    """Logs with days 400, 200 and 95 archived, and days 50 and 0 live."""
    for ago in (400, 200, 95, 50, 0):
        write_day(logs, ago)
    assert len(apply_retention(logs, Logs(), today=TODAY).archived) == 3
    return logs


def expected_events(*days_ago: int) -> list[str]:
    return [f"e{day(ago)}-{n}" for ago in days_ago for n in range(3)]


def test_read_entries_merges_archived_and_live_days_oldest_first(mixed: Path):
    events = [entry["event"] for entry in read_entries(mixed)]
    assert events == expected_events(400, 200, 95, 50, 0)


def test_read_entries_since_counts_archived_days_by_their_date(mixed: Path):
    assert [e["event"] for e in read_entries(mixed, since=day(200))] == expected_events(
        200, 95, 50, 0
    )
    assert [e["event"] for e in read_entries(mixed, since=day(199))] == expected_events(95, 50, 0)


def test_read_entries_skips_torn_lines_and_the_unreadable_rest_of_an_archive(logs: Path):
    archive = logs / "archive"
    archive.mkdir()
    good = '{"event": "a"}\n{"event": "torn"\n{"event": "b"}\n'
    (archive / "2026-01-01.json.gz").write_bytes(gzip.compress(good.encode()))
    whole = gzip.compress(b'{"event": "c"}\n' + b'{"event": "lost"}\n' * 20000)
    (archive / "2026-01-02.json.gz").write_bytes(whole[: len(whole) // 2])
    (archive / "2026-01-03.json.gz").write_bytes(b"not gzip")
    (logs / "2026-01-04.json").write_text('{"event": "d"}\n', encoding="utf-8")
    events = [entry["event"] for entry in read_entries(logs)]
    assert events[:3] == ["a", "b", "c"]
    assert events[-1] == "d"
    assert set(events) == {"a", "b", "c", "lost", "d"}


def test_read_entries_reads_a_day_once_when_both_archive_and_original_exist(logs: Path):
    original = write_day(logs, 100)
    target = archived(logs, 100)
    target.parent.mkdir()
    target.write_bytes(gzip.compress(original.read_bytes()))
    assert [e["event"] for e in read_entries(logs)] == expected_events(100)


def test_vaultd_logs_shows_archived_and_live_entries_and_since_spans_both(
    mixed: Path, capsys: pytest.CaptureFixture[str]
):
    vault = mixed.parent
    Vault(vault).ensure_folders()
    capsys.readouterr()
    assert main(["logs", "--vault", str(vault), "--json"]) == 0
    printed = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert printed == expected_events(400, 200, 95, 50, 0)
    assert main(["logs", "--vault", str(vault), "--json", "--since", str(day(200))]) == 0
    printed = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert printed == expected_events(200, 95, 50, 0)
