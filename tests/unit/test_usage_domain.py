"""Usage-based billing rules (kassa.domain.usage): aggregations, event validation, metered prices
with unit_amount_decimal and tiers, the in-arrears line."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.domain.catalog import Price, Recurring, UsageType
from kassa.domain.errors import InvalidInput
from kassa.domain.items import SubscriptionItem
from kassa.domain.periods import Interval, Period
from kassa.domain.pricing import PriceTerms, exact_total, price_total
from kassa.domain.usage import (
    Aggregation,
    Meter,
    MeterEvent,
    MeterStatus,
    UsageState,
    aggregate,
    fold,
    parse_event,
    threshold_reached,
    usage_amount,
    usage_line,
)

NOW = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


def _event(identifier: str, value: int, at: datetime = NOW, unique: str | None = None) -> MeterEvent:
    return MeterEvent(
        event_name="api_call", meter="mtr_1", customer="cus_1", identifier=identifier, timestamp=at, value=value,
        unique=unique,
    )  # fmt: skip


def _meter(aggregation: Aggregation = Aggregation.SUM, **extra: Any) -> Meter:
    return Meter(id="mtr_1", event_name="api_call", display_name="API calls", aggregation=aggregation, created=NOW,
                 **extra)  # fmt: skip


# ---------------------------------------------------------------- aggregations


def test_lagos_published_example_two_events_of_one_user():
    """Lago's billable-metric docs: two events from one user with values 10 and 20 → count 2, sum 30,
    max 20, unique count (of the user) 1, latest = the later one (20)."""
    events = [
        _event("evt_1", 10, NOW - timedelta(minutes=2), unique="user_1"),
        _event("evt_2", 20, NOW - timedelta(minutes=1), unique="user_1"),
    ]
    assert aggregate(Aggregation.COUNT, events) == 2
    assert aggregate(Aggregation.SUM, events) == 30
    assert aggregate(Aggregation.MAX, events) == 20
    assert aggregate(Aggregation.UNIQUE_COUNT, events) == 1
    assert aggregate(Aggregation.LATEST, events) == 20


def test_latest_is_by_event_time_not_by_arrival():
    late_arrival = [_event("b", 20, NOW - timedelta(minutes=5)), _event("a", 10, NOW)]
    assert aggregate(Aggregation.LATEST, late_arrival) == 10
    # a tie on the timestamp is broken by the identifier, so any arrival order agrees
    tie = [_event("a", 1), _event("b", 2)]
    assert aggregate(Aggregation.LATEST, tie) == aggregate(Aggregation.LATEST, tie[::-1]) == 2


def test_duplicates_count_once():
    events = [_event("evt_1", 10), _event("evt_1", 10), _event("evt_2", 5)]
    assert aggregate(Aggregation.COUNT, events) == 2
    assert aggregate(Aggregation.SUM, events) == 15


def test_no_events_is_zero_for_every_aggregation():
    for aggregation in Aggregation:
        assert aggregate(aggregation, []) == 0


def test_fold_counts_writes_and_distinct_values():
    seen: set[str] = set()
    state = fold(UsageState(), [_event("a", 3, unique="u1"), _event("b", 4, unique="u2")], seen)
    state = fold(state, [_event("c", 1, unique="u1")], seen)
    assert (state.count, state.sum, state.max, state.unique, state.seq) == (3, 8, 4, 2, 3)


EVENTS = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 1000), st.integers(0, 3600), st.sampled_from(["u1", "u2", "u3"])),
    min_size=0,
    max_size=30,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_shuffle_and_duplication_of_an_event_set_aggregates_the_same(raw, rng: random.Random, copies):
    events = [_event(f"evt_{i}", v, NOW - timedelta(seconds=s), unique=u) for i, v, s, u in raw]
    delivered = events + [rng.choice(events) for _ in range(copies * len(events) // 2)] if events else []
    rng.shuffle(delivered)
    for aggregation in Aggregation:
        assert aggregate(aggregation, delivered) == aggregate(aggregation, events)


# ---------------------------------------------------------------- event validation


def _parse(raw: dict[str, Any], meter: Meter | None = None, prefix: str = "events[3].") -> MeterEvent:
    found = meter or _meter()
    return parse_event(raw, lambda name: found if name == found.event_name else None, NOW, prefix)


GOOD = {"event_name": "api_call", "customer": "cus_1", "identifier": "req_1", "payload": {"value": 3}}


def test_a_valid_event_defaults_its_timestamp_to_now():
    event = _parse(GOOD)
    assert event.timestamp == NOW and event.value == 3 and event.meter == "mtr_1"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"event_name": None}, "events[3].event_name"),
        ({"customer": ""}, "events[3].customer"),
        ({"identifier": None}, "events[3].identifier"),
        ({"identifier": "x" * 101}, "events[3].identifier"),
        ({"payload": {}}, "events[3].payload.value"),
        ({"payload": {"value": "ten"}}, "events[3].payload.value"),
        ({"payload": {"value": 1.5}}, "events[3].payload.value"),
        ({"payload": {"value": True}}, "events[3].payload.value"),
        ({"payload": {"value": -1}}, "events[3].payload.value"),
        ({"payload": "x"}, "events[3].payload"),
        ({"timestamp": (NOW - timedelta(days=35, seconds=1)).isoformat()}, "events[3].timestamp"),
        ({"timestamp": int((NOW + timedelta(minutes=5, seconds=1)).timestamp())}, "events[3].timestamp"),
        ({"timestamp": "yesterday"}, "events[3].timestamp"),
        ({"timestamp": "2026-04-20T10:00:00"}, "events[3].timestamp"),
        ({"extra": 1}, "events[3].extra"),
    ],
)
def test_a_bad_event_is_refused_naming_the_field_and_its_index(change, param):
    raw = {**GOOD, **change}
    with pytest.raises(InvalidInput) as raised:
        _parse({k: v for k, v in raw.items() if v is not None or k not in change} if change != {} else raw)
    assert raised.value.param == param


def test_an_unknown_meter_is_a_400_naming_event_name():
    with pytest.raises(InvalidInput) as raised:
        _parse({**GOOD, "event_name": "nope"})
    assert raised.value.param == "events[3].event_name" and raised.value.code == "resource_missing"


def test_an_archived_meter_refuses_events():
    with pytest.raises(InvalidInput) as raised:
        _parse(GOOD, _meter(status=MeterStatus.INACTIVE))
    assert raised.value.param == "events[3].event_name"


def test_the_window_edges_are_accepted():
    assert _parse({**GOOD, "timestamp": (NOW - timedelta(days=35)).isoformat()}).timestamp == NOW - timedelta(days=35)
    assert _parse({**GOOD, "timestamp": int((NOW + timedelta(minutes=5)).timestamp())}).timestamp == NOW + timedelta(
        minutes=5
    )


def test_count_needs_no_value_and_unique_count_needs_its_property():
    assert _parse({**GOOD, "payload": {}}, _meter(Aggregation.COUNT)).value == 0
    meter = _meter(Aggregation.UNIQUE_COUNT, value_property="user")
    assert _parse({**GOOD, "payload": {"user": 42}}, meter).unique == "42"
    with pytest.raises(InvalidInput) as raised:
        _parse({**GOOD, "payload": {"value": 1}}, meter)
    assert raised.value.param == "events[3].payload.user"


def test_a_string_of_digits_is_a_whole_number():
    assert _parse({**GOOD, "payload": {"value": "12"}}).value == 12


# ---------------------------------------------------------------- metered prices


def _metered(currency: str = "EUR", **terms: Any) -> Price:
    return Price(id="price_m", product="prod_m", currency=currency, created=NOW,
                 recurring=Recurring(interval=Interval.MONTH, usage_type=UsageType.METERED, meter="mtr_1"),
                 **terms)  # fmt: skip


def test_a_metered_price_needs_a_meter_and_no_trial():
    with pytest.raises(InvalidInput) as raised:
        Recurring(interval=Interval.MONTH, usage_type=UsageType.METERED)
    assert raised.value.param == "recurring.meter"
    with pytest.raises(InvalidInput) as raised:
        Recurring(interval=Interval.MONTH, meter="mtr_1")
    assert raised.value.param == "recurring.meter"


@pytest.mark.parametrize(
    ("currency", "decimal", "calls", "amount"),
    [
        ("EUR", "0.05", 12_345, 617),  # 617.25 cents → 617
        ("EUR", "0.05", 12_350, 618),  # 617.5 → 618 (half up, once per line)
        ("JPY", "0.3", 1_005, 302),  # 301.5 yen → 302
        ("KWD", "0.0125", 999, 12),  # 12.4875 fils → 12
    ],
)
def test_unit_amount_decimal_is_exact_and_rounded_once_per_line(currency, decimal, calls, amount):
    price = _metered(currency, unit_amount_decimal=decimal)
    assert exact_total(price.terms, calls) == Fraction(decimal) * calls
    assert price.priced(calls).amount == amount


def test_graduated_tiers_with_sub_cent_prices_round_once_over_all_tiers():
    """€0.002 per API call for the first 10,000 and €0.001 beyond (0.2 and 0.1 cents): 10,001 calls
    cost 2000 + 0.1 = 2000.1 cents → 2000, the tiers' exact parts added before the one rounding."""
    terms = PriceTerms.parse(
        billing_scheme="tiered",
        tiers_mode="graduated",
        tiers=[{"up_to": 10_000, "unit_amount_decimal": "0.2"}, {"up_to": "inf", "unit_amount_decimal": "0.1"}],
    )
    assert price_total(terms, 10_001).amount == 2000
    assert price_total(terms, 10_005).amount == 2001  # 2000.5 → 2001
    priced = price_total(terms, 10_005)
    assert [t.unit_amount_decimal for t in priced.tiers] == ["0.2", "0.1"]


