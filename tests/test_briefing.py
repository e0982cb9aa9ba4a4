"""The Monday Morning CEO Briefing: every figure of a known week, its template and command.

The fixture vault holds one week (2026-W47, Monday 16 to Sunday 22 November 2026, counted
in Europe/Berlin) of activity written the way vaultd writes it: audit log lines (one day
of history gzipped in Logs/archive/), ledger rows for what is waiting or failed now, Done
notes, Business_Goals.md and Plans/.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from conftest import make_files, note

from daemon.cli.main import main
from daemon.core.weeks import IsoWeek
from daemon.reports.briefing import Figures, briefing_figures, write_briefing, zone
from daemon.service.app import App, open_app

WEEK = IsoWeek.parse("2026-W47")
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday morning after the week
BERLIN = zone("Europe/Berlin")


def entry(
    timestamp: str,
    event: str,
    action: str | None,
    task_id: str,
    file: str,
    *,
    parameters: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    approval_status: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Return one audit log entry, shaped as AuditLog.write writes it."""
    return {
        "timestamp": timestamp,
        "event": event,
        "action": action,
        "actor": "vaultd",
        "task_id": task_id,
        "file": file,
        "parameters": parameters or {},
        "result": result or {},
        "approval_status": approval_status,
        "duration_ms": 5,
        "error": error,
    }


def post(platforms: list[str]) -> dict[str, Any]:
    return {"type": "social_post", "platforms": platforms, "kind": "post", "text": "News"}


def posted(platforms: list[str]) -> dict[str, Any]:
    """Return a live post's result: each platform's answer (dry-run ones are counted apart)."""
    return {"status": "done", **{p: {"id": f"{p}-1", "kind": "post"} for p in platforms}}


def invoice(partner: str, quantity: int, price: int, due: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "type": "odoo_invoice",
        "partner": partner,
        "lines": [{"product": "Consulting hour", "quantity": str(quantity), "price_unit": price}],
        "currency": "USD",
    }
    if due:
        params["due_date"] = due
    return params


def payment(invoice_ref: str, amount: str) -> dict[str, Any]:
    return {"type": "odoo_payment", "invoice": invoice_ref, "amount": amount}


