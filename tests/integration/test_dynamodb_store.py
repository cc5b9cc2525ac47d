"""DynamoStore (the BillingStore port) on the stack's moto server.

The BillingStore contract itself (round trips, versions, numbering, renewals, lists, the due and
dunning indexes, webhook records) is tests/contract, run against this store and the in-memory one.
Here: what only DynamoDB has — the counter under concurrency, retries, index attributes, TTL,
compression, capacity. Most tests use the functions' billing table with unique ids; tests that need
the table to themselves get a private table with the same schema (``private_store``).
"""

from __future__ import annotations

import dataclasses
import threading
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from infra import wiring
from kassa.adapters import usage
from kassa.adapters.dynamodb import WEBHOOK_RETENTION, DynamoStore, shard_of
from kassa.domain.catalog import Price, Product, Recurring
from kassa.domain.customer import Address, Customer
from kassa.domain.errors import AlreadyExists, Conflict, NotFound
from kassa.domain.invoice import BillingReason, Invoice, InvoiceStatus, build_subscription_invoice
from kassa.domain.periods import Interval
from kassa.domain.subscription import Status, Subscription, start_subscription
from kassa.services.ports import WebhookRecord
from kassa_local.aws import create_table

from .conftest import START

pytestmark = pytest.mark.integration

NOW = START
PREFIX = "ITEST"


@pytest.fixture
def private_store(ddb: Any, uid: str) -> Iterator[DynamoStore]:
    table = dataclasses.replace(wiring.BILLING_TABLE, name=f"itest-{uid}")
    create_table(ddb, table)
    try:
        yield DynamoStore(ddb, table.name, wiring.DUE_SHARDS)
    finally:
        ddb.delete_table(TableName=table.name)


# ----------------------------------------------------------------------------- builders


def product(uid: str) -> Product:
    return Product(id=f"prod_{uid}", name="Coffee club", created=NOW)


def price(uid: str, trial_days: int | None = None) -> Price:
    return Price(
        id=f"price_{uid}", product=f"prod_{uid}", currency="EUR", unit_amount=1500,
        recurring=Recurring(interval=Interval.MONTH, trial_period_days=trial_days), created=NOW,
    )  # fmt: skip


def customer(uid: str, email: str | None = None) -> Customer:
    return Customer(
        id=f"cus_{uid}", email=email or f"store-{uid}@example.com", name="Store", address=Address(country="NL"),
        stripe_customer_id=f"cus_stripe_{uid}", created=NOW,
    )  # fmt: skip


def new_subscription(uid: str, n: int = 0, now: datetime = NOW) -> tuple[Subscription, Invoice]:
    """An incomplete subscription and its (draft) first invoice, as checkout builds them."""
    sub = start_subscription(
        customer=f"cus_{uid}", price=price(uid), quantity=1, now=now, subscription_id=f"sub_{uid}_{n}"
    )
    invoice = build_subscription_invoice(sub, sub.period, now, BillingReason.SUBSCRIPTION_CREATE, "Coffee club")
    return sub.model_copy(update={"latest_invoice": invoice.id}), invoice


def active_due_at(uid: str, n: int, due: datetime) -> Subscription:
    """An active subscription whose current period ends (falls due) at ``due``."""
    sub, _ = new_subscription(uid, n, now=due - timedelta(days=30))
    return sub.model_copy(update={"status": Status.ACTIVE, "incomplete_expires_at": None, "current_period_end": due})


def counter(store: DynamoStore, ddb: Any) -> int:
    item = ddb.get_item(
        TableName=store._table, Key={"pk": {"S": "COUNTER"}, "sk": {"S": "INVOICE_NUMBER"}}, ConsistentRead=True
    ).get("Item")
    return int(item["seq"]["N"]) if item else 0


def raw(ddb: Any, table: str, pk: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = ddb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)[
        "Item"
    ]
    return item


# ----------------------------------------------------------------------------- numbering


def test_invoice_numbers_are_gapless_and_distinct_under_concurrency(private_store, ddb, uid):
    """8 checkouts at once: every invoice gets a number, none twice, none skipped. A creator that
    loses the counter race too often gets Conflict("…; retry") and retries, as the API's caller would."""
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    numbers: dict[int, str] = {}
    conflicts: list[int] = []
    errors: list[BaseException] = []

    def create(n: int) -> None:
        sub, invoice = new_subscription(uid, n)
        barrier.wait()
        try:
            for _ in range(20):
                try:
                    final = private_store.create_subscription(sub, invoice, PREFIX)
                except AlreadyExists:
                    raise
                except Conflict:
                    conflicts.append(n)
                    with pytest.raises(NotFound):  # a failed attempt leaves nothing behind
                        private_store.get_subscription(sub.id)
                    continue
                assert final is not None
                numbers[n] = str(final.number)
                return
        except BaseException as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=create, args=(n,)) for n in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)

    assert not errors, errors
    assert sorted(numbers.values()) == [f"{PREFIX}-{i:04d}" for i in range(1, threads_n + 1)]
    assert counter(private_store, ddb) == threads_n
    for n, number in numbers.items():
        sub = private_store.get_subscription(f"sub_{uid}_{n}")
        invoice = private_store.get_invoice(str(sub.latest_invoice))
        assert invoice.number == number
        assert invoice.status is InvoiceStatus.OPEN and invoice.finalized_at == NOW


