"""The arithmetic: exclusive and inclusive prices, per-line rounding in the currency's exponent,
exemptions, tax codes, the invoice breakdown, and properties that must hold for any amount."""

from __future__ import annotations

from datetime import date, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tax_helpers import OSS_NL, quote, settings

from kassa.domain.catalog import TaxBehavior
from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput
from kassa.domain.tax import (
    RuleId,
    TaxCustomer,
    TaxLineInput,
    TaxSettings,
    default_rates,
    quote_tax,
)


def test_inclusive_price_netherlands() -> None:
    result = quote("NL", 12100, inclusive=True)
    assert (result.taxable_amount, result.tax_amount, result.total) == (10000, 2100, 12100)
    line = result.lines[0]
    assert line.tax_behavior is TaxBehavior.INCLUSIVE and line.rate == "21"


def test_exclusive_rounds_half_up_per_line() -> None:
    # 21% of 2.50 = 0.525 → 0.53 (half up), 21% of 2.49 = 0.5229 → 0.52
    assert quote("NL", 250).tax_amount == 53
    assert quote("NL", 249).tax_amount == 52


def test_jpy_has_no_decimals() -> None:
    seller = settings("NL", oss_registered=True, registrations=["JP"])
    result = quote("JP", 1234, currency="JPY", seller=seller)  # 123.4 → 123
    assert (result.tax_amount, result.total) == (123, 1357)
    assert quote("JP", 1235, currency="JPY", seller=seller).tax_amount == 124  # 123.5 → 124
    inclusive = quote("JP", 1100, currency="JPY", seller=seller, inclusive=True)
    assert (inclusive.taxable_amount, inclusive.tax_amount) == (1000, 100)


def test_kwd_has_three_decimals() -> None:
    # A KWD-priced sale to a Finnish consumer: 12.345 KWD at 25.5% = 3.147975 → 3.148
    result = quote("FI", 12345, currency="KWD")
    assert (result.tax_amount, result.total) == (3148, 15493)


def test_floats_are_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        TaxLineInput(amount=100.0)  # type: ignore[arg-type]
    assert error.value.param == "amount"


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        quote("NL", currency="XXX")
    assert error.value.param == "currency"


def test_exempt_customer() -> None:
    result = quote("FI", exempt=True)
    assert (result.tax_amount, result.total, result.jurisdiction) == (0, 10000, "FI")
    assert result.rule is not None and result.rule.id is RuleId.CUSTOMER_EXEMPT
    assert "exempt" in result.rule.description


def test_nontaxable_tax_code_and_stripe_aliases() -> None:
    assert quote("FI", tax_code="txcd_00000000").tax_amount == 0
    assert quote("FI", tax_code="nontaxable").rule.id is RuleId.PRODUCT_NONTAXABLE  # type: ignore[union-attr]
    assert quote("FI", tax_code="txcd_10103001", on="2025-01-01").tax_amount == 2550
    with pytest.raises(InvalidInput) as error:
        quote("FI", tax_code="txcd_99999999")
    assert error.value.param == "tax_code"


def test_tax_date_as_datetime_uses_its_calendar_day() -> None:
    customer = TaxCustomer(address=Address(country="FI"))
    result = quote_tax(
        [TaxLineInput(amount=10000)],
        currency="EUR",
        customer=customer,
        settings=OSS_NL,
        tax_date=datetime(2024, 9, 1, 0, 30),
    )
    assert result.tax_date == date(2024, 9, 1) and result.rate == "25.5"


