"""Beyond the EU: tax is charged only where the seller is registered; Canada's components; US states."""

from __future__ import annotations

import pytest
from tax_helpers import quote, settings

from kassa.domain.errors import InvalidInput
from kassa.domain.tax import RuleId

EVERYWHERE = settings(
    "NL",
    oss_registered=True,
    registrations=["GB", "NO", "CH", "AU", "NZ", "JP", "SG", "IN", "CA", "CA-QC", "CA-BC", "CA-MB", "CA-SK"],
)


# ------------------------------------------------------------------ national VAT / GST
@pytest.mark.parametrize(
    ("country", "on", "currency", "amount", "rate", "tax"),
    [
        ("GB", "2025-01-01", "GBP", 10000, "20", 2000),
        ("NO", "2025-01-01", "NOK", 10000, "25", 2500),
        ("CH", "2023-12-31", "CHF", 10000, "7.7", 770),
        ("CH", "2024-01-01", "CHF", 10000, "8.1", 810),
        ("LI", "2024-01-01", "CHF", 10000, "8.1", 810),  # Liechtenstein: Swiss VAT
        ("AU", "2025-01-01", "AUD", 10000, "10", 1000),
        ("NZ", "2025-01-01", "NZD", 10000, "15", 1500),
        ("JP", "2019-09-30", "JPY", 1000, "8", 80),
        ("JP", "2025-01-01", "JPY", 1000, "10", 100),
        ("SG", "2022-06-01", "SGD", 10000, "7", 700),
        ("SG", "2023-06-01", "SGD", 10000, "8", 800),
        ("SG", "2024-06-01", "SGD", 10000, "9", 900),
        ("IN", "2025-01-01", "INR", 10000, "18", 1800),
    ],
)
def test_registered_seller_charges_local_tax(
    country: str, on: str, currency: str, amount: int, rate: str, tax: int
) -> None:
    result = quote(country, amount, on=on, currency=currency, seller=EVERYWHERE)
    assert (result.rate, result.tax_amount, result.total) == (rate, tax, amount + tax)
    assert result.rule is not None and result.rule.id is RuleId.REGISTERED


@pytest.mark.parametrize("country", ["GB", "NO", "CH", "AU", "NZ", "JP", "SG", "IN"])
def test_not_registered_means_no_tax_and_the_rule_says_so(country: str) -> None:
    result = quote(country, seller=settings("NL", oss_registered=True), currency="USD")
    assert result.tax_amount == 0 and result.jurisdiction == country
    assert result.rule is not None and result.rule.id is RuleId.NOT_REGISTERED
    assert "not registered" in result.rule.description


def test_home_country_counts_as_registration() -> None:
    result = quote("GB", seller=settings("GB"), currency="GBP", on="2025-01-01")
    assert result.tax_amount == 2000


@pytest.mark.parametrize(
    ("country", "tax_id", "normalized"),
    [
        ("GB", "GB 980 7806 84", "GB980780684"),
        ("NO", "NO 995 525 828 MVA", "NO995525828MVA"),
        ("AU", "51 824 753 556", "51824753556"),
        ("CA", "123456782RT0001", "123456782RT0001"),
    ],
)
def test_foreign_b2b_is_reverse_charged_by_a_non_resident(country: str, tax_id: str, normalized: str) -> None:
    result = quote(country, tax_id=tax_id, state="ON" if country == "CA" else None, seller=EVERYWHERE)
    assert (result.tax_amount, result.reverse_charge) == (0, True)
    assert result.customer_tax_id == normalized
    assert result.rule is not None and result.rule.id is RuleId.B2B_REVERSE_CHARGE
    assert result.legal_mention is not None and "Reverse charge" in result.legal_mention


def test_domestic_b2b_outside_the_eu_is_taxed() -> None:
    result = quote("GB", tax_id="GB980780684", seller=settings("GB"), on="2025-01-01")
    assert (result.tax_amount, result.reverse_charge) == (2000, False)


def test_swiss_vat_is_charged_to_swiss_businesses_too() -> None:
    result = quote("CH", tax_id="CHE-107.787.577 MWST", seller=EVERYWHERE, on="2025-01-01")
    assert (result.tax_amount, result.reverse_charge) == (810, False)


def test_invalid_national_tax_id_means_consumer() -> None:
    result = quote("GB", tax_id="GB123456789", seller=EVERYWHERE, on="2025-01-01")
    assert (result.tax_amount, result.reverse_charge, result.customer_tax_id) == (2000, False, None)


def test_country_without_rules_gets_no_tax() -> None:
    result = quote("BR", seller=EVERYWHERE)
    assert result.tax_amount == 0 and result.rule is not None and result.rule.id is RuleId.NO_TAX_RULE


# ------------------------------------------------------------------ Canada
def test_quebec_gst_plus_qst() -> None:
    result = quote("CA", 10000, state="QC", currency="CAD", seller=EVERYWHERE)
    assert result.jurisdiction == "CA-QC"
    assert [(c.jurisdiction, c.tax_type, c.rate, c.tax_amount) for c in result.lines[0].components] == [
        ("CA", "GST", "5", 500),
        ("CA-QC", "QST", "9.975", 998),  # 997.5 rounds half up
    ]
    assert (result.rate, result.tax_amount, result.total) == ("14.975", 1498, 11498)
    assert {(row.jurisdiction, row.tax_type, row.tax_amount) for row in result.breakdown} == {
        ("CA", "GST", 500),
        ("CA-QC", "QST", 998),
    }


