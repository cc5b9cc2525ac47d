"""End to end over HTTP against a started local stack (moto server + localstripe + gateway + clock)."""

from __future__ import annotations

import boto3
import pytest
import requests

from kassa_local.client import Api, signed_webhook
from tests.reference import stripe_event, stripe_object

pytestmark = pytest.mark.e2e


def test_local_json_describes_the_running_stack(stack_config):
    for key in (
        "api_url",
        "openapi_url",
        "docs_url",
        "storefront_url",
        "stripe_url",
        "aws_endpoint_url",
        "api_secret_key",
        "stripe_publishable_key",
        "webhook_secret",
        "ports",
    ):
        assert stack_config[key], key
    assert requests.get(stack_config["openapi_url"], timeout=10).json()["openapi"].startswith("3.")
    assert "swagger" in requests.get(stack_config["docs_url"], timeout=10).text.lower()


def test_checkout_then_three_months_of_renewals(api: Api):
    price = api.catalog(currency="EUR", amount=1500)
    done = api.subscribe(price["id"], "ann.lifecycle@example.com")
    sub = done["subscription"]
    assert sub["status"] == "active"
    assert done["invoice"]["status"] == "paid"
    # a Dutch consumer of a Dutch (OSS-registered) seller: 21% VAT on top of the exclusive price
    assert (done["invoice"]["subtotal"], done["invoice"]["tax"], done["invoice"]["amount_paid"]) == (1500, 315, 1815)

    api.advance("92d")

    invoices = api.get(f"/v1/customers/{sub['customer']}/invoices")["data"]
    assert len(invoices) == 4
    assert {i["status"] for i in invoices} == {"paid"}
    assert all(i["amount_paid"] == 1815 and i["tax"] == 315 and i["currency"] == "EUR" for i in invoices)
    numbers = sorted(int(i["number"].rsplit("-", 1)[1]) for i in invoices)
    assert numbers == list(range(numbers[0], numbers[0] + 4)), numbers
    periods = sorted((i["period_start"], i["period_end"]) for i in invoices)
    for (_, end), (start, _) in zip(periods, periods[1:], strict=False):
        assert end == start  # periods tile: no gap, no overlap
    current = api.get(f"/v1/subscriptions/{sub['id']}")
    assert current["status"] == "active"
    assert current["current_period_start"] == periods[-1][0]


def test_card_declining_on_renewal_goes_past_due(api: Api):
    price = api.catalog(currency="EUR", amount=900, trial_days=7)
    done = api.subscribe(price["id"], "bob@example.com", card="4000000000000341")
    sub = done["subscription"]
    assert sub["status"] == "trialing"

    api.advance("8d")

    current = api.get(f"/v1/subscriptions/{sub['id']}")
    assert current["status"] == "past_due"
    invoice = api.get(f"/v1/invoices/{current['latest_invoice']}")
    assert invoice["status"] == "open"
    assert invoice["last_payment_error"]["code"] == "card_declined"
    failed = api.wait_events("invoice.payment_failed", lambda e: e["detail"]["data"]["id"] == invoice["id"])
    assert len(failed) == 1


def _pi_event(event_type: str, event_id: str, invoice_id: str, amount: int, status: str) -> dict:
    error = (
        None
        if status == "succeeded"
        else {
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "type": "card_error",
        }
    )
    pi = stripe_object(
        "payment_intent",
        id=f"pi_{event_id[4:]}",
        amount=amount,
        currency="eur",
        status=status,
        metadata={"kassa_invoice": invoice_id},
        last_payment_error=error,
    )
    return stripe_event(event_type, pi, event_id)


def _post_webhook(api: Api, event: dict, secret: str | None = None) -> requests.Response:
    payload, header = signed_webhook(api.config, event, secret)
    return requests.post(
        api.base + "/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=30,
    )


