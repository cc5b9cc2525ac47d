"""Billing-cycle anchors chosen at checkout, and backdated starts (Stripe's rules).

- The anchor defaults to the creation time (or the trial end, see ``subscription.start_subscription``).
  An explicit anchor must lie in ``[now, next natural billing date]``; the time from the start to the
  anchor is then charged as one prorated line (``create_prorations``) or given free (``none``), and
  the first full period starts at the anchor.
- A backdated start (``backdate_start_date`` in the past) charges the elapsed time from the backdated
  start to the anchor. Stripe measures it against an *imagined interval that starts on the backdated
  start date*: backdating to 15 Feb with the anchor on 1 Mar is 14 days of the 28-day month
  15 Feb → 15 Mar = 0.5; to 15 Jan with the anchor on 1 Feb is 17 days of 15 Jan → 15 Feb = 17/31.
  Whole intervals count as 1 each (1 Sep → 1 Nov = 2 months), one line for the lot (Stripe's
  ``billing_mode=classic``).
- Boundaries come from ``periods.boundary`` (computed from the anchor, clamped to month ends), so an
  anchor on Jan 31 bills Feb 28/29, Mar 31, Apr 30.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from kassa.domain.errors import InvalidInput
from kassa.domain.periods import Interval, Period, boundary
from kassa.domain.proration import (
    LineKind,
    PlanItem,
    ProrationBehavior,
    ProrationLine,
    elapsed_fraction,
    elapsed_parts,
    full_period_charge,
    make_line,
    to_second,
)

__all__ = [
    "StartPlan",
    "billing_dates",
    "describe_elapsed",
    "elapsed_fraction",
    "next_natural_billing_date",
    "plan_start",
    "validate_anchor",
]


def describe_elapsed(start: datetime, end: datetime, interval: Interval, interval_count: int) -> str:
    """``"14/28 days of a month"``, ``"2 months"``, ``"1 month + 3/31 days"``: the fraction as charged."""
    whole, part, length = elapsed_parts(start, end, interval, interval_count)
    unit = interval.value if interval_count == 1 else f"{interval_count}-{interval.value} interval"
    parts = [f"{whole} {unit}{'s' if whole > 1 else ''}"] if whole else []
    if part:
        if part % 86400 == 0 and length % 86400 == 0:
            share = f"{part // 86400}/{length // 86400} days"
        else:
            share = f"{part}/{length} s"
        parts.append(share if parts else f"{share} of a {unit}")
    return " + ".join(parts) or "nothing"


def next_natural_billing_date(now: datetime, interval: Interval, interval_count: int) -> datetime:
    return boundary(to_second(now), interval, interval_count, 1)


def validate_anchor(now: datetime, anchor: datetime, interval: Interval, interval_count: int) -> datetime:
    """An explicit anchor lies in ``[now, next natural billing date]`` (Stripe refuses one further out)."""
    now, anchor = to_second(now), to_second(anchor)
    if anchor < now:
        raise InvalidInput("billing_cycle_anchor must not be in the past", param="billing_cycle_anchor")
    natural = next_natural_billing_date(now, interval, interval_count)
    if anchor > natural:
        raise InvalidInput(
            f"billing_cycle_anchor cannot be later than the next natural billing date ({natural.isoformat()})",
            param="billing_cycle_anchor",
        )
    return anchor


def billing_dates(anchor: datetime, interval: Interval, interval_count: int, count: int) -> list[datetime]:
    """The next ``count`` billing dates after ``anchor`` (boundaries 1…count, computed from the anchor)."""
    return [boundary(to_second(anchor), interval, interval_count, k) for k in range(1, count + 1)]


@dataclass(frozen=True)
class StartPlan:
    """How a new subscription starts: its dates and the lines of its first invoice (created now).

    ``current_period`` is ``[start, anchor)`` when the first full period starts later at the anchor,
    else the first full period ``[now, now + interval)``. ``fraction`` is the share of an interval
    charged for ``start → anchor`` (0 when nothing is charged for it).
    """

    start: datetime
    anchor: datetime
    current_period: Period
    lines: tuple[ProrationLine, ...]
    fraction: Fraction

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def plan_start(
    item: PlanItem,
    now: datetime,
    *,
    billing_cycle_anchor: datetime | None = None,
    backdate_start_date: datetime | None = None,
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
) -> StartPlan:
    """Dates and first-invoice lines of a subscription created at ``now``.

    - no anchor, no backdate: the first full period ``[now, now + interval)`` charged now.
    - anchor in the future: ``start → anchor`` prorated (or free with ``none``); full periods from the anchor.
    - backdated start: ``backdate → anchor`` (anchor defaulting to now) charged as elapsed intervals
      (or free with ``none``), plus the first full period when it starts now.
    """
    now = to_second(now)
    start = now if backdate_start_date is None else to_second(backdate_start_date)
    if start > now:
        raise InvalidInput("backdate_start_date must not be in the future", param="backdate_start_date")
    anchor = (
        now
        if billing_cycle_anchor is None
        else validate_anchor(now, billing_cycle_anchor, item.interval, item.interval_count)
    )
    lines: list[ProrationLine] = []
    fraction = Fraction(0)
    if start < anchor and proration_behavior is not ProrationBehavior.NONE:
        fraction = elapsed_fraction(start, anchor, item.interval, item.interval_count)
        lines.append(
            make_line(
                LineKind.PARTIAL_PERIOD,
                item,
                fraction,
                period_start=start,
                period_end=anchor,
                cycle_start=start,
                description=(
                    f"{item.quantity} × {item.label} from {start.date().isoformat()} to {anchor.date().isoformat()} "
                    f"({describe_elapsed(start, anchor, item.interval, item.interval_count)})"
                ),
            )
        )
    if anchor == now:
        first = Period(now, boundary(now, item.interval, item.interval_count, 1))
        lines.append(full_period_charge(item, first))
        current = first
    else:
        current = Period(start, anchor)
    return StartPlan(start=start, anchor=anchor, current_period=current, lines=tuple(lines), fraction=fraction)
