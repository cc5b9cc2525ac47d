"""Reports: per jurisdiction and period, and the EU OSS quarterly return, adding up to the lines."""

from __future__ import annotations

import csv
import io
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tax_helpers import VALID_VAT, quote, settings

from kassa.domain.errors import InvalidInput
from kassa.domain.tax import (
    RuleId,
    TaxedLine,
    jurisdiction_report,
    oss_return,
    render_jurisdiction_csv,
    render_oss_csv,
    taxed_lines,
)
from kassa.domain.tax.report import format_amount, quarter_bounds, to_euro_cents

SELLER = settings("NL", oss_registered=True, registrations=["US-WA", "CA", "CA-QC"])


def _lines() -> list[TaxedLine]:
    sales = [
        ("in_1", "FI", 10000, None, "2025-07-03", None, "EUR"),  # OSS FI 25.5
        ("in_2", "FI", 5000, None, "2025-08-10", None, "EUR"),  # OSS FI 25.5
        ("in_3", "DE", 10000, None, "2025-09-30", None, "EUR"),  # OSS DE 19
        ("in_4", "PT", 10000, "9500-100", "2025-08-01", None, "EUR"),  # OSS PT (Azores) 16
        ("in_5", "NL", 10000, None, "2025-08-01", None, "EUR"),  # domestic: not OSS
        ("in_6", "DE", 10000, None, "2025-08-01", VALID_VAT["DE"], "EUR"),  # reverse charge: not OSS
        ("in_7", "FI", 10000, None, "2025-06-30", None, "EUR"),  # previous quarter
        ("in_8", "ES", 10000, "35001", "2025-08-01", None, "EUR"),  # Canary Islands: no EU VAT
        ("in_9", "SE", 100000, None, "2025-08-01", None, "SEK"),  # OSS SE 25, in SEK
    ]
    result: list[TaxedLine] = []
    for invoice, country, amount, postal, on, tax_id, currency in sales:
        q = quote(country, amount, postal_code=postal, on=on, tax_id=tax_id, seller=SELLER, currency=currency)
        result.extend(taxed_lines(q, invoice))
    return result


ECB = {"SEK": "11.2"}  # SEK per EUR on the last day of the quarter (illustrative)


def test_oss_return_per_member_state_and_rate() -> None:
    oss = oss_return(_lines(), year=2025, quarter=3, eur_rates=ECB)
    rows = [(r.member_state, r.rate, r.taxable_amount, r.vat_amount) for r in oss.rows]
    sek_taxable = to_euro_cents(100000, "SEK", ECB)  # 1000 SEK / 11.2 = 89.29 EUR
    assert rows == [
        ("DE", "19", 10000, 1900),
        ("FI", "25.5", 15000, 3825),
        ("PT", "16", 10000, 1600),
        ("SE", "25", sek_taxable, to_euro_cents(25000, "SEK", ECB)),
    ]
    assert sek_taxable == 8929
    assert (oss.period_start, oss.period_end) == (date(2025, 7, 1), date(2025, 9, 30))


def test_oss_return_adds_up_to_the_oss_lines() -> None:
    lines = [item for item in _lines() if item.currency == "EUR"]
    oss = oss_return(lines, year=2025, quarter=3)
    in_quarter = [i for i in lines if date(2025, 7, 1) <= i.tax_date <= date(2025, 9, 30)]
    oss_lines = [i.line for i in in_quarter if i.line.rule.id is RuleId.EU_OSS]
    assert oss.total_taxable_amount == sum(line.taxable_amount for line in oss_lines)
    assert oss.total_vat_amount == sum(line.tax_amount for line in oss_lines)
    assert oss.total_vat_amount == sum(row.vat_amount for row in oss.rows)


def test_oss_return_needs_a_rate_for_other_currencies() -> None:
    with pytest.raises(InvalidInput) as error:
        oss_return(_lines(), year=2025, quarter=3)
    assert error.value.param == "eur_rates"
    with pytest.raises(InvalidInput):
        oss_return(_lines(), year=2025, quarter=3, eur_rates={"SEK": 11.2})  # type: ignore[dict-item]


def test_oss_csv() -> None:
    oss = oss_return(_lines(), year=2025, quarter=3, eur_rates=ECB)
    table = list(csv.reader(io.StringIO(render_oss_csv(oss))))
    assert table[0] == [
        "period",
        "member_state_of_consumption",
        "rate_type",
        "vat_rate",
        "taxable_amount_eur",
        "vat_amount_eur",
    ]
    assert table[1] == ["2025-Q3", "DE", "standard", "19", "100.00", "19.00"]
    assert table[-1][:2] == ["2025-Q3", "TOTAL"]
    assert table[-1][5] == format_amount(oss.total_vat_amount, "EUR")


