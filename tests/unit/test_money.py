"""Money: integer minor units, ISO 4217 exponents, no floats, no mixed currencies, explicit rounding."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.errors import CurrencyMismatch, InvalidInput
from kassa.domain.money import EXPONENTS, Money, Rounding, exponent, normalize_currency, round_fraction

CURRENCIES = sorted(EXPONENTS)
amounts = st.integers(min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(CURRENCIES)


# ------------------------------------------------------------------ currencies and exponents
@pytest.mark.parametrize(
    ("currency", "expected"),
    [("EUR", 2), ("eur", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("kwd", 3)],
)
def test_iso_4217_exponents(currency: str, expected: int) -> None:
    assert exponent(currency) == expected
    assert Money(1, currency).exponent == expected


@pytest.mark.parametrize("currency", ["XXX", "", "EURO", "eu", "BTC"])
def test_unknown_currency_is_rejected_naming_currency(currency: str) -> None:
    with pytest.raises(InvalidInput) as error:
        Money(100, currency)
    assert error.value.param == "currency"
    with pytest.raises(InvalidInput) as error:
        normalize_currency(currency)
    assert error.value.param == "currency"


def test_currency_is_normalised_to_upper_case() -> None:
    money = Money(100, "eur")
    assert money.currency == "EUR"
    assert money == Money(100, "EUR")
    assert normalize_currency("jpy") == "JPY"


# ------------------------------------------------------------------ integers only
@pytest.mark.parametrize("amount", [1.0, 0.5, 10.25, Decimal("1.00"), Fraction(1, 2), "100", None])
def test_money_refuses_non_integer_amounts(amount: object) -> None:
    with pytest.raises(InvalidInput) as error:
        Money(amount, "EUR")  # type: ignore[arg-type]
    assert error.value.param == "amount"


@pytest.mark.parametrize("amount", [True, False])
def test_money_refuses_bools(amount: bool) -> None:
    with pytest.raises(InvalidInput):
        Money(amount, "EUR")


@pytest.mark.parametrize("quantity", [1.5, True, "2"])
def test_times_refuses_non_integer_quantities(quantity: object) -> None:
    with pytest.raises(InvalidInput) as error:
        Money(100, "EUR").times(quantity)  # type: ignore[arg-type]
    assert error.value.param == "quantity"


@pytest.mark.parametrize("factor", [0.5, 1.1])
def test_scaled_refuses_float_factors(factor: float) -> None:
    with pytest.raises(InvalidInput) as error:
        Money(100, "EUR").scaled(factor)  # type: ignore[arg-type]
    assert error.value.param == "factor"


# ------------------------------------------------------------------ arithmetic
@given(amounts, amounts, currencies)
def test_same_currency_arithmetic_is_exact(a: int, b: int, currency: str) -> None:
    x, y = Money(a, currency), Money(b, currency)
    assert (x + y).amount == a + b
    assert (x - y).amount == a - b
    assert (-x).amount == -a
    assert (x + y).currency == currency
    assert (x < y) == (a < b)
    assert (x <= y) == (a <= b)
    assert x.times(3).amount == 3 * a


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
    ],
    ids=["add", "sub", "lt", "le"],
)
def test_mixed_currency_arithmetic_raises_currency_mismatch(operation) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CurrencyMismatch):
        operation(Money(100, "EUR"), Money(100, "USD"))
    # a CurrencyMismatch is an InvalidInput: the API answers 400, not 500
    assert issubclass(CurrencyMismatch, InvalidInput)


def test_combining_money_with_a_plain_number_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Money(100, "EUR") + 1  # type: ignore[operator]


# ------------------------------------------------------------------ rounding
HALF = Fraction(1, 2)
ROUNDING_TABLE = [
    # value,                half_up, half_even, down, up
    (Fraction(5, 2), 3, 2, 2, 3),  # 2.5
    (Fraction(7, 2), 4, 4, 3, 4),  # 3.5
    (HALF, 1, 0, 0, 1),  # 0.5
    (Fraction(3, 2), 2, 2, 1, 2),  # 1.5
    (Fraction(-5, 2), -3, -2, -2, -3),  # -2.5: half_up is away from zero
    (Fraction(-7, 2), -4, -4, -3, -4),  # -3.5
    (-HALF, -1, 0, 0, -1),  # -0.5
    (Fraction(-3, 2), -2, -2, -1, -2),  # -1.5
    (Fraction(1, 3), 0, 0, 0, 1),
    (Fraction(2, 3), 1, 1, 0, 1),
    (Fraction(-1, 3), 0, 0, 0, -1),
    (Fraction(-2, 3), -1, -1, 0, -1),
    (Fraction(1001, 1000), 1, 1, 1, 2),  # a hair above an integer
    (Fraction(-1001, 1000), -1, -1, -1, -2),
    (Fraction(4), 4, 4, 4, 4),  # exact integers never move
    (Fraction(-4), -4, -4, -4, -4),
    (Fraction(0), 0, 0, 0, 0),
]
MODES = [Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.DOWN, Rounding.UP]


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [(row[0], mode, row[1 + i]) for row in ROUNDING_TABLE for i, mode in enumerate(MODES)],
    ids=lambda v: str(v),
)
def test_round_fraction_table(value: Fraction, mode: Rounding, expected: int) -> None:
    assert round_fraction(value, mode) == expected


def test_round_fraction_defaults_to_half_up() -> None:
    assert round_fraction(Fraction(5, 2)) == 3
    assert round_fraction(Fraction(-5, 2)) == -3


def _oracle(value: Fraction, mode: Rounding) -> int:
    """Exact rounding computed independently of kassa."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    if mode is Rounding.HALF_UP:
        return sign * math.floor(magnitude + HALF)
    if mode is Rounding.HALF_EVEN:
        return round(value)  # Fraction.__round__ rounds half to even, exactly
    if mode is Rounding.DOWN:
        return math.trunc(value)
    return sign * math.ceil(magnitude)