HISTORY_ARCHIVED = [
    # An invoice with a live Odoo answer, never paid: overdue since 10 October.
    entry(
        "2026-09-10T09:00:00.000Z",
        "executed",
        "odoo_invoice",
        "20260910-aaaaaa",
        "Done/invoice-blue-cafe.md",
        parameters=invoice("Blue Cafe", 2, 90, due="2026-10-10"),
        result={
            "status": "done",
            "odoo": {"invoice_id": 7, "number": "INV/2026/0007", "amount_total": 180.0},
        },
    ),
]
HISTORY = [
    # Acme's invoice, due 12 October, paid on 1 October: not overdue.
    entry(
        "2026-09-12T09:00:00.000Z",
        "executed",
        "odoo_invoice",
        "20260912-bbbbbb",
        "Done/invoice-acme-september.md",
        parameters=invoice("Acme", 5, 100, due="2026-10-12"),
        result={"status": "done", "odoo": {"invoice_id": 8, "number": "INV/2026/0008"}},
    ),
    entry(
        "2026-10-01T09:00:00.000Z",
        "executed",
        "odoo_payment",
        "20261001-cccccc",
        "Done/payment-acme.md",
        parameters=payment("INV/2026/0008", "500"),
        result={"status": "done", "odoo": {"payment_ids": [3], "amount": 500.0}},
    ),
    # The last Instagram post, 5 October: nothing on Instagram for 48 days.
    entry(
        "2026-10-05T10:00:00.000Z",
        "executed",
        "social_post",
        "20261005-dddddd",
        "Done/instagram-autumn.md",
        parameters=post(["instagram"]),
        result=posted(["instagram"]),
    ),
    # Lines that are not executed actions are skipped without being parsed in full.
    entry("2026-10-06T10:00:00.000Z", "approval_requested", "odoo_invoice", "x", "P/x.md"),
]
MONTH = [
    # Earlier this month: counted in the month to date, not in the week.
    entry(
        "2026-11-03T10:00:00.000Z",
        "executed",
        "odoo_invoice",
        "20261103-eeeeee",
        "Done/invoice-acme-november.md",
        parameters=invoice("Acme", 10, 100),
        result={"status": "done", "odoo": {"invoice_id": 41, "number": "INV/2026/0041"}},
    ),
    entry(
        "2026-11-04T10:00:00.000Z",
        "executed",
        "odoo_payment",
        "20261104-ffffff",
        "Done/payment-old.md",
        parameters=payment("INV/2026/0005", "250"),
        result={"status": "done"},
    ),
    # Requested in the week before, approved in this one (8 days later).
    entry(
        "2026-11-10T08:00:00.000Z",
        "approval_requested",
        "odoo_payment",
        "20261110-pay001",
        "Pending_Approval/payment-northwind.md",
    ),
    # Sunday 21:30 in Berlin, the week before, before its briefing (22:00): not this week.
    entry(
        "2026-11-15T20:30:00.000Z",
        "executed",
        "social_post",
        "20261115-early1",
        "Done/post-last-week.md",
        parameters=post(["facebook"]),
        result=posted(["facebook"]),
    ),
]
WEEK_LINES = [
    # Monday 00:30 in Berlin (Sunday 23:30 UTC): an auto-approved post on two platforms.
    entry(
        "2026-11-15T23:25:00.000Z",
        "auto_approved",
        "social_post",
        "20261115-post01",
        "Approved/post-monday.md",
    ),
    entry(
        "2026-11-15T23:30:00.000Z",
        "executed",
        "social_post",
        "20261115-post01",
        "Done/post-monday.md",
        parameters=post(["facebook", "twitter"]),
        result=posted(["facebook", "twitter"]),
    ),
    # Tuesday: an invoice approved after 2 hours.
    entry(
        "2026-11-17T09:00:00.000Z",
        "approval_requested",
        "odoo_invoice",
        "20261117-inv001",
        "Pending_Approval/invoice-northwind.md",
    ),
    entry(
        "2026-11-17T11:00:00.000Z",
        "approved",
        "odoo_invoice",
        "20261117-inv001",
        "Approved/invoice-northwind.md",
    ),
    entry(
        "2026-11-17T11:00:05.000Z",
        "executed",
        "odoo_invoice",
        "20261117-inv001",
        "Done/invoice-northwind.md",
        parameters=invoice("Northwind", 3, 100, due="2026-12-17"),
        result={"status": "done", "odoo": {"invoice_id": 43, "number": "INV/2026/0043"}},
    ),
    # Wednesday: the payment requested a week before is approved and registered.
    entry(
        "2026-11-18T08:00:00.000Z",
        "approved",
        "odoo_payment",
        "20261110-pay001",
        "Approved/payment-northwind.md",
    ),
    entry(
        "2026-11-18T08:00:02.000Z",
        "executed",
        "odoo_payment",
        "20261110-pay001",
        "Done/payment-northwind.md",
        parameters=payment("INV/2026/0042", "150.50"),
        result={"status": "done"},
    ),
    # Thursday: a tweet approved after 30 minutes; a request rejected.
    entry(
        "2026-11-19T10:00:00.000Z",
        "approval_requested",
        "social_post",
        "20261119-post02",
        "Pending_Approval/tweet-thursday.md",
    ),
    entry(
        "2026-11-19T10:30:00.000Z",
        "approved",
        "social_post",
        "20261119-post02",
        "Approved/tweet-thursday.md",
    ),
    entry(
        "2026-11-19T10:30:01.000Z",
        "executed",
        "social_post",
        "20261119-post02",
        "Done/tweet-thursday.md",
        parameters=post(["twitter"]),
        result=posted(["twitter"]),
    ),
    entry(
        "2026-11-19T15:00:00.000Z",
        "rejected",
        "social_post",
        "20261119-rej001",
        "Rejected/post-too-bold.md",
    ),
    # Friday: two requests expire; two invoices fail.
    entry(
        "2026-11-20T09:00:00.000Z",
        "expired",
        "odoo_invoice",
        "20261117-exp001",
        "Rejected/invoice-expired-1.md",
    ),
    entry(
        "2026-11-20T09:00:01.000Z",
        "expired",
        "social_post",
        "20261117-exp002",
        "Rejected/post-expired-2.md",
    ),
    *[
        entry(
            f"2026-11-20T1{n}:00:00.000Z",
            "failed",
            "odoo_invoice",
            f"20261120-fail0{n}",
            f"Failed/invoice-fail-{n}.md",
            error="odoo: connection refused. Move this note to Approved/ to retry what failed.",
        )
        for n in (1, 2)
    ],
    # Saturday: a third invoice failure and a post whose outcome is unknown.
    entry(
        "2026-11-21T10:00:00.000Z",
        "failed",
        "odoo_invoice",
        "20261121-fail03",
        "Failed/invoice-fail-3.md",
        error="odoo: 502 Bad Gateway",
    ),
    entry(
        "2026-11-21T11:00:00.000Z",
        "outcome_unknown",
        "social_post",
        "20261121-unkn01",
        "Failed/post-unknown.md",
        error="facebook: timed out",
    ),
    # Monday 00:30 in Berlin after the week: next week's.
    entry(
        "2026-11-22T23:30:00.000Z",
        "executed",
        "social_post",
        "20261122-late01",
        "Done/post-next-week.md",
        parameters=post(["facebook"]),
        result=posted(["facebook"]),
    ),
]