def test_duplicate_and_out_of_order_webhooks_have_one_effect(api: Api):
    price = api.catalog(currency="EUR", amount=1200, trial_days=3)
    done = api.subscribe(price["id"], "carla@example.com", card="4000000000000341")
    api.advance("4d")
    sub = api.get(f"/v1/subscriptions/{done['subscription']['id']}")
    assert sub["status"] == "past_due"
    invoice_id = sub["latest_invoice"]

    succeeded = _pi_event("payment_intent.succeeded", "evt_e2e_succeeded_1", invoice_id, 1200, "succeeded")
    stale_failure = _pi_event(
        "payment_intent.payment_failed", "evt_e2e_failed_0", invoice_id, 1200, "requires_payment_method"
    )
    for event in (succeeded, succeeded, stale_failure, succeeded):
        assert _post_webhook(api, event).status_code == 200

    paid = api.wait_events("invoice.paid", lambda e: e["detail"]["data"]["id"] == invoice_id)
    assert len(paid) == 1
    # give the stale failure time to be processed too; it must change nothing
    api.wait_events("invoice.payment_failed", lambda e: False, timeout=2)
    invoice = api.get(f"/v1/invoices/{invoice_id}")
    assert invoice["status"] == "paid"
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "active"
    assert len([e for e in api.events("invoice.paid") if e["detail"]["data"]["id"] == invoice_id]) == 1


def test_forged_signature_is_refused_and_nothing_is_recorded(api: Api, stack_config):
    event = _pi_event("payment_intent.succeeded", "evt_e2e_forged", "in_whatever", 100, "succeeded")
    response = _post_webhook(api, event, secret="whsec_not_the_right_one")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Stripe-Signature"
    unsigned = requests.post(api.base + "/webhooks/stripe", json=event, timeout=30)
    assert unsigned.status_code == 400
    db = boto3.client("dynamodb", endpoint_url=stack_config["aws_endpoint_url"], region_name="us-east-1")
    table = db.list_tables()["TableNames"][0]
    item = db.get_item(TableName=table, Key={"pk": {"S": "WHEVT#evt_e2e_forged"}, "sk": {"S": "EVENT"}})
    assert "Item" not in item


def test_bad_request_bodies_get_4xx_naming_the_field(api: Api):
    product = api.post("/v1/products", {"name": "Tea club"}, expect=201)
    float_amount = api.request(
        "POST",
        "/v1/prices",
        json={"product": product["id"], "currency": "EUR", "unit_amount": 10.5, "recurring": {"interval": "month"}},
    )
    assert float_amount.status_code == 400
    assert float_amount.json()["error"]["param"] == "unit_amount"

    no_country = api.request("POST", "/v1/customers", json={"email": "x@example.com", "address": {}})
    assert no_country.status_code == 400
    assert no_country.json()["error"]["param"] == "address.country"

    unknown_price = api.request(
        "POST",
        "/v1/checkout",
        json={"price_id": "price_nope", "customer": {"email": "y@example.com", "address": {"country": "DE"}}},
    )
    assert unknown_price.status_code == 404
    assert unknown_price.json()["error"]["param"] == "price_id"

    no_key = requests.get(api.base + "/v1/prices", timeout=10)
    assert no_key.status_code == 401
    assert "error" in no_key.json()


def test_an_unpaid_checkout_expires_after_23_hours(api: Api):
    price = api.catalog(currency="KWD", amount=4500)  # three-decimal currency: 4.500 KWD
    started = api.post(
        "/v1/checkout",
        {"price_id": price["id"], "customer": {"email": "dora@example.com", "address": {"country": "KW"}}},
        expect=201,
    )
    sub, invoice = started["subscription"], started["invoice"]
    assert sub["status"] == "incomplete"
    # Kuwait: the seller is not registered there, so no tax
    assert invoice["status"] == "open" and invoice["amount_due"] == 4500 and invoice["currency"] == "KWD"
    assert invoice["tax"] == 0

    api.advance("22h")
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "incomplete"
    api.advance("2h")
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "incomplete_expired"
    assert api.get(f"/v1/invoices/{invoice['id']}")["status"] == "void"


def test_merchant_settings_set_the_invoice_prefix(api: Api):
    settings = api.get("/v1/settings")
    bad = api.request("PUT", "/v1/settings", json={**_without_object(settings), "invoice_prefix": "no!"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "invoice_prefix"
    api.request("PUT", "/v1/settings", expect=200, json={**_without_object(settings), "invoice_prefix": "SHOP"})
    price = api.catalog(currency="EUR", amount=700)
    done = api.subscribe(price["id"], "erik@example.com")
    assert done["invoice"]["number"].startswith("SHOP-")
    api.request("PUT", "/v1/settings", expect=200, json=_without_object(settings))


def _without_object(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "object"}
