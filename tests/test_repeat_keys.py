"""The normalised payload the repeat rule compares (daemon/core/repeat_keys.py), tested bare.

Two actions an agent wrote to look the same must hash the same; two that really differ
must not. The exact payload hash, which approval is bound to, still tells them apart.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from daemon.core.models import parse_action
from daemon.core.repeat_keys import normal_text, payees, platforms, repeat_hash

POST = {"type": "social_post", "platforms": ["facebook"], "text": "Big sale today"}
PAYMENT = {"type": "odoo_payment", "invoice": "INV/2026/0042", "amount": "99.99"}


def same(first: dict[str, Any], second: dict[str, Any]) -> bool:
    one, other = parse_action(first), parse_action(second)
    return repeat_hash(one) == repeat_hash(other)


@pytest.mark.parametrize(
    "text",
    [
        "Big\u200b sale today",  # zero-width space (Cf)
        "Big sale\u200d today",  # zero-width joiner (Cf)
        "\ufeffBig sale today",  # byte order mark (Cf)
        "Big sale \u202etoday",  # right-to-left override (Cf)
        "Big\u00a0sale today",  # non-breaking space
        "Big\u2003sale\u3000today",  # em space, ideographic space
        "Big  sale\n\ttoday",  # runs of whitespace
        "BIG SALE TODAY",  # case
        "\uff22\uff49\uff47 sale today",  # fullwidth letters (NFKC)
        "Big sale today\ufe0f",  # a variation selector
    ],
)
def test_text_that_only_looks_different_is_the_same_action(text: str):
    assert same(POST, {**POST, "text": text})
    assert parse_action(POST).payload_hash() != parse_action({**POST, "text": text}).payload_hash()


def test_nfc_and_nfd_are_the_same_text():
    text = "Grüße aus Köln"
    nfc, nfd = (unicodedata.normalize(form, text) for form in ("NFC", "NFD"))

    assert nfc != nfd
    assert normal_text(nfc) == normal_text(nfd)
    assert same({**POST, "text": nfc}, {**POST, "text": nfd})


def test_a_character_removed_between_a_letter_and_its_accent_still_composes():
    assert normal_text("e\u200b\u0301") == normal_text("\u00e9")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"amount": "99.99"}, {"amount": "99.990"}),
        ({"invoice": 42}, {"invoice": "42"}),
    ],
)
def test_a_payment_written_differently_is_the_same_payment(first: dict, second: dict):
    assert same({**PAYMENT, **first}, {**PAYMENT, **second})


def test_the_order_of_platforms_and_of_invoice_lines_does_not_matter():
    lines = [
        {"product": "Hours", "quantity": 2, "price_unit": 10},
        {"product": "Travel", "quantity": 1, "price_unit": "5.00"},
    ]
    invoice = {"type": "odoo_invoice", "partner": "Acme", "lines": lines}

    assert same({**invoice}, {**invoice, "lines": lines[::-1]})
    both = {**POST, "platforms": ["facebook", "twitter"]}
    assert same(both, {**both, "platforms": ["twitter", "facebook"]})


def test_a_time_in_another_zone_is_the_same_time():
    assert same(
        {**POST, "scheduled_for": "2026-12-01T09:00:00Z"},
        {**POST, "scheduled_for": "2026-12-01T10:00:00+01:00"},
    )


@pytest.mark.parametrize(
    "change",
    [
        {"text": "Big sale tomorrow"},
        {"platforms": ["twitter"]},
        {"scheduled_for": "2026-12-01T09:00:00Z"},
        {"link": "https://example.com/other"},
    ],
)
def test_a_real_difference_is_a_different_action(change: dict):
    assert not same(POST, {**POST, **change})


def test_a_different_amount_is_a_different_payment():
    assert not same(PAYMENT, {**PAYMENT, "amount": "99.98"})


def test_payees_are_the_invoice_and_any_partner_named():
    payment = parse_action({**PAYMENT, "partner": " Acme\u00a0 Corp"})
    invoice = parse_action(
        {"type": "odoo_invoice", "partner_id": 7, "lines": [{"product": "x", "quantity": 1,
                                                             "price_unit": 1}]}
    )  # fmt: skip

    assert payees(payment) == [
        ("invoice:inv/2026/0042", "invoice INV/2026/0042"),
        ("partner:acme corp", "Acme\u00a0 Corp"),
    ]
    assert payees(invoice) == [("partner_id:7", "partner #7")]
    assert payees(parse_action(POST)) == []
    assert platforms(parse_action({**POST, "platforms": ["twitter", "facebook"]})) == [
        "facebook",
        "twitter",
    ]