def test_jurisdiction_report_over_a_period() -> None:
    report = jurisdiction_report(_lines(), period_start=date(2025, 7, 1), period_end=date(2025, 9, 30))
    by_key = {(r.jurisdiction, r.tax_type, r.rate, r.reverse_charge, r.currency): r for r in report.rows}
    fi = by_key[("FI", "VAT", "25.5", False, "EUR")]
    assert (fi.taxable_amount, fi.tax_amount, fi.lines, fi.invoices) == (15000, 3825, 2, 2)
    rc = by_key[("DE", None, "0", True, "EUR")]
    assert (rc.taxable_amount, rc.tax_amount) == (10000, 0)
    assert ("ES-CN", None, "0", False, "EUR") in by_key
    assert ("NL", "VAT", "21", False, "EUR") in by_key
    assert all(r.jurisdiction != "FI" or r.tax_type == "VAT" for r in report.rows)
    text = render_jurisdiction_csv(report)
    assert text.splitlines()[0].startswith("period_start,period_end,jurisdiction")
    assert "2025-07-01,2025-09-30,FI,FI,VAT,25.5,no,EUR,150.00,38.25,2,2,0" in text.splitlines()


def test_jurisdiction_filter_by_country_or_exact() -> None:
    seller = settings("US", registrations=["US-WA", "CA", "CA-QC"])
    lines = [
        *taxed_lines(quote("US", 10000, state="WA", currency="USD", seller=seller, on="2025-02-01"), "in_a"),
        *taxed_lines(quote("US", 10000, state="CA", currency="USD", seller=seller, on="2025-02-01"), "in_b"),
        *taxed_lines(quote("CA", 10000, state="QC", currency="CAD", seller=seller, on="2025-02-01"), "in_c"),
    ]
    start, end = quarter_bounds(2025, 1)
    us = jurisdiction_report(lines, period_start=start, period_end=end, jurisdiction="US")
    assert {r.jurisdiction for r in us.rows} == {"US-WA", "US-CA"}
    wa = jurisdiction_report(lines, period_start=start, period_end=end, jurisdiction="us-wa")
    assert [(r.tax_amount, r.currency) for r in wa.rows] == [(650, "USD")]
    canada = jurisdiction_report(lines, period_start=start, period_end=end, jurisdiction="CA")
    assert {(r.jurisdiction, r.tax_type, r.tax_amount) for r in canada.rows} == {
        ("CA", "GST", 500),
        ("CA-QC", "QST", 998),
    }


def test_period_and_quarter_validation() -> None:
    with pytest.raises(InvalidInput) as error:
        oss_return([], year=2025, quarter=5)
    assert error.value.param == "quarter"
    with pytest.raises(InvalidInput) as error:
        jurisdiction_report([], period_start=date(2025, 2, 1), period_end=date(2025, 1, 1))
    assert error.value.param == "period_end"
    assert quarter_bounds(2024, 1) == (date(2024, 1, 1), date(2024, 3, 31))
    assert quarter_bounds(2024, 4) == (date(2024, 10, 1), date(2024, 12, 31))


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(12345, "EUR", "123.45"), (-5, "EUR", "-0.05"), (1234, "JPY", "1234"), (1234, "KWD", "1.234")],
)
def test_format_amount(amount: int, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


@given(
    sales=st.lists(
        st.tuples(
            st.sampled_from(["FI", "DE", "FR", "SE", "NL", "IE", "LU"]),
            st.integers(min_value=-(10**8), max_value=10**9),
            st.dates(min_value=date(2024, 1, 1), max_value=date(2024, 12, 31)),
        ),
        max_size=20,
    )
)
def test_oss_totals_always_equal_the_sum_of_oss_lines(sales: list[tuple[str, int, date]]) -> None:
    lines = [item for i, (c, a, d) in enumerate(sales) for item in taxed_lines(quote(c, a, on=d), f"in_{i}")]
    for quarter in (1, 2, 3, 4):
        oss = oss_return(lines, year=2024, quarter=quarter)
        start, end = quarter_bounds(2024, quarter)
        chosen = [i.line for i in lines if start <= i.tax_date <= end and i.line.rule.id is RuleId.EU_OSS]
        assert oss.total_taxable_amount == sum(line.taxable_amount for line in chosen)
        assert oss.total_vat_amount == sum(line.tax_amount for line in chosen)
        assert all(row.member_state != "NL" for row in oss.rows)  # domestic sales are not in the OSS


def test_euro_conversion_is_exact_and_rounded_once() -> None:
    assert to_euro_cents(100000, "SEK", {"SEK": Fraction(112, 10)}) == 8929
    assert to_euro_cents(1000, "JPY", {"JPY": "160"}) == 625
    assert to_euro_cents(1000, "EUR", None) == 1000