def write_log(root: Path, entries: list[dict[str, Any]], *, archived: bool = False) -> None:
    for item in entries:
        day = item["timestamp"][:10]
        line = json.dumps(item) + "\n"
        if archived:
            folder = root / "Logs" / "archive"
            folder.mkdir(parents=True, exist_ok=True)
            with gzip.open(folder / f"{day}.json.gz", "at", encoding="utf-8") as handle:
                handle.write(line)
        else:
            with (root / "Logs" / f"{day}.json").open("a", encoding="utf-8") as handle:
                handle.write(line)


@pytest.fixture
def week_app(tmp_path: Path, vault_root: Path, state_dir: Path) -> Iterator[App]:
    """A vault with the known week of activity, opened with a Berlin time zone."""
    config = tmp_path / "vaultd.toml"
    config.write_text(
        f'[schedule]\ntimezone = "Europe/Berlin"\n\n'
        f'[briefing]\ntemplates_dir = "{tmp_path / "my-templates"}"\n',
        encoding="utf-8",
    )
    write_log(vault_root, HISTORY_ARCHIVED, archived=True)
    write_log(vault_root, HISTORY + MONTH + WEEK_LINES)
    make_files(
        vault_root,
        {
            "Business_Goals.md": note({"monthly_revenue_target": 10000, "currency": "USD"}),
            "Pending_Approval/invoice-big.md": note(
                invoice("Northwind", 12, 100) | {"id": "20261121-wait01"}
            ),
            "Pending_Approval/payment-fresh.md": note(
                payment("INV/2026/0042", "99") | {"partner": "Northwind", "id": "20261123-wait02"}
            ),
            "Plans/website.md": note({"status": "in_progress", "title": "New website"}),
            "Plans/launch.md": note({"status": "completed", "completed": "2026-11-19"}),
            "Plans/old-campaign.md": note({"status": "completed", "completed": "2026-10-01"}),
            "Plans/someday.md": note({"status": "idea"}),
            "Done/post-monday.md": note(post(["facebook", "twitter"])),
            "Done/invoice-northwind.md": note(invoice("Northwind", 3, 100, due="2026-12-17")),
        },
    )
    app = open_app(vault_root, config_path=config, state_dir=state_dir)
    ledger = app.ledger
    ledger.put_task(
        "20261121-wait01",
        type="odoo_invoice",
        file="Pending_Approval/invoice-big.md",
        state="pending_approval",
        amount="1200",
        currency="USD",
        created_at="2026-11-21T07:00:00.000Z",
    )
    ledger.put_task(
        "20261123-wait02",
        type="odoo_payment",
        file="Pending_Approval/payment-fresh.md",
        state="pending_approval",
        created_at="2026-11-23T06:00:00.000Z",
    )
    ledger.put_task(
        "20261121-fail03",
        type="odoo_invoice",
        file="Failed/invoice-fail-3.md",
        state="failed",
        error="odoo: 502 Bad Gateway",
        created_at="2026-11-21T09:00:00.000Z",
    )
    ledger.put_task(
        "20261121-unkn01",
        type="social_post",
        file="Failed/post-unknown.md",
        state="unknown",
        error="facebook: timed out",
        created_at="2026-11-21T10:00:00.000Z",
    )
    ledger.set_breaker("odoo", "open", 5)
    ledger.set_breaker("facebook", "closed", 0)
    yield app
    app.close()


