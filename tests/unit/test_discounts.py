"""Coupons, promotion codes, discounts over periods and their per-line amounts with explicit rounding."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kassa.domain.discounts import (
    Coupon,
    Discount,
    Duration,
    PromotionCode,
    Unredeemable,
    apply_discount,
    discount_applies,
    ensure_discount_currency,
    is_redeemable,
    parse_percent,
    record_discounted_invoice,
    redeem,
    start_discount,
)
from kassa.domain.errors import CurrencyMismatch, InvalidInput
from kassa.domain.invoice import InvoiceLine
from kassa.domain.periods import Interval, Period, boundary
from kassa.domain.proration import PlanItem, full_period_charge

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def line(amount: int, price: str = "price_a", description: str = "Pro") -> InvoiceLine:
    return InvoiceLine(
        description=description,
        amount=amount,
        quantity=1,
        unit_amount=amount,
        price=price,
        period_start=NOW,
        period_end=utc(2025, 2, 1),
    )


def percent(value: int | str, duration: Duration = Duration.FOREVER, **kw: object) -> Coupon:
    return Coupon(id="co_pct", percent_off=value, duration=duration, **kw)  # type: ignore[arg-type]


def amount_off(value: int, currency: str = "EUR", **kw: object) -> Coupon:
    return Coupon(id="co_amt", amount_off=value, currency=currency, duration=Duration.FOREVER, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ validation
def test_percent_off_is_an_int_or_a_decimal_string_never_a_float() -> None:
    assert percent(25).percent == 25
    assert percent("12.5").percent == Fraction(25, 2)
    assert percent("12.50").percent_off == "12.5"
    assert percent("100").percent_off == "100"
    assert percent("0.05").percent == Fraction(1, 20)  # the percentage itself: 0.05 %
    for bad in (12.5, 0, 101, "0", "12.555", "abc", "-5", True):
        with pytest.raises(InvalidInput) as error:
            percent(bad)  # type: ignore[arg-type]
        assert error.value.param == "percent_off"
    with pytest.raises(InvalidInput, match="never a float"):
        parse_percent(10.0)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (dict(percent_off=10, amount_off=100, currency="EUR", duration="forever"), "percent_off"),
        (dict(duration="forever"), "percent_off"),
        (dict(amount_off=100, duration="forever"), "currency"),
        (dict(amount_off=0, currency="EUR", duration="forever"), "amount_off"),
        (dict(percent_off=10, currency="EUR", duration="forever"), "currency"),
        (dict(percent_off=10, duration="repeating"), "duration_in_months"),
        (dict(percent_off=10, duration="once", duration_in_months=3), "duration_in_months"),
        (dict(percent_off=10, duration="forever", max_redemptions=0), "max_redemptions"),
        (dict(percent_off=10, duration="forever", applies_to=[]), "applies_to"),
        (dict(percent_off=10, duration="forever", redeem_by=datetime(2025, 1, 1)), "redeem_by"),
        (dict(amount_off=100, currency="XXX", duration="forever"), "currency"),
    ],
)
def test_invalid_coupons_name_the_field(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        Coupon(id="co_1", **fields)  # type: ignore[arg-type]
    assert error.value.param == param


def test_amount_off_refuses_floats() -> None:
    with pytest.raises(ValidationError):
        Coupon(id="co_1", amount_off=5.0, currency="EUR", duration=Duration.ONCE)  # type: ignore[arg-type]


def test_amount_off_currency_is_normalized() -> None:
    assert amount_off(500, "eur").currency == "EUR"
    assert amount_off(500).describe() == "co_amt (5.00 EUR off)"
    assert percent("12.5").describe() == "co_pct (12.5% off)"


# ------------------------------------------------------------------ redeemability
def test_a_valid_coupon_is_redeemable() -> None:
    result = is_redeemable(percent(10), NOW, "cus_1", "prod_a")
    assert result.ok and bool(result) and result.reasons == ()


def test_coupon_reasons() -> None:
    coupon = Coupon(
        id="co_1",
        percent_off=10,
        duration=Duration.ONCE,
        max_redemptions=2,
        times_redeemed=2,
        redeem_by=utc(2024, 12, 31),
        applies_to=["prod_b"],
        valid=False,
    )
    assert is_redeemable(coupon, NOW, "cus_1", "prod_a").reasons == (
        Unredeemable.COUPON_DELETED,
        Unredeemable.COUPON_EXPIRED,
        Unredeemable.COUPON_MAX_REDEMPTIONS,
        Unredeemable.PRODUCT_NOT_ELIGIBLE,
    )
    assert is_redeemable(amount_off(100), NOW, currency="JPY").reasons == (Unredeemable.CURRENCY_MISMATCH,)
    # a product-restricted coupon is redeemable when any product of the checkout is eligible
    assert is_redeemable(percent(10, applies_to=["prod_b"]), NOW, product=["prod_a", "prod_b"]).ok


def test_promotion_code_reasons() -> None:
    code = PromotionCode(
        id="promo_1",
        code="SPRING",
        coupon=percent(10),
        active=False,
        max_redemptions=1,
        times_redeemed=1,
        expires_at=NOW,
        customer="cus_vip",
        first_time_transaction=True,
    )
    assert is_redeemable(code, NOW, "cus_1", has_prior_transactions=True).reasons == (
        Unredeemable.CODE_INACTIVE,
        Unredeemable.CODE_EXPIRED,
        Unredeemable.CODE_MAX_REDEMPTIONS,
        Unredeemable.CODE_CUSTOMER_RESTRICTED,
        Unredeemable.CODE_FIRST_TIME_ONLY,
    )
    fresh = PromotionCode(
        id="promo_2", code="WELCOME", coupon=percent(10), customer="cus_vip", first_time_transaction=True
    )
    assert is_redeemable(fresh, NOW, "cus_vip").ok


def test_codes_match_case_insensitively_and_are_validated() -> None:
    code = PromotionCode(id="promo_1", code="Spring-25", coupon=percent(25))
    assert code.matches(" spring-25 ") and not code.matches("summer")
    with pytest.raises(InvalidInput) as error:
        PromotionCode(id="promo_x", code="has space", coupon=percent(1))
    assert error.value.param == "code"


def test_redeem_counts_and_refuses_past_the_limit() -> None:
    code = PromotionCode(id="promo_1", code="ONCE", coupon=percent(10, max_redemptions=5), max_redemptions=1)
    redeemed = redeem(code, NOW, "cus_1")
    assert isinstance(redeemed, PromotionCode)
    assert redeemed.times_redeemed == 1 and redeemed.coupon.times_redeemed == 1
    with pytest.raises(InvalidInput, match="code_max_redemptions_reached") as error:
        redeem(redeemed, NOW, "cus_2")
    assert error.value.param == "promotion_code"


# ------------------------------------------------------------------ discounts over periods
def monthly_invoices(discount: Discount, months: int, unit_amount: int = 1500) -> list[int]:
    """Totals of ``months`` monthly invoices from 1 Jan 2025 with ``discount``."""
    plan = PlanItem(
        price="price_a", product="prod_a", unit_amount=unit_amount, quantity=1, currency="EUR", interval=Interval.MONTH
    )
    totals = []
    for k in range(months):
        period = Period(boundary(NOW, Interval.MONTH, 1, k), boundary(NOW, Interval.MONTH, 1, k + 1))
        lines = [full_period_charge(plan, period)]
        total = sum(x.amount for x in lines)
        if discount_applies(discount, period.start):
            total -= apply_discount(lines, discount, "EUR").total
            discount = record_discounted_invoice(discount)
        totals.append(total)
    return totals


def test_100_percent_off_for_3_months_gives_three_zero_invoices_then_full_price() -> None:
    coupon = Coupon(id="co_free3", percent_off=100, duration=Duration.REPEATING, duration_in_months=3)
    discount = start_discount(coupon, NOW, subscription="sub_1")
    assert discount.end == utc(2025, 4, 1)
    assert monthly_invoices(discount, 5) == [0, 0, 0, 1500, 1500]


def test_once_discounts_the_first_invoice_only_and_forever_every_one() -> None:
    once = start_discount(percent(20, Duration.ONCE), NOW, subscription="sub_1")
    assert monthly_invoices(once, 3) == [1200, 1500, 1500]
    forever = start_discount(percent(20), NOW, subscription="sub_1")
    assert forever.end is None and monthly_invoices(forever, 3) == [1200, 1200, 1200]


def test_repeating_end_clamps_like_billing_periods() -> None:
    coupon = percent(10, Duration.REPEATING, duration_in_months=1)
    assert start_discount(coupon, utc(2025, 1, 31)).end == utc(2025, 2, 28)


def test_a_repeating_coupon_on_a_yearly_price_discounts_the_first_year_only() -> None:
    discount = start_discount(percent(50, Duration.REPEATING, duration_in_months=3), NOW)
    assert discount_applies(discount, NOW)
    assert not discount_applies(discount, utc(2026, 1, 1))


def test_a_discount_added_mid_period_starts_with_the_next_period() -> None:
    discount = start_discount(percent(50), utc(2025, 1, 15))
    assert not discount_applies(discount, NOW)
    assert discount_applies(discount, utc(2025, 2, 1))


# ------------------------------------------------------------------ per-line amounts
def test_percent_is_rounded_half_up_per_line() -> None:
    lines = [line(999), line(1001), line(-500), line(10), line(-10)]
    applied = apply_discount(lines, percent(15), "EUR")
    # 149.85 → 150, 150.15 → 150, −75, 1.5 → 2, −1.5 → −2 (half away from zero)
    assert applied.amounts == (150, 150, -75, 2, -2)
    assert applied.total == 225
    assert applied.discounted_amounts(lines) == [849, 851, -425, 8, -8]
    assert "rounded half-up" in applied.rule
    assert [dl.amount for dl in applied.lines] == [-150, -150, 75, -2, 2]
    assert applied.lines[0].description == "co_pct (15% off) on Pro"


def test_decimal_percent_is_exact() -> None:
    # 12.5 % of 1 234 ¥ = 154.25 → 154; of 1 236 ¥ = 154.5 → 155
    assert apply_discount([line(1234), line(1236)], percent("12.5"), "JPY").amounts == (154, 155)


def test_amount_off_is_allocated_in_proportion_and_sums_exactly() -> None:
    assert apply_discount([line(3000), line(1000)], amount_off(1000), "EUR").amounts == (750, 250)
    # 2 over three equal lines: the largest remainders tie, earlier lines first
    assert apply_discount([line(100), line(100), line(100)], amount_off(2), "EUR").amounts == (1, 1, 0)


def test_amount_off_never_makes_a_line_or_the_invoice_negative() -> None:
    lines = [line(1000), line(-300)]
    applied = apply_discount(lines, amount_off(5000), "EUR")
    assert applied.amounts == (700, 0)  # capped at the subtotal 700
    assert sum(applied.discounted_amounts(lines)) == 0
    assert "capped" in applied.rule
    assert apply_discount([line(-300)], amount_off(100), "EUR").amounts == (0,)


def test_amount_off_in_another_currency_is_refused() -> None:
    with pytest.raises(CurrencyMismatch):
        apply_discount([line(1000)], amount_off(100, "USD"), "EUR")
    with pytest.raises(CurrencyMismatch):
        ensure_discount_currency(start_discount(amount_off(100, "USD"), NOW), "EUR")


def test_applies_to_restricts_to_listed_products() -> None:
    coupon = percent(50, applies_to=["prod_b"])
    lines = [line(1000, "price_a"), line(1000, "price_b")]
    applied = apply_discount(lines, coupon, "EUR", products={"price_a": "prod_a", "price_b": "prod_b"})
    assert applied.amounts == (0, 500)
    assert [dl.line_index for dl in applied.lines] == [1]
    # without a mapping an invoice line has no product: not eligible for a restricted coupon
    assert apply_discount(lines, coupon, "EUR").amounts == (0, 0)
    allocated = apply_discount(lines, amount_off(300, applies_to=["prod_b"]), "EUR", products={"price_b": "prod_b"})
    assert allocated.amounts == (0, 300)


AMOUNTS = st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=8)


@given(amounts=AMOUNTS, off=st.integers(min_value=1, max_value=10**7), currency=st.sampled_from(["EUR", "JPY", "KWD"]))
def test_amount_off_properties(amounts: list[int], off: int, currency: str) -> None:
    lines = [line(a) for a in amounts]
    applied = apply_discount(lines, amount_off(off, currency), currency)
    assert applied.total == min(off, max(0, sum(amounts)))
    for before, cut in zip(amounts, applied.amounts, strict=True):
        assert cut >= 0
        assert cut == 0 or before - cut >= 0  # only positive lines are cut, never below zero
    assert sum(applied.discounted_amounts(lines)) >= min(0, sum(amounts))


@given(
    amounts=AMOUNTS,
    pct=st.one_of(st.integers(min_value=1, max_value=100), st.sampled_from(["0.01", "12.5", "33.33", "99.99"])),
)
def test_percent_properties(amounts: list[int], pct: int | str) -> None:
    coupon = percent(pct)
    applied = apply_discount([line(a) for a in amounts], coupon, "EUR")
    assert coupon.percent is not None
    for before, cut in zip(amounts, applied.amounts, strict=True):
        assert isinstance(cut, int)
        assert abs(cut - Fraction(before) * coupon.percent / 100) <= Fraction(1, 2)
        assert abs(cut) <= abs(before)
    if coupon.percent == 100:
        assert applied.amounts == tuple(amounts)