class _LosesToRivals:
    """A DynamoDB client on which each of the next ``times`` transactions loses the race for the
    invoice counter: a rival checkout commits (and takes a number) just before it."""

    def __init__(self, client: Any, rival: Any, times: int) -> None:
        self._client, self._rival, self.times = client, rival, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        if self.times > 0:
            self.times -= 1
            self._rival()
        return self._client.transact_write_items(**kwargs)


def test_the_eighth_of_eight_concurrent_checkouts_still_gets_its_number(private_store, ddb, uid):
    rivals = iter(range(1, 8))

    def rival() -> None:
        sub, invoice = new_subscription(uid, next(rivals))
        private_store.create_subscription(sub, invoice, PREFIX)

    unlucky = DynamoStore(_LosesToRivals(ddb, rival, times=7), private_store._table, wiring.DUE_SHARDS)
    sub, invoice = new_subscription(uid, 0)

    final = unlucky.create_subscription(sub, invoice, PREFIX)  # loses 7 races (one per rival), then wins

    assert final is not None and final.number == f"{PREFIX}-0008"
    assert counter(private_store, ddb) == 8


class _CountsTransactions:
    def __init__(self, client: Any) -> None:
        self._client, self.transactions = client, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        return self._client.transact_write_items(**kwargs)


def test_a_new_subscription_whose_invoice_exists_fails_at_once(private_store, ddb, uid):
    """No retry can succeed: Conflict after one transaction, not after NUMBER_RETRIES backoffs."""
    sub, invoice = new_subscription(uid, 0)
    private_store.create_subscription(sub, invoice, PREFIX)
    other, _ = new_subscription(uid, 1)
    client = _CountsTransactions(ddb)

    with pytest.raises(Conflict):
        DynamoStore(client, private_store._table, wiring.DUE_SHARDS).create_subscription(other, invoice, PREFIX)

    assert client.transactions == 1


# ----------------------------------------------------------------------------- due index (the contract
# is in tests/contract; here: how DynamoDB serves it)


def test_the_due_index_is_queried_per_shard_never_scanned(private_store, uid):
    due = active_due_at(uid, 1, NOW - timedelta(hours=2))
    private_store.create_subscription(due, None, PREFIX)
    queries = usage.snapshot().get("calls.dynamodb.query", 0.0)

    assert private_store.due_subscriptions(shard_of(due.id, wiring.DUE_SHARDS), NOW, 100) == [
        (due.id, NOW - timedelta(hours=2))
    ]
    assert private_store.next_due_after(NOW) == NOW - timedelta(hours=2)

    assert usage.snapshot()["calls.dynamodb.query"] >= queries + 1 + wiring.DUE_SHARDS  # next_due_after: one per shard
    assert "calls.dynamodb.scan" not in usage.snapshot()  # never a Scan


def test_a_finished_subscription_has_no_index_attributes(private_store, ddb, uid):
    sub = active_due_at(uid, 1, NOW - timedelta(days=1))
    private_store.create_subscription(sub, None, PREFIX)
    assert "gsi1pk" in raw(ddb, private_store._table, f"SUB#{sub.id}", "SUBSCRIPTION")

    private_store.save_subscription(private_store.get_subscription(sub.id).transition(Status.CANCELED, NOW))

    item = raw(ddb, private_store._table, f"SUB#{sub.id}", "SUBSCRIPTION")
    assert "gsi1pk" not in item and "gsi1sk" not in item  # sparse: no index attributes at all


# ----------------------------------------------------------------------------- webhook events


def test_a_webhook_record_expires_after_30_days_with_its_body_compressed(store, ddb, table, uid):
    record = WebhookRecord(
        id=f"evt_{uid}", type="customer.created", status="received", payload='{"first": true}', received_at=NOW
    )

    assert store.record_webhook(record) is None

    item = raw(ddb, table, f"WHEVT#evt_{uid}", "EVENT")
    assert int(item["expires_at"]["N"]) == int((NOW + WEBHOOK_RETENTION).timestamp())  # TTL: 30 days
    assert "payload" not in item and zlib.decompress(item["payload_z"]["B"]) == b'{"first": true}'
    assert store.get_webhook(f"evt_{uid}") == record


# ----------------------------------------------------------------------------- capacity


def test_consumed_capacity_is_counted(store, uid):
    before = usage.snapshot()

    store.put_product(product(uid))
    store.create_customer(customer(uid))  # a transaction
    store.get_product(f"prod_{uid}")

    after = usage.snapshot()
    # DynamoDB's on-demand rules: >= 1 WRU for the put, >= 2 per item of the two-item transaction
    assert after.get("units.dynamodb.write", 0.0) - before.get("units.dynamodb.write", 0.0) >= 5
    assert after.get("units.dynamodb.read", 0.0) > before.get("units.dynamodb.read", 0.0)
    assert after["calls.dynamodb.transact_write_items"] >= before.get("calls.dynamodb.transact_write_items", 0) + 1