@pytest.fixture
def figures(week_app: App) -> Figures:
    return briefing_figures(week_app.vault, week_app.ledger, WEEK, tz=BERLIN, now=NOW)


def briefing_of(path: Path) -> tuple[dict[str, Any], str]:
    _, raw, body = path.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(raw), body


# -- week at a glance -------------------------------------------------------------------------


def test_tasks_completed_counts_executed_tasks_within_the_local_week(figures: Figures) -> None:
    assert figures.tasks_completed == 4
    assert [item.link for item in figures.completed] == [
        "Done/post-monday",
        "Done/invoice-northwind",
        "Done/payment-northwind",
        "Done/tweet-thursday",
    ]


def test_posts_are_counted_per_platform(figures: Figures) -> None:
    assert figures.posts == {"facebook": 1, "twitter": 2}
    assert [i.link for i in figures.post_links["twitter"]] == [
        "Done/post-monday",
        "Done/tweet-thursday",
    ]


def test_invoices_and_payments_are_counted_and_totalled(figures: Figures) -> None:
    assert figures.invoices_created == 1
    assert figures.invoiced_week == {"USD": Decimal(300)}
    assert figures.invoices[0].label == "Northwind, 300.00 USD"
    assert figures.payments_registered == 1
    assert figures.paid_week == {"USD": Decimal("150.50")}
    assert figures.payments[0].label == "invoice INV/2026/0042, 150.50 USD"


def test_approvals_granted_rejected_expired_and_the_median_time_to_approve(
    figures: Figures,
) -> None:
    assert figures.approvals_granted == 3
    assert figures.auto_approved == 1
    assert figures.approvals_rejected == 1
    assert figures.approvals_expired == 2
    # 30 min, 2 h and 8 days: the median is 2 h, whatever the request's week.
    assert figures.median_approval_minutes == 120.0
    assert [i.link for i in figures.approval_links["expired"]] == [
        "Rejected/invoice-expired-1",
        "Rejected/post-expired-2",
    ]


def test_failures_and_unknown_outcomes_are_counted(figures: Figures) -> None:
    assert figures.failures == 3
    assert figures.unknown_outcomes == 1
    assert [i.link for i in figures.unknown_links] == ["Failed/post-unknown"]


def test_actions_per_day_are_counted_on_local_days(figures: Figures) -> None:
    assert figures.actions_per_day == {
        "2026-11-16": 1,
        "2026-11-17": 1,
        "2026-11-18": 1,
        "2026-11-19": 1,
        "2026-11-20": 2,
        "2026-11-21": 2,
        "2026-11-22": 0,
    }


# -- revenue ----------------------------------------------------------------------------------


def test_revenue_month_to_date_against_the_target_in_business_goals(figures: Figures) -> None:
    assert figures.invoiced_month == {"USD": Decimal(1300)}
    assert figures.paid_month == {"USD": Decimal("400.50")}
    assert figures.monthly_revenue_target == Decimal(10000)
    assert figures.target_source == "monthly_revenue_target in [[Business_Goals]]"
    assert "ledger and audit log" in figures.revenue_source


# -- bottlenecks ------------------------------------------------------------------------------


def test_bottlenecks_list_long_waits_failed_items_and_open_breakers(figures: Figures) -> None:
    assert [(i.link, i.label) for i in figures.waiting_approvals] == [
        ("Pending_Approval/invoice-big", "odoo_invoice, waiting 2 d 1 h, 1,200.00 USD")
    ]
    assert [(i.link, i.label) for i in figures.failed_items] == [
        ("Failed/invoice-fail-3", "failed: odoo: 502 Bad Gateway"),
        ("Failed/post-unknown", "outcome unknown: facebook: timed out"),
    ]
    assert [i.link for i in figures.open_breakers] == ["odoo"]
    assert figures.open_breakers[0].label.startswith("open since ")


