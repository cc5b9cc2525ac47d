"""Cancel at period end (and undo), cancel now, and what the storefront is told about access."""

from __future__ import annotations

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e


def _entitled(api: Api, customer: str) -> list[dict]:
    return api.get(f"/v1/customers/{customer}/entitlements")["data"]


def test_cancel_at_period_end_keeps_access_until_then_and_stops_the_renewal(api: Api):
    price = api.catalog(currency="EUR", amount=800)
    sub = api.subscribe(price["id"], "leaving@example.com")["subscription"]
    customer = sub["customer"]
    [access] = _entitled(api, customer)
    assert (access["product"], access["renews"]) == (price["product"], True)

    cancel = {"at_period_end": True, "feedback": "too_expensive", "comment": "cheaper elsewhere"}
    scheduled = api.post(f"/v1/subscriptions/{sub['id']}/cancel", cancel)
    assert scheduled["status"] == "active" and scheduled["cancel_at_period_end"] is True
    assert scheduled["cancellation_details"]["feedback"] == "too_expensive"
    assert api.post(f"/v1/subscriptions/{sub['id']}/cancel", cancel)["canceled_at"] == scheduled["canceled_at"]
    [access] = _entitled(api, customer)
    assert access["renews"] is False and access["valid_until"] == scheduled["current_period_end"]

    undone = api.post(f"/v1/subscriptions/{sub['id']}/uncancel", {})
    assert undone["cancel_at_period_end"] is False and undone["canceled_at"] is None
    assert _entitled(api, customer)[0]["renews"] is True

    api.post(f"/v1/subscriptions/{sub['id']}/cancel", cancel)
    api.advance("32d")
    ended = api.get(f"/v1/subscriptions/{sub['id']}")
    assert ended["status"] == "canceled" and ended["ended_at"] == scheduled["current_period_end"]
    assert len(api.get(f"/v1/customers/{customer}/invoices")["data"]) == 1  # no renewal invoice
    assert _entitled(api, customer) == []
    deleted = api.wait_events("customer.subscription.deleted", lambda e: e["detail"]["data"]["id"] == sub["id"])
    assert len(deleted) == 1
    refused = api.request("POST", f"/v1/subscriptions/{sub['id']}/uncancel", json={})
    assert refused.status_code == 409


def test_cancel_now_ends_access_at_once(api: Api):
    price = api.catalog(currency="JPY", amount=1200)
    sub = api.subscribe(price["id"], "now@example.com")["subscription"]
    ended = api.post(f"/v1/subscriptions/{sub['id']}/cancel", {"reason": "cancellation_requested"})
    assert ended["status"] == "canceled" and ended["ended_at"] is not None
    assert _entitled(api, sub["customer"]) == []
    bad = api.request("POST", f"/v1/subscriptions/{sub['id']}/cancel", json={"feedback": "meh"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "feedback"


def test_cancel_now_with_proration_credits_the_unused_time(api: Api):
    price = api.catalog(currency="USD", amount=3000)
    sub = api.subscribe(price["id"], "prorated@example.com", address={"country": "US", "state": "OR"})["subscription"]
    api.advance("10d")
    ended = api.post(f"/v1/subscriptions/{sub['id']}/cancel", {"prorate": True})
    assert ended["status"] == "canceled"
    final = api.get(f"/v1/invoices/{ended['latest_invoice']}")
    [credit] = final["lines"]
    assert -3000 < credit["amount"] < 0  # the unused part of the period, to the second
    assert final["total"] == credit["amount"] and final["amount_due"] == 0
    customer = api.get(f"/v1/customers/{sub['customer']}")
    assert customer["balance"] == credit["amount"]  # kept as credit, not refunded (Stripe)
    both = api.request("POST", f"/v1/subscriptions/{sub['id']}/cancel", json={"prorate": True, "at_period_end": True})
    assert both.status_code in (400, 409)


def test_canceling_an_unpaid_checkout_voids_its_first_invoice(api: Api):
    price = api.catalog(currency="KWD", amount=4500)  # three decimals: 4.500 KWD
    started = api.post(
        "/v1/checkout",
        {"price_id": price["id"], "customer": {"email": "walkaway@example.com", "address": {"country": "KW"}}},
        expect=201,
    )
    assert started["invoice"]["status"] == "open"
    ended = api.post(f"/v1/subscriptions/{started['subscription']['id']}/cancel", {})
    assert ended["status"] == "canceled"
    assert api.get(f"/v1/invoices/{started['invoice']['id']}")["status"] == "void"