def test_mixed_lines_and_breakdown() -> None:
    customer = TaxCustomer(address=Address(country="FI"))
    lines = [
        TaxLineInput(amount=10000, reference="seat"),
        TaxLineInput(amount=5000, reference="addon"),
        TaxLineInput(amount=12550, tax_behavior=TaxBehavior.INCLUSIVE, reference="incl"),
        TaxLineInput(amount=700, tax_code="nontaxable", reference="donation"),
        TaxLineInput(amount=-2000, reference="proration credit"),
    ]
    result = quote_tax(lines, currency="EUR", customer=customer, settings=OSS_NL, tax_date=date(2025, 1, 1))
    assert [line.reference for line in result.lines] == ["seat", "addon", "incl", "donation", "proration credit"]
    assert [line.tax_amount for line in result.lines] == [2550, 1275, 2550, 0, -510]
    assert result.rule is None and result.rate is None  # lines decided differently
    assert (result.taxable_amount, result.tax_amount) == (10000 + 5000 + 10000 + 700 - 2000, 5865)
    assert result.total == result.taxable_amount + result.tax_amount
    rows = {(row.tax_type, row.rate): (row.taxable_amount, row.tax_amount) for row in result.breakdown}
    assert rows == {("VAT", "25.5"): (23000, 5865), (None, "0"): (700, 0)}
    assert sum(row.tax_amount for row in result.breakdown) == result.tax_amount


def test_empty_quote_still_says_what_applies() -> None:
    customer = TaxCustomer(address=Address(country="FI"))
    result = quote_tax([], currency="EUR", customer=customer, settings=OSS_NL, tax_date=date(2025, 1, 1))
    assert result.lines == () and result.total == 0
    assert result.rule is not None and result.rule.id is RuleId.EU_OSS and result.jurisdiction == "FI"


def test_quote_serializes_for_the_api() -> None:
    data = quote("FI", on="2025-01-01").model_dump(mode="json")
    assert data["rate"] == "25.5" and data["rule"]["id"] == "eu_b2c_oss"
    assert "vero.fi" in data["lines"][0]["components"][0]["source"]


# ------------------------------------------------------------------ properties
EU_COUNTRIES = sorted(code for code in default_rates().jurisdictions if len(code) == 2 and code not in {"CA"})
amounts = st.integers(min_value=-(10**12), max_value=10**12)
days = st.dates(min_value=date(2023, 1, 1), max_value=date(2030, 12, 31))
WORLD = TaxSettings(
    home_country="NL",
    oss_registered=True,
    registrations=["GB", "NO", "CH", "AU", "NZ", "JP", "SG", "IN", "CA", "CA-QC", "CA-BC", "US-TX", "US-WA"],
)
PLACES = [
    ("FI", None),
    ("DE", None),
    ("HU", None),
    ("LU", None),
    ("GB", None),
    ("CH", None),
    ("JP", None),
    ("CA", "QC"),
    ("CA", "BC"),
    ("CA", "NS"),
    ("US", "TX"),
    ("US", "WA"),
]


@given(amount=amounts, on=days, place=st.sampled_from(PLACES), currency=st.sampled_from(["EUR", "JPY", "KWD"]))
def test_total_is_taxable_plus_tax_exactly(amount: int, on: date, place: tuple[str, str | None], currency: str) -> None:
    for inclusive in (False, True):
        result = quote(place[0], amount, state=place[1], on=on, seller=WORLD, currency=currency, inclusive=inclusive)
        line = result.lines[0]
        assert line.total == line.taxable_amount + line.tax_amount
        assert line.tax_amount == sum(c.tax_amount for c in line.components)
        assert result.total == result.taxable_amount + result.tax_amount
        if inclusive:
            assert line.total == amount  # the customer pays exactly the displayed price
        else:
            assert line.taxable_amount == amount


@given(net=amounts, on=days, place=st.sampled_from(PLACES))
def test_exclusive_inclusive_round_trip_within_one_minor_unit(
    net: int, on: date, place: tuple[str, str | None]
) -> None:
    exclusive = quote(place[0], net, state=place[1], on=on, seller=WORLD)
    back = quote(place[0], exclusive.total, state=place[1], on=on, seller=WORLD, inclusive=True)
    assert abs(back.taxable_amount - net) <= 1
    assert back.total == exclusive.total
    if len(exclusive.lines[0].components) == 1:  # one rounding: the net comes back exactly
        assert back.taxable_amount == net


@given(net=st.integers(min_value=0, max_value=10**12), on=days)
def test_tax_is_the_exactly_rounded_rate(net: int, on: date) -> None:
    result = quote("FI", net, on=on)
    (row,) = default_rates().rows_at("FI", on)
    exact = Fraction(net) * row.rate
    assert abs(result.tax_amount - exact) <= Fraction(1, 2)