# -- suggestions ------------------------------------------------------------------------------


def suggestion(figures: Figures, rule: str) -> list[Any]:
    return [s for s in figures.suggestions if s.rule == rule]


def test_an_unpaid_invoice_past_its_due_date_is_suggested_with_partner_and_days(
    figures: Figures,
) -> None:
    (overdue,) = suggestion(figures, "overdue_invoice")
    assert overdue.text == "Chase Blue Cafe: invoice INV/2026/0007 is 43 days overdue."
    assert overdue.evidence == [
        "180.00 USD due 2026-10-10, 43 days ago",
        "no payment for it is recorded",
    ]
    assert overdue.links == ["Done/invoice-blue-cafe"]


def test_a_platform_without_a_post_in_seven_days_is_suggested(figures: Figures) -> None:
    (quiet,) = suggestion(figures, "quiet_platform")
    assert quiet.text == "Nothing was posted on instagram in the last 7 days."
    assert quiet.evidence == ["last post on 2026-10-05, 48 days ago"]
    assert quiet.links == ["Done/instagram-autumn"]


def test_an_action_type_failing_three_times_is_suggested(figures: Figures) -> None:
    (failing,) = suggestion(figures, "repeated_failures")
    assert failing.text == "odoo_invoice keeps failing: check its connector and credentials."
    assert failing.evidence == [
        "3 failed or unknown outcomes this week",
        "last error: odoo: 502 Bad Gateway",
    ]
    assert failing.links == [
        "Failed/invoice-fail-1",
        "Failed/invoice-fail-2",
        "Failed/invoice-fail-3",
    ]


def test_a_partner_with_several_tasks_waiting_is_suggested(figures: Figures) -> None:
    (partner,) = suggestion(figures, "partner_waiting")
    assert partner.text == "2 tasks for Northwind are waiting for your approval."
    assert partner.links == ["Pending_Approval/invoice-big", "Pending_Approval/payment-fresh"]
    assert len(figures.suggestions) == 4


# -- plans ------------------------------------------------------------------------------------


def test_project_status_comes_from_the_plans_frontmatter(figures: Figures) -> None:
    assert [(i.link, i.label) for i in figures.plans_in_progress] == [
        ("Plans/website", "New website")
    ]
    assert [(i.link, i.label) for i in figures.plans_completed] == [("Plans/launch", "launch")]


# -- the note ---------------------------------------------------------------------------------


