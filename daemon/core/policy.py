"""The approval decision matrix (design §3) as configuration and one pure function.

`decide(action, policy, facts)` never does I/O: everything it needs to know about the
outside world (is this partner known to Odoo?) is gathered beforehand into `Facts`, so the
whole matrix is tested without a vault, a ledger or a network.

Auto-approval has budgets (README "The rules"): over a rolling 24 hours, money per payee,
money overall (each per currency) and posts per platform. What auto-approval already let
through in that window comes in as `Facts.auto_approved`, counted from the ledger
(daemon/core/ledger_counts.py); a request a person approved does not count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from daemon.core.models import Action, CodeTask, OdooInvoice, OdooPayment, SocialPost
from daemon.core.repeat_keys import payees

NonNegativeDecimal = Annotated[Decimal, Field(ge=0)]


class Policy(BaseModel):
    """The `[policy]` table of the config file. Every default is the design's matrix."""

    model_config = ConfigDict(extra="forbid")

    # Odoo transactions at or over this amount (in their currency) need approval.
    amount_thresholds: dict[str, Decimal] = Field(default_factory=lambda: {"USD": Decimal(100)})
    # Currency of payments, whose task files do not name one.
    default_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    # Social kinds that always need a human; "post" is auto-approved unless listed here.
    approval_required_kinds: list[str] = Field(default_factory=lambda: ["reply", "dm"])
    # Small invoices auto-approve only to a partner known to Odoo and marked recurring.
    auto_approve_small_recurring: bool = True
    # Small payments auto-approve only against an invoice that Odoo knows.
    auto_approve_small_payments: bool = True
    # A request nobody decided on is rejected after this many hours.
    approval_expiry_hours: float = Field(default=48, gt=0)
    # Budgets of auto-approval over a rolling 24 hours; past one, a person approves. Money is
    # per currency (a currency without a budget here always needs approval): per payee (an
    # invoice's partner; a payment's invoice, and its partner if it names one), and overall.
    daily_partner_budget: dict[str, NonNegativeDecimal] = Field(
        default_factory=lambda: {"USD": Decimal(300)}
    )
    daily_budget: dict[str, NonNegativeDecimal] = Field(
        default_factory=lambda: {"USD": Decimal(1000)}
    )
    # Posts (any social kind the policy auto-approves) to each platform.
    daily_posts_per_platform: int = Field(default=10, ge=0)


@dataclass(frozen=True)
class AutoApproved:
    """What auto-approval let through in the budget window (approved, running or run).

    `money` is by currency, `by_payee` by (currency, payee key of `repeat_keys.payees`),
    `posts` by platform.
    """

    money: Mapping[str, Decimal] = field(default_factory=dict)
    by_payee: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    posts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    """What vaultd learned about the outside world before deciding.

    None means "could not be checked" (dry-run, or the service is down); the policy then
    asks a human rather than assume.
    """

    partner_known: bool | None = None
    invoice_known: bool | None = None
    # The partners an invoice's partner name matches, as (id, name), when it matches several.
    partner_candidates: tuple[tuple[int, str], ...] = ()
    # Id of an executed task with the very same payload (compared normalised, see
    # daemon/core/repeat_keys.py), if there is one.
    executed_before: str | None = None
    # That task's outcome is unknown, or it is still running (or ran only in part).
    executed_before_unsure: bool = False
    # Counted for the budgets; empty: nothing was auto-approved in the window.
    auto_approved: AutoApproved = field(default_factory=AutoApproved)


@dataclass(frozen=True)
class Decision:
    needs_approval: bool
    rule: str
    reason: str
    amount: Decimal | None = None
    currency: str | None = None

    @property
    def approval(self) -> str:
        return "required" if self.needs_approval else "auto_approved"


def decide(action: Action, policy: Policy, facts: Facts) -> Decision:
    """Given an action, the policy and the facts, return the decision and the rule that fired."""
    if facts.executed_before:
        amount = action.total()
        ran = (
            f"may already have run as task {facts.executed_before} (its outcome is unknown, "
            "or it is still running)"
            if facts.executed_before_unsure
            else f"already ran as task {facts.executed_before}"
        )
        return Decision(
            True,
            "repeat",
            f"the very same action {ran}; approve only if it should happen again",
            amount,
            getattr(action, "currency", policy.default_currency) if amount is not None else None,
        )
    if isinstance(action, CodeTask):
        # Never auto-approved, whatever the policy says: a person reads the exact diff.
        return Decision(
            True,
            "code_change",
            f"a change to {action.repo} lands on {action.target} only as the diff a person read",
        )
    if isinstance(action, SocialPost):
        decision = _decide_social(action, policy)
    elif isinstance(action, OdooInvoice | OdooPayment):
        decision = _decide_odoo(action, policy, facts)
    else:
        return Decision(True, "unknown_action", f"no rule covers {type(action).__name__}")
    return decision if decision.needs_approval else _within_budget(action, policy, facts, decision)


