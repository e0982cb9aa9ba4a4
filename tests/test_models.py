"""The action models: what a task file may ask for, and every way it can be wrong."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import yaml

from daemon.core.errors import ValidationFailed
from daemon.core.models import OdooInvoice, OdooPayment, SocialPost, parse_action


def problems(data: dict[str, Any] | str) -> list[tuple[str, str]]:
    """Return the (field, message) problems of frontmatter given as a dict or YAML text."""
    if isinstance(data, str):
        data = yaml.safe_load(data)
    assert isinstance(data, dict)
    with pytest.raises(ValidationFailed) as caught:
        parse_action(data)
    return caught.value.problems


def fields(data: dict[str, Any] | str) -> list[str]:
    return [field for field, _ in problems(data)]


POST = {"type": "social_post", "platforms": ["facebook"], "text": "Hello"}
INVOICE = {
    "type": "odoo_invoice",
    "partner": "Acme",
    "lines": [{"product": "Hours", "quantity": 1, "price_unit": 10}],
}
PAYMENT = {"type": "odoo_payment", "invoice": "INV/2026/0001", "amount": "25.00"}


# -- the union ----------------------------------------------------------------------------


def test_the_type_selects_the_model():
    assert isinstance(parse_action(POST), SocialPost)
    assert isinstance(parse_action(INVOICE), OdooInvoice)
    assert isinstance(parse_action(PAYMENT), OdooPayment)


def test_a_missing_type_names_the_types_there_are():
    assert problems({"text": "hi"}) == [
        ("type", "missing; expected one of social_post, odoo_invoice, odoo_payment, code_task")
    ]


def test_an_unknown_type_is_named():
    [(field, message)] = problems({"type": "fax"})

    assert field == "type"
    assert message.startswith('unknown action "fax"')


def test_an_extra_field_is_an_error_so_a_typo_never_changes_what_runs():
    assert problems({**POST, "platfroms": ["twitter"]}) == [
        ("platfroms", "unknown field (not part of this action type)")
    ]


def test_an_extra_field_inside_an_invoice_line_is_named_with_its_path():
    data = {**INVOICE, "lines": [{"product": "x", "quantity": 1, "price_unit": 1, "tax": 5}]}

    assert problems(data) == [("lines.0.tax", "unknown field (not part of this action type)")]


def test_models_are_frozen():
    post = parse_action(POST)

    with pytest.raises(ValueError, match="frozen"):
        post.text = "changed"  # type: ignore[misc]


# -- social_post ----------------------------------------------------------------------------


def test_a_post_gets_its_defaults():
    post = parse_action(POST)

    assert isinstance(post, SocialPost)
    assert (post.kind, post.link, post.scheduled_for) == ("post", None, None)


def test_instagram_needs_an_image_url():
    assert problems({**POST, "platforms": ["instagram"]}) == [
        ("image_url", "image_url is required when instagram is a platform")
    ]
    assert parse_action(
        {**POST, "platforms": ["instagram"], "image_url": "https://example.com/a.jpg"}
    )


def test_a_reply_needs_in_reply_to():
    assert problems({**POST, "kind": "reply"}) == [
        ("in_reply_to", "in_reply_to is required when kind is reply")
    ]


def test_a_dm_needs_a_recipient():
    assert problems({**POST, "kind": "dm"}) == [
        ("recipient", "recipient is required when kind is dm")
    ]


def test_an_unquoted_numeric_post_id_is_taken_as_text():
    post = parse_action(
        yaml.safe_load(
            "type: social_post\nplatforms: [twitter]\nkind: reply\n"
            "in_reply_to: 1861234567890123456\ntext: Thanks!\n"
        )
    )

    assert isinstance(post, SocialPost)
    assert post.in_reply_to == "1861234567890123456"


def test_a_boolean_is_not_taken_as_a_post_id():
    assert fields({**POST, "kind": "reply", "in_reply_to": True}) == ["in_reply_to"]


def test_x_allows_280_characters():
    assert parse_action({**POST, "platforms": ["twitter"], "text": "x" * 280})
    assert problems({**POST, "platforms": ["twitter"], "text": "x" * 281}) == [
        ("text", "text is 281 characters; twitter allows 280")
    ]


def test_x_counts_the_link_it_appends_to_the_tweet():
    post = {**POST, "platforms": ["twitter"], "link": "https://example.com/launch"}

    assert parse_action({**post, "text": "x" * 256})  # 256 + space + 23 = 280
    assert problems({**post, "text": "x" * 257}) == [
        ("text", "text is 281 characters with the link (X counts a link as 23); twitter allows 280")
    ]


def test_a_long_text_is_fine_on_facebook_but_not_on_x():
    assert parse_action({**POST, "text": "x" * 5000})
    assert fields({**POST, "platforms": ["facebook", "twitter"], "text": "x" * 5000}) == ["text"]


def test_instagram_captions_are_limited_to_2200_characters():
    post = {**POST, "platforms": ["instagram"], "image_url": "https://example.com/a.jpg"}

    assert parse_action({**post, "text": "x" * 2200})
    assert fields({**post, "text": "x" * 2201}) == ["text"]


def test_a_platform_listed_twice_is_refused():
    assert problems({**POST, "platforms": ["twitter", "twitter"]}) == [
        ("platforms", "lists a platform twice")
    ]


def test_an_unknown_platform_and_no_platform_are_refused():
    assert fields({**POST, "platforms": ["myspace"]}) == ["platforms.0"]
    assert fields({**POST, "platforms": []}) == ["platforms"]


def test_an_empty_or_blank_text_is_refused():
    assert fields({**POST, "text": ""}) == ["text"]
    assert fields({**POST, "text": "   "}) == ["text"]


def test_links_must_be_http_urls():
    assert problems({**POST, "link": "javascript:alert(1)"}) == [
        ("link", "must be an http:// or https:// URL")
    ]
    assert fields({**POST, "image_url": "file:///etc/passwd"}) == ["image_url"]


def test_a_naive_scheduled_for_is_refused():
    assert problems({**POST, "scheduled_for": "2026-12-01T09:00:00"}) == [
        ("scheduled_for", "needs a time zone, for example 2026-12-01T09:00:00Z")
    ]
    # YAML reads an unquoted timestamp without an offset as a naive datetime too.
    assert fields(
        "type: social_post\nplatforms: [facebook]\ntext: hi\nscheduled_for: 2026-12-01 09:00:00\n"
    ) == ["scheduled_for"]


def test_an_aware_scheduled_for_is_kept_with_its_offset():
    post = parse_action({**POST, "scheduled_for": "2026-12-01T10:00:00+01:00"})

    assert isinstance(post, SocialPost)
    assert post.scheduled_for == dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def test_every_problem_of_a_post_is_listed_not_just_the_first():
    data = {
        "type": "social_post",
        "platforms": ["instagram", "twitter"],
        "kind": "reply",
        "text": "x" * 300,
    }

    assert problems(data) == [
        ("image_url", "image_url is required when instagram is a platform"),
        ("in_reply_to", "in_reply_to is required when kind is reply"),
        ("text", "text is 300 characters; twitter allows 280"),
    ]


def test_every_field_problem_is_listed_at_once():
    data = {
        "type": "social_post",
        "platforms": ["myspace"],
        "kind": "story",
        "link": "ftp://x",
        "colour": "red",
    }

    assert sorted(fields(data)) == ["colour", "kind", "link", "platforms.0", "text"]


# -- odoo_invoice -----------------------------------------------------------------------------


def test_an_invoice_gets_its_defaults():
    invoice = parse_action(INVOICE)

    assert isinstance(invoice, OdooInvoice)
    assert (invoice.currency, invoice.recurring, invoice.partner_id) == ("USD", False, None)


def test_an_invoice_needs_exactly_one_of_partner_and_partner_id():
    neither = {k: v for k, v in INVOICE.items() if k != "partner"}
    both = {**INVOICE, "partner_id": 42}

    assert problems(neither) == [("partner", "give exactly one of partner (a name) or partner_id")]
    assert problems(both) == [("partner", "give exactly one of partner (a name) or partner_id")]
    assert parse_action({**neither, "partner_id": 42})


def test_a_due_date_before_the_invoice_date_is_refused():
    data = {**INVOICE, "invoice_date": "2026-03-02", "due_date": "2026-03-01"}

    assert problems(data) == [("due_date", "due_date is before invoice_date")]
    assert parse_action({**data, "due_date": "2026-03-02"})


def test_every_cross_field_problem_of_an_invoice_is_listed():
    data = {**INVOICE, "partner_id": 7, "invoice_date": "2026-03-02", "due_date": "2026-03-01"}

    assert fields(data) == ["partner", "due_date"]


def test_an_invoice_needs_lines_with_a_positive_quantity_and_no_negative_price():
    assert fields({**INVOICE, "lines": []}) == ["lines"]
    line = {"product": "x", "quantity": 0, "price_unit": -1}
    assert fields({**INVOICE, "lines": [line]}) == ["lines.0.quantity", "lines.0.price_unit"]


def test_not_a_number_and_infinity_are_refused_as_amounts():
    line = {"product": "x", "quantity": float("nan"), "price_unit": float("inf")}

    assert fields({**INVOICE, "lines": [line]}) == ["lines.0.quantity", "lines.0.price_unit"]


def test_a_currency_is_three_capital_letters():
    assert fields({**INVOICE, "currency": "usd"}) == ["currency"]
    assert fields({**INVOICE, "currency": "DOLLARS"}) == ["currency"]


def test_the_invoice_total_is_an_exact_decimal_even_from_yaml_floats():
    invoice = parse_action(
        yaml.safe_load(
            "type: odoo_invoice\npartner: Acme\nlines:\n"
            "  - {product: Hours, quantity: 3, price_unit: 33.34}\n"
        )
    )

    assert invoice.total() == Decimal("100.02")


def test_the_total_sums_every_line():
    invoice = parse_action(
        {
            **INVOICE,
            "lines": [
                {"product": "a", "quantity": "2", "price_unit": "0.10"},
                {"product": "b", "quantity": "1.5", "price_unit": "0.20"},
            ],
        }
    )

    assert invoice.total() == Decimal("0.50")


# -- odoo_payment -----------------------------------------------------------------------------


def test_a_payment_names_an_invoice_by_number_or_id():
    by_number = parse_action(PAYMENT)
    by_id = parse_action({**PAYMENT, "invoice": 42})

    assert isinstance(by_number, OdooPayment)
    assert isinstance(by_id, OdooPayment)
    assert (by_number.invoice, by_id.invoice) == ("INV/2026/0001", 42)
    assert by_number.total() == Decimal("25.00")


def test_a_bad_invoice_reference_is_reported_under_its_own_name():
    assert set(fields({**PAYMENT, "invoice": 0})) == {"invoice"}
    assert set(fields({**PAYMENT, "invoice": ""})) == {"invoice"}


def test_a_payment_amount_must_be_positive():
    assert fields({**PAYMENT, "amount": "0"}) == ["amount"]
    assert fields({**PAYMENT, "amount": "-5"}) == ["amount"]


# -- the payload and its hash -------------------------------------------------------------------


def test_the_payload_is_plain_json_without_unset_fields():
    assert parse_action(POST).payload() == {
        "type": "social_post",
        "platforms": ["facebook"],
        "kind": "post",
        "text": "Hello",
    }


def test_the_hash_is_stable_and_independent_of_key_order():
    reordered = dict(reversed(list(INVOICE.items())))

    first = parse_action(INVOICE).payload_hash()

    assert first.startswith("sha256:")
    assert first == parse_action(reordered).payload_hash()


def test_the_hash_changes_with_any_field_of_the_payload():
    base = parse_action(INVOICE).payload_hash()
    changed_line = {**INVOICE, "lines": [{"product": "Hours", "quantity": 1, "price_unit": 11}]}

    assert parse_action(changed_line).payload_hash() != base
    assert parse_action({**INVOICE, "recurring": True}).payload_hash() != base
    assert parse_action({**INVOICE, "currency": "EUR"}).payload_hash() != base
