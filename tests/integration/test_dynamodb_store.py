"""DynamoStore (the BillingStore port) on the stack's moto server.

Most tests use the functions' billing table with unique ids. Tests that need the table to
themselves (the invoice counter from 0001, the earliest due time) get a private table with the
same schema (``private_store``), dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from infra import wiring
from kassa.adapters import usage
from kassa.adapters.dynamodb import WEBHOOK_RETENTION, DynamoStore, shard_of
from kassa.domain.catalog import Price, Product, Recurring
from kassa.domain.customer import Address, CardSummary, Customer
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


# ----------------------------------------------------------------------------- catalog


def test_products_and_prices_round_trip_and_are_written_once(store, uid):
    store.put_product(product(uid))
    store.put_price(price(uid))

    assert store.get_product(f"prod_{uid}") == product(uid)
    assert store.get_price(f"price_{uid}") == price(uid)
    with pytest.raises(AlreadyExists):
        store.put_product(product(uid).model_copy(update={"name": "Other"}))
    with pytest.raises(AlreadyExists):
        store.put_price(price(uid).model_copy(update={"unit_amount": 1}))
    assert store.get_price(f"price_{uid}").unit_amount == 1500  # the first write stands


@pytest.mark.parametrize(
    ("read", "param"),
    [
        (lambda s: s.get_product("prod_missing"), "product"),
        (lambda s: s.get_price("price_missing"), "price_id"),
        (lambda s: s.get_customer("cus_missing"), "customer_id"),
        (lambda s: s.get_subscription("sub_missing"), "subscription"),
        (lambda s: s.get_invoice("in_missing"), "invoice"),
    ],
    ids=["product", "price", "customer", "subscription", "invoice"],
)
def test_a_missing_object_is_not_found_naming_the_param(store, read, param):
    with pytest.raises(NotFound) as raised:
        read(store)
    assert raised.value.param == param
    assert "missing" in raised.value.message


# ----------------------------------------------------------------------------- customers


def test_a_second_customer_with_the_same_email_already_exists(store, uid):
    first = customer(uid, email=f"Dup-{uid}@Example.com")
    store.create_customer(first)
    second = customer(f"{uid}b", email=f"  dup-{uid}@example.com ")

    with pytest.raises(AlreadyExists) as raised:
        store.create_customer(second)

    assert raised.value.param == "customer.email"
    assert store.find_customer_by_email(f"DUP-{uid}@example.com") == first
    with pytest.raises(NotFound):  # the transaction wrote neither item
        store.get_customer(second.id)


def test_saving_a_customer_with_a_stale_version_is_a_conflict(store, uid):
    original = customer(uid)
    store.create_customer(original)
    card = CardSummary(payment_method_id="pm_1", brand="visa", last4="4242", exp_month=12, exp_year=2034)
    saved = store.save_customer(original.model_copy(update={"default_payment_method": card}))
    assert saved.version == 1

    with pytest.raises(Conflict) as raised:
        store.save_customer(original.model_copy(update={"name": "Lost update"}))

    assert not isinstance(raised.value, AlreadyExists)
    assert store.get_customer(original.id) == saved
    assert store.save_customer(saved.model_copy(update={"name": "Next"})).version == 2


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


def test_creating_the_same_subscription_twice_already_exists_and_takes_no_number(private_store, ddb, uid):
    sub, invoice = new_subscription(uid)
    assert private_store.create_subscription(sub, invoice, PREFIX).number == f"{PREFIX}-0001"

    with pytest.raises(AlreadyExists):
        private_store.create_subscription(sub, invoice, PREFIX)

    assert counter(private_store, ddb) == 1
    other, other_invoice = new_subscription(uid, 1)
    assert private_store.create_subscription(other, other_invoice, PREFIX).number == f"{PREFIX}-0002"


def test_renewing_twice_for_the_same_period_already_exists_and_the_counter_does_not_move(private_store, ddb, uid):
    sub, first = new_subscription(uid)
    private_store.create_subscription(sub, first, PREFIX)
    active = private_store.get_subscription(sub.id).model_copy(update={"status": Status.ACTIVE})
    active = private_store.save_subscription(active)
    period = active.next_period()
    cycle = build_subscription_invoice(active, period, NOW, BillingReason.SUBSCRIPTION_CYCLE)

    renewed, invoice = private_store.renew(active.with_period(period), cycle, PREFIX)

    assert invoice.number == f"{PREFIX}-0002"
    assert renewed.latest_invoice == cycle.id and renewed.current_period_start == period.start
    # a redelivered renewal: the same decision from the same (now stale) subscription …
    with pytest.raises(AlreadyExists):
        private_store.renew(active.with_period(period), cycle, PREFIX)
    # … or from the current one
    with pytest.raises(AlreadyExists):
        private_store.renew(renewed, cycle, PREFIX)
    assert counter(private_store, ddb) == 2
    assert private_store.get_subscription(sub.id) == renewed
    # the next period still gets the next number: no gap
    later = renewed.next_period()
    _, third = private_store.renew(
        renewed.with_period(later), build_subscription_invoice(renewed, later, NOW, BillingReason.SUBSCRIPTION_CYCLE),
        PREFIX,
    )  # fmt: skip
    assert third.number == f"{PREFIX}-0003"


def test_saving_invoice_and_subscription_is_atomic(store, uid):
    sub, invoice = new_subscription(uid)
    final = store.create_subscription(sub, invoice, PREFIX)
    assert final is not None
    stale_sub = store.get_subscription(sub.id)
    store.save_subscription(stale_sub.model_copy(update={"quantity": 2}))
    paid = final.transition(InvoiceStatus.PAID, NOW)

    with pytest.raises(Conflict):
        store.save_invoice_and_subscription(paid, stale_sub.transition(Status.ACTIVE, NOW))

    assert store.get_invoice(final.id).status is InvoiceStatus.OPEN  # the invoice half was not written
    assert store.get_subscription(sub.id).status is Status.INCOMPLETE


# ----------------------------------------------------------------------------- due index


def test_the_due_index_finds_due_subscriptions_in_their_shard(private_store, ddb, uid):
    due = active_due_at(uid, 1, NOW - timedelta(hours=2))
    later = active_due_at(uid, 2, NOW + timedelta(days=3))
    for s in (due, later):
        private_store.create_subscription(s, None, PREFIX)
    shard = shard_of(due.id, wiring.DUE_SHARDS)
    queries = usage.snapshot().get("calls.dynamodb.query", 0.0)

    found = private_store.due_subscriptions(shard, NOW, 100)

    assert found == [(due.id, NOW - timedelta(hours=2))]
    for other in set(range(wiring.DUE_SHARDS)) - {shard}:
        assert due.id not in [s for s, _ in private_store.due_subscriptions(other, NOW, 100)]
    later_shard = shard_of(later.id, wiring.DUE_SHARDS)
    assert later.id not in [s for s, _ in private_store.due_subscriptions(later_shard, NOW, 100)]
    assert later.id in [s for s, _ in private_store.due_subscriptions(later_shard, later.due_at, 100)]
    assert usage.snapshot()["calls.dynamodb.query"] > queries
    assert "calls.dynamodb.scan" not in usage.snapshot()  # never a Scan
    assert private_store.next_due_after(NOW) == NOW - timedelta(hours=2)


def test_a_finished_subscription_leaves_the_due_index(private_store, ddb, uid):
    sub = active_due_at(uid, 1, NOW - timedelta(days=1))
    private_store.create_subscription(sub, None, PREFIX)
    later = active_due_at(uid, 2, NOW + timedelta(days=9))
    private_store.create_subscription(later, None, PREFIX)
    assert private_store.next_due_after(NOW) == NOW - timedelta(days=1)

    private_store.save_subscription(private_store.get_subscription(sub.id).transition(Status.CANCELED, NOW))

    item = raw(ddb, private_store._table, f"SUB#{sub.id}", "SUBSCRIPTION")
    assert "gsi1pk" not in item and "gsi1sk" not in item  # sparse: no index attributes at all
    assert sub.id not in [s for s, _ in private_store.due_subscriptions(shard_of(sub.id, wiring.DUE_SHARDS), NOW, 100)]
    assert private_store.next_due_after(NOW) == NOW + timedelta(days=9)


def test_due_subscriptions_respects_the_limit_across_pages(private_store, uid):
    ids = []
    for n in range(40):
        s = active_due_at(uid, n, NOW - timedelta(minutes=n + 1))
        private_store.create_subscription(s, None, PREFIX)
        ids.append(s.id)
    by_shard: dict[int, set[str]] = {}
    for i in ids:
        by_shard.setdefault(shard_of(i, wiring.DUE_SHARDS), set()).add(i)

    for shard, members in by_shard.items():
        everything = private_store.due_subscriptions(shard, NOW, 1000)
        assert {s for s, _ in everything} == members
        assert [d for _, d in everything] == sorted(d for _, d in everything)  # oldest first
        assert private_store.due_subscriptions(shard, NOW, 2) == everything[:2]


# ----------------------------------------------------------------------------- webhook events


def _record(event_id: str, status: str = "received", payload: str = '{"id": "x"}') -> WebhookRecord:
    return WebhookRecord(id=event_id, type="customer.created", status=status, payload=payload, received_at=NOW)


def test_record_webhook_stores_an_event_once(store, ddb, table, uid):
    first = _record(f"evt_{uid}", payload='{"first": true}')

    assert store.record_webhook(first) is None
    again = store.record_webhook(_record(f"evt_{uid}", status="processed", payload='{"second": true}'))

    assert again == first
    assert store.get_webhook(f"evt_{uid}") == first
    item = raw(ddb, table, f"WHEVT#evt_{uid}", "EVENT")
    assert int(item["expires_at"]["N"]) == int((NOW + WEBHOOK_RETENTION).timestamp())  # TTL: 30 days


def test_mark_webhook_sets_the_final_status_once(store, uid):
    store.record_webhook(_record(f"evt_{uid}"))

    assert store.mark_webhook(f"evt_{uid}", "processed", "applied") is True
    assert store.mark_webhook(f"evt_{uid}", "processed", "again") is False
    assert store.mark_webhook(f"evt_{uid}", "ignored", "late") is False

    stored = store.get_webhook(f"evt_{uid}")
    assert stored is not None and (stored.status, stored.note) == ("processed", "applied")
    assert store.mark_webhook(f"evt_unknown_{uid}", "processed") is False  # nothing is created
    assert store.get_webhook(f"evt_unknown_{uid}") is None


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
