"""20 concurrent ``POST /v1/subscriptions/{id}/invoice_items`` over HTTP leave 20 pending lines, and
the next invoice bills every one of them (the service-level race on DynamoDB is in
tests/integration/test_concurrency.py: the local stack runs one invocation at a time per function)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

REQUESTS = 20


def test_twenty_concurrent_invoice_items_are_all_kept(api: Api) -> None:
    price = api.catalog(currency="EUR", amount=1500)
    started = api.subscribe(price["id"], "concurrent-items@example.com")
    sub_id, customer = started["subscription"]["id"], started["subscription"]["customer"]

    def post(n: int) -> int:
        response = api.request(
            "POST",
            f"/v1/subscriptions/{sub_id}/invoice_items",
            json={"amount": 100 + n, "description": f"item {n:02d}"},
        )
        return int(response.status_code)

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        statuses = list(pool.map(post, range(REQUESTS)))
    assert statuses == [201] * REQUESTS
    api.advance("32d")  # the renewal invoice carries every pending line
    invoices = api.get(f"/v1/invoices?customer={customer}&limit=10")["data"]
    renewal = next(i for i in invoices if i["billing_reason"] == "subscription_cycle")
    items = sorted(line["description"] for line in renewal["lines"] if line["description"].startswith("item "))
    assert items == [f"item {n:02d}" for n in range(REQUESTS)]
    assert sum(line["amount"] for line in renewal["lines"] if line["description"].startswith("item ")) == sum(
        100 + n for n in range(REQUESTS)
    )
