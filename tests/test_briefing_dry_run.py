"""The briefing tells dry-run from live, and a week that is not over from one that is.

Dry-run actions (an `executed` entry whose result says `dry_run: true`, at the top or in a
target's answer) are counted under "Dry-run: nothing was sent", never as revenue, invoices
created, payments registered or posts. A briefing of a week that is not over yet (before
its scheduled Sunday-22:00 briefing) is refused by `vaultd briefing` unless `--partial`
is given, and a partial one says so; the scheduled briefing is the regular one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import make_files, move, note
from test_briefing import BERLIN, WEEK, briefing_of, entry, invoice, payment, post, write_log

from daemon.cli.main import main
from daemon.core.schedule_config import DAYS, Schedule, zone
from daemon.core.weeks import IsoWeek
from daemon.reports.briefing import Figures, briefing_figures, write_briefing
from daemon.reports.briefing.week import week_ends_at, week_of_briefing
from daemon.service.app import App, open_app
from daemon.service.scheduler import Clockwork, last_briefing_time

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday morning after 2026-W47
SUNDAY_22 = datetime(2026, 11, 22, 22, 0, tzinfo=BERLIN)  # W47's scheduled briefing

# The two ways an executed entry says nothing was sent.
DRY_ODOO = {"status": "done", "odoo": {"dry_run": True, "request": {}}}
DRY_TOP = {"status": "success", "outcome": "done", "dry_run": True, "odoo": {"request": {}}}
LIVE_INVOICE = {"status": "done", "odoo": {"invoice_id": 51, "number": "INV/2026/0051"}}
LIVE_TOP = {"status": "success", "outcome": "done", "dry_run": False, "odoo": {"payment_ids": [9]}}


def executed(
    when: str, action: str, task_id: str, params: dict[str, Any], result: Any
) -> dict[str, Any]:
    return entry(
        when, "executed", action, task_id, f"Done/{task_id}.md", parameters=params, result=result
    )


def dry_post(platforms: list[str]) -> dict[str, Any]:
    return {"status": "done", **{p: {"dry_run": True, "request": {}} for p in platforms}}


def live_post(platforms: list[str]) -> dict[str, Any]:
    return {"status": "done", **{p: {"id": f"{p}-7"} for p in platforms}}


# A mixed week: live and dry-run invoices, payments and posts, in both result formats.
MIXED = [
    executed(
        "2026-11-16T09:00:00Z", "odoo_invoice", "live-inv", invoice("Acme", 3, 100), LIVE_INVOICE
    ),
    executed("2026-11-17T09:00:00Z", "odoo_invoice", "dry-inv1", invoice("Acme", 10, 97), DRY_ODOO),
    executed("2026-11-17T10:00:00Z", "odoo_invoice", "dry-inv2", invoice("Globex", 2, 50), DRY_TOP),
    executed(
        "2026-11-18T09:00:00Z",
        "odoo_payment",
        "live-pay",
        payment("INV/2026/0051", "120"),
        LIVE_TOP,
    ),
    executed(
        "2026-11-18T10:00:00Z", "odoo_payment", "dry-pay", payment("INV/2026/0051", "80"), DRY_ODOO
    ),
    executed(
        "2026-11-19T09:00:00Z",
        "social_post",
        "live-post",
        post(["facebook"]),
        live_post(["facebook"]),
    ),
    executed(
        "2026-11-19T10:00:00Z",
        "social_post",
        "dry-post",
        post(["facebook", "twitter"]),
        dry_post(["facebook", "twitter"]),
    ),
]


@pytest.fixture
def berlin(tmp_path: Path) -> Path:
    config = tmp_path / "vaultd.toml"
    config.write_text('[schedule]\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    return config


@pytest.fixture
def vault_app(vault_root: Path, state_dir: Path, berlin: Path) -> Iterator[App]:
    make_files(vault_root, {"Business_Goals.md": note({"monthly_revenue_target": 10000})})
    app = open_app(vault_root, config_path=berlin, state_dir=state_dir)
    yield app
    app.close()


def figures_of(app: App, entries: list[dict[str, Any]]) -> Figures:
    write_log(app.vault.root, entries)
    return briefing_figures(app.vault, app.ledger, WEEK, tz=BERLIN, now=NOW)


# -- dry-run ----------------------------------------------------------------------------------


def test_a_dry_run_invoice_is_not_revenue_and_not_an_invoice_created(vault_app: App) -> None:
    f = figures_of(vault_app, [MIXED[1]])
    assert (f.invoices_created, f.invoiced_week, f.invoiced_month, f.invoices) == (0, {}, {}, [])
    assert f.tasks_completed == 0
    assert f.dry_run.invoices_created == 1
    assert f.dry_run.invoiced_week == {"USD": Decimal(970)}
    assert [i.label for i in f.dry_run.invoices] == ["Acme, 970.00 USD"]


def test_a_top_level_dry_run_flag_alone_makes_an_entry_dry_run(vault_app: App) -> None:
    f = figures_of(vault_app, [MIXED[2]])
    assert (f.invoices_created, f.invoiced_week, f.invoiced_month) == (0, {}, {})
    assert f.dry_run.invoiced_week == {"USD": Decimal(100)}


def test_a_mixed_week_counts_live_and_dry_run_actions_apart(vault_app: App) -> None:
    f = figures_of(vault_app, MIXED)
    assert f.tasks_completed == 3
    assert [i.link for i in f.completed] == ["Done/live-inv", "Done/live-pay", "Done/live-post"]
    assert (f.invoices_created, f.invoiced_week) == (1, {"USD": Decimal(300)})
    assert (f.payments_registered, f.paid_week) == (1, {"USD": Decimal(120)})
    assert f.posts == {"facebook": 1}
    assert (f.invoiced_month, f.paid_month) == ({"USD": Decimal(300)}, {"USD": Decimal(120)})
    assert f.dry_run.tasks_completed == 4
    assert (f.dry_run.invoices_created, f.dry_run.invoiced_week) == (2, {"USD": Decimal(1070)})
    assert (f.dry_run.payments_registered, f.dry_run.paid_week) == (1, {"USD": Decimal(80)})
    assert f.dry_run.posts == {"facebook": 1, "twitter": 1}
    # The chart shows what vaultd really did.
    assert sum(f.actions_per_day.values()) == 3


def test_the_briefing_shows_dry_run_actions_under_their_own_label(vault_app: App) -> None:
    write_log(vault_app.vault.root, MIXED)
    meta, body = briefing_of(write_briefing(vault_app, WEEK, now=NOW))
    assert meta["invoices_created"] == 1
    assert meta["invoiced_total"] == 300.0
    assert meta["invoiced_month_to_date"] == 300.0
    assert meta["posts_facebook"] == 1
    assert meta["posts_twitter"] == 0
    assert meta["dry_run_tasks"] == 4
    assert meta["dry_run_invoices"] == 2
    assert meta["dry_run_invoiced_total"] == 1070.0
    assert meta["dry_run_payments"] == 1
    assert meta["dry_run_paid_total"] == 80.0
    assert meta["dry_run_posts"] == 2
    assert "- **Invoices created:** 1, total 300.00 USD" in body
    assert "- **Posts:** 1 (facebook 1)" in body
    assert "Invoiced so far this month: **3%** of it" in body
    dry = body.split("## Dry-run: nothing was sent\n", 1)[1].split("\n## ", 1)[0]
    assert "- **Dry-run invoices:** 2, total 1,070.00 USD" in dry
    assert "- **Dry-run payments:** 1, total 80.00 USD" in dry
    assert "- **Dry-run posts:** 2 (facebook 1, twitter 1)" in dry
    assert "[[Done/dry-inv1]], [[Done/dry-inv2]], [[Done/dry-pay]], [[Done/dry-post]]" in dry


def test_a_week_without_dry_run_actions_has_no_dry_run_section(vault_app: App) -> None:
    write_log(vault_app.vault.root, [MIXED[0]])
    meta, body = briefing_of(write_briefing(vault_app, WEEK, now=NOW))
    assert meta["dry_run_tasks"] == 0
    assert meta["invoices_created"] == 1
    assert "Dry-run" not in body


def test_a_dry_run_invoice_is_never_overdue_and_a_dry_run_payment_settles_nothing(
    vault_app: App,
) -> None:
    history = [
        # Read cheaply (long before the week): a dry-run invoice, a live one paid in dry-run.
        executed(
            "2026-09-01T09:00:00Z",
            "odoo_invoice",
            "old-dry",
            invoice("Dry Ltd", 1, 10, due="2026-09-30"),
            DRY_ODOO,
        ),
        executed(
            "2026-09-02T09:00:00Z",
            "odoo_invoice",
            "old-live",
            invoice("Live Ltd", 1, 20, due="2026-09-30") | {"dry_run": True},  # a parameter only
            {"status": "done", "odoo": {"invoice_id": 60, "number": "INV/2026/0060"}},
        ),
        executed(
            "2026-09-03T09:00:00Z",
            "odoo_payment",
            "old-pay",
            payment("INV/2026/0060", "20"),
            DRY_TOP,
        ),
        # Read in full (this month): the same again.
        executed(
            "2026-11-02T09:00:00Z",
            "odoo_invoice",
            "new-dry",
            invoice("Dry Two", 1, 30, due="2026-11-10"),
            DRY_TOP,
        ),
        executed(
            "2026-11-03T09:00:00Z",
            "odoo_invoice",
            "new-live",
            invoice("Live Two", 1, 40, due="2026-11-10"),
            {"status": "done", "odoo": {"invoice_id": 61, "number": "INV/2026/0061"}},
        ),
        executed(
            "2026-11-04T09:00:00Z",
            "odoo_payment",
            "new-pay",
            payment("INV/2026/0061", "40"),
            DRY_ODOO,
        ),
    ]
    f = figures_of(vault_app, history)
    chased = [s.text.split(":")[0] for s in f.suggestions if s.rule == "overdue_invoice"]
    assert chased == ["Chase Live Ltd", "Chase Live Two"]
    assert (f.invoiced_month, f.paid_month) == ({"USD": Decimal(40)}, {})


def test_a_dry_run_post_is_not_the_last_post_on_its_platform(vault_app: App) -> None:
    f = figures_of(
        vault_app,
        [
            executed(
                "2026-10-01T09:00:00Z",
                "social_post",
                "old",
                post(["instagram"]),
                live_post(["instagram"]),
            ),
            executed(
                "2026-11-01T09:00:00Z",
                "social_post",
                "dry1",
                post(["instagram"]),
                dry_post(["instagram"]),
            ),
            executed(
                "2026-11-20T09:00:00Z",
                "social_post",
                "dry2",
                post(["instagram"]),
                dry_post(["instagram"]),
            ),
        ],
    )
    (quiet,) = [s for s in f.suggestions if s.rule == "quiet_platform"]
    assert quiet.text == "Nothing was posted on instagram in the last 7 days."
    assert quiet.links == ["Done/old"]


def test_an_invoice_executed_by_the_dry_run_daemon_is_reported_as_dry_run(
    app: App, vault_root: Path
) -> None:
    make_files(vault_root, {"Needs_Action/acme.md": note(invoice("Acme", 10, 97))})
    app.pipeline.process(vault_root / "Needs_Action/acme.md")
    approved = move(vault_root, vault_root / "Pending_Approval/acme.md", "Approved")
    assert app.pipeline.process(approved).status == "done"

    now = datetime.now(UTC)
    meta, body = briefing_of(write_briefing(app, IsoWeek.of(now.date()), now=now))

    assert (meta["invoices_created"], meta["invoiced_total"]) == (0, 0.0)
    assert meta["invoiced_month_to_date"] == 0.0
    assert (meta["dry_run_invoices"], meta["dry_run_invoiced_total"]) == (1, 970.0)
    assert "- **Dry-run invoices:** 1, total 970.00 USD" in body


# -- weeks that are not over ------------------------------------------------------------------


def briefing_at(
    monkeypatch: pytest.MonkeyPatch,
    when: datetime,
    vault_root: Path,
    state_dir: Path,
    config: Path,
    *extra: str,
) -> int:
    """Run `vaultd briefing --week 2026-W47` as if the time were `when`; return its exit code."""
    monkeypatch.setattr("daemon.cli.briefing.clock", lambda: when.astimezone(UTC))
    argv = ["briefing", "--vault", str(vault_root), "--state-dir", str(state_dir)]
    return main([*argv, "--config", str(config), "--week", str(WEEK), *extra])


W47_BRIEFING = "Briefings/2026-11-23_Monday_Briefing.md"


def test_vaultd_briefing_refuses_a_week_that_is_not_over(
    vault_root: Path,
    state_dir: Path,
    berlin: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = SUNDAY_22 - timedelta(minutes=1)
    assert briefing_at(monkeypatch, before, vault_root, state_dir, berlin) == 1
    error = capsys.readouterr().err
    assert "week 2026-W47 is not over" in error
    assert "2026-11-22 22:00 (Europe/Berlin)" in error
    assert "--partial" in error
    assert not (vault_root / W47_BRIEFING).exists()


def test_vaultd_briefing_partial_writes_a_briefing_that_says_it_is_partial(
    vault_root: Path, state_dir: Path, berlin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wednesday = datetime(2026, 11, 18, 12, 0, tzinfo=BERLIN)
    assert briefing_at(monkeypatch, wednesday, vault_root, state_dir, berlin, "--partial") == 0
    meta, body = briefing_of(vault_root / W47_BRIEFING)
    assert meta["partial"] is True
    assert "**partial**: the week was not over, so it covers only what happened up to" in body


def test_vaultd_briefing_from_the_scheduled_time_on_is_the_regular_briefing(
    vault_root: Path, state_dir: Path, berlin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert briefing_at(monkeypatch, SUNDAY_22, vault_root, state_dir, berlin) == 0
    meta, body = briefing_of(vault_root / W47_BRIEFING)
    assert meta["partial"] is False
    assert "**partial**" not in body
    # --partial allows a partial briefing; it does not make a finished week's one partial.
    assert briefing_at(monkeypatch, NOW, vault_root, state_dir, berlin, "--partial") == 0
    assert briefing_of(vault_root / W47_BRIEFING)[0]["partial"] is False


def test_a_briefing_written_before_its_week_is_over_is_marked_partial(vault_app: App) -> None:
    # What the generate-briefing skill does for the current week: no --partial to ask.
    path = write_briefing(vault_app, WEEK, now=SUNDAY_22 - timedelta(hours=1))
    assert briefing_of(path)[0]["partial"] is True


def test_the_scheduled_briefing_is_never_refused_nor_partial(vault_app: App) -> None:
    calls: list[dict[str, Any]] = []

    def spy(app: App, week: IsoWeek, **options: Any) -> Path:
        calls.append(options)
        return write_briefing(app, week, **options)

    vault_app.ledger.set_meta_once("first_started_at", "2026-11-01T00:00:00Z")
    clockwork = Clockwork(vault_app, write_briefing=spy, now=lambda: SUNDAY_22.astimezone(UTC))
    path = clockwork.write_due_briefing()
    assert path == vault_app.vault.root / W47_BRIEFING
    assert calls == [{"late": False, "partial": False}]
    assert briefing_of(path)[0]["partial"] is False


@pytest.mark.parametrize("day", DAYS)
def test_every_scheduled_briefing_reports_on_a_week_that_is_over(day: str) -> None:
    schedule = Schedule(timezone="Europe/Berlin", briefing_day=day, briefing_hour=7)
    scheduled = last_briefing_time(schedule, NOW + timedelta(days=3))
    week = week_of_briefing(schedule, scheduled)
    # Over at its scheduled time on a Sunday, at Monday 00:00 on any other day.
    monday = datetime(*week.briefing_date().timetuple()[:3], tzinfo=BERLIN)
    assert week_ends_at(schedule, week) == (scheduled if day == "sun" else monday)
    assert week_ends_at(schedule, week) <= scheduled


def test_the_current_week_is_refused_on_the_real_clock_and_written_with_partial(
    vault_root: Path, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Briefed on Mondays, the current week is over only when it stops being current.
    config = tmp_path / "monday.toml"
    config.write_text('[schedule]\nbriefing_day = "mon"\nbriefing_hour = 7\n', encoding="utf-8")
    week = IsoWeek.of(datetime.now(zone(None)).date())
    argv = ["briefing", "--vault", str(vault_root), "--state-dir", str(state_dir)]
    argv += ["--config", str(config), "--week", str(week)]

    assert main(argv) == 1
    assert f"week {week} is not over" in capsys.readouterr().err
    assert not list((vault_root / "Briefings").glob("*.md"))

    assert main([*argv, "--partial"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == f"{week.briefing_date().isoformat()}_Monday_Briefing.md"
    assert briefing_of(path)[0]["partial"] is True