def _within_budget(action: Action, policy: Policy, facts: Facts, decision: Decision) -> Decision:
    """Given an auto-approval, return it, or a request naming the budget it would pass."""
    counted = facts.auto_approved
    for platform in action.platforms if isinstance(action, SocialPost) else []:
        posts, limit = counted.posts.get(platform, 0), policy.daily_posts_per_platform
        if posts + 1 > limit:
            return Decision(
                True,
                "daily_platform_budget",
                f"{posts} of {limit} posts a day on {platform} already auto-approved "
                "in the last 24 hours",
            )
    amount, currency = decision.amount, decision.currency
    if amount is None or currency is None:
        return decision

    def ask(rule: str, reason: str) -> Decision:
        return Decision(True, rule, reason, amount, currency)

    partner_limit = policy.daily_partner_budget.get(currency)
    overall_limit = policy.daily_budget.get(currency)
    if partner_limit is None or overall_limit is None:
        return ask("no_budget", f"no daily auto-approval budget is configured for {currency}")
    for key, label in payees(action):
        spent = counted.by_payee.get((currency, key), Decimal(0))
        if spent + amount > partner_limit:
            return ask(
                "daily_partner_budget",
                f"{spent:,.2f} of {_money(partner_limit, currency)} already auto-approved for "
                f"{label} in the last 24 hours; {_money(amount, currency)} more is over it",
            )
    spent = counted.money.get(currency, Decimal(0))
    if spent + amount > overall_limit:
        return ask(
            "daily_budget",
            f"{spent:,.2f} of {_money(overall_limit, currency)} already auto-approved in the "
            f"last 24 hours, all partners together; {_money(amount, currency)} more is over it",
        )
    return decision


def _decide_social(post: SocialPost, policy: Policy) -> Decision:
    where = ", ".join(post.platforms)
    if post.kind in policy.approval_required_kinds:
        return Decision(
            True,
            "social_interaction",
            f"a {post.kind} on {where} speaks to a person directly, so a human approves it",
        )
    return Decision(
        False, "scheduled_post", f"a scheduled {post.kind} on {where} is approved by policy"
    )


def _decide_odoo(action: OdooInvoice | OdooPayment, policy: Policy, facts: Facts) -> Decision:
    currency = action.currency if isinstance(action, OdooInvoice) else policy.default_currency
    amount = action.total()

    def ask(rule: str, reason: str) -> Decision:
        return Decision(True, rule, reason, amount, currency)

    named = facts.partner_candidates if isinstance(action, OdooInvoice) else ()
    if len(named) > 1:  # a person says which one; vaultd never picks
        shown = ", ".join(f"#{i} {name}" for i, name in named[:10])
        more = f" and {len(named) - 10} more" if len(named) > 10 else ""
        return ask(
            "ambiguous_partner",
            f"{len(named)} partners in Odoo are named {action.partner!r}: {shown}{more}; "
            "replace partner with partner_id, the id meant (as it is, it fails rather than guess)",
        )
    threshold = policy.amount_thresholds.get(currency)
    if threshold is None:
        return ask("no_threshold", f"no approval threshold is configured for {currency}")
    if amount >= threshold:
        return ask(
            "amount_threshold",
            f"{_money(amount, currency)} is at or over the {_money(threshold, currency)} threshold",
        )
    if isinstance(action, OdooPayment):
        if facts.invoice_known is None:
            return ask(
                "unverified_invoice", f"invoice {action.invoice} could not be checked in Odoo"
            )
        if not facts.invoice_known:
            return ask("unknown_invoice", f"invoice {action.invoice} was not found in Odoo")
        if not policy.auto_approve_small_payments:
            return ask("payments_need_approval", "the policy asks a human for every payment")
        return Decision(
            False,
            "small_payment",
            f"{_money(amount, currency)} against a known invoice is under the threshold",
            amount,
            currency,
        )
    partner = action.partner or f"partner #{action.partner_id}"
    if facts.partner_known is None:
        return ask("unverified_partner", f"{partner} could not be checked in Odoo")
    if not facts.partner_known:
        return ask("new_payee", f"{partner} is not a partner in Odoo yet")
    if not action.recurring:
        return ask("not_recurring", f"the invoice to {partner} is not marked recurring")
    if not policy.auto_approve_small_recurring:
        return ask("invoices_need_approval", "the policy asks a human for every invoice")
    return Decision(
        False,
        "small_recurring",
        f"{_money(amount, currency)} to {partner}, a known recurring partner, "
        "is under the threshold",
        amount,
        currency,
    )


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"
