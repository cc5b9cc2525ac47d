"""Coupons and customer-entered promotion codes at checkout, with explicit discount amounts."""

from __future__ import annotations

from datetime import datetime

import pytest

from kassa.domain.periods import Interval, boundary
from kassa_local.client import Api

pytestmark = pytest.mark.e2e

OREGON = {"country": "US", "state": "OR"}  # no tax: the amounts are the coupon's alone


def test_a_100_percent_3_month_coupon_gives_three_zero_invoices_then_full_price(api: Api, stack):
    price = api.catalog(currency="USD", amount=2500)
    coupon = api.post(
        "/v1/coupons",
        {"id": "FREE3M", "percent_off": 100, "duration": "repeating", "duration_in_months": 3},
        expect=201,
    )
    assert coupon["percent_off"] == "100"
    api.post("/v1/promotion_codes", {"code": "WELCOME", "coupon": "FREE3M", "max_redemptions": 1}, expect=201)

    start = stack.clock.now()
    done = api.subscribe(price["id"], "free@example.com", address=OREGON, promotion_code="WELCOME")
    first = done["invoice"]
    assert (first["total_discount"], first["total"], first["status"]) == (2500, 0, "paid")
    assert first["lines"][0]["discount_amount"] == 2500 and "100% off" in first["discount"]

    again = api.request(
        "POST",
        "/v1/checkout",
        json={
            "price_id": price["id"],
            "promotion_code": "WELCOME",
            "customer": {"email": "second@example.com", "address": OREGON},
        },
    )
    assert again.status_code == 400 and again.json()["error"]["param"] == "promotion_code"  # max 1 redemption

    api.advance(to=(boundary(start, Interval.MONTH, 1, 3)).replace(microsecond=0).isoformat())
    api.advance("2h")
    invoices = sorted(
        api.get(f"/v1/customers/{done['subscription']['customer']}/invoices")["data"], key=lambda i: i["period_start"]
    )
    assert [i["total"] for i in invoices] == [0, 0, 0, 2500]
    assert [i["status"] for i in invoices] == ["paid"] * 4
    assert datetime.fromisoformat(invoices[-1]["period_start"]) >= datetime.fromisoformat(
        done["subscription"]["discount"]["end"]
    )


def test_an_amount_off_once_coupon_discounts_only_the_first_invoice(api: Api):
    price = api.catalog(currency="EUR", amount=1000)
    api.post("/v1/coupons", {"id": "FIVE-OFF", "amount_off": 500, "currency": "EUR", "duration": "once"}, expect=201)
    done = api.subscribe(price["id"], "five@example.com", address=OREGON, coupon="FIVE-OFF")
    assert (done["invoice"]["total_discount"], done["invoice"]["total"]) == (500, 500)
    api.advance("32d")
    invoices = sorted(
        api.get(f"/v1/customers/{done['subscription']['customer']}/invoices")["data"], key=lambda i: i["period_start"]
    )
    assert [i["total"] for i in invoices] == [500, 1000]
    float_coupon = api.request("POST", "/v1/coupons", json={"percent_off": 12.5, "duration": "once"})
    assert float_coupon.status_code == 400 and float_coupon.json()["error"]["param"].startswith("percent_off")
    wrong_currency = api.request(
        "POST",
        "/v1/checkout",
        json={
            "price_id": api.catalog(currency="USD", amount=100)["id"],
            "coupon": "FIVE-OFF",
            "customer": {"email": "usd@example.com", "address": OREGON},
        },
    )
    assert wrong_currency.status_code == 400 and wrong_currency.json()["error"]["param"] == "coupon"