fractions = st.fractions(min_value=-(10**9), max_value=10**9, max_denominator=10**6)


@given(fractions, st.sampled_from(MODES))
def test_round_fraction_matches_exact_rounding(value: Fraction, mode: Rounding) -> None:
    result = round_fraction(value, mode)
    assert result == _oracle(value, mode)
    assert abs(Fraction(result) - value) < 1  # never more than one minor unit away


@given(amounts, currencies, fractions, st.sampled_from(MODES))
def test_scaled_equals_exact_rounding(amount: int, currency: str, factor: Fraction, mode: Rounding) -> None:
    scaled = Money(amount, currency).scaled(factor, mode)
    assert scaled.currency == currency
    assert scaled.amount == _oracle(Fraction(amount) * factor, mode)


def test_scaled_proration_examples_from_stripe() -> None:
    # $10 -> $20 halfway through the period: -$5 + $10 = +$5
    half = Fraction(1, 2)
    credit = -Money(1000, "USD").scaled(half)
    charge = Money(2000, "USD").scaled(half)
    assert (credit + charge) == Money(500, "USD")
    # backdating to 15 Jan: 17/31 of a month, rounded half up to the cent
    assert Money(1000, "USD").scaled(Fraction(17, 31)) == Money(548, "USD")
    assert Money(1000, "USD").scaled(Fraction(14, 28)) == Money(500, "USD")


