"""Customer updates, coupons on existing subscriptions, coupon/code listings and checkout's
validate-before-write rule over HTTP (the emulated API Gateway in front of the api Lambda)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from kassa_local.client import Api

pytestmark = pytest.mark.integration


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def _stripe(config: dict[str, Any], path: str, **params: Any) -> Any:
    return requests.get(
        f"{config['stripe_url']}{path}",
        params=params,
        headers={"Authorization": f"Bearer {config['stripe_secret_key']}"},
        timeout=10,
    ).json()


def _customer(api: Api, email: str, **fields: Any) -> dict[str, Any]:
    body = {"email": email, "name": "Ada", "address": {"country": "NL"}, **fields}
    return api.post("/v1/customers", body, expect=201)


def test_updating_a_customer_changes_stripe_and_refuses_a_taken_email(api: Api, config, uid):
    ada = _customer(api, f"ada-{uid}@example.com")
    _customer(api, f"bob-{uid}@example.com")

    updated = api.post(
        f"/v1/customers/{ada['id']}",
        {"email": f"ada.l-{uid}@example.com", "name": "Ada L", "address": {"country": "DE"}, "tax_id": "DE136695976"},
    )

    assert updated["email"] == f"ada.l-{uid}@example.com" and updated["address"]["country"] == "DE"
    assert updated["tax_id"] == "DE136695976" and "version" not in updated
    stripe_customer = _stripe(config, f"/v1/customers/{ada['stripe_customer_id']}")
    assert stripe_customer["email"] == f"ada.l-{uid}@example.com" and stripe_customer["name"] == "Ada L"
    taken = api.request("POST", f"/v1/customers/{ada['id']}", json={"email": f"BOB-{uid}@example.com"})
    assert _error(taken, 409)["param"] == "email"
    bad = api.request("POST", f"/v1/customers/{ada['id']}", json={"preferred_locale": "xx"})
    assert _error(bad, 400)["param"] == "preferred_locale"
    missing = api.request("POST", "/v1/customers/cus_nope", json={"name": "x"})
    assert _error(missing, 404)["param"] == "customer_id"
    # the old email is free again, the new one is taken
    _customer(api, f"ada-{uid}@example.com")
    again = api.request(
        "POST", "/v1/customers", json={"email": f"ada.l-{uid}@example.com", "address": {"country": "NL"}}
    )
    assert again.status_code == 409


def test_a_checkout_with_an_unredeemable_coupon_leaves_no_customer_behind(api: Api, config, uid):
    price = api.catalog(currency="EUR", amount=1000)
    api.post("/v1/coupons", {"id": f"old-{uid}", "percent_off": 10, "duration": "once",
                             "redeem_by": "2001-01-01T00:00:00Z"}, expect=201)  # fmt: skip
    email = f"eve-{uid}@example.com"

    for extra, status, param in (
        ({"coupon": f"old-{uid}"}, 400, "coupon"),
        ({"coupon": f"nope-{uid}"}, 404, "coupon"),
        ({"promotion_code": f"NOPE{uid}"}, 404, "promotion_code"),
    ):
        body = {"price_id": price["id"], "customer": {"email": email, "address": {"country": "NL"}}, **extra}
        assert _error(api.request("POST", "/v1/checkout", json=body), status)["param"] == param

    assert _stripe(config, "/v1/customers", email=email, limit=100)["data"] == []
    created = api.post("/v1/customers", {"email": email, "address": {"country": "NL"}}, expect=201)  # email still free
    assert created["email"] == email


def test_coupons_on_a_subscription_listings_deactivation_and_deletion(api: Api, uid):
    price = api.catalog(currency="EUR", amount=1000)
    coupon = api.post("/v1/coupons", {"id": f"half-{uid}", "percent_off": 50, "duration": "forever"}, expect=201)
    code = api.post("/v1/promotion_codes", {"code": f"HALF{uid}", "coupon": coupon["id"]}, expect=201)
    started = api.post(
        "/v1/checkout",
        {"price_id": price["id"], "customer": {"email": f"sub-{uid}@example.com", "address": {"country": "NL"}}},
        expect=201,
    )
    sub_id = started["subscription"]["id"]

    sub = api.post(f"/v1/subscriptions/{sub_id}/discount", {"promotion_code": f"half{uid}"})
    assert sub["object"] == "subscription" and sub["discount"]["coupon"]["id"] == coupon["id"]
    both = api.request("POST", f"/v1/subscriptions/{sub_id}/discount", json={})
    assert _error(both, 400)["param"] == "coupon"

    listed = api.get("/v1/promotion_codes", params={"code": f"half{uid}"})["data"]
    assert [p["id"] for p in listed] == [code["id"]] and listed[0]["times_redeemed"] == 1
    assert coupon["id"] in {c["id"] for c in api.get("/v1/coupons", params={"limit": 100})["data"]}

    off = api.post(f"/v1/promotion_codes/{code['id']}", {"active": False})
    assert off["active"] is False
    assert api.get("/v1/promotion_codes", params={"code": f"HALF{uid}", "active": "true"})["data"] == []
    refused = api.request("POST", f"/v1/subscriptions/{sub_id}/discount", json={"promotion_code": f"HALF{uid}"})
    assert "code_inactive" in _error(refused, 400)["message"]

    assert api.request("DELETE", f"/v1/coupons/{coupon['id']}").json() == {
        "id": coupon["id"],
        "object": "coupon",
        "deleted": True,
    }
    assert api.get(f"/v1/coupons/{coupon['id']}")["valid"] is False
    assert coupon["id"] not in {
        c["id"] for c in api.get("/v1/coupons", params={"active": "true", "limit": 100})["data"]
    }
    refused = api.request("POST", f"/v1/subscriptions/{sub_id}/discount", json={"coupon": coupon["id"]})
    assert "coupon_deleted" in _error(refused, 400)["message"]
    assert api.get(f"/v1/subscriptions/{sub_id}")["discount"]["coupon"]["id"] == coupon["id"]  # goes on

    removed = api.request("DELETE", f"/v1/subscriptions/{sub_id}/discount")
    assert removed.status_code == 200 and removed.json()["discount"] is None
    assert _error(api.request("DELETE", f"/v1/subscriptions/{sub_id}/discount"), 404)["param"] == "discount"


def test_the_demo_storefront_back_end_checks_a_returning_customer_out_by_id(api: Api, config, uid):
    price = api.catalog(currency="EUR", amount=1000)
    body = {"price_id": price["id"], "customer": {"email": f"shop-{uid}@example.com", "address": {"country": "NL"}}}

    first = requests.post(f"{config['api_url']}/demo/checkout", json=body, timeout=30)
    assert first.status_code == 201, first.text
    assert set(first.json()["customer"]) == {"object", "id", "email", "name"}

    if api.request("GET", "/v1/customers", params={"email": body["customer"]["email"]}).status_code != 200:
        pytest.skip("GET /v1/customers?email= (the demo back end's lookup) is not served yet")
    body["customer"]["email"] = f"SHOP-{uid}@example.com"
    second = requests.post(f"{config['api_url']}/demo/checkout", json=body, timeout=30)
    assert second.status_code == 201, second.text
    assert second.json()["customer"]["id"] == first.json()["customer"]["id"]
