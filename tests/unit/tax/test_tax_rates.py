"""The rate data: complete, sourced, contiguous, exact, and applied at the tax point date.

Two kinds of checks: independent expectations written here (the rate changes the issue lists, the
current standard rates of all 27 member states) hold the data file to known facts; tests generated
from the data file itself check that every row is applied on its first and last day, so a row added
later is tested without writing a test.
"""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import pytest
from tax_helpers import D, quote, settings

from kassa.domain.errors import InvalidInput
from kassa.domain.tax import EU_MEMBER_STATES, RuleId, default_rates, format_percent, load_rates, parse_percent
from kassa.domain.tax.rates import COLUMNS, RateRow, RateTable

RATES = default_rates()
EU = sorted(EU_MEMBER_STATES)

# Standard rates in force on 2025-08-01 (after Estonia's and Romania's 2025 increases).
STANDARD_2025_08 = {
    "AT": "20",
    "BE": "21",
    "BG": "20",
    "CY": "19",
    "CZ": "21",
    "DE": "19",
    "DK": "25",
    "EE": "24",
    "ES": "21",
    "FI": "25.5",
    "FR": "20",
    "GR": "24",
    "HR": "25",
    "HU": "27",
    "IE": "23",
    "IT": "22",
    "LT": "21",
    "LU": "17",
    "LV": "21",
    "MT": "18",
    "NL": "21",
    "PL": "23",
    "PT": "23",
    "RO": "21",
    "SE": "25",
    "SI": "22",
    "SK": "23",
}

# (jurisdiction, last day of the old rate, old, new): the changes the issue names.
CHANGES = [
    ("FI", "2024-08-31", "24", "25.5"),
    ("SK", "2024-12-31", "20", "23"),
    ("EE", "2025-06-30", "22", "24"),
    ("EE", "2023-12-31", "20", "22"),
    ("RO", "2025-07-31", "19", "21"),
    ("LU", "2022-12-31", "17", "16"),
    ("LU", "2023-12-31", "16", "17"),
    ("CH", "2023-12-31", "7.7", "8.1"),
    ("SG", "2022-12-31", "7", "8"),
    ("SG", "2023-12-31", "8", "9"),
    ("CA-NS", "2025-03-31", "15", "14"),
]


def _rate(jurisdiction: str, on: str) -> str:
    (row,) = RATES.rows_at(jurisdiction, D(on))
    return row.percent


# ------------------------------------------------------------------ the file itself
def test_every_member_state_has_a_standard_rate_today() -> None:
    assert set(STANDARD_2025_08) == EU_MEMBER_STATES
    assert {code: _rate(code, "2025-08-01") for code in EU} == STANDARD_2025_08


@pytest.mark.parametrize(("jurisdiction", "last_old_day", "old", "new"), CHANGES)
def test_listed_rate_changes(jurisdiction: str, last_old_day: str, old: str, new: str) -> None:
    day = D(last_old_day)
    assert _rate(jurisdiction, day.isoformat()) == old
    assert _rate(jurisdiction, (day + timedelta(days=1)).isoformat()) == new


def test_luxembourg_17_before_2023_16_in_2023_17_from_2024() -> None:
    assert [_rate("LU", d) for d in ("2022-06-30", "2023-01-01", "2023-12-31", "2024-01-01")] == [
        "17",
        "16",
        "16",
        "17",
    ]


def test_every_row_cites_a_source_with_an_address() -> None:
    for row in RATES.rows:
        assert "http" in row.source, row


def test_us_rows_carry_the_simplification_caveat() -> None:
    us = [row for row in RATES.rows if row.jurisdiction.startswith("US-")]
    assert len({row.jurisdiction for row in us}) == 51  # 50 states + DC
    for row in us:
        assert "simplified: state-level base rate only, no local rates" in row.note


def test_rates_are_exact_fractions_never_floats() -> None:
    assert parse_percent("25.5") == Fraction(255, 1000)
    assert parse_percent("9.975") == Fraction(9975, 100000)
    for row in RATES.rows:
        assert isinstance(row.rate, Fraction)
        assert parse_percent(row.percent) == row.rate  # the string form is exact


