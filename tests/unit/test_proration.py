"""Proration to the second (Stripe's rule), change behaviours, scheduled downgrades, interval switches, cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kassa.domain.cancellation import (
    CancellationDetails,
    CancellationFeedback,
    cancel_immediately,
    schedule_cancellation,
    undo_scheduled_cancellation,
)
from kassa.domain.catalog import Price, Recurring
from kassa.domain.errors import CurrencyMismatch, IllegalTransition, InvalidInput
from kassa.domain.invoice import InvoiceLine
from kassa.domain.money import Money
from kassa.domain.periods import Interval, Period, boundary
from kassa.domain.proration import (
    LineKind,
    PlanItem,
    ProrationBehavior,
    ScheduledChange,
    apply_scheduled_change,
    change_item,
    full_period_charge,
    is_downgrade,
    prorate,
    remaining_fraction,
    remaining_time_charge,
    unused_time_credit,
    whole_seconds,
)
from kassa.domain.subscription import Status, Subscription

PB = ProrationBehavior


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def item(unit_amount: int, quantity: int = 1, currency: str = "USD", interval: Interval = Interval.MONTH) -> PlanItem:
    return PlanItem(
        price=f"price_{unit_amount}_{interval.value}",
        product="prod_pro",
        unit_amount=unit_amount,
        quantity=quantity,
        currency=currency,
        interval=interval,
    )


APRIL = Period(utc(2025, 4, 1), utc(2025, 5, 1))  # 30 days
HALFWAY = utc(2025, 4, 16)


# ------------------------------------------------------------------ Stripe's documented example
def test_stripe_example_10_to_20_dollars_halfway_is_minus_5_plus_10() -> None:
    result = change_item(item(1000), item(2000), period=APRIL, anchor=APRIL.start, t=HALFWAY)
    assert [(line.kind, line.amount) for line in result.lines] == [
        (LineKind.UNUSED_TIME, -500),
        (LineKind.REMAINING_TIME, 1000),
    ]
    assert result.net == 500
    assert all(line.proration for line in result.lines)
    assert result.lines[0].fraction == Fraction(1, 2)
    assert result.lines[0].description.startswith("Unused time on 1 × prod_pro after 2025-04-16 00:00:00 UTC")
    assert result.pending and not result.invoice_now  # create_prorations: waits for the next invoice


def test_the_fraction_is_seconds_left_over_seconds_in_the_period() -> None:
    t = utc(2025, 4, 10, 6, 30, 15)
    left = whole_seconds(t, APRIL.end)
    assert remaining_fraction(APRIL, t) == Fraction(left, 30 * 86400)
    assert left == 20 * 86400 + 17 * 3600 + 29 * 60 + 45


def test_microseconds_are_truncated_to_the_second() -> None:
    t = utc(2025, 4, 10, 6, 30, 15)
    assert remaining_fraction(APRIL, t + timedelta(microseconds=999_999)) == remaining_fraction(APRIL, t)


def test_quantity_change_credits_old_quantity_and_charges_new_quantity() -> None:
    # 3 seats → 5 seats at 12 € with 10 of 30 days left: −12 € + 20 € (= 3600·⅓ and 6000·⅓)
    t = utc(2025, 4, 21)
    result = change_item(item(1200, 3, "EUR"), item(1200, 5, "EUR"), period=APRIL, anchor=APRIL.start, t=t)
    assert [line.amount for line in result.lines] == [-1200, 2000]
    assert [line.quantity for line in result.lines] == [3, 5]


def test_each_line_is_rounded_half_up_on_its_own() -> None:
    # JPY (no decimals): 3 ¥ → 5 ¥ halfway: exact −1.5 and +2.5 → −2 and +3 (half away from zero).
    result = change_item(item(3, currency="JPY"), item(5, currency="JPY"), period=APRIL, anchor=APRIL.start, t=HALFWAY)
    assert [line.exact_amount for line in result.lines] == [Fraction(-3, 2), Fraction(5, 2)]
    assert [line.amount for line in result.lines] == [-2, 3]


def test_three_decimal_currency_keeps_its_fils() -> None:
    # 10.000 KWD → 25.500 KWD with 7 of 30 days left: −2.333⅓ → −2.333 and +5.95 → 5.950
    t = utc(2025, 4, 24)
    result = change_item(
        item(10_000, currency="KWD"), item(25_500, currency="KWD"), period=APRIL, anchor=APRIL.start, t=t
    )
    assert [line.amount for line in result.lines] == [-2333, 5950]
    assert [line.money.format() for line in result.lines] == ["-2.333 KWD", "5.950 KWD"]


def test_prorate_helper_on_money() -> None:
    assert prorate(Money(3100, "EUR"), Period(utc(2025, 1, 1), utc(2025, 2, 1)), utc(2025, 1, 15)) == Money(1700, "EUR")


# ------------------------------------------------------------------ behaviours
def test_always_invoice_invoices_now() -> None:
    result = change_item(
        item(1000), item(2000), period=APRIL, anchor=APRIL.start, t=HALFWAY, behavior=PB.ALWAYS_INVOICE
    )
    assert result.invoice_now and not result.pending
    assert result.net == 500


def test_none_changes_the_item_without_lines() -> None:
    result = change_item(item(1000), item(2000), period=APRIL, anchor=APRIL.start, t=HALFWAY, behavior=PB.NONE)
    assert result.lines == ()
    assert result.item == item(2000)
    assert not result.invoice_now and not result.pending


def test_no_change_no_lines() -> None:
    result = change_item(item(1000), item(1000), period=APRIL, anchor=APRIL.start, t=HALFWAY)
    assert result.lines == () and result.item == item(1000)


def test_change_at_the_period_start_credits_and_charges_the_full_period() -> None:
    result = change_item(item(1000), item(2000), period=APRIL, anchor=APRIL.start, t=APRIL.start)
    assert [line.amount for line in result.lines] == [-1000, 2000]


def test_time_outside_the_period_is_refused() -> None:
    for t in (APRIL.end, APRIL.start - timedelta(seconds=1)):
        with pytest.raises(InvalidInput) as error:
            change_item(item(1000), item(2000), period=APRIL, anchor=APRIL.start, t=t)
        assert error.value.param == "proration_date"


def test_currency_change_is_refused() -> None:
    with pytest.raises(CurrencyMismatch):
        change_item(item(1000), item(2000, currency="EUR"), period=APRIL, anchor=APRIL.start, t=HALFWAY)


# ------------------------------------------------------------------ upgrades now, downgrades at period end
def test_downgrade_can_be_scheduled_for_the_period_end() -> None:
    result = change_item(item(2000), item(1000), period=APRIL, anchor=APRIL.start, t=HALFWAY, schedule_downgrade=True)
    assert result.lines == () and result.item == item(2000)
    assert result.scheduled == ScheduledChange(
        item=item(1000), effective_at=APRIL.end, requested_at=HALFWAY, resets_anchor=False
    )
    # before the period end nothing changes; at the renewal the new item is in force
    assert apply_scheduled_change(item(2000), APRIL.start, result.scheduled, APRIL.end - timedelta(seconds=1)) == (
        item(2000),
        APRIL.start,
        result.scheduled,
    )
    assert apply_scheduled_change(item(2000), APRIL.start, result.scheduled, APRIL.end) == (
        item(1000),
        APRIL.start,
        None,
    )


def test_upgrade_applies_now_even_when_downgrades_are_scheduled() -> None:
    result = change_item(item(1000), item(2000), period=APRIL, anchor=APRIL.start, t=HALFWAY, schedule_downgrade=True)
    assert result.scheduled is None and result.net == 500


def test_downgrade_applies_now_when_not_scheduled() -> None:
    result = change_item(item(2000), item(1000), period=APRIL, anchor=APRIL.start, t=HALFWAY)
    assert [line.amount for line in result.lines] == [-1000, 500]
    assert result.net == -500  # a credit: becomes customer balance when invoiced (balance.py)


def test_downgrade_compares_rates_across_intervals() -> None:
    monthly, yearly = item(1000), item(10_000, interval=Interval.YEAR)
    assert is_downgrade(monthly, yearly)  # 100 €/year is cheaper than 10 €/month
    assert not is_downgrade(yearly, monthly)
    assert not is_downgrade(monthly, item(1000))  # lateral


def test_scheduled_interval_downgrade_moves_the_anchor_to_the_period_end() -> None:
    result = change_item(
        item(1000),
        item(10_000, interval=Interval.YEAR),
        period=APRIL,
        anchor=utc(2025, 1, 1),
        t=HALFWAY,
        schedule_downgrade=True,
    )
    assert result.scheduled is not None and result.scheduled.resets_anchor
    new_item, anchor, _ = apply_scheduled_change(item(1000), utc(2025, 1, 1), result.scheduled, APRIL.end)
    assert new_item.interval is Interval.YEAR and anchor == APRIL.end


# ------------------------------------------------------------------ interval switch
def test_monthly_to_yearly_resets_the_anchor_and_charges_the_new_year_in_full() -> None:
    t = utc(2025, 4, 21)  # 10 of 30 days left
    result = change_item(item(3000), item(30_000, interval=Interval.YEAR), period=APRIL, anchor=utc(2025, 1, 1), t=t)
    assert result.anchor_reset and result.anchor == t
    assert result.period == Period(t, utc(2026, 4, 21))
    assert [(line.kind, line.amount, line.proration) for line in result.lines] == [
        (LineKind.UNUSED_TIME, -1000, True),
        (LineKind.FULL_PERIOD, 30_000, False),
    ]
    assert result.invoice_now  # the anchor moved: invoiced now whatever the behaviour


def test_yearly_to_monthly_with_none_charges_the_new_month_without_credit() -> None:
    year = Period(utc(2025, 1, 1), utc(2026, 1, 1))
    t = utc(2025, 7, 2, 12)
    result = change_item(
        item(30_000, interval=Interval.YEAR), item(3000), period=year, anchor=year.start, t=t, behavior=PB.NONE
    )
    assert [line.amount for line in result.lines] == [3000]
    assert result.period == Period(t, utc(2025, 8, 2, 12))


# ------------------------------------------------------------------ lines
def test_a_line_converts_to_an_invoice_line() -> None:
    line = remaining_time_charge(item(2000), APRIL, HALFWAY)
    assert line.to_invoice_line() == InvoiceLine(
        description=line.description,
        amount=1000,
        quantity=1,
        unit_amount=2000,
        price="price_2000_month",
        proration=True,
        period_start=HALFWAY,
        period_end=APRIL.end,
    )
    assert line.cycle_start == APRIL.start


def test_full_period_charge_is_exact() -> None:
    line = full_period_charge(item(1999, 3, "EUR"), APRIL)
    assert line.amount == 5997 and line.fraction == 1 and not line.proration


def test_plan_item_refuses_floats_and_normalizes_currency() -> None:
    with pytest.raises(ValidationError):
        PlanItem(price="p", unit_amount=10.0, quantity=1, currency="eur", interval=Interval.MONTH)  # type: ignore[arg-type]
    assert item(10, currency="eur").currency == "EUR"
    with pytest.raises(InvalidInput):
        PlanItem(price="p", unit_amount=10, quantity=1, currency="EUR", interval=Interval.MONTH, interval_count=13)


def test_plan_item_from_price() -> None:
    price = Price(
        id="price_x",
        product="prod_x",
        currency="jpy",
        unit_amount=980,
        recurring=Recurring(interval=Interval.MONTH),
        created=utc(2025, 1, 1),
    )
    assert PlanItem.from_price(price, 2).amount == Money(1960, "JPY")


MONEY = st.integers(min_value=0, max_value=99_999_999)
QTY = st.integers(min_value=1, max_value=100)


@given(
    old=MONEY,
    new=MONEY,
    old_q=QTY,
    new_q=QTY,
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
    offset=st.integers(min_value=0, max_value=30 * 86400 - 1),
)
def test_each_line_is_within_half_a_minor_unit_and_credit_of_same_item_cancels(
    old: int, new: int, old_q: int, new_q: int, currency: str, offset: int
) -> None:
    t = APRIL.start + timedelta(seconds=offset)
    a, b = item(old, old_q, currency), item(new, new_q, currency)
    credit, charge = unused_time_credit(a, APRIL, t), remaining_time_charge(b, APRIL, t)
    fraction = Fraction(30 * 86400 - offset, 30 * 86400)
    for line, exact in ((credit, -old * old_q * fraction), (charge, new * new_q * fraction)):
        assert isinstance(line.amount, int)
        assert abs(line.amount - exact) <= Fraction(1, 2)
    assert unused_time_credit(b, APRIL, t).amount == -charge.amount  # half away from zero: symmetric


# ------------------------------------------------------------------ cancellation
def subscription(status: Status = Status.ACTIVE, **changes: object) -> Subscription:
    fields: dict[str, object] = dict(
        id="sub_1",
        customer="cus_1",
        price="price_1",
        quantity=2,
        currency="EUR",
        unit_amount=1500,
        interval=Interval.MONTH,
        interval_count=1,
        status=status,
        billing_cycle_anchor=APRIL.start,
        current_period_start=APRIL.start,
        current_period_end=APRIL.end,
        created=utc(2025, 3, 1),
    )
    fields.update(changes)
    return Subscription(**fields)  # type: ignore[arg-type]


def test_cancel_immediately_with_a_prorated_credit() -> None:
    # 2 × 15 € with 10 of 30 days left: −10 €
    result = cancel_immediately(subscription(), utc(2025, 4, 21), prorate=True, invoice_now=True)
    assert result.subscription.status is Status.CANCELED
    assert result.subscription.ended_at == utc(2025, 4, 21)
    assert [line.amount for line in result.lines] == [-1000]
    assert result.invoice_now


def test_cancel_immediately_without_proration_credits_nothing() -> None:
    assert cancel_immediately(subscription(), utc(2025, 4, 21)).lines == ()


def test_cancel_during_a_trial_credits_nothing() -> None:
    trial = subscription(Status.TRIALING, trial_start=APRIL.start, trial_end=APRIL.end)
    assert cancel_immediately(trial, utc(2025, 4, 21), prorate=True).lines == ()


def test_cancel_at_period_end_and_undo() -> None:
    sub = subscription()
    scheduled = schedule_cancellation(sub, utc(2025, 4, 10))
    assert scheduled.cancel_at_period_end and scheduled.canceled_at == utc(2025, 4, 10)
    assert schedule_cancellation(scheduled, utc(2025, 4, 11)) == scheduled  # twice: once
    undone = undo_scheduled_cancellation(scheduled, utc(2025, 4, 29))
    assert not undone.cancel_at_period_end and undone.canceled_at is None
    with pytest.raises(IllegalTransition):
        undo_scheduled_cancellation(scheduled, APRIL.end)
    with pytest.raises(IllegalTransition):
        schedule_cancellation(sub.transition(Status.CANCELED, utc(2025, 4, 2)), utc(2025, 4, 3))


def test_cancellation_details_follow_stripe() -> None:
    details = CancellationDetails(feedback=CancellationFeedback.TOO_EXPENSIVE, comment="cheaper elsewhere")
    assert details.reason.value == "cancellation_requested"
    with pytest.raises(ValidationError):
        CancellationDetails(feedback="bored")  # type: ignore[arg-type]


def test_period_boundaries_from_the_anchor_feed_the_fraction() -> None:
    # after a Jan 31 anchor the second period runs Feb 28 → Mar 31 (31 days): halfway is Mar 15, 12:00
    feb = Period(boundary(utc(2025, 1, 31), Interval.MONTH, 1, 1), boundary(utc(2025, 1, 31), Interval.MONTH, 1, 2))
    assert feb == Period(utc(2025, 2, 28), utc(2025, 3, 31))
    assert remaining_fraction(feb, utc(2025, 3, 15, 12)) == Fraction(1, 2)
