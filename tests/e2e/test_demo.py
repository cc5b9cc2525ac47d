"""`make demo`'s script, run against the session's local stack."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from kassa_local.client import Api
from kassa_local.demo import run_demo, seed_catalog

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


def test_seeding_only_fills_an_empty_catalog(api: Api):
    assert api.get("/v1/prices", params={"limit": 1})["data"]  # the session stack has prices by now
    assert seed_catalog(api) == 0
