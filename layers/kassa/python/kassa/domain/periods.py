"""Billing periods from a billing-cycle anchor, with month-end clamping.

Period boundaries are always computed from the anchor (boundary k = anchor + k intervals), never by
chaining, so an anchor on Jan 31 bills Feb 28/29, Mar 31, Apr 30 — Stripe's documented behaviour —
instead of drifting to the 28th.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from kassa.domain.errors import InvalidInput


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


MAX_INTERVAL_COUNT = {Interval.DAY: 365, Interval.WEEK: 52, Interval.MONTH: 12, Interval.YEAR: 3}


def ensure_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise InvalidInput("datetimes must be timezone-aware (UTC)")
    return when.astimezone(UTC)


def _add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.month - 1 + months
    year, month = anchor.year + total // 12, total % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def boundary(anchor: datetime, interval: Interval, interval_count: int, k: int) -> datetime:
    """The k-th period boundary after (k > 0) or before (k < 0) the anchor."""
    anchor = ensure_utc(anchor)
    steps = k * interval_count
    if interval is Interval.DAY:
        return anchor + timedelta(days=steps)
    if interval is Interval.WEEK:
        return anchor + timedelta(weeks=steps)
    if interval is Interval.MONTH:
        return _add_months(anchor, steps)
    return _add_months(anchor, 12 * steps)


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidInput("a period ends after it starts")

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


def validate_interval(interval: Interval, interval_count: int) -> None:
    if interval_count < 1 or interval_count > MAX_INTERVAL_COUNT[interval]:
        raise InvalidInput(
            f"interval_count must be between 1 and {MAX_INTERVAL_COUNT[interval]} for {interval.value}",
            param="recurring.interval_count",
        )


def period_index(anchor: datetime, interval: Interval, interval_count: int, when: datetime) -> int:
    """The index k such that boundary(k) <= when < boundary(k+1)."""
    anchor, when = ensure_utc(anchor), ensure_utc(when)
    if interval in (Interval.DAY, Interval.WEEK):
        step = timedelta(days=interval_count * (7 if interval is Interval.WEEK else 1))
        return (when - anchor) // step
    months_per = interval_count * (12 if interval is Interval.YEAR else 1)
    approx = ((when.year - anchor.year) * 12 + (when.month - anchor.month)) // months_per
    k = approx + 1
    while boundary(anchor, interval, interval_count, k) > when:
        k -= 1
    return k


def period_at(anchor: datetime, interval: Interval, interval_count: int, when: datetime) -> Period:
    """The billing period containing ``when``."""
    k = period_index(anchor, interval, interval_count, when)
    return Period(boundary(anchor, interval, interval_count, k), boundary(anchor, interval, interval_count, k + 1))


def next_period(anchor: datetime, interval: Interval, interval_count: int, period: Period) -> Period:
    return period_at(anchor, interval, interval_count, period.end)
