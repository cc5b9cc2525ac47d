"""Lost updates on DynamoDB (moto): concurrent one-off invoice items on one subscription, written by
20 threads through the real adapter and the service — every line is kept (the local stack runs one
invocation at a time per function, so the HTTP test in tests/e2e cannot race the writers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from kassa.adapters.dynamodb import DynamoStore
from kassa.domain.events import DomainEvent
from kassa.services.context import BillingContext
from kassa.services.invoicing import add_invoice_item
from kassa_local.client import Api

pytestmark = pytest.mark.integration

WRITERS = 20


class _Events:
    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def publish(self, events: list[DomainEvent]) -> None:
        self.events.extend(events)


class _Clock:
    def now(self) -> datetime:
        return datetime(2026, 3, 31, 9, 0, tzinfo=UTC)


def test_twenty_concurrent_invoice_items_on_dynamodb_are_all_kept(api: Api, store: DynamoStore, uid: str) -> None:
    price = api.catalog(currency="EUR", amount=1500)
    sub_id = api.subscribe(price["id"], f"items-{uid}@example.com")["subscription"]["id"]
    published = _Events()

    def one(n: int) -> Any:
        # one context per request, as one per Lambda invocation; the store (and boto3 client) shared
        billing = BillingContext(store, None, published, _Clock())
        return add_invoice_item(billing, sub_id, amount=100 + n, description=f"item {n:02d}")

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(one, range(WRITERS)))
    lines = store.get_subscription(sub_id).pending_lines
    assert sorted(line["description"] for line in lines) == [f"item {n:02d}" for n in range(WRITERS)]
    assert len(published.events) == WRITERS
