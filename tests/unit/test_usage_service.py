"""Usage-based billing through the real services over the in-memory store (kassa.services.usage):
ingestion, billing in arrears at renewal, late events, thresholds, the upcoming invoice."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from fakes import World, make_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kassa.domain.catalog import Price, Recurring, UsageType
from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import BillingReason
from kassa.domain.periods import Interval
from kassa.domain.pricing import PriceTerms
from kassa.domain.usage import Aggregation
from kassa.services.catalog import create_price, create_product
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.invoicing import upcoming_invoice
from kassa.services.renewals import process_due
from kassa.services.usage import bill_threshold, create_meter, ingest, subscription_usage

OREGON = Address(country="US", state="OR")  # no sales tax: the amounts are the prices'
# €0.002 per API call (0.2 cents) for the first 10,000 calls, €0.001 beyond: graduated
API_TIERS = PriceTerms.parse(
    billing_scheme="tiered",
    tiers_mode="graduated",
    tiers=[{"up_to": 10_000, "unit_amount_decimal": "0.2"}, {"up_to": "inf", "unit_amount_decimal": "0.1"}],
)


def hybrid(
    world: World, aggregation: Aggregation = Aggregation.COUNT, terms: PriceTerms = API_TIERS
) -> tuple[Price, Price]:
    meter = create_meter(world.billing, event_name="api_call", display_name="API calls", aggregation=aggregation,
                         value_property=None)  # fmt: skip
    base = create_price(world.billing, create_product(world.billing, "Platform").id, "eur", 2900,
                        Recurring(interval=Interval.MONTH))  # fmt: skip
    calls = create_price(world.billing, create_product(world.billing, "API calls").id, "eur", terms,
                         Recurring(interval=Interval.MONTH, usage_type=UsageType.METERED, meter=meter.id))  # fmt: skip
    return base, calls


def subscribe(world: World, base: Price, calls: Price, **kwargs: Any) -> str:
    result = start_checkout(world.billing, items=[(base.id, None), (calls.id, None)], email="ada@example.com",
                            name="Ada", address=OREGON, **kwargs)  # fmt: skip
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    return result.subscription.id


def events(customer: str, n: int, start: int = 0, **payload: Any) -> list[dict[str, Any]]:
    return [
        {"event_name": "api_call", "customer": customer, "identifier": f"req_{i}", "payload": payload}
        for i in range(start, start + n)
    ]


def send(world: World, batch: list[dict[str, Any]]) -> Any:
    out = None
    for k in range(0, len(batch), 100):
        out = ingest(world.billing, batch[k : k + 100], batch=True)
    return out


def renew(world: World, sub_id: str) -> Any:
    sub = world.store.get_subscription(sub_id)
    world.clock.set(sub.current_period_end)
    process_due(world.billing, sub_id)
    return world.store.get_invoice(world.store.get_subscription(sub_id).latest_invoice)


def test_the_first_invoice_charges_the_fixed_fee_only_and_metered_items_take_no_quantity():
    world = make_world()
    base, calls = hybrid(world)
    with pytest.raises(InvalidInput) as raised:
        start_checkout(world.billing, items=[(base.id, None), (calls.id, 3)], email="a@example.com", address=OREGON)
    assert raised.value.param == "items[1].quantity"
    sub_id = subscribe(world, base, calls)
    first = world.store.get_invoice(world.store.get_subscription(sub_id).latest_invoice)
    assert [line.amount for line in first.lines] == [2900] and first.total == 2900


def test_a_hybrid_plan_bills_the_periods_usage_in_arrears_with_the_next_fixed_fee():
    world = make_world()
    base, calls = hybrid(world)
    sub_id = subscribe(world, base, calls)
    customer = world.store.get_subscription(sub_id).customer
    send(world, events(customer, 12_345))

    usage = subscription_usage(world.billing, sub_id)["data"][0]
    assert (usage["quantity"], usage["amount"]) == (12_345, 2235)  # 10,000 × 0.2 + 2,345 × 0.1 = 2234.5 → 2235

    invoice = renew(world, sub_id)

    usage_line = next(line for line in invoice.lines if line.usage)
    assert usage_line.amount == 2235 and usage_line.quantity == 12_345
    assert [t["quantity"] for t in usage_line.tiers] == [10_000, 2_345]
    fixed = next(line for line in invoice.lines if not line.usage)
    assert fixed.amount == 2900 and fixed.period_start == usage_line.period_end  # next period in advance
    assert invoice.total == 2900 + 2235
    # the next period starts empty
    assert subscription_usage(world.billing, sub_id)["data"][0]["quantity"] == 0


def test_a_duplicate_batch_changes_nothing():
    world = make_world()
    base, calls = hybrid(world)
    sub_id = subscribe(world, base, calls)
    customer = world.store.get_subscription(sub_id).customer
    batch = events(customer, 100)
    first = ingest(world.billing, batch, batch=True)
    again = ingest(world.billing, batch, batch=True)
    assert {r["status"] for r in first.results} == {"accepted"}
    assert {r["status"] for r in again.results} == {"duplicate"} and all(r["duplicate"] for r in again.results)
    assert subscription_usage(world.billing, sub_id)["data"][0]["quantity"] == 100


def test_a_late_event_lands_on_the_next_invoice_as_an_adjustment():
    world = make_world()
    base, calls = hybrid(world, terms=PriceTerms(unit_amount=2))
    sub_id = subscribe(world, base, calls)
    customer = world.store.get_subscription(sub_id).customer
    period_end = world.store.get_subscription(sub_id).current_period_end
    send(world, events(customer, 10))
    first = renew(world, sub_id)
    assert next(line for line in first.lines if line.usage).amount == 20

    world.clock.advance(timedelta(hours=2))
    late = [{**e, "timestamp": (period_end - timedelta(minutes=1)).isoformat()} for e in events(customer, 3, 100)]
    answer = ingest(world.billing, late, batch=True)
    assert {r["status"] for r in answer.results} == {"late"} and all(r["late"] for r in answer.results)
    send(world, events(customer, 4, 200))  # this period's own usage

    second = renew(world, sub_id)

    usage_lines = [line for line in second.lines if line.usage]
    assert [(line.description.startswith("Late usage"), line.amount) for line in usage_lines] == [(True, 6), (False, 8)]
    assert second.total == 2900 + 6 + 8
    assert world.store.late_usage(sub_id, calls.recurring.meter) == []
    # replaying the late events again changes nothing
    assert {r["status"] for r in ingest(world.billing, late, batch=True).results} == {"duplicate"}


def test_refused_events_are_listed_by_index_and_reported():
    world = make_world()
    base, calls = hybrid(world, Aggregation.SUM)
    sub_id = subscribe(world, base, calls)
    customer = world.store.get_subscription(sub_id).customer
    batch = [
        {"event_name": "api_call", "customer": customer, "identifier": "ok", "payload": {"value": 2}},
        {"event_name": "api_call", "customer": "cus_nope", "identifier": "x1", "payload": {"value": 2}},
        {"event_name": "nope", "customer": customer, "identifier": "x2", "payload": {"value": 2}},
        {"event_name": "api_call", "customer": customer, "identifier": "x3", "payload": {}},
        {"event_name": "api_call", "customer": customer, "identifier": "x4", "payload": {"value": "a lot"}},
        {"event_name": "api_call", "customer": customer, "identifier": "x5", "payload": {"value": 1},
         "timestamp": (world.clock.now() - timedelta(days=36)).isoformat()},
        {"event_name": "api_call", "customer": customer, "identifier": "x6", "payload": {"value": 1},
         "timestamp": int((world.clock.now() + timedelta(minutes=6)).timestamp())},
    ]  # fmt: skip
    out = ingest(world.billing, batch, batch=True)
    assert [r["index"] for r in out.results] == [0]
    assert [(r.index, r.param) for r in out.rejected] == [
        (1, "events[1].customer"),
        (2, "events[2].event_name"),
        (3, "events[3].payload.value"),
        (4, "events[4].payload.value"),
        (5, "events[5].timestamp"),
        (6, "events[6].timestamp"),
    ]
    report = [e for e in world.publisher.events if e.type == "billing.meter.error_report_triggered"]
    assert len(report) == 1 and len(report[0].data["errors"]) == 6
    with pytest.raises(InvalidInput) as raised:  # a 400 (Stripe's resource_missing code) naming the field
        ingest(world.billing, batch[1], batch=False)
    assert raised.value.param == "customer" and raised.value.code == "resource_missing"
    with pytest.raises(InvalidInput) as raised:
        ingest(world.billing, events(customer, 101), batch=True)
    assert raised.value.param == "events"


def test_a_customer_without_a_metered_subscription_is_refused_naming_customer():
    world = make_world()
    base, _ = hybrid(world)
    result = start_checkout(world.billing, items=[(base.id, None)], email="b@example.com", address=OREGON)
    with pytest.raises(InvalidInput) as raised:
        ingest(world.billing, events(result.subscription.customer, 1)[0], batch=False)
    assert raised.value.param == "customer"


def test_the_upcoming_invoice_includes_the_usage_to_date():
    world = make_world()
    base, calls = hybrid(world)
    sub_id = subscribe(world, base, calls)
    customer = world.store.get_subscription(sub_id).customer
    send(world, events(customer, 500))
    preview = upcoming_invoice(world.billing, world.store.get_subscription(sub_id))
    assert sorted(line.amount for line in preview.lines) == [100, 2900]
    assert renew(world, sub_id).total == preview.total


def test_usage_thresholds_invoice_the_usage_so_far_and_the_period_end_only_the_rest():
    world = make_world()
    base, calls = hybrid(world, terms=PriceTerms(unit_amount_decimal="0.3"))
    sub_id = subscribe(world, base, calls, billing_thresholds={"amount_gte": 300})
    customer = world.store.get_subscription(sub_id).customer
    out = send(world, events(customer, 998))
    assert out.thresholds == []  # 998 calls: 299.4 → 299 cents, below 300
    out = send(world, events(customer, 3, 998))  # 1,001 calls: 300.3 → 300
    assert out.thresholds == [sub_id]

    assert bill_threshold(world.billing, sub_id) == "paid"
    assert bill_threshold(world.billing, sub_id) == "below_threshold"  # asked again: nothing more
    threshold = world.store.get_invoice(world.store.get_subscription(sub_id).latest_invoice)
    assert threshold.billing_reason is BillingReason.SUBSCRIPTION_THRESHOLD and threshold.total == 300

    send(world, events(customer, 1002, 1001))  # 2,003 calls in the period: 600.9 → 601 in all
    final = renew(world, sub_id)
    usage_line = next(line for line in final.lines if line.usage)
    assert usage_line.amount == 301 and threshold.total + usage_line.amount == 601


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.sampled_from(list(Aggregation)))
def test_any_shuffle_and_duplication_of_the_same_events_gives_the_same_invoice(rng: random.Random, aggregation):
    def invoice_of(order: list[dict[str, Any]]) -> Any:
        world = make_world()
        base, calls = hybrid(world, aggregation, terms=PriceTerms(unit_amount=3))
        sub_id = subscribe(world, base, calls)
        customer = world.store.get_subscription(sub_id).customer
        batch = [{**e, "customer": customer} for e in order]
        for k in range(0, len(batch), 7):
            ingest(world.billing, batch[k : k + 7], batch=True)
        invoice = renew(world, sub_id)
        return [(line.amount, line.quantity) for line in invoice.lines], invoice.total

    base_time = make_world().clock.now()
    distinct = [
        {"event_name": "api_call", "customer": "?", "identifier": f"e{i}",
         "timestamp": (base_time + timedelta(seconds=rng.randint(0, 50))).isoformat(),
         "payload": {"value": rng.randint(0, 30)}}
        for i in range(20)
    ]  # fmt: skip
    shuffled = distinct + rng.choices(distinct, k=15)
    rng.shuffle(shuffled)
    assert invoice_of(shuffled) == invoice_of(distinct)


def test_removing_a_metered_item_mid_period_bills_the_usage_so_far():
    from kassa.domain.items import ItemChange
    from kassa.services.plan_changes import change_plan

    world = make_world()
    base, calls = hybrid(world, terms=PriceTerms(unit_amount=2))
    sub_id = subscribe(world, base, calls)
    sub = world.store.get_subscription(sub_id)
    send(world, events(sub.customer, 40))
    world.clock.advance(timedelta(days=10))
    metered = next(item for item in sub.items if item.metered)

    changed = change_plan(world.billing, sub_id, items=[ItemChange(id=metered.id, deleted=True)])

    assert changed.invoice is not None
    assert [(line.amount, line.quantity) for line in changed.invoice.lines if line.usage] == [(80, 40)]
    assert changed.invoice.total == 80
    with pytest.raises(InvalidInput) as raised:  # the meter no longer bills this customer
        ingest(world.billing, events(sub.customer, 1, 500)[0], batch=False)
    assert raised.value.param == "customer"
    assert [line.usage for line in renew(world, sub_id).lines] == [None]  # the fixed fee only


def test_switching_a_metered_item_to_another_price_bills_the_usage_so_far_at_the_old_price():
    from kassa.domain.items import ItemChange
    from kassa.services.plan_changes import change_plan

    world = make_world()
    base, calls = hybrid(world, terms=PriceTerms(unit_amount=2))
    cheaper = create_price(world.billing, calls.product, "eur", 1, calls.recurring)
    sub_id = subscribe(world, base, calls)
    sub = world.store.get_subscription(sub_id)
    send(world, events(sub.customer, 40))
    world.clock.advance(timedelta(days=10))
    metered = next(item for item in sub.items if item.metered)

    changed = change_plan(world.billing, sub_id, items=[ItemChange(id=metered.id, price=cheaper.id)])

    assert [line.amount for line in changed.invoice.lines if line.usage] == [80]  # 40 × 2, the old price
    send(world, events(sub.customer, 10, 40))
    final = renew(world, sub_id)
    assert [(line.quantity, line.amount) for line in final.lines if line.usage] == [(50, 10)]  # 10 more × 1


def test_a_customer_usage_alert_publishes_usage_threshold_reached_once_per_period():
    from kassa.services.usage import set_usage_alert

    world = make_world()
    base, calls = hybrid(world, terms=PriceTerms(unit_amount=2))
    sub_id = subscribe(world, base, calls)
    customer = world.store.get_subscription(sub_id).customer
    set_usage_alert(world.billing, customer, 100)
    send(world, events(customer, 49))
    assert "usage.threshold_reached" not in world.publisher.types()
    send(world, events(customer, 1, 49))  # 50 calls × 2 = 100
    send(world, events(customer, 5, 50))
    alerts = [e for e in world.publisher.events if e.type == "usage.threshold_reached"]
    assert len({e.id for e in alerts}) == 1 and alerts[0].data["amount"] == 100
