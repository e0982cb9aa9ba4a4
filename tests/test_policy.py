"""The approval decision matrix (design §3): `decide` is pure, so every row is tested bare."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from daemon.core.models import OdooInvoice, OdooPayment, SocialPost, parse_action
from daemon.core.policy import AutoApproved, Decision, Facts, Policy, decide

KNOWN = Facts(partner_known=True, invoice_known=True)
UNVERIFIED = Facts()  # what a dry run knows: nothing could be checked
DEFAULT = Policy()


def post(**fields: Any) -> SocialPost:
    action = parse_action(
        {"type": "social_post", "platforms": ["facebook"], "text": "hi", **fields}
    )
    assert isinstance(action, SocialPost)
    return action


def invoice(*lines: tuple[str, str], **fields: Any) -> OdooInvoice:
    """An invoice to Acme with (quantity, price_unit) lines, recurring unless told."""
    data = {
        "type": "odoo_invoice",
        "partner": "Acme",
        "recurring": True,
        "lines": [{"product": "Hours", "quantity": q, "price_unit": p} for q, p in lines],
        **fields,
    }
    action = parse_action(data)
    assert isinstance(action, OdooInvoice)
    return action


def payment(amount: str, **fields: Any) -> OdooPayment:
    action = parse_action(
        {"type": "odoo_payment", "invoice": "INV/2026/0042", "amount": amount, **fields}
    )
    assert isinstance(action, OdooPayment)
    return action


# -- social ---------------------------------------------------------------------------------


def test_a_scheduled_post_is_auto_approved():
    decision = decide(post(scheduled_for="2026-12-01T09:00:00Z"), DEFAULT, UNVERIFIED)

    assert decision == Decision(
        False, "scheduled_post", "a scheduled post on facebook is approved by policy"
    )
    assert decision.approval == "auto_approved"


def test_a_post_to_several_platforms_names_them_all():
    decision = decide(post(platforms=["facebook", "twitter"]), DEFAULT, UNVERIFIED)

    assert not decision.needs_approval
    assert "facebook, twitter" in decision.reason


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"kind": "reply", "in_reply_to": "123_456"}, "reply"),
        ({"kind": "dm", "recipient": "24000000000001"}, "dm"),
    ],
)
def test_a_reply_or_a_dm_needs_approval(fields: dict[str, str], kind: str):
    decision = decide(post(**fields), DEFAULT, UNVERIFIED)

    assert decision.needs_approval
    assert decision.approval == "required"
    assert decision.rule == "social_interaction"
    assert f"a {kind} on facebook" in decision.reason
    assert decision.amount is None


def test_posts_need_approval_when_the_policy_lists_them():
    policy = Policy(approval_required_kinds=["post", "reply", "dm"])

    assert decide(post(), policy, UNVERIFIED).rule == "social_interaction"


def test_replies_are_auto_approved_when_the_policy_allows_them():
    policy = Policy(approval_required_kinds=["dm"])

    decision = decide(post(kind="reply", in_reply_to="1"), policy, UNVERIFIED)

    assert (decision.needs_approval, decision.rule) == (False, "scheduled_post")


# -- invoices ---------------------------------------------------------------------------------


def test_a_small_invoice_to_a_known_recurring_partner_is_auto_approved():
    decision = decide(invoice(("2", "49.99")), DEFAULT, KNOWN)

    assert decision.needs_approval is False
    assert decision.rule == "small_recurring"
    assert decision.amount == Decimal("99.98")
    assert decision.currency == "USD"
    assert "99.98 USD to Acme, a known recurring partner" in decision.reason


def test_an_invoice_of_exactly_the_threshold_needs_approval():
    decision = decide(invoice(("1", "100")), DEFAULT, KNOWN)

    assert decision.needs_approval
    assert decision.rule == "amount_threshold"
    assert decision.reason == "100.00 USD is at or over the 100.00 USD threshold"


def test_an_invoice_over_the_threshold_needs_approval_even_to_a_known_partner():
    decision = decide(invoice(("10", "1234.5")), DEFAULT, KNOWN)

    assert (decision.needs_approval, decision.rule) == (True, "amount_threshold")
    assert decision.amount == Decimal("12345.0")
    assert "12,345.00 USD" in decision.reason


def test_the_amount_is_the_exact_decimal_sum_of_the_lines():
    # 3 x 33.34 = 100.02 exactly; binary floats would make it 100.01999999999998.
    action = invoice(("3", "33.34"))

    decision = decide(action, DEFAULT, KNOWN)

    assert action.total() == Decimal("100.02")
    assert decision.amount == Decimal("100.02")
    assert (decision.needs_approval, decision.rule) == (True, "amount_threshold")


def test_many_small_lines_add_up_over_the_threshold():
    action = invoice(*[("1", "0.10")] * 999, ("1", "0.10"))

    decision = decide(action, DEFAULT, KNOWN)

    assert action.total() == Decimal("100.00")
    assert decision.rule == "amount_threshold"


def test_fractional_quantities_are_multiplied_exactly():
    action = invoice(("0.5", "199.99"), ("1.25", "0.04"))

    assert action.total() == Decimal("100.045")
    assert decide(action, DEFAULT, KNOWN).rule == "amount_threshold"


def test_an_invoice_to_a_new_payee_needs_approval():
    decision = decide(invoice(("1", "10")), DEFAULT, Facts(partner_known=False))

    assert (decision.needs_approval, decision.rule) == (True, "new_payee")
    assert decision.reason == "Acme is not a partner in Odoo yet"
    assert decision.amount == Decimal("10")


def test_a_partner_id_is_named_in_the_reason():
    decision = decide(
        invoice(("1", "10"), partner=None, partner_id=7), DEFAULT, Facts(partner_known=False)
    )

    assert decision.reason == "partner #7 is not a partner in Odoo yet"


def test_an_unverified_partner_needs_approval_as_in_a_dry_run():
    decision = decide(invoice(("1", "10")), DEFAULT, UNVERIFIED)

    assert (decision.needs_approval, decision.rule) == (True, "unverified_partner")
    assert "could not be checked" in decision.reason


def test_a_small_invoice_not_marked_recurring_needs_approval():
    decision = decide(invoice(("1", "10"), recurring=False), DEFAULT, KNOWN)

    assert (decision.needs_approval, decision.rule) == (True, "not_recurring")


def test_small_recurring_invoices_need_approval_when_the_policy_says_so():
    policy = Policy(auto_approve_small_recurring=False)

    decision = decide(invoice(("1", "10")), policy, KNOWN)

    assert (decision.needs_approval, decision.rule) == (True, "invoices_need_approval")


def test_an_invoice_in_a_currency_without_a_threshold_needs_approval():
    decision = decide(invoice(("1", "1"), currency="EUR"), DEFAULT, KNOWN)

    assert (decision.needs_approval, decision.rule) == (True, "no_threshold")
    assert decision.reason == "no approval threshold is configured for EUR"
    assert (decision.amount, decision.currency) == (Decimal("1"), "EUR")


def test_each_currency_is_held_to_its_own_threshold():
    policy = Policy(
        amount_thresholds={"USD": Decimal(100), "JPY": Decimal(15000)},
        daily_partner_budget={"JPY": Decimal(45000)},
        daily_budget={"JPY": Decimal(150000)},
    )

    assert decide(invoice(("1", "14999"), currency="JPY"), policy, KNOWN).rule == "small_recurring"
    assert decide(invoice(("1", "15000"), currency="JPY"), policy, KNOWN).rule == (
        "amount_threshold"
    )


def test_a_lower_configured_threshold_is_applied():
    policy = Policy(amount_thresholds={"USD": Decimal("50")})

    assert decide(invoice(("1", "50")), policy, KNOWN).rule == "amount_threshold"
    assert decide(invoice(("1", "49.99")), policy, KNOWN).rule == "small_recurring"


def test_the_threshold_is_checked_before_whether_the_partner_is_known():
    decision = decide(invoice(("1", "500")), DEFAULT, Facts(partner_known=False))

    assert decision.rule == "amount_threshold"


# -- payments ---------------------------------------------------------------------------------


def test_a_small_payment_against_a_known_invoice_is_auto_approved():
    decision = decide(payment("99.99"), DEFAULT, KNOWN)

    assert (decision.needs_approval, decision.rule) == (False, "small_payment")
    assert (decision.amount, decision.currency) == (Decimal("99.99"), "USD")


def test_a_payment_of_100_dollars_or_more_needs_approval():
    decision = decide(payment("100.00"), DEFAULT, KNOWN)

    assert (decision.needs_approval, decision.rule) == (True, "amount_threshold")


def test_a_payment_against_an_invoice_that_could_not_be_checked_needs_approval():
    decision = decide(payment("5"), DEFAULT, UNVERIFIED)

    assert (decision.needs_approval, decision.rule) == (True, "unverified_invoice")
    assert "INV/2026/0042" in decision.reason


def test_a_payment_against_an_unknown_invoice_needs_approval():
    decision = decide(payment("5"), DEFAULT, Facts(invoice_known=False))

    assert (decision.needs_approval, decision.rule) == (True, "unknown_invoice")


def test_payments_need_approval_when_the_policy_says_so():
    decision = decide(payment("5"), Policy(auto_approve_small_payments=False), KNOWN)

    assert (decision.needs_approval, decision.rule) == (True, "payments_need_approval")


def test_payments_use_the_policy_default_currency():
    policy = Policy(
        default_currency="EUR",
        amount_thresholds={"EUR": Decimal(200)},
        daily_partner_budget={"EUR": Decimal(600)},
        daily_budget={"EUR": Decimal(2000)},
    )

    decision = decide(payment("150"), policy, KNOWN)

    assert (decision.rule, decision.currency) == ("small_payment", "EUR")


# -- repeats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [post(), invoice(("1", "10")), payment("5")],
    ids=["post", "invoice", "payment"],
)
def test_an_action_that_already_ran_needs_approval_as_a_repeat(action: Any):
    decision = decide(action, DEFAULT, Facts(True, True, executed_before="20261122-abcdef"))

    assert (decision.needs_approval, decision.rule) == (True, "repeat")
    assert "20261122-abcdef" in decision.reason


def test_a_repeat_keeps_the_amount_and_currency_for_the_request():
    decision = decide(
        invoice(("1", "10"), currency="EUR"), DEFAULT, Facts(executed_before="20261122-abcdef")
    )

    assert (decision.amount, decision.currency) == (Decimal("10"), "EUR")


def test_a_repeat_of_a_free_invoice_still_names_its_currency():
    decision = decide(
        invoice(("1", "0"), currency="EUR"), DEFAULT, Facts(executed_before="20261122-abcdef")
    )

    assert (decision.amount, decision.currency) == (Decimal("0"), "EUR")


def test_a_repeated_post_has_no_amount():
    decision = decide(post(), DEFAULT, Facts(executed_before="20261122-abcdef"))

    assert (decision.amount, decision.currency) == (None, None)


# -- budgets ----------------------------------------------------------------------------------


def spent(
    money: str = "0", by_payee: dict[str, str] | None = None, posts: dict[str, int] | None = None
) -> Facts:
    """Known facts, with this much (USD) already auto-approved in the last 24 hours."""
    counted = AutoApproved(
        {"USD": Decimal(money)},
        {("USD", key): Decimal(value) for key, value in (by_payee or {}).items()},
        posts or {},
    )
    return Facts(partner_known=True, invoice_known=True, auto_approved=counted)


def test_a_payment_over_its_invoices_daily_budget_needs_a_person():
    facts = spent("299.97", {"invoice:inv/2026/0042": "299.97"})

    decision = decide(payment("99.99"), DEFAULT, facts)

    assert (decision.needs_approval, decision.rule) == (True, "daily_partner_budget")
    assert decision.reason == (
        "299.97 of 300.00 USD already auto-approved for invoice INV/2026/0042 in the last "
        "24 hours; 99.99 USD more is over it"
    )
    assert (decision.amount, decision.currency) == (Decimal("99.99"), "USD")


def test_a_payment_naming_its_partner_draws_on_the_partners_budget_too():
    facts = spent("250", {"partner:acme": "250"})

    decision = decide(payment("60", partner="ACME"), DEFAULT, facts)

    assert decision.rule == "daily_partner_budget"
    assert "already auto-approved for ACME" in decision.reason


def test_an_invoice_over_its_partners_daily_budget_needs_a_person():
    facts = spent("240", {"partner:acme": "240"})

    assert decide(invoice(("1", "60")), DEFAULT, facts).rule == "small_recurring"
    assert decide(invoice(("1", "60.01")), DEFAULT, facts).rule == "daily_partner_budget"


def test_the_daily_budget_counts_every_partner_together():
    decision = decide(payment("99.99"), DEFAULT, spent("950"))

    assert (decision.needs_approval, decision.rule) == (True, "daily_budget")
    assert decision.reason.startswith("950.00 of 1,000.00 USD already auto-approved")


def test_budgets_are_counted_per_currency():
    policy = Policy(
        amount_thresholds={"USD": Decimal(100), "EUR": Decimal(100)},
        daily_partner_budget={"USD": Decimal(300), "EUR": Decimal(300)},
        daily_budget={"USD": Decimal(1000), "EUR": Decimal(1000)},
    )
    facts = spent("1000", {"partner:acme": "300"})

    assert decide(invoice(("1", "50"), currency="EUR"), policy, facts).rule == "small_recurring"
    assert decide(invoice(("1", "50")), policy, facts).rule == "daily_partner_budget"


def test_an_invoice_in_a_currency_without_a_budget_needs_a_person():
    policy = Policy(amount_thresholds={"USD": Decimal(100), "EUR": Decimal(100)})

    decision = decide(invoice(("1", "5"), currency="EUR"), policy, spent())

    assert (decision.needs_approval, decision.rule) == (True, "no_budget")
    assert decision.reason == "no daily auto-approval budget is configured for EUR"


def test_the_eleventh_post_to_a_platform_in_a_day_needs_a_person():
    assert decide(post(), DEFAULT, spent(posts={"facebook": 9})).rule == "scheduled_post"

    decision = decide(
        post(platforms=["twitter", "facebook"]), DEFAULT, spent(posts={"facebook": 10})
    )

    assert (decision.needs_approval, decision.rule) == (True, "daily_platform_budget")
    assert decision.reason == (
        "10 of 10 posts a day on facebook already auto-approved in the last 24 hours"
    )


def test_a_budget_does_not_turn_a_request_into_an_auto_approval():
    decision = decide(payment("150"), DEFAULT, spent())

    assert decision.rule == "amount_threshold"


def test_a_budget_of_zero_asks_a_person_for_everything_it_covers():
    policy = Policy(daily_posts_per_platform=0, daily_budget={"USD": Decimal(0)})

    assert decide(post(), policy, spent()).rule == "daily_platform_budget"
    assert decide(payment("1"), policy, spent()).rule == "daily_budget"


def test_the_repeat_of_a_task_whose_outcome_is_unknown_says_it_may_have_run():
    facts = Facts(executed_before="20261122-abcdef", executed_before_unsure=True)

    decision = decide(post(), DEFAULT, facts)

    assert decision.rule == "repeat"
    assert "may already have run as task 20261122-abcdef" in decision.reason
    assert "outcome is unknown" in decision.reason


# -- purity -----------------------------------------------------------------------------------


def test_decide_is_pure_the_same_inputs_give_the_same_decision():
    action = invoice(("3", "33.34"))

    assert decide(action, DEFAULT, KNOWN) == decide(action, DEFAULT, KNOWN)


def test_the_default_policy_is_the_design_matrix():
    assert DEFAULT.amount_thresholds == {"USD": Decimal(100)}
    assert DEFAULT.approval_required_kinds == ["reply", "dm"]
    assert DEFAULT.approval_expiry_hours == 48
    assert DEFAULT.daily_partner_budget == {"USD": Decimal(300)}
    assert DEFAULT.daily_budget == {"USD": Decimal(1000)}
    assert DEFAULT.daily_posts_per_platform == 10