def test_the_briefing_note_carries_every_figure_in_frontmatter_and_text(week_app: App) -> None:
    path = write_briefing(week_app, WEEK, now=NOW)
    assert path == week_app.vault.root / "Briefings" / "2026-11-23_Monday_Briefing.md"
    meta, body = briefing_of(path)
    assert meta == {
        "week": "2026-W47",
        "generated_at": "2026-11-23T08:00:00Z",
        "late": False,
        "partial": False,
        "currency": "USD",
        "tasks_completed": 4,
        "posts_facebook": 1,
        "posts_instagram": 0,
        "posts_twitter": 2,
        "invoices_created": 1,
        "invoiced_total": 300.0,
        "payments_registered": 1,
        "paid_total": 150.5,
        "code_changes_landed": 0,
        "commits_landed": 0,
        "approvals_granted": 3,
        "approvals_rejected": 1,
        "approvals_expired": 2,
        "median_approval_minutes": 120.0,
        "failures": 3,
        "unknown_outcomes": 1,
        "invoiced_month_to_date": 1300.0,
        "paid_month_to_date": 400.5,
        "monthly_revenue_target": 10000.0,
        "revenue_source": "ledger",
        "waiting_approvals": 1,
        "open_breakers": 1,
        "suggestions": 4,
        "dry_run_tasks": 0,
        "dry_run_posts": 0,
        "dry_run_invoices": 0,
        "dry_run_invoiced_total": 0.0,
        "dry_run_payments": 0,
        "dry_run_paid_total": 0.0,
    }
    assert "- **Tasks completed:** 4" in body
    assert "- **Posts:** 3 (facebook 1, twitter 2)" in body
    assert "- **Invoices created:** 1, total 300.00 USD" in body
    assert "- **Payments registered:** 1, total 150.50 USD" in body
    assert "- **Approvals:** 3 granted, 1 rejected, 2 expired (1 auto-approved" in body
    assert "- **Median time to approve:** 2 h 0 min" in body
    assert "- **Failures:** 3; **unknown outcomes:** 1" in body
    assert "| Invoiced | 300.00 USD | 1,300.00 USD |" in body
    assert "| Paid | 150.50 USD | 400.50 USD |" in body
    assert "Monthly target: **10,000.00 USD**" in body
    assert "Invoiced so far this month: **13%** of it; paid: **4%**." in body
    assert "[[Pending_Approval/invoice-big]] — odoo_invoice, waiting 2 d 1 h" in body
    assert "Circuit breaker **odoo** is open since" in body
    assert "- Chase Blue Cafe: invoice INV/2026/0007 is 43 days overdue." in body
    assert "  - 180.00 USD due 2026-10-10, 43 days ago" in body
    assert "  - see [[Done/invoice-blue-cafe]]" in body
    assert "In progress: [[Plans/website|New website]]" in body
    assert "Completed this week: [[Plans/launch|launch]]" in body
    assert "> - Completed: [[Done/post-monday]], [[Done/invoice-northwind]]" in body


def test_the_briefing_has_a_mermaid_chart_of_actions_per_day(week_app: App) -> None:
    _, body = briefing_of(write_briefing(week_app, WEEK, now=NOW))
    chart = body.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert chart.splitlines() == [
        "xychart-beta",
        '    title "Actions per day"',
        '    x-axis ["Mon 16", "Tue 17", "Wed 18", "Thu 19", "Fri 20", "Sat 21", "Sun 22"]',
        '    y-axis "Actions" 0 --> 2',
        "    bar [1, 1, 1, 1, 2, 2, 0]",
    ]


def test_a_late_briefing_says_so(week_app: App) -> None:
    meta, body = briefing_of(write_briefing(week_app, WEEK, late=True, now=NOW))
    assert meta["late"] is True
    assert "**late**: vaultd was not running when it was due" in body


def test_writing_again_replaces_the_briefing_and_leaves_no_temp_file(week_app: App) -> None:
    first = write_briefing(week_app, WEEK, now=NOW)
    again = write_briefing(week_app, WEEK, now=datetime(2026, 11, 24, tzinfo=UTC))
    assert first == again
    assert briefing_of(again)[0]["generated_at"] == "2026-11-24T00:00:00Z"
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]


def test_figures_of_a_week_ignore_what_happened_after_it(week_app: App) -> None:
    later = datetime(2027, 1, 5, tzinfo=UTC)
    write_log(
        week_app.vault.root,
        [
            entry(
                "2026-12-01T10:00:00.000Z",
                "executed",
                "odoo_payment",
                "20261201-paid07",
                "Done/payment-blue-cafe.md",
                parameters=payment("INV/2026/0007", "180"),
            )
        ],
    )
    again = briefing_figures(week_app.vault, week_app.ledger, WEEK, tz=BERLIN, now=later)
    assert again.tasks_completed == 4
    assert [s.rule for s in again.suggestions].count("overdue_invoice") == 1
    # The next week sees the payment: Blue Cafe's invoice is no longer overdue.
    december = briefing_figures(
        week_app.vault, week_app.ledger, IsoWeek.parse("2026-W49"), tz=BERLIN, now=later
    )
    assert not [s for s in december.suggestions if s.rule == "overdue_invoice"]
    assert december.payments_registered == 1


# -- templates --------------------------------------------------------------------------------


