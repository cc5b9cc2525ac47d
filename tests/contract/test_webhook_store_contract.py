"""The ``WebhookStore`` contract, on memory and on DynamoDB (moto): endpoints with versions, a
delivery claimed once with its payload, versioned outcomes, the log by event time newest first; the
endpoint limit kept with each create and delete (concurrent creates never pass it), and the route
changes counted with the writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.conftest import billing_table
from kassa.adapters.webhooks import DynamoWebhookStore, MemoryWebhookStore
from kassa.domain.errors import AlreadyExists, Conflict, NotFound
from kassa.domain.webhooks import Delivery, EndpointLimitReached, RouteState, SigningSecret, WebhookEndpoint

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


def test_the_endpoint_limit_is_kept_with_each_create_and_delete(hooks: Any) -> None:
    for n in range(3):
        hooks.add_endpoint(_endpoint(n), limit=3)
    with pytest.raises(EndpointLimitReached) as refused:
        hooks.add_endpoint(_endpoint(3), limit=3)
    assert "at most 3 webhook endpoints" in refused.value.message
    with pytest.raises(AlreadyExists):  # a create written twice: counted once
        hooks.add_endpoint(_endpoint(0), limit=4)
    hooks.add_endpoint(_endpoint(3), limit=4)
    hooks.delete_endpoint("we_1")
    hooks.delete_endpoint("we_1")  # gone already: frees no second place
    hooks.add_endpoint(_endpoint(4), limit=4)
    with pytest.raises(EndpointLimitReached):
        hooks.add_endpoint(_endpoint(5), limit=4)
    assert [e.id for e in hooks.list_endpoints()] == ["we_0", "we_2", "we_3", "we_4"]  # never the state item


def test_concurrent_creates_never_pass_the_limit(hooks: Any) -> None:
    hooks.add_endpoint(_endpoint(0), limit=4)
    start = threading.Barrier(6, timeout=10)
    outcomes: list[str] = []

    def create(n: int) -> None:
        start.wait()
        try:
            hooks.add_endpoint(_endpoint(n), limit=4)
            outcomes.append("created")
        except EndpointLimitReached:
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 3
    assert len(hooks.list_endpoints()) == 4


def test_route_changes_are_counted_with_the_writes_and_the_synced_one_never_goes_back(hooks: Any) -> None:
    assert hooks.route_state() == RouteState(0, 0) and not hooks.route_state().behind
    hooks.add_endpoint(_endpoint(1))
    hooks.add_endpoint(_endpoint(2))
    assert hooks.route_state() == RouteState(changes=2, synced=0) and hooks.route_state().behind
    hooks.mark_route_synced(2)
    first = hooks.get_endpoint("we_1")
    rolled = hooks.save_endpoint(first.model_copy(update={"description": "not a route change"}))
    assert hooks.route_state() == RouteState(2, 2)
    hooks.save_endpoint(rolled.model_copy(update={"status": "disabled"}), reroutes=True)
    with pytest.raises(Conflict):  # a stale write is not written, nor counted
        hooks.save_endpoint(rolled.model_copy(update={"enabled_events": ["invoice.paid"]}), reroutes=True)
    assert hooks.route_state() == RouteState(3, 2)
    hooks.delete_endpoint("we_2")
    hooks.mark_route_synced(4)
    hooks.mark_route_synced(3)  # a slower put of an older list marks nothing back
    assert hooks.route_state() == RouteState(4, 4)


def test_endpoints_written_before_the_count_are_counted_on_the_first_create(hooks: Any) -> None:
    """A table whose endpoints were written without the count (before it existed): the first
    create or delete counts them once."""
    if isinstance(hooks, MemoryWebhookStore):
        pytest.skip("memory counts its own dict")
    for n in range(2):
        hooks._call("put_item", TableName=hooks._table, Item=hooks._item("WHEP", f"WHEP#we_{n}", _endpoint(n)))  # noqa: SLF001
    hooks.save_endpoint(hooks.get_endpoint("we_0"), reroutes=True)  # a route change before any count
    hooks.add_endpoint(_endpoint(2), limit=3)
    with pytest.raises(EndpointLimitReached):
        hooks.add_endpoint(_endpoint(3), limit=3)
    hooks.delete_endpoint("we_0")
    hooks.add_endpoint(_endpoint(3), limit=3)
    assert [e.id for e in hooks.list_endpoints()] == ["we_1", "we_2", "we_3"]
