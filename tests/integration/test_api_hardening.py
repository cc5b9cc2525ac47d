"""No input makes a 500, and a request without the key is a 401 before its body is read: bodies
Powertools cannot decode, amounts beyond Stripe's eight digits, unknown country codes, tax ids that
fail their check digit, merchant templates too big or too deeply nested to parse."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

BODY_ROUTES = [
    ("POST", "/v1/products"),
    ("POST", "/v1/products/prod_x"),
    ("POST", "/v1/prices"),
    ("POST", "/v1/customers"),
    ("POST", "/v1/customers/cus_x"),
    ("POST", "/v1/checkout"),
    ("POST", "/v1/coupons"),
    ("PUT", "/v1/settings"),
    ("POST", "/v1/subscriptions/sub_x/invoice_items"),
    ("POST", "/v1/invoices/in_x/credit_notes"),
    ("POST", "/v1/refunds"),
    ("POST", "/v1/tax/quote"),
]
UNREADABLE = {
    "not UTF-8": ({"Content-Type": "application/json"}, b'\xff\xfe{"name": "x"}', "not UTF-8"),
    "not UTF-8, text/plain": ({"Content-Type": "text/plain"}, b"\xff\xfe", "not UTF-8"),
    "multipart without a boundary": ({"Content-Type": "multipart/form-data"}, b"name=x", "boundary"),
    "an integer of 5,000 digits": ({"Content-Type": "application/json"}, b'{"amount": ' + b"9" * 5000 + b"}", "digits"),
}


def _call(config: dict[str, Any], method: str, path: str, key: bool = True, **kwargs: Any) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if key:
        headers["Authorization"] = f"Bearer {config['api_secret_key']}"
    return requests.request(method, f"{config['api_url']}{path}", headers=headers, timeout=30, **kwargs)


def _error(resp: requests.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


@pytest.mark.parametrize("case", list(UNREADABLE))
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_an_unreadable_body_is_a_400_naming_the_body(config, method, path, case):
    headers, data, words = UNREADABLE[case]
    error = _error(_call(config, method, path, headers=headers, data=data), 400)
    assert error["param"] == "body", error
    assert words in error["message"], error


@pytest.mark.parametrize("case", list(UNREADABLE))
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_without_the_key_every_route_is_a_401_before_the_body_is_read(config, method, path, case):
    headers, data, _ = UNREADABLE[case]
    error = _error(_call(config, method, path, key=False, headers=headers, data=data), 401)
    assert error["code"] == "invalid_api_key"


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_without_the_key_an_invalid_body_is_a_401_not_a_400(config, method, path):
    error = _error(_call(config, method, path, key=False, json={"unknown_field": 1}), 401)
    assert error["code"] == "invalid_api_key"
    assert _call(config, method, path, key=False).status_code == 401  # no body at all


def test_a_utf8_body_sent_base64_encoded_as_text_plain_is_still_read(config, uid):
    # API Gateway base64-encodes bodies of binary media types; a UTF-8 one is text all the same
    resp = _call(
        config,
        "POST",
        "/v1/products",
        headers={"Content-Type": "text/plain"},
        data=json.dumps({"name": f"Café {uid}"}, ensure_ascii=False).encode(),
    )
    assert resp.status_code == 201, resp.text


# ----------------------------------------------------------------------------- amounts


def _product(config: dict[str, Any], uid: str) -> str:
    resp = _call(config, "POST", "/v1/products", json={"name": f"Cap {uid}"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@pytest.mark.parametrize("amount", [100_000_000, 10**30])
def test_a_unit_amount_beyond_eight_digits_is_refused(config, uid, amount):
    body = {
        "product": _product(config, uid),
        "currency": "EUR",
        "unit_amount": amount,
        "recurring": {"interval": "month"},
    }
    assert _error(_call(config, "POST", "/v1/prices", json=body), 400)["param"] == "unit_amount"
    body["unit_amount"] = 99_999_999
    assert _call(config, "POST", "/v1/prices", json=body).status_code == 201


@pytest.mark.parametrize("field", ["unit_amount", "flat_amount"])
def test_a_tier_amount_beyond_eight_digits_is_refused(config, uid, field):
    body = {
        "product": _product(config, uid),
        "currency": "EUR",
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": [{"up_to": 5, "unit_amount": 100}, {"up_to": "inf", field: 10**20}],
        "recurring": {"interval": "month"},
    }
    assert _error(_call(config, "POST", "/v1/prices", json=body), 400)["param"] == f"tiers[1].{field}"


def test_amount_off_beyond_eight_digits_is_refused(config):
    body = {"amount_off": 100_000_000, "currency": "EUR", "duration": "once"}
    assert _error(_call(config, "POST", "/v1/coupons", json=body), 400)["param"] == "amount_off"


@pytest.mark.parametrize("amount", [100_000_000, -100_000_000, 10**40])
def test_an_invoice_item_amount_beyond_eight_digits_is_refused(config, amount):
    body = {"amount": amount, "description": "setup"}
    resp = _call(config, "POST", "/v1/subscriptions/sub_missing/invoice_items", json=body)
    assert _error(resp, 400)["param"] == "amount"


@pytest.mark.parametrize("field", ["refund_amount", "credit_amount", "out_of_band_amount"])
def test_credit_note_amounts_beyond_eight_digits_are_refused(config, field):
    body = {"lines": [{"type": "custom_line_item", "amount": 100, "description": "x"}], field: 10**12}
    assert _error(_call(config, "POST", "/v1/invoices/in_missing/credit_notes", json=body), 400)["param"] == field
    body = {"lines": [{"type": "custom_line_item", "amount": 10**12, "description": "x"}]}
    param = _error(_call(config, "POST", "/v1/invoices/in_missing/credit_notes", json=body), 400)["param"]
    assert param.startswith("lines"), param


def test_refund_and_quote_amounts_beyond_eight_digits_are_refused(config):
    refund = _call(config, "POST", "/v1/refunds", json={"invoice": "in_missing", "amount": 10**9})
    assert _error(refund, 400)["param"] == "amount"
    quote = _call(config, "POST", "/v1/tax/quote", json={"country": "NL", "amount": 10**9, "currency": "EUR"})
    assert _error(quote, 400)["param"] == "amount"


# ----------------------------------------------------------------------------- countries and tax ids


@pytest.mark.parametrize("country", ["QQ", "XK", "EU", "ZZ", "UK"])
def test_a_country_that_is_not_iso_3166_is_refused(config, uid, country):
    body = {"email": f"c-{uid}@example.com", "address": {"country": country}}
    assert _error(_call(config, "POST", "/v1/customers", json=body), 400)["param"] == "address.country"
    quote = _call(config, "POST", "/v1/tax/quote", json={"country": country, "amount": 100, "currency": "EUR"})
    assert _error(quote, 400)["param"] == "country"


def test_a_vat_number_failing_its_check_digit_is_refused_at_create_update_and_checkout(config, uid):
    bad, good = "DE136695977", "DE136695976"
    body = {"email": f"vat-{uid}@example.com", "address": {"country": "DE"}, "tax_id": bad}
    error = _error(_call(config, "POST", "/v1/customers", json=body), 400)
    assert error["param"] == "tax_id" and bad in error["message"]
    created = _call(config, "POST", "/v1/customers", json={**body, "tax_id": good})
    assert created.status_code == 201, created.text
    customer = created.json()["id"]
    update = _call(config, "POST", f"/v1/customers/{customer}", json={"tax_id": bad})
    assert _error(update, 400)["param"] == "tax_id"
    price = {
        "product": _product(config, uid),
        "currency": "EUR",
        "unit_amount": 900,
        "recurring": {"interval": "month"},
    }
    price_id = _call(config, "POST", "/v1/prices", json=price).json()["id"]
    checkout = {"price_id": price_id, "customer": {**body, "email": f"vat2-{uid}@example.com"}}
    assert _error(_call(config, "POST", "/v1/checkout", json=checkout), 400)["param"].endswith("tax_id")


# ----------------------------------------------------------------------------- merchant templates


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("x" * (450 * 1024), id="over DynamoDB's 400 KB item"),
        pytest.param("x" * (64 * 1024 + 1), id="over 64 KB"),
        pytest.param('{{ "' * 2000, id="unterminated strings"),
        pytest.param("{% if a %}" * 2000, id="nested too deeply"),
        pytest.param("{{ " + "(" * 5000, id="parentheses"),
    ],
)
def test_a_template_too_big_or_too_deep_is_a_400_naming_the_templates(config, source):
    body = {"emails": {"templates": {"final_notice.html.j2": source}}}
    error = _error(_call(config, "PUT", "/v1/settings", json=body), 400)
    assert error["param"] == "emails.templates", error
    assert "final_notice.html.j2" in error["message"]