def test_quebec_inclusive_price_splits_without_losing_a_cent() -> None:
    result = quote("CA", 11498, state="QC", currency="CAD", seller=EVERYWHERE, inclusive=True)
    assert (result.taxable_amount, result.tax_amount, result.total) == (10000, 1498, 11498)
    assert sum(c.tax_amount for c in result.lines[0].components) == 1498


@pytest.mark.parametrize(
    ("province", "postal_code", "on", "expected"),
    [
        ("ON", None, "2025-01-01", [("CA-ON", "HST", "13")]),
        ("NS", None, "2025-03-31", [("CA-NS", "HST", "15")]),
        ("NS", None, "2025-04-01", [("CA-NS", "HST", "14")]),
        ("NB", None, "2025-01-01", [("CA-NB", "HST", "15")]),
        ("NL", None, "2025-01-01", [("CA-NL", "HST", "15")]),
        ("PE", None, "2025-01-01", [("CA-PE", "HST", "15")]),
        ("BC", None, "2025-01-01", [("CA", "GST", "5"), ("CA-BC", "PST", "7")]),
        ("MB", None, "2025-01-01", [("CA", "GST", "5"), ("CA-MB", "RST", "7")]),
        ("SK", None, "2025-01-01", [("CA", "GST", "5"), ("CA-SK", "PST", "6")]),
        ("AB", None, "2025-01-01", [("CA", "GST", "5")]),
        (None, "H2X 1Y4", "2025-01-01", [("CA", "GST", "5"), ("CA-QC", "QST", "9.975")]),  # Montréal
        (None, "M5V 2T6", "2025-01-01", [("CA-ON", "HST", "13")]),  # Toronto
        (None, "X0A 0H0", "2025-01-01", [("CA", "GST", "5")]),  # Nunavut
    ],
)
def test_canadian_provinces(province: str | None, postal_code: str | None, on: str, expected: list) -> None:
    result = quote("CA", state=province, postal_code=postal_code, on=on, currency="CAD", seller=EVERYWHERE)
    assert [(c.jurisdiction, c.tax_type, c.rate) for c in result.lines[0].components] == expected


def test_canada_partial_registration_charges_only_what_is_registered() -> None:
    gst_only = quote("CA", state="QC", currency="CAD", seller=settings("US", registrations=["CA"]))
    assert [c.tax_type for c in gst_only.lines[0].components] == ["GST"]
    assert gst_only.rule is not None and "QST not charged" in gst_only.rule.description
    nothing = quote("CA", state="QC", currency="CAD", seller=settings("US"))
    assert nothing.tax_amount == 0 and nothing.rule is not None and nothing.rule.id is RuleId.NOT_REGISTERED


def test_canada_needs_a_province() -> None:
    with pytest.raises(InvalidInput) as error:
        quote("CA", currency="CAD", seller=EVERYWHERE)
    assert error.value.param == "address.state"


# ------------------------------------------------------------------ United States
US_SELLER = settings("US", registrations=["US-WA", "US-TX", "US-NY", "US-CT", "US-CA", "US-PA", "US-SD"])


@pytest.mark.parametrize(
    ("state", "on", "rate", "tax"),
    [
        ("WA", "2025-01-01", "6.5", 650),
        ("TX", "2025-01-01", "5", 500),  # 6.25% on 80%
        ("NY", "2025-01-01", "4", 400),
        ("CT", "2025-01-01", "1", 100),
        ("PA", "2025-01-01", "6", 600),
        ("SD", "2023-06-30", "4.5", 450),
        ("SD", "2023-07-01", "4.2", 420),
    ],
)
def test_us_registered_taxable_state(state: str, on: str, rate: str, tax: int) -> None:
    result = quote("US", state=state, on=on, currency="USD", seller=US_SELLER)
    assert (result.jurisdiction, result.rate, result.tax_amount) == (f"US-{state}", rate, tax)
    assert result.rule is not None and result.rule.id is RuleId.REGISTERED
    assert "no local rates" in result.rule.description


def test_texas_taxes_80_percent_at_6_25() -> None:
    result = quote("US", 10000, state="TX", currency="USD", seller=US_SELLER)
    (component,) = result.lines[0].components
    assert (component.rate, component.taxable_amount, component.tax_amount) == ("6.25", 8000, 500)
    assert result.taxable_amount == 10000


def test_us_not_registered_means_no_tax() -> None:
    result = quote("US", state="TN", currency="USD", seller=US_SELLER)
    assert result.tax_amount == 0 and result.rule is not None and result.rule.id is RuleId.NOT_REGISTERED


@pytest.mark.parametrize("state", ["CA", "FL", "OR"])
def test_us_state_where_saas_is_not_taxable(state: str) -> None:
    result = quote("US", state=state, currency="USD", seller=US_SELLER)
    assert result.tax_amount == 0 and result.rule is not None and result.rule.id is RuleId.NOT_TAXABLE


def test_us_needs_a_state() -> None:
    with pytest.raises(InvalidInput) as error:
        quote("US", currency="USD", seller=US_SELLER)
    assert error.value.param == "address.state"


def test_us_territory_without_data() -> None:
    result = quote("US", state="PR", currency="USD", seller=US_SELLER)
    assert result.tax_amount == 0 and result.rule is not None and result.rule.id is RuleId.NO_TAX_RULE
