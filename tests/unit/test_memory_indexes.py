"""The in-memory store's due and dunning indexes, kept in order as objects are stored
(``kassa.adapters.memory._Indexed``): after any sequence of writes and deletes, the sweeps and the
clock's probes answer what a scan of every stored object answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from fakes import make_world

from kassa.adapters.memory import MemoryStore, shard_of
from kassa.domain.customer import card_expiry_notice_at
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.subscription import Status

START = datetime(2027, 1, 5, 9, tzinfo=UTC)
SHARDS = 4


def _scan_due(store: MemoryStore, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
    cutoff = now.replace(microsecond=0)
    due = sorted(
        (s.due_at.replace(microsecond=0), s.id)
        for s in store.subscriptions.values()
        if s.due_at is not None and s.due_at.replace(microsecond=0) <= cutoff and shard_of(s.id, SHARDS) == shard
    )
    return [(sub_id, at) for at, sub_id in due[:limit]]


def _dunning_entries(store: MemoryStore) -> list[tuple[datetime, str]]:
    entries = [
        (i.next_dunning_at.replace(microsecond=0), i.id)
        for i in store.invoices.values()
        if i.next_dunning_at is not None and i.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
    ]
    notices = ((card_expiry_notice_at(c), c.id) for c in store.customers.values())
    entries += [(at.replace(microsecond=0), key) for at, key in notices if at is not None]
    entries += [(at.replace(microsecond=0), key) for key, at in store.timers.items()]
    return entries


def _scan_dunning(store: MemoryStore, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
    cutoff = now.replace(microsecond=0)
    due = sorted((at, key) for at, key in _dunning_entries(store) if at <= cutoff and shard_of(key, SHARDS) == shard)
    return [(key, at) for at, key in due[:limit]]


@pytest.mark.parametrize("seed", range(5))
def test_the_ordered_indexes_answer_what_a_scan_of_every_object_answers(seed: int) -> None:
    world = make_world(START)
    _, price = world.catalog(1500, "eur")
    checkout = world.active_subscription(price)
    store = world.store
    store.due_shards = SHARDS
    sub, invoice = store.get_subscription(checkout.subscription.id), store.get_invoice(checkout.invoice.id)
    rng = random.Random(seed)

    def moment() -> datetime:  # whole seconds and fractions, ties included
        return START + timedelta(hours=rng.randrange(0, 200), microseconds=rng.choice([0, 0, 250_000]))

    for step in range(400):
        n = rng.randrange(40)
        action = rng.random()
        if action < 0.4:
            status = rng.choice([Status.ACTIVE, Status.ACTIVE, Status.CANCELED])
            store.subscriptions[f"sub_{n}"] = sub.model_copy(
                update={"id": f"sub_{n}", "status": status, "current_period_end": moment(), "customer": f"cus_{n % 7}"}
            )
        elif action < 0.7:
            status = rng.choice([InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE])
            store.invoices[f"in_{n}"] = invoice.model_copy(
                update={"id": f"in_{n}", "status": status, "next_dunning_at": rng.choice([None, moment()])}
            )
        elif action < 0.8:
            store.timers[f"timer_{n}"] = moment()
        elif action < 0.9:
            store.subscriptions.pop(f"sub_{n}", None)
        else:
            store.invoices.pop(f"in_{n}", None)
        if step % 20:
            continue
        for index in (store.subscriptions, store.invoices, store.customers):
            assert index.ordered == sorted((at, key) for key, at in index.index.items())
        now, limit = moment(), rng.choice([1, 3, 100])
        for shard in range(SHARDS):
            assert store.due_subscriptions(shard, now, limit) == _scan_due(store, shard, now, limit)
            assert store.due_dunning(shard, now, limit) == _scan_dunning(store, shard, now, limit)
        due_ats = [s.due_at.replace(microsecond=0) for s in store.subscriptions.values() if s.due_at is not None]
        assert store.next_due_after(now) == min(due_ats, default=None)
        assert store.next_dunning_after(now) == min((at for at, _ in _dunning_entries(store)), default=None)
