"""Proration to the second, the way Stripe documents it.

A change at time ``t`` inside the billing period ``[start, end)`` credits the old item for the unused
time and charges the new item for the remaining time, each as its own line::

    amount = unit_amount × quantity × (end − t) / (end − start)      (seconds, exact Fraction)

Every line is rounded on its own to the currency's minor unit with ``Rounding.HALF_UP`` (half away
from zero, so a credit and a charge of the same exact size cancel exactly); the rounding error is
therefore at most half a minor unit per line. Stripe's documented example: $10 → $20 exactly halfway
is −$5.00 + $10.00 = +$5.00.

``proration_behavior`` (Stripe): ``create_prorations`` (default) creates the lines as pending items
that wait for the next invoice; ``always_invoice`` invoices them at once; ``none`` creates none.
Switching the billing interval (month ↔ year) resets the billing-cycle anchor to ``t``: the unused old
time is credited and the new full period, starting at ``t``, is charged in full and invoiced now.
A downgrade may instead be scheduled for the period end (:class:`ScheduledChange`).

Times are truncated to the whole second before anything is computed ("to the second").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import CurrencyMismatch, InvalidInput
from kassa.domain.invoice import InvoiceLine
from kassa.domain.items import SubscriptionItem
from kassa.domain.money import Money, Rounding, round_fraction
from kassa.domain.periods import Interval, Period, boundary, ensure_utc, period_index

#: The rounding of every proration line (Stripe rounds each line to the currency's minor unit).
PRORATION_ROUNDING = Rounding.HALF_UP


class ProrationBehavior(StrEnum):
    CREATE_PRORATIONS = "create_prorations"
    ALWAYS_INVOICE = "always_invoice"
    NONE = "none"


def to_second(when: datetime) -> datetime:
    """``when`` in UTC, truncated to the whole second."""
    return ensure_utc(when).replace(microsecond=0)


def whole_seconds(start: datetime, end: datetime) -> int:
    """Whole seconds from ``start`` to ``end`` (both truncated to the second)."""
    delta = to_second(end) - to_second(start)
    return delta.days * 86400 + delta.seconds


#: the item a subscription bills (kassa.domain.items); proration compares two
PlanItem = SubscriptionItem


class LineKind(StrEnum):
    UNUSED_TIME = "unused_time"  # credit (negative) for the old item from t to the period end
    REMAINING_TIME = "remaining_time"  # charge for the new item from t to the period end
    PARTIAL_PERIOD = "partial_period"  # start → anchor, or a backdated start → anchor (anchors.py)
    FULL_PERIOD = "full_period"  # a whole period, not prorated


class ProrationLine(BaseModel):
    """A line that explains itself: the exact fraction charged, and the rounding applied.

    ``unit_amount`` is the price's full-period unit amount; ``amount`` is the rounded prorated total
    (``unit_amount × quantity × fraction``, half-up), so ``amount`` need not equal ``unit_amount × quantity``.
    ``cycle_start`` is the start of the billing period the line belongs to: discounts are decided on it.
    """

    model_config = ConfigDict(frozen=True)

    kind: LineKind
    description: str
    amount: StrictInt
    currency: str
    price: str
    product: str | None = None
    subscription_item: str | None = None
    quantity: StrictInt
    unit_amount: StrictInt | None = None  # per unit: the price's unit amount; None for tiered prices
    full_amount: StrictInt  # the item's charge for a whole period (what the fraction is taken of)
    period_start: datetime
    period_end: datetime
    cycle_start: datetime
    proration: bool
    fraction_numerator: StrictInt = Field(ge=0)
    fraction_denominator: StrictInt = Field(gt=0)
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.fraction_numerator, self.fraction_denominator)

    @property
    def exact_amount(self) -> Fraction:
        """The amount before rounding (what ``amount`` rounds, half-up)."""
        sign = -1 if self.kind is LineKind.UNUSED_TIME else 1
        return sign * Fraction(self.full_amount) * self.fraction

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    def to_invoice_line(self) -> InvoiceLine:
        return InvoiceLine(
            description=self.description,
            amount=self.amount,
            quantity=self.quantity,
            unit_amount=self.unit_amount,
            price=self.price,
            subscription_item=self.subscription_item,
            proration=self.proration,
            period_start=self.period_start,
            period_end=self.period_end,
            tax_behavior=self.tax_behavior,
        )


def _stamp(when: datetime) -> str:
    return to_second(when).strftime("%Y-%m-%d %H:%M:%S UTC")


def make_line(
    kind: LineKind,
    item: PlanItem,
    fraction: Fraction,
    *,
    period_start: datetime,
    period_end: datetime,
    cycle_start: datetime,
    description: str,
) -> ProrationLine:
    """One line for ``item`` × ``fraction`` (negated for unused time), rounded half-up to the minor unit."""
    if fraction < 0:
        raise InvalidInput("a proration fraction is never negative", param="proration_date")
    sign = -1 if kind is LineKind.UNUSED_TIME else 1
    full = item.priced().amount
    exact = sign * Fraction(full) * fraction
    return ProrationLine(
        kind=kind,
        description=description,
        amount=round_fraction(exact, PRORATION_ROUNDING),
        currency=item.currency,
        price=item.price,
        product=item.product,
        subscription_item=item.id,
        quantity=item.quantity,
        unit_amount=item.unit_amount,
        full_amount=full,
        period_start=to_second(period_start),
        period_end=to_second(period_end),
        cycle_start=to_second(cycle_start),
        proration=kind is not LineKind.FULL_PERIOD,
        fraction_numerator=fraction.numerator,
        fraction_denominator=fraction.denominator,
        tax_behavior=item.tax_behavior,
    )


def elapsed_parts(start: datetime, end: datetime, interval: Interval, interval_count: int) -> tuple[int, int, int]:
    """(whole intervals, seconds into the next one, that interval's length in seconds) from ``start`` to
    ``end``, on intervals counted from ``start`` (Stripe's "imagined interval" for backdating)."""
    start, end = to_second(start), to_second(end)
    if end < start:
        raise InvalidInput("the end of an elapsed time comes after its start")
    k = period_index(start, interval, interval_count, end)
    low = boundary(start, interval, interval_count, k)
    high = boundary(start, interval, interval_count, k + 1)
    return k, whole_seconds(low, end), whole_seconds(low, high)


def elapsed_fraction(start: datetime, end: datetime, interval: Interval, interval_count: int) -> Fraction:
    """How many intervals lie between ``start`` and ``end``, measured on intervals starting at ``start``:
    whole intervals count 1 each, the rest is its share (in seconds) of the next imagined interval."""
    whole, part, length = elapsed_parts(start, end, interval, interval_count)
    return whole + Fraction(part, length)


@dataclass(frozen=True)
class ImaginedIntervals:
    """Intervals counted from ``start``: how the time before a checkout anchor (or from a backdated
    start) is charged, and therefore how changes inside that time are prorated."""

    start: datetime
    interval: Interval
    interval_count: int

    def share(self, t: datetime, end: datetime) -> Fraction:
        """The share of an interval charged for ``[t, end)``."""
        return elapsed_fraction(self.start, end, self.interval, self.interval_count) - elapsed_fraction(
            self.start, t, self.interval, self.interval_count
        )


def proration_basis(
    period: Period, anchor: datetime, interval: Interval, interval_count: int
) -> Period | ImaginedIntervals:
    """What prorations in ``period`` are measured against.

    A regular period is its own basis: ``(end − t) / (end − start)``. The period before a checkout
    anchor (``period.end <= anchor``) was charged in intervals counted from its start
    (``anchors.plan_start``); changes inside it are measured the same way, so a credit for unused
    time equals what was charged for that time.
    """
    if to_second(period.end) <= to_second(anchor):
        return ImaginedIntervals(to_second(period.start), interval, interval_count)
    return period


def remaining_fraction(period: Period, t: datetime, basis: Period | ImaginedIntervals | None = None) -> Fraction:
    """The share of a period's price for ``[t, end)``: ``(end − t) / (end − start)`` in whole seconds.

    ``t`` must lie in ``[start, end)``. With a ``basis`` (see :func:`proration_basis`) the share is
    measured against it instead of ``period`` itself.
    """
    t = to_second(t)
    if not to_second(period.start) <= t < to_second(period.end):
        raise InvalidInput(
            f"the proration time {t.isoformat()} is outside the period "
            f"[{period.start.isoformat()}, {period.end.isoformat()})",
            param="proration_date",
        )
    if isinstance(basis, ImaginedIntervals):
        return basis.share(t, period.end)
    basis = basis or period
    return Fraction(whole_seconds(t, period.end), whole_seconds(basis.start, basis.end))


def prorate(amount: Money, period: Period, t: datetime, rounding: Rounding = PRORATION_ROUNDING) -> Money:
    """``amount`` for the time left in ``period`` after ``t``, rounded explicitly."""
    return amount.scaled(remaining_fraction(period, t), rounding)


def unused_time_credit(
    item: PlanItem, period: Period, t: datetime, basis: Period | ImaginedIntervals | None = None
) -> ProrationLine:
    """The credit (negative) for ``item`` from ``t`` to the period end."""
    return make_line(
        LineKind.UNUSED_TIME,
        item,
        remaining_fraction(period, t, basis),
        period_start=t,
        period_end=period.end,
        cycle_start=period.start,
        description=f"Unused time on {item.quantity} × {item.label} after {_stamp(t)}",
    )


def remaining_time_charge(
    item: PlanItem, period: Period, t: datetime, basis: Period | ImaginedIntervals | None = None
) -> ProrationLine:
    """The charge for ``item`` from ``t`` to the period end."""
    return make_line(
        LineKind.REMAINING_TIME,
        item,
        remaining_fraction(period, t, basis),
        period_start=t,
        period_end=period.end,
        cycle_start=period.start,
        description=f"Remaining time on {item.quantity} × {item.label} after {_stamp(t)}",
    )


def full_period_charge(item: PlanItem, period: Period) -> ProrationLine:
    """A whole period of ``item``, not prorated (exact: no rounding happens)."""
    return make_line(
        LineKind.FULL_PERIOD,
        item,
        Fraction(1),
        period_start=period.start,
        period_end=period.end,
        cycle_start=period.start,
        description=(
            f"{item.quantity} × {item.label} "
            f"({to_second(period.start).date().isoformat()} – {to_second(period.end).date().isoformat()})"
        ),
    )


def is_downgrade(old: PlanItem, new: PlanItem) -> bool:
    """True when ``new`` costs less per unit of time than ``old`` (a lower daily rate).

    Items on different intervals are compared through average Gregorian lengths (a month is
    30.436875 days, a year 365.2425); the comparison never feeds an amount.
    """
    return new.daily_rate() < old.daily_rate()


class ScheduledChange(BaseModel):
    """A change that takes effect at ``effective_at`` (the period end), applied at that renewal."""

    model_config = ConfigDict(frozen=True)

    item: PlanItem
    effective_at: datetime
    requested_at: datetime
    resets_anchor: bool  # the interval changes: the new anchor is ``effective_at``

    def due(self, now: datetime) -> bool:
        return to_second(now) >= to_second(self.effective_at)


@dataclass(frozen=True)
class ItemsChange:
    """What a change of a subscription's items does, decided purely.

    ``lines`` exist only when the change applies now. ``invoice_now``: create and collect an invoice
    with ``lines`` now; ``pending``: keep ``lines`` as pending items for the next invoice. With
    ``scheduled`` set, nothing changes now and ``items``/``anchor``/``period`` are the current ones.
    """

    items: tuple[PlanItem, ...]
    anchor: datetime
    period: Period
    lines: tuple[ProrationLine, ...]
    invoice_now: bool
    pending: bool
    anchor_reset: bool = False
    scheduled: ScheduledChange | None = None

    @property
    def item(self) -> PlanItem:
        """The item of a one-item change (:func:`change_item`)."""
        return self.items[0]

    @property
    def net(self) -> int:
        return sum(line.amount for line in self.lines)


#: the result of :func:`change_item` (one item)
ChangeResult = ItemsChange


def change_item(
    old: PlanItem,
    new: PlanItem,
    *,
    period: Period,
    anchor: datetime,
    t: datetime,
    behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
    schedule_downgrade: bool = False,
    basis: Period | ImaginedIntervals | None = None,
) -> ItemsChange:
    """Change ``old`` to ``new`` at ``t`` within the current ``period`` (billing-cycle ``anchor``).

    - same interval: −unused time of ``old`` + remaining time of ``new`` (unless ``none``);
      ``always_invoice`` → invoice now, ``create_prorations`` → pending for the next invoice.
    - other interval (Stripe): the anchor resets to ``t``; −unused time of ``old`` (unless ``none``)
      and the new full period ``[t, t + interval)`` charged in full; always invoiced now.
    - ``schedule_downgrade`` and ``new`` is cheaper per unit of time: nothing now, a
      :class:`ScheduledChange` effective at the period end.

    ``basis`` defaults to :func:`proration_basis` of ``period`` and ``anchor``.
    """
    t = to_second(t)
    if new.currency != old.currency:
        raise CurrencyMismatch(
            f"a subscription keeps its currency: cannot change from {old.currency} to {new.currency}",
            param="price",
        )
    basis = basis or proration_basis(period, anchor, old.interval, old.interval_count)
    remaining_fraction(period, t)  # validates t ∈ [start, end)
    unchanged = ItemsChange(items=(old,), anchor=anchor, period=period, lines=(), invoice_now=False, pending=False)
    if new == old:
        return unchanged
    if schedule_downgrade and is_downgrade(old, new):
        scheduled = ScheduledChange(
            item=new, effective_at=period.end, requested_at=t, resets_anchor=not old.same_cycle(new)
        )
        return ItemsChange(
            items=(old,), anchor=anchor, period=period, lines=(), invoice_now=False, pending=False, scheduled=scheduled
        )
    credit = [] if behavior is ProrationBehavior.NONE else [unused_time_credit(old, period, t, basis)]
    if not old.same_cycle(new):
        new_period = Period(t, boundary(t, new.interval, new.interval_count, 1))
        return ItemsChange(
            items=(new,),
            anchor=t,
            period=new_period,
            lines=(*credit, full_period_charge(new, new_period)),
            invoice_now=True,
            pending=False,
            anchor_reset=True,
        )
    if behavior is ProrationBehavior.NONE:
        return ItemsChange(items=(new,), anchor=anchor, period=period, lines=(), invoice_now=False, pending=False)
    lines = (*credit, remaining_time_charge(new, period, t, basis))
    return ItemsChange(
        items=(new,),
        anchor=anchor,
        period=period,
        lines=lines,
        invoice_now=behavior is ProrationBehavior.ALWAYS_INVOICE,
        pending=behavior is ProrationBehavior.CREATE_PRORATIONS,
    )


def apply_scheduled_change(
    item: PlanItem, anchor: datetime, scheduled: ScheduledChange | None, now: datetime
) -> tuple[PlanItem, datetime, ScheduledChange | None]:
    """At a renewal: the item and anchor in force at ``now`` and what stays scheduled.

    A due change replaces the item; when it changes the interval the anchor becomes its effective time.
    """
    if scheduled is None or not scheduled.due(now):
        return item, anchor, scheduled
    return scheduled.item, (scheduled.effective_at if scheduled.resets_anchor else anchor), None


def apply_scheduled_items(
    items: Sequence[PlanItem], anchor: datetime, scheduled: ScheduledChange | None, now: datetime
) -> tuple[list[PlanItem], datetime, ScheduledChange | None]:
    """:func:`apply_scheduled_change` over a subscription's items: a due change replaces the item it
    names (the only item of a subscription scheduled before items had ids)."""
    if scheduled is None or not scheduled.due(now):
        return list(items), anchor, scheduled
    target = scheduled.item.id
    at = next((i for i, item in enumerate(items) if item.id == target), 0 if len(items) == 1 else None)
    result = list(items)
    if at is not None:
        result[at] = scheduled.item.model_copy(update={"id": items[at].id})
    return result, (scheduled.effective_at if scheduled.resets_anchor else anchor), None


def change_items(
    old: Sequence[PlanItem],
    new: Sequence[PlanItem],
    *,
    period: Period,
    anchor: datetime,
    t: datetime,
    behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
    schedule_downgrade: bool = False,
) -> ItemsChange:
    """Change a subscription's items from ``old`` to ``new`` at ``t``, each item prorated on its own
    (items are matched by id): a removed item is credited its unused time, an added one charged its
    remaining time, a changed one both; an unchanged item makes no line. One changed item keeps
    :func:`change_item`'s rules (a scheduled downgrade, an interval switch). When the interval of
    every item switches, the anchor resets to ``t``: every old item's unused time is credited and
    every new item's full period charged, invoiced now."""
    t = to_second(t)
    old_by_id = {item.id: item for item in old}
    new_by_id = {item.id: item for item in new}
    if len(old) == 1 and len(new) == 1 and old[0].id == new[0].id:
        one = change_item(
            old[0], new[0], period=period, anchor=anchor, t=t, behavior=behavior, schedule_downgrade=schedule_downgrade
        )
        return one
    for item in new:
        if item.currency != old[0].currency:
            raise CurrencyMismatch(
                f"a subscription keeps its currency: cannot change from {old[0].currency} to {item.currency}",
                param="items",
            )
    remaining_fraction(period, t)  # validates t ∈ [start, end)
    basis = proration_basis(period, anchor, old[0].interval, old[0].interval_count)
    prorate = behavior is not ProrationBehavior.NONE
    if not old[0].same_cycle(new[0]):  # every item switches (they share one interval)
        new_period = Period(t, boundary(t, new[0].interval, new[0].interval_count, 1))
        credits = [unused_time_credit(item, period, t, basis) for item in old] if prorate else []
        charges = [full_period_charge(item, new_period) for item in new]
        return ItemsChange(
            items=tuple(new),
            anchor=t,
            period=new_period,
            lines=(*credits, *charges),
            invoice_now=True,
            pending=False,
            anchor_reset=True,
        )
    lines: list[ProrationLine] = []
    if prorate:
        for item in old:
            after = new_by_id.get(item.id)
            if after is None or not after.same_terms(item):
                lines.append(unused_time_credit(item, period, t, basis))
        for item in new:
            before = old_by_id.get(item.id)
            if before is None or not before.same_terms(item):
                lines.append(remaining_time_charge(item, period, t, basis))
    return ItemsChange(
        items=tuple(new),
        anchor=anchor,
        period=period,
        lines=tuple(lines),
        invoice_now=bool(lines) and behavior is ProrationBehavior.ALWAYS_INVOICE,
        pending=bool(lines) and behavior is ProrationBehavior.CREATE_PRORATIONS,
    )