# ------------------------------------------------------------------ allocation
@given(amounts, currencies, st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12))
def test_allocate_never_loses_or_creates_a_minor_unit(amount: int, currency: str, ratios: list[int]) -> None:
    if sum(ratios) == 0:
        with pytest.raises(InvalidInput):
            Money(amount, currency).allocate(ratios)
        return
    parts = Money(amount, currency).allocate(ratios)
    assert len(parts) == len(ratios)
    assert sum(p.amount for p in parts) == amount
    assert all(p.currency == currency for p in parts)
    # no part is more than one minor unit above or below its exact share (tighter: xfail below)
    total = sum(ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        assert abs(part.amount - Fraction(amount * ratio, total)) <= 1


@given(amounts, currencies, st.integers(min_value=1, max_value=50))
def test_allocate_equal_ratios_differ_by_at_most_one(amount: int, currency: str, n: int) -> None:
    parts = [p.amount for p in Money(amount, currency).allocate([1] * n)]
    assert sum(parts) == amount
    assert max(parts) - min(parts) <= 1
    magnitudes = [abs(p) for p in parts]
    assert magnitudes == sorted(magnitudes, reverse=True)  # the remainder goes to the first parts


def test_allocate_examples() -> None:
    assert [p.amount for p in Money(100, "EUR").allocate([1, 1, 1])] == [34, 33, 33]
    assert [p.amount for p in Money(5, "JPY").allocate([3, 7])] == [2, 3]
    # symmetric: allocating a credit is the negative of allocating the charge
    assert [p.amount for p in Money(-100, "EUR").allocate([1, 1, 1])] == [-34, -33, -33]


@pytest.mark.parametrize("ratios", [[], [0, 0], [1, -1], [-1]])
def test_allocate_rejects_bad_ratios(ratios: list[int]) -> None:
    with pytest.raises(InvalidInput):
        Money(100, "EUR").allocate(ratios)


def test_allocate_gives_each_part_the_floor_or_ceiling_of_its_share_examples() -> None:
    assert Money(1, "EUR").allocate([0, 1, 1])[0].amount == 0  # a 0 % share gets nothing
    assert Money(6, "EUR").allocate([2, 1, 1])[0].amount == 3  # an exact share of 3 gets 3, not 4


@given(amounts.filter(bool), st.lists(st.integers(min_value=0, max_value=20), min_size=2, max_size=8))
def test_allocate_gives_each_part_the_floor_or_ceiling_of_its_share(amount: int, ratios: list[int]) -> None:
    ratios = [0, *ratios]  # always one zero ratio, which must get exactly nothing
    if sum(ratios) == 0:
        ratios.append(1)
    parts = Money(amount, "EUR").allocate(ratios)
    total = sum(ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        exact = Fraction(amount * ratio, total)
        assert math.floor(exact) <= part.amount <= math.ceil(exact)


# ------------------------------------------------------------------ formatting
@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(123456, "EUR"), "1234.56 EUR"),
        (Money(5, "EUR"), "0.05 EUR"),
        (Money(-5, "EUR"), "-0.05 EUR"),
        (Money(0, "EUR"), "0.00 EUR"),
        (Money(1000, "JPY"), "1000 JPY"),
        (Money(-7, "JPY"), "-7 JPY"),
        (Money(1, "KWD"), "0.001 KWD"),
        (Money(12345, "KWD"), "12.345 KWD"),
        (Money(-1000, "KWD"), "-1.000 KWD"),
    ],
)
def test_format_examples(money: Money, text: str) -> None:
    assert money.format() == text


@given(amounts, st.sampled_from(["EUR", "JPY", "KWD", "USD", "BHD", "KRW"]))
def test_format_round_trips_to_the_exact_decimal(amount: int, currency: str) -> None:
    text = Money(amount, currency).format()
    number, code = text.split(" ")
    assert code == currency
    exp = exponent(currency)
    assert Decimal(number) == Decimal(amount).scaleb(-exp)
    # exactly `exp` decimals, and none at all for zero-decimal currencies
    assert ("." not in number) if exp == 0 else len(number.split(".")[1]) == exp


def test_to_dict() -> None:
    assert Money(250, "kwd").to_dict() == {"amount": 250, "currency": "KWD"}
    assert Money.zero("JPY") == Money(0, "JPY")