def test_kill_bill_style_usage_tiers_in_blocks_all_tiers_and_top_tier():
    """Kill Bill's consumable usage in arrears, tiers of blocks: tier 1 is 10 blocks of 100 units at
    1.50 a block, tier 2 blocks of 100 at 1.00 (in cents per unit: 1.5 and 1). For 1,500 units (15
    blocks): ALL_TIERS (each block in its tier, kassa's graduated) = 10 × 150 + 5 × 100 = 2000;
    TOP_TIER (every block at the highest tier reached, kassa's volume) = 15 × 100 = 1500."""
    tiers = [{"up_to": 1000, "unit_amount_decimal": "1.5"}, {"up_to": "inf", "unit_amount": 1}]
    all_tiers = PriceTerms.parse(billing_scheme="tiered", tiers_mode="graduated", tiers=tiers)
    top_tier = PriceTerms.parse(billing_scheme="tiered", tiers_mode="volume", tiers=tiers)
    assert price_total(all_tiers, 1500).amount == 2000
    assert price_total(top_tier, 1500).amount == 1500
    assert price_total(all_tiers, 1000).amount == price_total(top_tier, 1000).amount == 1500


def test_package_pricing_of_usage():
    price = _metered(unit_amount=100, transform_quantity={"divide_by": 1000, "round": "up"})
    assert price.priced(1).amount == 100 and price.priced(2001).amount == 300


