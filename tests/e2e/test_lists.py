"""Merchant-wide lists and search over HTTP on a started local stack: GET /v1/customers, /v1/subscriptions
and /v1/invoices — pages across pages (limit=2 over 5 objects), each filter, filters matching nothing,
bad parameters' 400 naming them. The module's stack is fresh: what it lists is what this module made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def made(stack_config) -> dict[str, Any]:
    """Five customers subscribed an hour apart, three on the monthly price, two on the cheap one; the
    last one canceled at once; then a month passes (the live four renew)."""
    api = Api(stack_config)
    product = api.post("/v1/products", {"name": "Lists"}, expect=201)["id"]
    prices = [
        api.post(
            "/v1/prices",
            {"product": product, "currency": "EUR", "unit_amount": amount, "recurring": {"interval": "month"}},
            expect=201,
        )["id"]
        for amount in (1500, 900)
    ]
    subs = []
    for n in range(5):
        subs.append(api.subscribe(prices[n % 2 and 1], f"list-{n}@example.com")["subscription"])
        api.advance("1h")
    api.post(f"/v1/subscriptions/{subs[4]['id']}/cancel", {})
    before_renewals = api.get("/v1/invoices", params={"limit": 100})["data"]
    api.advance("30d")
    return {"prices": prices, "subs": subs, "first_invoices": before_renewals}


def _all(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a listing with limit=2, checking has_more on the way."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get(path, params={"limit": 2, **params, **({"starting_after": cursor} if cursor else {})})
        assert page["object"] == "list" and page["url"] == path and len(page["data"]) <= 2
        found += page["data"]
        if not page["has_more"]:
            return found
        assert len(page["data"]) == 2
        cursor = page["data"][-1]["id"]


def test_customers_page_newest_first_and_search_by_email(api: Api, made):
    first = api.get("/v1/customers", params={"limit": 2})
    assert [c["email"] for c in first["data"]] == ["list-4@example.com", "list-3@example.com"] and first["has_more"]
    every = _all(api, "/v1/customers")
    assert [c["email"] for c in every] == [f"list-{n}@example.com" for n in (4, 3, 2, 1, 0)]
    back = api.get("/v1/customers", params={"limit": 2, "ending_before": every[2]["id"]})
    assert [c["id"] for c in back["data"]] == [every[0]["id"], every[1]["id"]] and not back["has_more"]

    found = api.get("/v1/customers", params={"email": "LIST-2@example.com"})["data"]
    assert [c["email"] for c in found] == ["list-2@example.com"]
    assert api.get("/v1/customers", params={"email": "nobody@example.com"}) == {
        "object": "list", "data": [], "has_more": False, "url": "/v1/customers",
    }  # fmt: skip


def test_subscriptions_by_status_price_and_customer(api: Api, made):
    subs, prices = made["subs"], made["prices"]
    ids = [s["id"] for s in subs]

    assert [s["id"] for s in _all(api, "/v1/subscriptions", status="all")] == ids[::-1]
    assert [s["id"] for s in _all(api, "/v1/subscriptions")] == ids[3::-1]  # Stripe: not the canceled one
    assert [s["id"] for s in _all(api, "/v1/subscriptions", status="canceled")] == [ids[4]]
    assert [s["status"] for s in _all(api, "/v1/subscriptions", status="active")] == ["active"] * 4
    cheap = api.get("/v1/subscriptions", params={"price": prices[1], "status": "all"})["data"]
    assert [s["id"] for s in cheap] == [ids[3], ids[1]] and all(s["price"] == prices[1] for s in cheap)
    mine = api.get("/v1/subscriptions", params={"customer": subs[2]["customer"]})["data"]
    assert [s["id"] for s in mine] == [ids[2]]
    both = {"customer": subs[2]["customer"], "price": prices[1]}
    assert api.get("/v1/subscriptions", params=both)["data"] == []
    assert api.get("/v1/subscriptions", params={"status": "past_due"})["data"] == []


def test_invoices_by_status_customer_and_creation_time(api: Api, made):
    first = made["first_invoices"]
    assert len(first) == 5 and all(i["billing_reason"] == "subscription_create" for i in first)
    every = _all(api, "/v1/invoices")
    assert len(every) == 9  # 5 first invoices, 4 renewals
    created = [i["created"] for i in every]
    assert created == sorted(created, reverse=True)
    renewals = [i for i in every if i["billing_reason"] == "subscription_cycle"]

    since = int(datetime.fromisoformat(renewals[-1]["created"]).timestamp())
    window = api.get("/v1/invoices", params={"created[gte]": since, "limit": 100})["data"]
    assert [i["id"] for i in window] == [i["id"] for i in renewals]
    iso = first[0]["created"]  # ISO 8601 works as well as unix seconds
    upto = api.get("/v1/invoices", params={"created[lte]": iso, "limit": 100})["data"]
    assert [i["id"] for i in upto] == [i["id"] for i in first]
    exact = api.get("/v1/invoices", params={"created[gte]": since, "created[lte]": since})
    assert [i["id"] for i in exact["data"]] == [renewals[-1]["id"]] and not exact["has_more"]
    assert api.get("/v1/invoices", params={"created[gte]": since, "limit": 1})["has_more"]

    paid = _all(api, "/v1/invoices", status="paid")
    assert {i["status"] for i in paid} == {"paid"} and len(paid) == len([i for i in every if i["status"] == "paid"])
    customer = made["subs"][0]["customer"]
    theirs = api.get("/v1/invoices", params={"customer": customer, "status": "paid"})["data"]
    assert [i["customer"] for i in theirs] == [customer, customer]
    assert api.get("/v1/invoices", params={"status": "void", "customer": customer})["data"] == []
    assert api.get("/v1/invoices", params={"created[lte]": "2020-01-01"})["data"] == []


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/subscriptions", {"status": "sleeping"}, "status"),
        ("/v1/invoices", {"status": "active"}, "status"),
        ("/v1/invoices", {"created[gte]": "last tuesday"}, "created[gte]"),
        ("/v1/invoices", {"created[gte]": "2026-03-02", "created[lte]": "2026-03-01"}, "created[gte]"),
        ("/v1/customers", {"limit": "0"}, "limit"),
        ("/v1/customers", {"starting_after": "sub_nothere"}, "starting_after"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(api: Api, made, path, params, param):
    response = api.request("GET", path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_an_unknown_cursor_is_a_404_naming_it(api: Api, made):
    response = api.request("GET", "/v1/invoices", params={"starting_after": "in_nothere"})
    assert response.status_code == 404 and response.json()["error"]["param"] == "starting_after"
