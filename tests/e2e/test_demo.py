"""`make demo`'s script, run against the session's local stack."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from kassa_local.client import Api
from kassa_local.demo import DEMO_SELLER, run_demo, seed_catalog, seed_seller

pytestmark = pytest.mark.e2e


def test_the_demo_lifecycle(api: Api):
    now = datetime.fromisoformat(requests.get(api.base + "/_local/clock", timeout=10).json()["now"])
    lines: list[str] = []
    summary = run_demo(api, now, months=3, out=lines.append)
    by_email = {c["email"]: c for c in summary["customers"]}
    assert by_email["anna@example.com"]["status"] == "active"
    assert by_email["bruno@example.com"]["status"] == "active"
    # 0341 declines when the trial ends: retried, warned, suspended, canceled on day 21 by the overdue ladder
    assert by_email["chloe@example.com"]["status"] == "canceled"
    for email in ("anna@example.com", "bruno@example.com"):
        invoices = by_email[email]["invoices"]
        assert len(invoices) == 4 and {i["status"] for i in invoices} == {"paid"}
    assert {i["currency"] for i in by_email["bruno@example.com"]["invoices"]} == {"JPY"}
    chloe = by_email["chloe@example.com"]["invoices"]
    assert chloe and {i["status"] for i in chloe} == {"uncollectible"}
    assert summary["events"]["invoice.payment_failed"] >= len(chloe)
    assert any("anna@example.com" in line for line in lines)
    # the reports (and the dashboard) show months of every movement, JPY converted into EUR
    mrr = summary["mrr"]
    assert mrr["currency"] == "EUR" and mrr["converted_from"] == ["JPY"]
    for movement in ("new", "expansion", "contraction", "churn", "reactivation"):
        assert any(row[movement] > 0 for row in mrr["data"]), movement
    assert len(mrr["data"]) == 4 and mrr["data"][-1]["customers"] >= 3


def test_seeding_only_fills_an_empty_catalog(api: Api):
    assert api.get("/v1/prices", params={"limit": 1})["data"]  # the session stack has prices by now
    assert seed_catalog(api) == 0


def test_the_demo_seller_is_filled_in_once_and_its_invoices_make_e_invoices(api: Api):
    first, again = seed_seller(api), seed_seller(api)
    settings = api.get("/v1/settings")
    assert settings["seller_tax_id"] == DEMO_SELLER["seller_tax_id"]
    assert (first, again) == (True, False) or (first, again) == (False, False)  # another test may have set it
    price = api.catalog(currency="EUR", amount=1200)
    invoice = api.subscribe(price["id"], "demo-seller@example.com", address={"country": "NL"})["invoice"]
    ubl = api.request("GET", f"/v1/invoices/{invoice['id']}/ubl")
    assert ubl.status_code == 200 and b"NL123456782B01" in ubl.content