# ---------------------------------------------------------------- the in-arrears line


def _item(**terms: Any) -> SubscriptionItem:
    return SubscriptionItem.from_price(_metered(**terms), 1, item_id="si_m")


PERIOD = Period(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))


def test_a_metered_item_bills_nothing_in_advance():
    item = _item(unit_amount_decimal="0.2")
    assert item.metered and item.amount.amount == 0


def test_the_usage_line_bills_the_period_and_remembers_what_it_billed():
    item = _item(unit_amount_decimal="0.2")
    line = usage_line(item, "API calls", PERIOD, UsageState(count=3001, sum=3001, seq=7), Aggregation.COUNT)
    assert line.amount == 600  # 600.2 → 600
    assert line.quantity == 3001 and line.unit_amount_decimal == "0.2"
    assert line.usage == {"meter": "mtr_1", "period_start": "2026-04-01T00:00:00Z", "quantity": 3001, "seq": 7,
                          "close": True, "late": False}  # fmt: skip


def test_after_a_threshold_invoice_the_rest_only_is_billed_and_the_period_adds_up():
    item = _item(unit_amount_decimal="0.3")
    first = usage_amount(item, 1001, 0)  # 300.3 → 300
    rest = usage_amount(item, 2003, 1001)  # 600.9 → 601, minus 300
    assert first + rest == item.priced_usage(2003).amount == 601


def test_a_late_adjustment_line_bills_the_difference():
    item = _item(unit_amount=2)
    line = usage_line(
        item, "API calls", PERIOD, UsageState(count=105, seq=9, billed_quantity=100, closed=True), Aggregation.COUNT,
        late=True,
    )  # fmt: skip
    assert line.amount == 10 and line.quantity == 5 and line.description.startswith("Late usage: 5 ×")


def test_threshold_reached():
    assert threshold_reached(1000, 1000) and not threshold_reached(999, 1000) and not threshold_reached(5, None)
