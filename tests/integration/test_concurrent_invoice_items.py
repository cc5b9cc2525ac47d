"""20 concurrent one-off items on one subscription on DynamoStore (moto): none is lost."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest

from kassa.services.context import BillingContext
from kassa.services.invoicing import add_invoice_item

from .test_dynamodb_store import NOW, PREFIX, new_subscription, private_store  # noqa: F401

pytestmark = pytest.mark.integration


class _Publisher:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, events: list[Any]) -> None:
        self.events.extend(events)


class _Clock:
    def now(self) -> datetime:
        return NOW


def test_twenty_concurrent_invoice_items_leave_twenty_pending_lines(private_store, uid):  # noqa: F811
    sub, invoice = new_subscription(uid)
    private_store.create_subscription(sub, invoice, PREFIX)
    n = 20
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def post(i: int) -> None:
        ctx = BillingContext(private_store, None, _Publisher(), _Clock())
        barrier.wait()
        try:
            add_invoice_item(ctx, sub.id, amount=100 + i, description=f"item {i}")
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = private_store.get_subscription(sub.id)
    assert sorted(line["description"] for line in stored.pending_lines) == sorted(f"item {i}" for i in range(n))
    assert stored.version == sub.version + n  # one write per item, none lost