@pytest.mark.parametrize("text", ["25,5", "1e2", "-5", "", "abc", " .5"])
def test_rate_strings_must_be_plain_decimals(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_percent(text)


@pytest.mark.parametrize(
    ("rate", "text"), [(Fraction(255, 1000), "25.5"), (Fraction(1, 20), "5"), (Fraction(14975, 100000), "14.975")]
)
def test_format_percent(rate: Fraction, text: str) -> None:
    assert format_percent(rate) == text


HEADER = ",".join(COLUMNS)


def test_overlapping_rows_are_refused() -> None:
    text = f"""{HEADER}
XX,VAT,saas,20,1,2020-01-01,2020-12-31,src http://x,
XX,VAT,saas,21,1,2020-12-01,,src http://x,
"""
    with pytest.raises(InvalidInput, match="gap or overlap"):
        load_rates(text)


def test_gaps_and_rows_after_an_open_one_are_refused() -> None:
    gap = f"{HEADER}\nXX,VAT,saas,20,1,2020-01-01,2020-12-30,s http://x,\nXX,VAT,saas,21,1,2021-01-01,,s http://x,\n"
    with pytest.raises(InvalidInput, match="gap or overlap"):
        load_rates(gap)
    open_ended = f"{HEADER}\nXX,VAT,saas,20,1,2020-01-01,,s http://x,\nXX,VAT,saas,21,1,2021-01-01,,s http://x,\n"
    with pytest.raises(InvalidInput, match="open-ended"):
        load_rates(open_ended)


def test_a_row_without_source_is_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        load_rates(f"{HEADER}\nXX,VAT,saas,20,1,2020-01-01,,,\n")
    assert error.value.param == "source"


def test_a_date_before_the_data_is_refused_not_guessed() -> None:
    with pytest.raises(InvalidInput) as error:
        RATES.rows_at("FI", date(2010, 1, 1))
    assert error.value.param == "tax_date"
    with pytest.raises(InvalidInput):
        quote("FI", on="2010-01-01")


def test_a_custom_table_can_be_passed_for_what_if() -> None:
    table = load_rates(f"{HEADER}\nFI,VAT,saas,30,1,2020-01-01,,what-if http://example.invalid,\n")
    assert isinstance(table, RateTable)
    assert table.rows_at("FI", date(2030, 1, 1))[0].percent == "30"


# ------------------------------------------------------------------ generated from the data
def _boundaries() -> list[tuple[RateRow, date]]:
    cases = []
    for row in RATES.rows:
        if row.jurisdiction[:2] in EU_MEMBER_STATES and row.category == "saas":
            cases.append((row, row.valid_from))
            cases.append((row, row.valid_to or row.valid_from + timedelta(days=400)))
    return cases


@pytest.mark.parametrize(
    ("row", "on"), _boundaries(), ids=lambda v: v.isoformat() if isinstance(v, date) else f"{v.jurisdiction}"
)
def test_each_eu_row_applies_on_its_first_and_last_day(row: RateRow, on: date) -> None:
    """An OSS-registered seller's consumer in the row's jurisdiction pays the row's rate that day."""
    postal = {"PT-20": "9500-100", "PT-30": "9000-100"}.get(row.jurisdiction)
    seller = settings("MT" if row.jurisdiction != "MT" else "AT", oss_registered=True)
    result = quote(row.jurisdiction[:2], 10000, on=on, seller=seller, postal_code=postal)
    assert result.jurisdiction == row.jurisdiction
    assert result.rule is not None and result.rule.id is RuleId.EU_OSS
    assert result.rate == row.percent
    assert result.tax_amount == round(Fraction(10000) * row.rate)  # exact: these rates give whole cents
    (component,) = result.lines[0].components
    assert component.source == row.source


@pytest.mark.parametrize(
    ("jurisdiction", "tax_type", "on"),
    [(j, t, d) for (j, t, d) in RATES.change_dates()],
    ids=lambda v: v.isoformat() if isinstance(v, date) else str(v),
)
def test_each_change_switches_rate_overnight(jurisdiction: str, tax_type: str, on: date) -> None:
    before = [r for r in RATES.rows_at(jurisdiction, on - timedelta(days=1)) if r.tax_type == tax_type]
    after = [r for r in RATES.rows_at(jurisdiction, on) if r.tax_type == tax_type]
    assert before and after and before[0] != after[0]
    assert after[0].valid_from == on


_HST = {"CA-ON", "CA-NB", "CA-NL", "CA-NS", "CA-PE"}
_EVERYWHERE = settings(
    "NL",
    oss_registered=True,
    registrations=sorted(j for j in RATES.jurisdictions if j not in _HST and not j.startswith("PT-")),
)


def _world_boundaries() -> list[tuple[RateRow, date]]:
    cases = []
    for row in RATES.rows:
        if row.jurisdiction[:2] not in EU_MEMBER_STATES and row.category == "saas":
            cases.append((row, row.valid_from))
            cases.append((row, row.valid_to or row.valid_from + timedelta(days=400)))
    return cases


@pytest.mark.parametrize(
    ("row", "on"), _world_boundaries(), ids=lambda v: v.isoformat() if isinstance(v, date) else f"{v.jurisdiction}"
)
def test_each_row_beyond_the_eu_applies_on_its_first_and_last_day(row: RateRow, on: date) -> None:
    """A seller registered everywhere charges the row's rate (or nothing where it is not taxable)."""
    country, _, region = row.jurisdiction.partition("-")
    if row.jurisdiction == "CA":
        region = "AB"  # GST only
    result = quote(country, 10000, on=on, seller=_EVERYWHERE, state=region or None, currency="USD")
    components = [c for c in result.lines[0].components if c.jurisdiction == row.jurisdiction]
    if not row.taxable or row.rate == 0:
        assert components == [] and result.tax_amount == 0
        assert result.rule is not None and result.rule.id is RuleId.NOT_TAXABLE
        return
    (component,) = components
    assert (component.tax_type, component.rate, component.source) == (row.tax_type, row.percent, row.source)
    assert component.taxable_amount == round(Fraction(10000) * row.taxable_share)
