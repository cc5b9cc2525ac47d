"""Billing periods from a billing-cycle anchor, with month-end clamping (Stripe's anchor semantics)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.errors import InvalidInput
from kassa.domain.periods import (
    MAX_INTERVAL_COUNT,
    Interval,
    Period,
    boundary,
    ensure_utc,
    next_period,
    period_at,
    period_index,
    validate_interval,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------ Stripe's documented examples
def test_monthly_anchor_on_jan_31_clamps_to_month_end_without_drifting_2025() -> None:
    anchor = utc(2025, 1, 31, 9, 30)
    bounds = [boundary(anchor, Interval.MONTH, 1, k) for k in range(5)]
    assert bounds == [
        utc(2025, 1, 31, 9, 30),
        utc(2025, 2, 28, 9, 30),
        utc(2025, 3, 31, 9, 30),  # back to the 31st: computed from the anchor, not chained
        utc(2025, 4, 30, 9, 30),
        utc(2025, 5, 31, 9, 30),
    ]


def test_monthly_anchor_on_jan_31_in_a_leap_year_bills_feb_29() -> None:
    anchor = utc(2024, 1, 31)
    assert boundary(anchor, Interval.MONTH, 1, 1) == utc(2024, 2, 29)
    assert boundary(anchor, Interval.MONTH, 1, 2) == utc(2024, 3, 31)
    assert boundary(anchor, Interval.MONTH, 1, 3) == utc(2024, 4, 30)


def test_period_chain_from_jan_31() -> None:
    anchor = utc(2025, 1, 31)
    first = period_at(anchor, Interval.MONTH, 1, anchor)
    assert first == Period(utc(2025, 1, 31), utc(2025, 2, 28))
    second = next_period(anchor, Interval.MONTH, 1, first)
    assert second == Period(utc(2025, 2, 28), utc(2025, 3, 31))
    third = next_period(anchor, Interval.MONTH, 1, second)
    assert third == Period(utc(2025, 3, 31), utc(2025, 4, 30))
    assert next_period(anchor, Interval.MONTH, 1, third).end == utc(2025, 5, 31)


def test_yearly_anchor_on_feb_29() -> None:
    anchor = utc(2024, 2, 29, 12)
    assert [boundary(anchor, Interval.YEAR, 1, k) for k in range(5)] == [
        utc(2024, 2, 29, 12),
        utc(2025, 2, 28, 12),
        utc(2026, 2, 28, 12),
        utc(2027, 2, 28, 12),
        utc(2028, 2, 29, 12),  # a leap year again: back to the 29th
    ]


def test_interval_count_three_months() -> None:
    anchor = utc(2025, 1, 31)
    assert [boundary(anchor, Interval.MONTH, 3, k) for k in range(4)] == [
        utc(2025, 1, 31),
        utc(2025, 4, 30),
        utc(2025, 7, 31),
        utc(2025, 10, 31),
    ]
    assert period_at(anchor, Interval.MONTH, 3, utc(2025, 5, 15)) == Period(utc(2025, 4, 30), utc(2025, 7, 31))


def test_day_and_week_intervals_are_fixed_lengths() -> None:
    anchor = utc(2025, 3, 1, 8)
    assert boundary(anchor, Interval.DAY, 1, 1) == utc(2025, 3, 2, 8)
    assert boundary(anchor, Interval.DAY, 10, 3) == anchor + timedelta(days=30)
    assert boundary(anchor, Interval.WEEK, 1, 1) == utc(2025, 3, 8, 8)
    assert boundary(anchor, Interval.WEEK, 2, 2) == anchor + timedelta(weeks=4)
    assert period_at(anchor, Interval.WEEK, 1, utc(2025, 3, 9)) == Period(utc(2025, 3, 8, 8), utc(2025, 3, 15, 8))
    assert period_at(anchor, Interval.DAY, 1, utc(2025, 3, 1, 7)) == Period(utc(2025, 2, 28, 8), utc(2025, 3, 1, 8))


def test_boundaries_before_the_anchor() -> None:
    anchor = utc(2025, 3, 31)
    assert boundary(anchor, Interval.MONTH, 1, -1) == utc(2025, 2, 28)
    assert boundary(anchor, Interval.MONTH, 1, -2) == utc(2025, 1, 31)
    assert period_index(anchor, Interval.MONTH, 1, utc(2025, 2, 27)) == -2


def test_a_boundary_belongs_to_the_period_it_starts() -> None:
    anchor = utc(2025, 1, 31)
    period = period_at(anchor, Interval.MONTH, 1, utc(2025, 2, 28))
    assert period.start == utc(2025, 2, 28)
    assert period.contains(utc(2025, 2, 28))
    assert not period.contains(utc(2025, 3, 31))  # half-open [start, end)
    assert period.seconds == 31 * 24 * 3600


def test_non_utc_aware_datetimes_are_converted_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    anchor = datetime(2025, 1, 31, 1, 0, tzinfo=cet)  # 2025-01-31T00:00Z
    assert ensure_utc(anchor) == utc(2025, 1, 31)
    assert ensure_utc(anchor).tzinfo == UTC
    assert boundary(anchor, Interval.MONTH, 1, 1) == utc(2025, 2, 28)


# ------------------------------------------------------------------ validation
def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2025, 1, 31)
    with pytest.raises(InvalidInput):
        ensure_utc(naive)
    with pytest.raises(InvalidInput):
        boundary(naive, Interval.MONTH, 1, 1)
    with pytest.raises(InvalidInput):
        period_at(naive, Interval.MONTH, 1, utc(2025, 2, 1))
    with pytest.raises(InvalidInput):
        period_at(utc(2025, 1, 31), Interval.MONTH, 1, naive)


def test_an_empty_or_reversed_period_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        Period(utc(2025, 1, 1), utc(2025, 1, 1))
    with pytest.raises(InvalidInput):
        Period(utc(2025, 1, 2), utc(2025, 1, 1))


@pytest.mark.parametrize("interval", list(Interval))
def test_interval_count_limits(interval: Interval) -> None:
    validate_interval(interval, 1)
    validate_interval(interval, MAX_INTERVAL_COUNT[interval])
    for bad in (0, -1, MAX_INTERVAL_COUNT[interval] + 1):
        with pytest.raises(InvalidInput) as error:
            validate_interval(interval, bad)
        assert error.value.param == "recurring.interval_count"


def test_stripe_max_interval_is_three_years() -> None:
    assert MAX_INTERVAL_COUNT == {Interval.DAY: 365, Interval.WEEK: 52, Interval.MONTH: 12, Interval.YEAR: 3}


# ------------------------------------------------------------------ properties
anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=0)
)
instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1), timezones=st.just(UTC))


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Interval, int]:
    interval = draw(st.sampled_from(list(Interval)))
    return interval, draw(st.integers(min_value=1, max_value=MAX_INTERVAL_COUNT[interval]))


@given(anchors, schedules(), instants)
def test_period_at_contains_the_instant_and_starts_on_a_boundary(
    anchor: datetime, schedule: tuple[Interval, int], when: datetime
) -> None:
    interval, count = schedule
    period = period_at(anchor, interval, count, when)
    assert period.contains(when)
    k = period_index(anchor, interval, count, when)
    assert period.start == boundary(anchor, interval, count, k)
    assert period.end == boundary(anchor, interval, count, k + 1)


@given(anchors, schedules(), st.integers(min_value=-30, max_value=30), st.integers(min_value=1, max_value=24))
def test_consecutive_periods_tile_time(anchor: datetime, schedule: tuple[Interval, int], k: int, n: int) -> None:
    interval, count = schedule
    period = period_at(anchor, interval, count, boundary(anchor, interval, count, k))
    for _ in range(n):
        following = next_period(anchor, interval, count, period)
        assert following.start == period.end  # no gap, no overlap
        assert following.end > following.start
        period = following


@given(anchors, schedules(), st.integers(min_value=-50, max_value=50))
def test_boundaries_increase_strictly(anchor: datetime, schedule: tuple[Interval, int], k: int) -> None:
    interval, count = schedule
    assert boundary(anchor, interval, count, k) < boundary(anchor, interval, count, k + 1)
    assert boundary(anchor, interval, count, 0) == anchor


@given(anchors, st.integers(min_value=1, max_value=12), st.integers(min_value=-60, max_value=60))
def test_monthly_boundary_day_is_the_anchor_day_clamped(anchor: datetime, count: int, k: int) -> None:
    when = boundary(anchor, Interval.MONTH, count, k)
    days_in_month = calendar.monthrange(when.year, when.month)[1]
    assert when.day == min(anchor.day, days_in_month)
    assert when.time() == anchor.time()  # the time of day never moves
    months = (when.year - anchor.year) * 12 + (when.month - anchor.month)
    assert months == k * count


@given(anchors, st.integers(min_value=1, max_value=3), st.integers(min_value=-20, max_value=20))
def test_yearly_boundary_keeps_month_and_clamped_day(anchor: datetime, count: int, k: int) -> None:
    when = boundary(anchor, Interval.YEAR, count, k)
    assert when.year == anchor.year + k * count
    assert when.month == anchor.month
    assert when.day == min(anchor.day, calendar.monthrange(when.year, when.month)[1])


@given(anchors, schedules(), instants)
def test_period_at_is_the_same_for_every_instant_inside(
    anchor: datetime, schedule: tuple[Interval, int], when: datetime
) -> None:
    interval, count = schedule
    period = period_at(anchor, interval, count, when)
    assert period_at(anchor, interval, count, period.start) == period
    assert period_at(anchor, interval, count, period.end - timedelta(seconds=1)) == period
    assert period_at(anchor, interval, count, period.end) != period