def test_a_template_of_the_same_name_in_the_templates_dir_overrides_vaultds(
    week_app: App,
) -> None:
    folder = week_app.config.briefing.templates_dir
    assert folder is not None
    folder.mkdir(parents=True)
    (folder / "ceo_briefing.md.j2").write_text(
        "---\n{{ frontmatter }}---\nShort: {{ tasks_completed }} done, "
        "{{ money.invoiced_month }} invoiced this month.\n",
        encoding="utf-8",
    )
    meta, body = briefing_of(write_briefing(week_app, WEEK, now=NOW))
    assert body == "Short: 4 done, 1,300.00 USD invoiced this month.\n"
    assert meta["tasks_completed"] == 4


def test_a_template_naming_a_missing_value_fails_instead_of_printing_nothing(
    week_app: App,
) -> None:
    folder = week_app.config.briefing.templates_dir
    assert folder is not None
    folder.mkdir(parents=True)
    (folder / "ceo_briefing.md.j2").write_text("Revenue: {{ revenu_total }}\n", encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError, match="revenu_total"):
        write_briefing(week_app, WEEK, now=NOW)
    assert not list((week_app.vault.root / "Briefings").glob("*.md"))


# -- the command ------------------------------------------------------------------------------


def test_vaultd_briefing_week_writes_the_monday_after_the_week(
    vault_root: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(
        vault_root,
        [
            entry(
                "2025-06-03T12:00:00.000Z",
                "executed",
                "social_post",
                "20250603-post01",
                "Done/june.md",
                parameters=post(["facebook"]),
                result=posted(["facebook"]),
            )
        ],
    )
    argv = ["briefing", "--vault", str(vault_root), "--state-dir", str(state_dir)]
    assert main([*argv, "--week", "2025-W23"]) == 0
    expected = vault_root / "Briefings" / "2025-06-09_Monday_Briefing.md"
    assert capsys.readouterr().out.strip() == str(expected)
    meta, _ = briefing_of(expected)
    assert meta["week"] == "2025-W23"
    assert meta["posts_facebook"] == 1


def test_vaultd_briefing_defaults_to_the_last_completed_week(
    vault_root: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["briefing", "--vault", str(vault_root), "--state-dir", str(state_dir)]) == 0
    last = IsoWeek.of(datetime.now(zone(None)).date()).previous()
    path = Path(capsys.readouterr().out.strip())
    assert path.name == f"{last.briefing_date().isoformat()}_Monday_Briefing.md"
    assert briefing_of(path)[0]["week"] == str(last)


def test_vaultd_briefing_refuses_a_week_that_is_not_one(
    vault_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["briefing", "--vault", str(vault_root), "--week", "2026-47"])
    assert exit_.value.code == 2
    assert "is not an ISO week" in capsys.readouterr().err


def test_a_cut_short_archive_does_not_stop_the_briefing(tmp_path: Path):
    import gzip

    from daemon.core.audit import log_lines

    archive = tmp_path / "2026-01-01.json.gz"
    archive.write_bytes(gzip.compress(b'{"event": "a"}\n{"event": "b"}\n' * 200)[:-30])
    lines = list(log_lines(archive))  # must not raise
    assert all(line.startswith('{"event"') for line in lines)


def test_what_ran_after_a_sunday_briefing_is_in_the_next_weeks_and_in_no_other(
    tmp_path: Path, vault_root: Path, state_dir: Path
) -> None:
    """The Sunday 22:00 briefing cannot count the two hours after it: the next one does."""
    config = tmp_path / "vaultd.toml"
    config.write_text('[schedule]\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    late = entry("2026-11-15T22:30:00.000Z", "executed", "social_post", "20261115-late01",
                 "Done/post-sunday-night.md", parameters=post(["facebook"]),
                 result=posted(["facebook"]))  # fmt: skip
    write_log(vault_root, [late])
    app = open_app(vault_root, config_path=config, state_dir=state_dir)
    try:
        before = briefing_of(write_briefing(app, WEEK.previous(), now=NOW))
        this = briefing_of(write_briefing(app, WEEK, now=NOW))
    finally:
        app.close()
    assert before[0]["posts_facebook"] == 0  # written (again) after the fact: the same
    assert this[0]["posts_facebook"] == 1
    assert "counted from Sun 2026-11-15 22:00 to Sun 2026-11-22 22:00" in this[1]
    assert "bar [1, 0, 0, 0, 0, 0, 0]" in this[1]  # on Monday's bar
