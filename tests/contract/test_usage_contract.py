"""The BillingStore contract for usage (meters, aggregates, dedupe, late events, billing in arrears),
run on MemoryStore and on DynamoStore over a private moto table (the ``store`` fixture of conftest.py).

On DynamoDB each event is one conditional dedupe put and its aggregate's update, in one transaction
(atomic counters for count and sum, conditional writes for max and latest, one item per distinct
value for unique_count): a worker that crashes after writing and is run again, an SQS redelivery or
a replayed batch find the identifiers and count nothing twice.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from integration.conftest import START

from contract.test_store_contract import PREFIX, created, cycle
from kassa.domain.errors import AlreadyExists, Conflict
from kassa.domain.invoice import InvoiceLine
from kassa.domain.items import SubscriptionItem
from kassa.domain.periods import Period
from kassa.domain.subscription import Status
from kassa.domain.usage import Aggregation, Meter, MeterEvent, MeterStatus, UsageState, aggregate, usage_line
from kassa.services.ports import UsageKey, UsageOutcome, UsageWrite

NOW = START
PERIOD = NOW.replace(microsecond=0)


def meter(n: int = 0, aggregation: Aggregation = Aggregation.SUM, name: str | None = None) -> Meter:
    return Meter(id=f"mtr_c{n}", event_name=name or f"calls_{n}", display_name="API calls", aggregation=aggregation,
                 created=NOW)  # fmt: skip


def write(
    i: int | str,
    value: int = 1,
    *,
    aggregation: Aggregation = Aggregation.SUM,
    sub: str = "sub_u",
    period=PERIOD,
    unique: str | None = None,
    at=None,
    customer: str = "cus_u",
) -> UsageWrite:
    event = MeterEvent(event_name="calls_0", meter="mtr_c0", customer=customer, identifier=f"evt_{i}",
                       timestamp=at or NOW + timedelta(seconds=i if isinstance(i, int) else 0),
                       value=value, unique=unique)  # fmt: skip
    return UsageWrite(event, UsageKey(sub, "mtr_c0", period), aggregation, NOW + timedelta(days=70))


def test_a_meter_is_stored_once_per_event_name_and_found_by_it(store):
    store.put_meter(meter(0))
    assert store.get_meter("mtr_c0") == meter(0)
    assert store.find_meter("calls_0") == meter(0)
    assert store.find_meter("nope") is None
    with pytest.raises(AlreadyExists) as raised:
        store.put_meter(meter(1, name="calls_0"))
    assert raised.value.param == "event_name"
    store.put_meter(meter(2))
    assert [m.id for m in store.list_meters(10, None).items] == ["mtr_c2", "mtr_c0"]
    archived = store.save_meter(store.get_meter("mtr_c0").model_copy(update={"status": MeterStatus.INACTIVE}))
    assert archived.version == 1 and store.find_meter("calls_0").status.value == "inactive"
    with pytest.raises(Conflict):
        store.save_meter(meter(0))


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        (Aggregation.COUNT, 3),
        (Aggregation.SUM, 35),
        (Aggregation.MAX, 20),
        (Aggregation.LATEST, 5),
        (Aggregation.UNIQUE_COUNT, 2),
    ],
)
def test_each_aggregation_counts_an_identifier_once(store, aggregation, expected):
    base = [
        write(0, 10, aggregation=aggregation, unique="u1", at=NOW),
        write(1, 20, aggregation=aggregation, unique="u2", at=NOW + timedelta(seconds=1)),
        write(2, 5, aggregation=aggregation, unique="u1", at=NOW + timedelta(seconds=2)),
    ]
    first = store.record_usage([base[0], base[1], base[0]])  # a duplicate inside the call
    again = store.record_usage([base[2], base[1]])  # and a replay in a later call

    assert first == [UsageOutcome.ACCEPTED, UsageOutcome.ACCEPTED, UsageOutcome.DUPLICATE]
    assert again == [UsageOutcome.ACCEPTED, UsageOutcome.DUPLICATE]
    state = store.get_usage(UsageKey("sub_u", "mtr_c0", PERIOD))
    assert state.quantity(aggregation) == expected
    assert state.count == 3 and state.seq == 3


def test_an_unknown_aggregate_is_empty(store):
    assert store.get_usage(UsageKey("sub_x", "mtr_x", PERIOD)) == UsageState()
    assert store.late_usage("sub_x", "mtr_x") == []


def test_a_large_call_is_recorded_whole(store):
    """More events than one DynamoDB transaction holds (100 actions): split, each part atomic."""
    writes = [write(i, 1, aggregation=Aggregation.UNIQUE_COUNT, unique=f"u{i % 70}") for i in range(150)]
    assert set(store.record_usage(writes)) == {UsageOutcome.ACCEPTED}
    state = store.get_usage(UsageKey("sub_u", "mtr_c0", PERIOD))
    assert (state.count, state.unique) == (150, 70)
    assert set(store.record_usage(writes[::7])) == {UsageOutcome.DUPLICATE}


def test_any_shuffle_and_duplication_of_deliveries_records_the_same(store):
    rng = random.Random(7)
    events = [
        write(i, rng.randint(0, 50), aggregation=Aggregation.LATEST, at=NOW + timedelta(seconds=rng.randint(0, 5)))
        for i in range(40)
    ]
    deliveries = events + rng.choices(events, k=30)
    rng.shuffle(deliveries)
    for start in range(0, len(deliveries), 9):  # batches of 9, in any order
        store.record_usage(deliveries[start : start + 9])
    state = store.get_usage(UsageKey("sub_u", "mtr_c0", PERIOD))
    expected = [w.event for w in events]
    assert state.count == 40
    assert state.quantity(Aggregation.LATEST) == aggregate(Aggregation.LATEST, expected)
    assert state.sum == aggregate(Aggregation.SUM, expected)


def _metered_item() -> SubscriptionItem:
    from kassa.domain.catalog import Price, Recurring, UsageType
    from kassa.domain.periods import Interval

    recurring = Recurring(interval=Interval.MONTH, usage_type=UsageType.METERED, meter="mtr_c0")
    price = Price(id="price_m", product="prod_c0", currency="EUR", unit_amount_decimal="0.2", created=NOW,
                  recurring=recurring)  # fmt: skip
    return SubscriptionItem.from_price(price, 1, item_id="si_m")


def _renew_with(store, usage: list[InvoiceLine]):
    sub, _ = created(store)
    active = store.save_subscription(sub.transition(Status.ACTIVE, NOW))
    moved, draft = cycle(active)
    return active, moved, draft.model_copy(update={"lines": [*draft.lines, *usage]})


def test_renewing_records_the_usage_billed_and_closes_the_period(store):
    active, moved, _ = _renew_with(store, [])
    period = Period(active.current_period_start, active.current_period_end)
    store.record_usage([write(i, sub=active.id, period=period.start) for i in range(5)])
    key = UsageKey(active.id, "mtr_c0", period.start)
    line = usage_line(_metered_item(), "API calls", period, store.get_usage(key), Aggregation.COUNT)
    draft = cycle(active)[1]
    draft = draft.model_copy(update={"lines": [*draft.lines, line]})

    store.renew(moved, draft, PREFIX)

    state = store.get_usage(key)
    assert state.closed and state.billed_quantity == 5 and state.count == 5
    # an event of that period now is late: counted there, and its period listed for the next invoice
    assert store.record_usage([write(9, sub=active.id, period=period.start)]) == [UsageOutcome.LATE]
    assert store.get_usage(key).count == 6
    assert store.late_usage(active.id, "mtr_c0") == [period.start]


def test_a_late_adjustment_billed_leaves_the_late_list(store):
    active, moved, _ = _renew_with(store, [])
    period = Period(active.current_period_start, active.current_period_end)
    key = UsageKey(active.id, "mtr_c0", period.start)
    item = _metered_item()
    first = usage_line(item, "API calls", period, store.get_usage(key), Aggregation.COUNT)  # no usage: closes
    draft = cycle(active)[1]
    renewed, _ = store.renew(moved, draft.model_copy(update={"lines": [*draft.lines, first]}), PREFIX)
    store.record_usage([write(i, sub=active.id, period=period.start) for i in range(3)])
    assert store.late_usage(active.id, "mtr_c0") == [period.start]

    late = usage_line(item, "API calls", period, store.get_usage(key), Aggregation.COUNT, late=True)
    moved2, draft2 = cycle(renewed)
    store.renew(moved2, draft2.model_copy(update={"lines": [*draft2.lines, late]}), PREFIX)

    assert store.late_usage(active.id, "mtr_c0") == []
    assert store.get_usage(key).billed_quantity == 3


def test_usage_recorded_after_it_was_read_makes_the_renewal_conflict_and_write_nothing(store):
    active, moved, _ = _renew_with(store, [])
    period = Period(active.current_period_start, active.current_period_end)
    key = UsageKey(active.id, "mtr_c0", period.start)
    store.record_usage([write(0, sub=active.id, period=period.start)])
    line = usage_line(_metered_item(), "API calls", period, store.get_usage(key), Aggregation.COUNT)
    store.record_usage([write(1, sub=active.id, period=period.start)])  # arrives meanwhile
    draft = cycle(active)[1]

    with pytest.raises(Conflict):
        store.renew(moved, draft.model_copy(update={"lines": [*draft.lines, line]}), PREFIX)

    assert store.find_invoice(draft.id) is None
    assert store.get_subscription(active.id) == active
    assert not store.get_usage(key).closed
