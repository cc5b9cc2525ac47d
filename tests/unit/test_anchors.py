"""Billing-cycle anchors at checkout and backdated starts: Stripe's documented examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.anchors import (
    billing_dates,
    describe_elapsed,
    elapsed_fraction,
    next_natural_billing_date,
    plan_start,
    validate_anchor,
)
from kassa.domain.errors import InvalidInput
from kassa.domain.periods import Interval, Period, boundary
from kassa.domain.proration import (
    ImaginedIntervals,
    LineKind,
    PlanItem,
    ProrationBehavior,
    change_item,
    proration_basis,
    remaining_fraction,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def monthly(unit_amount: int = 3100, currency: str = "EUR", interval: Interval = Interval.MONTH) -> PlanItem:
    return PlanItem(
        price="price_m", product="prod_m", unit_amount=unit_amount, quantity=1, currency=currency, interval=interval
    )


# ------------------------------------------------------------------ Stripe's backdating examples
def test_backdate_to_15_feb_in_a_28_day_month_is_half_a_month() -> None:
    # "monthly on the first of the month": created on 20 Feb, anchored on 1 Mar, backdated to 15 Feb.
    plan = plan_start(
        monthly(), utc(2025, 2, 20), billing_cycle_anchor=utc(2025, 3, 1), backdate_start_date=utc(2025, 2, 15)
    )
    assert plan.fraction == Fraction(1, 2)  # 14 days of the imagined month 15 Feb → 15 Mar (28 days)
    assert [line.amount for line in plan.lines] == [1550]
    assert plan.lines[0].kind is LineKind.PARTIAL_PERIOD and plan.lines[0].proration
    assert "(14/28 days of a month)" in plan.lines[0].description
    assert plan.current_period == Period(utc(2025, 2, 15), utc(2025, 3, 1))
    assert plan.start == utc(2025, 2, 15) and plan.anchor == utc(2025, 3, 1)


def test_backdate_to_15_jan_is_17_of_31() -> None:
    plan = plan_start(
        monthly(), utc(2025, 1, 20), billing_cycle_anchor=utc(2025, 2, 1), backdate_start_date=utc(2025, 1, 15)
    )
    assert plan.fraction == Fraction(17, 31)
    assert float(plan.fraction) == pytest.approx(0.548, abs=5e-4)
    assert plan.total == 1700  # 3100 × 17/31


def test_backdate_without_anchor_charges_the_elapsed_time_and_the_first_period_from_now() -> None:
    now = utc(2025, 3, 1)
    plan = plan_start(monthly(), now, backdate_start_date=utc(2025, 2, 15))
    assert [(line.kind, line.amount) for line in plan.lines] == [
        (LineKind.PARTIAL_PERIOD, 1550),
        (LineKind.FULL_PERIOD, 3100),
    ]
    assert plan.anchor == now and plan.current_period == Period(now, utc(2025, 4, 1))


def test_backdate_over_whole_months_counts_them_whole() -> None:
    # Stripe's migration example: on 15 Oct, started 1 Sep, next billing date 1 Nov → 2 months
    plan = plan_start(
        monthly(), utc(2025, 10, 15), billing_cycle_anchor=utc(2025, 11, 1), backdate_start_date=utc(2025, 9, 1)
    )
    assert plan.fraction == 2 and plan.total == 6200
    assert "(2 months)" in plan.lines[0].description


def test_backdate_over_a_month_and_a_half() -> None:
    plan = plan_start(monthly(), utc(2025, 3, 1), backdate_start_date=utc(2025, 1, 15))
    assert plan.fraction == Fraction(3, 2)  # 15 Jan → 15 Feb, then 14 of 28 days
    assert [line.amount for line in plan.lines] == [4650, 3100]
    assert describe_elapsed(utc(2025, 1, 15), utc(2025, 3, 1), Interval.MONTH, 1) == "1 month + 14/28 days"


def test_backdating_without_charging() -> None:
    plan = plan_start(
        monthly(), utc(2025, 3, 1), backdate_start_date=utc(2025, 2, 15), proration_behavior=ProrationBehavior.NONE
    )
    assert [line.kind for line in plan.lines] == [LineKind.FULL_PERIOD]
    assert plan.start == utc(2025, 2, 15) and plan.fraction == 0


def test_backdate_in_the_future_is_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        plan_start(monthly(), utc(2025, 3, 1), backdate_start_date=utc(2025, 3, 2))
    assert error.value.param == "backdate_start_date"


# ------------------------------------------------------------------ anchor at checkout
def test_anchor_on_the_first_prorates_the_first_partial_period() -> None:
    # created 15 May, anchored on 1 Jun: 17 days of the month 15 May → 15 Jun (31 days), then full months
    plan = plan_start(monthly(), utc(2025, 5, 15), billing_cycle_anchor=utc(2025, 6, 1))
    assert plan.fraction == Fraction(17, 31) and plan.total == 1700
    assert plan.current_period == Period(utc(2025, 5, 15), utc(2025, 6, 1))
    assert billing_dates(plan.anchor, Interval.MONTH, 1, 2) == [utc(2025, 7, 1), utc(2025, 8, 1)]


def test_anchor_with_none_gives_the_first_partial_period_free() -> None:
    plan = plan_start(
        monthly(), utc(2025, 5, 15), billing_cycle_anchor=utc(2025, 6, 1), proration_behavior=ProrationBehavior.NONE
    )
    assert plan.lines == () and plan.total == 0


def test_anchor_rounds_half_up_to_the_currency() -> None:
    # 1000 ¥ for 17/31 of a month = 548.38… → 548; 999 ¥ × 1/2 (14/28 days) = 499.5 → 500
    assert plan_start(monthly(1000, "JPY"), utc(2025, 5, 15), billing_cycle_anchor=utc(2025, 6, 1)).total == 548
    assert (
        plan_start(
            monthly(999, "JPY"),
            utc(2025, 2, 20),
            billing_cycle_anchor=utc(2025, 3, 1),
            backdate_start_date=utc(2025, 2, 15),
        ).total
        == 500
    )


def test_no_anchor_no_backdate_charges_one_full_period() -> None:
    now = utc(2025, 5, 15, 9, 30, 5, 123)
    plan = plan_start(monthly(), now)
    assert plan.anchor == utc(2025, 5, 15, 9, 30, 5)  # to the second
    assert [line.kind for line in plan.lines] == [LineKind.FULL_PERIOD] and plan.total == 3100


def test_anchor_must_be_between_now_and_the_next_natural_billing_date() -> None:
    now = utc(2025, 5, 15)
    assert next_natural_billing_date(now, Interval.MONTH, 1) == utc(2025, 6, 15)
    assert validate_anchor(now, utc(2025, 6, 15), Interval.MONTH, 1) == utc(2025, 6, 15)
    for bad in (utc(2025, 6, 15, 0, 0, 1), utc(2025, 5, 14)):
        with pytest.raises(InvalidInput) as error:
            plan_start(monthly(), now, billing_cycle_anchor=bad)
        assert error.value.param == "billing_cycle_anchor"


# ------------------------------------------------------------------ anchor on Jan 31
def test_anchor_on_jan_31_bills_feb_28_mar_31_apr_30() -> None:
    assert billing_dates(utc(2025, 1, 31, 8), Interval.MONTH, 1, 4) == [
        utc(2025, 2, 28, 8),
        utc(2025, 3, 31, 8),
        utc(2025, 4, 30, 8),
        utc(2025, 5, 31, 8),
    ]
    assert billing_dates(utc(2024, 1, 31), Interval.MONTH, 1, 3) == [
        utc(2024, 2, 29),
        utc(2024, 3, 31),
        utc(2024, 4, 30),
    ]


def test_anchor_on_jan_31_chosen_at_checkout_then_clamps() -> None:
    plan = plan_start(monthly(), utc(2025, 1, 20), billing_cycle_anchor=utc(2025, 1, 31))
    # 11 days of the month 20 Jan → 20 Feb (31 days)
    assert plan.fraction == Fraction(11, 31) and plan.total == 1100
    assert billing_dates(plan.anchor, Interval.MONTH, 1, 3) == [utc(2025, 2, 28), utc(2025, 3, 31), utc(2025, 4, 30)]


# ------------------------------------------------------------------ properties
INTERVALS = st.sampled_from(
    [(Interval.DAY, 1), (Interval.WEEK, 2), (Interval.MONTH, 1), (Interval.MONTH, 3), (Interval.YEAR, 1)]
)


@given(
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    spec=INTERVALS,
    k=st.integers(min_value=0, max_value=5),
    extra=st.integers(min_value=0, max_value=10**7),
)
def test_elapsed_fraction_counts_whole_intervals_and_a_share_of_the_next(
    start: datetime, spec: tuple[Interval, int], k: int, extra: int
) -> None:
    interval, count = spec
    start = start.replace(microsecond=0)
    assert elapsed_fraction(start, boundary(start, interval, count, k), interval, count) == k
    end = start + timedelta(seconds=extra)
    fraction = elapsed_fraction(start, end, interval, count)
    whole = int(fraction)
    assert boundary(start, interval, count, whole) <= end < boundary(start, interval, count, whole + 1)
    assert 0 <= fraction - whole < 1


@given(
    now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    share=st.fractions(min_value=0, max_value=1),
    amount=st.integers(min_value=0, max_value=10**7),
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_an_anchor_charges_at_most_one_period_within_half_a_unit(
    now: datetime, share: Fraction, amount: int, currency: str
) -> None:
    now = now.replace(microsecond=0)
    natural = next_natural_billing_date(now, Interval.MONTH, 1)
    anchor = now + timedelta(seconds=int(int((natural - now).total_seconds()) * share))
    plan = plan_start(monthly(amount, currency), now, billing_cycle_anchor=anchor)
    assert 0 <= plan.fraction <= 1
    assert abs(plan.total - amount * plan.fraction - (amount if anchor == now else 0)) <= Fraction(1, 2)


# ------------------------------------------------------------------ changes before the anchor
def test_a_change_before_the_anchor_credits_exactly_what_was_charged_for_that_time() -> None:
    # created 15 May, anchored 1 Jun: charged 17/31 of 31 €. Upgraded on 24 May: 8 days left.
    plan = plan_start(monthly(), utc(2025, 5, 15), billing_cycle_anchor=utc(2025, 6, 1))
    assert proration_basis(plan.current_period, plan.anchor, Interval.MONTH, 1) == ImaginedIntervals(
        utc(2025, 5, 15), Interval.MONTH, 1
    )
    result = change_item(monthly(), monthly(6200), period=plan.current_period, anchor=plan.anchor, t=utc(2025, 5, 24))
    assert [line.amount for line in result.lines] == [-800, 1600]  # 3100 × 8/31 and 6200 × 8/31
    # measured against the period [15 May, 1 Jun) itself it would credit 3100 × 8/17 = 1459
    assert remaining_fraction(plan.current_period, utc(2025, 5, 24)) == Fraction(8, 17)


def test_a_regular_period_is_its_own_basis_even_when_clamped() -> None:
    feb = Period(utc(2025, 2, 28), utc(2025, 3, 31))  # from a Jan 31 anchor: 31 days, not 28
    assert proration_basis(feb, utc(2025, 1, 31), Interval.MONTH, 1) == feb


def test_a_backdated_start_over_several_intervals_prorates_consistently() -> None:
    # started 1 Sep, created 15 Oct, anchored 14 Nov: charged 2 + 13/30 months
    plan = plan_start(
        monthly(), utc(2025, 10, 15), billing_cycle_anchor=utc(2025, 11, 14), backdate_start_date=utc(2025, 9, 1)
    )
    assert plan.fraction == 2 + Fraction(13, 30)
    basis = proration_basis(plan.current_period, plan.anchor, Interval.MONTH, 1)
    assert isinstance(basis, ImaginedIntervals)
    t = utc(2025, 10, 20)
    # what is left after t plus what was used before t is exactly what was charged
    assert basis.share(t, plan.anchor) + elapsed_fraction(plan.start, t, Interval.MONTH, 1) == plan.fraction
    assert basis.share(t, plan.anchor) == Fraction(12, 31) + Fraction(13, 30)
