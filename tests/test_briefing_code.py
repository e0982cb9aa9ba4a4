"""Code tasks in the CEO briefing: the changes landed this week, with their commits and notes;
a dry-run code task landed nothing and is counted apart, as dry-run actions are."""

from __future__ import annotations

from pathlib import Path

from test_briefing import NOW, WEEK, briefing_of, entry, write_log

from daemon.reports.briefing import write_briefing
from daemon.service.app import open_app

LANDED = {"target": "main", "head": "a" * 40, "commits": ["b" * 40, "a" * 40]}


def test_code_changes_landed_this_week_are_in_the_briefing_apart_from_dry_runs(
    vault_root: Path, state_dir: Path
):
    params = {"type": "code_task", "repo": "demo", "target": "main", "task": "Fix the footer"}
    write_log(vault_root, [
        entry("2026-11-18T10:00:00.000Z", "executed", "code_task", "20261118-code01",
              "Done/fix-footer.md", parameters=params, result=LANDED),
        entry("2026-11-19T10:00:00.000Z", "executed", "code_task", "20261119-code02",
              "Done/try-header.md", parameters=params,
              result={**LANDED, "dry_run": True}),
    ])  # fmt: skip
    app = open_app(vault_root, state_dir=state_dir)
    try:
        meta, text = briefing_of(write_briefing(app, WEEK, now=NOW))
    finally:
        app.close()
    assert meta["code_changes_landed"] == 1 and meta["commits_landed"] == 2
    assert "- **Code changes landed:** 1 (2 commits)" in text
    assert "> - Code changes: [[Done/fix-footer]] (main, 2 commit(s))" in text
    assert "- **Dry-run code changes:** 1 (nothing was landed)" in text
    assert "try-header" not in text.split("## Dry-run")[0]  # not among the live figures
