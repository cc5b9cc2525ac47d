"""The ``WebhookStore`` contract, on memory and on DynamoDB (moto): endpoints with versions, a
delivery claimed once with its payload, versioned outcomes, the log by event time newest first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.conftest import billing_table
from kassa.adapters.webhooks import DynamoWebhookStore, MemoryWebhookStore
from kassa.domain.errors import AlreadyExists, Conflict, NotFound
from kassa.domain.webhooks import Delivery, SigningSecret, WebhookEndpoint

T0 = datetime(2026, 5, 1, tzinfo=UTC)
STORES = [pytest.param("memory", id="memory"), pytest.param("dynamodb", id="dynamodb", marks=pytest.mark.integration)]


@pytest.fixture(params=STORES)
def hooks(request: pytest.FixtureRequest, uid: str) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryWebhookStore()
        return
    with billing_table(request, f"contract-wh-{uid}") as (client, table):
        yield DynamoWebhookStore(client, table)


def _endpoint(n: int) -> WebhookEndpoint:
    return WebhookEndpoint(id=f"we_{n}", url=f"https://h{n}.example/x", enabled_events=["*"],
                           secrets=[SigningSecret(secret=f"whsec_{n}")], created=T0 + timedelta(seconds=n))  # fmt: skip


def test_endpoints(hooks: Any) -> None:
    hooks.add_endpoint(_endpoint(2))
    hooks.add_endpoint(_endpoint(1))
    with pytest.raises(AlreadyExists):
        hooks.add_endpoint(_endpoint(1))
    assert [e.id for e in hooks.list_endpoints()] == ["we_1", "we_2"]
    first = hooks.get_endpoint("we_1")
    saved = hooks.save_endpoint(first.model_copy(update={"status": "disabled"}))
    assert saved.version == first.version + 1 and hooks.get_endpoint("we_1").status == "disabled"
    with pytest.raises(Conflict):  # written from a stale read
        hooks.save_endpoint(first.model_copy(update={"description": "late"}))
    hooks.delete_endpoint("we_1")
    with pytest.raises(NotFound):
        hooks.get_endpoint("we_1")
    with pytest.raises(NotFound):
        hooks.save_endpoint(saved)


def test_deliveries(hooks: Any) -> None:
    for n in range(5):
        d = Delivery(
            endpoint="we_1", event_id=f"evt_{n}", event_type="invoice.paid", event_created=T0 + timedelta(hours=n)
        )
        assert hooks.claim_delivery(d, f'{{"n":{n}}}'.encode()) is None
    again = hooks.claim_delivery(Delivery(endpoint="we_1", event_id="evt_1", event_type="x", event_created=T0), b"{}")
    assert again is not None and again.event_type == "invoice.paid"  # claimed once: the first stays
    delivery, body = hooks.load_delivery("we_1", "evt_1")
    assert body == b'{"n":1}'
    saved = hooks.save_delivery(delivery.model_copy(update={"status": "succeeded", "attempts": 1}))
    with pytest.raises(Conflict):
        hooks.save_delivery(delivery.model_copy(update={"status": "retrying"}))
    assert hooks.get_delivery("we_1", "evt_1") == saved and hooks.load_delivery("we_1", "evt_1")[1] == b'{"n":1}'
    assert [d.event_id for d in hooks.list_deliveries("we_1", 10)] == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
    ranged = hooks.list_deliveries("we_1", 10, T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    assert [d.event_id for d in ranged] == ["evt_3", "evt_2", "evt_1"]
    assert [d.event_id for d in hooks.list_deliveries("we_1", 2)] == ["evt_4", "evt_3"]
    assert hooks.list_deliveries("we_2", 10) == [] and hooks.load_delivery("we_2", "evt_1") is None


def test_pending_deliveries_earliest_due_first(hooks: Any) -> None:
    """What a restarted local stack queues again: every endpoint's deliveries still to be attempted."""
    hooks.add_endpoint(_endpoint(1))  # an endpoint item is no delivery
    for n, (status, due) in enumerate([("retrying", 30), ("succeeded", None), ("retrying", 10), ("failed", None),
                                       ("pending", None)]):  # fmt: skip
        d = Delivery(endpoint=f"we_{n % 2}", event_id=f"evt_{n}", event_type="invoice.paid", event_created=T0)
        hooks.claim_delivery(d, b"{}")
        if status != "pending":
            at = T0 + timedelta(minutes=due) if due else None
            hooks.save_delivery(hooks.get_delivery(d.endpoint, d.event_id).model_copy(
                update={"status": status, "attempts": 1, "next_attempt_at": at}))  # fmt: skip
    pending = hooks.pending_deliveries(10)
    assert [(d.event_id, d.status) for d in pending] == [("evt_4", "pending"), ("evt_2", "retrying"),
                                                         ("evt_0", "retrying")]  # fmt: skip
    assert [d.event_id for d in hooks.pending_deliveries(1)] == ["evt_4"]
