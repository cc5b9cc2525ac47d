"""Tax reports from taxed invoice lines (pure: lists in, models and CSV text out).

- ``jurisdiction_report``: per jurisdiction, tax type, rate, currency and reverse charge over a
  period: taxable amount, tax, number of lines and invoices. Lines without tax (not registered,
  not taxable, reverse charge) are reported too, with tax type empty and rate 0: they show where
  sales happen without tax being collected (US economic-nexus thresholds, for instance).
- Credit notes come in as negative lines (``TaxedLine.credit_note``; see
  ``kassa.domain.credit_notes.credit_note_taxed_lines``) dated by the note, not by its invoice: they
  reduce the taxable amount and the tax of the period the note was issued in, and earlier periods
  stay as declared.
- ``oss_return``: the EU One-Stop Shop quarterly return layout (union and non-union scheme): per
  member state of consumption and rate, the taxable amount and the VAT, in euro. Only lines decided
  by the OSS rule count (domestic supplies go in the domestic return, reverse charges in the EC
  Sales List). Amounts in other currencies are converted with the ECB rate of the last day of the
  period, passed in as ``eur_rates`` (units of the currency per euro).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from fractions import Fraction

from pydantic import StrictInt

from kassa.domain.csv_text import csv_text
from kassa.domain.errors import InvalidInput
from kassa.domain.money import exponent, normalize_currency, round_fraction
from kassa.domain.tax.engine import ROUNDING
from kassa.domain.tax.model import FrozenModel, LineTax, RuleId, TaxQuote
from kassa.domain.tax.rates import parse_decimal


class TaxedLine(FrozenModel):
    """A line as finalized on an invoice, or the part of it a credit note reverses (``credit_note``
    set, amounts negative, ``tax_date`` the note's own): what the reports read."""

    invoice_id: str
    tax_date: date
    currency: str
    line: LineTax
    credit_note: str | None = None


def taxed_lines(quote: TaxQuote, invoice_id: str) -> tuple[TaxedLine, ...]:
    return tuple(
        TaxedLine(invoice_id=invoice_id, tax_date=quote.tax_date, currency=quote.currency, line=line)
        for line in quote.lines
    )


# ------------------------------------------------------------------ per jurisdiction
class JurisdictionReportRow(FrozenModel):
    jurisdiction: str
    country: str
    tax_type: str | None
    rate: str
    reverse_charge: bool
    currency: str
    taxable_amount: StrictInt
    tax_amount: StrictInt
    lines: int  # invoice lines and credit-note lines
    invoices: int  # invoices with a line in the period
    credit_notes: int = 0  # credit notes with a line in the period (their amounts are negative)


class JurisdictionReport(FrozenModel):
    period_start: date
    period_end: date  # inclusive
    rows: tuple[JurisdictionReportRow, ...]


def _matches(jurisdiction: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    wanted = wanted.upper()
    return jurisdiction == wanted if "-" in wanted else jurisdiction[:2] == wanted


def jurisdiction_report(
    lines: Iterable[TaxedLine],
    *,
    period_start: date,
    period_end: date,
    jurisdiction: str | None = None,
) -> JurisdictionReport:
    """Lines whose tax date falls in [period_start, period_end], aggregated. ``jurisdiction``
    filters: "US-WA" exactly, or a country code ("US", "CA") for all its jurisdictions."""
    if period_end < period_start:
        raise InvalidInput("period_end is before period_start", param="period_end")
    acc: dict[tuple[str, str, str | None, str, bool, str], tuple[list[int], set[str], set[str]]] = {}

    def add(key: tuple[str, str, str | None, str, bool, str], taxable: int, tax: int, item: TaxedLine) -> None:
        sums, invoices, notes = acc.setdefault(key, ([0, 0, 0], set(), set()))
        sums[0] += taxable
        sums[1] += tax
        sums[2] += 1
        if item.credit_note is None:
            invoices.add(item.invoice_id)
        else:
            notes.add(item.credit_note)

    key: tuple[str, str, str | None, str, bool, str]
    for item in lines:
        if not period_start <= item.tax_date <= period_end:
            continue
        line = item.line
        if line.components:
            for c in line.components:
                if _matches(c.jurisdiction, jurisdiction):
                    key = (c.jurisdiction, c.country, c.tax_type, c.rate, line.reverse_charge, item.currency)
                    add(key, c.taxable_amount, c.tax_amount, item)
        elif _matches(line.jurisdiction, jurisdiction):
            key = (line.jurisdiction, line.country, None, "0", line.reverse_charge, item.currency)
            add(key, line.taxable_amount, 0, item)
    rows = tuple(
        JurisdictionReportRow(
            jurisdiction=key[0],
            country=key[1],
            tax_type=key[2],
            rate=key[3],
            reverse_charge=key[4],
            currency=key[5],
            taxable_amount=sums[0],
            tax_amount=sums[1],
            lines=sums[2],
            invoices=len(invoices),
            credit_notes=len(notes),
        )
        for key, (sums, invoices, notes) in sorted(
            acc.items(), key=lambda kv: (kv[0][0], kv[0][2] or "", Fraction(kv[0][3]), kv[0][4], kv[0][5])
        )
    )
    return JurisdictionReport(period_start=period_start, period_end=period_end, rows=rows)


# ------------------------------------------------------------------ EU OSS quarterly return
class OssReturnRow(FrozenModel):
    member_state: str  # of consumption (ISO 3166-1; Greece is GR here, EL in VAT numbers)
    rate_type: str  # "standard" (digital services are taxed at the standard or regional standard rate)
    rate: str
    taxable_amount: StrictInt  # euro cents
    vat_amount: StrictInt  # euro cents


class OssReturn(FrozenModel):
    year: int
    quarter: int
    period_start: date
    period_end: date
    rows: tuple[OssReturnRow, ...]
    total_taxable_amount: int
    total_vat_amount: int


def quarter_bounds(year: int, quarter: int) -> tuple[date, date]:
    if quarter not in (1, 2, 3, 4):
        raise InvalidInput("quarter must be 1, 2, 3 or 4", param="quarter")
    start = date(year, 3 * quarter - 2, 1)
    end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return start, end - timedelta(days=1)


def _rate(value: Fraction | int | str, currency: str) -> Fraction:
    if isinstance(value, str):
        value = parse_decimal(value, param="eur_rates")
    if isinstance(value, bool) or not isinstance(value, Fraction | int) or value <= 0:
        raise InvalidInput(f"the EUR rate of {currency} must be a positive exact number", param="eur_rates")
    return Fraction(value)


def to_euro_cents(amount: int, currency: str, eur_rates: Mapping[str, Fraction | int | str] | None) -> int:
    """``amount`` minor units of ``currency`` in euro cents (ECB rate: units of currency per euro)."""
    currency = normalize_currency(currency)
    if currency == "EUR":
        return amount
    if not eur_rates or currency not in eur_rates:
        raise InvalidInput(f"an ECB rate for {currency} is needed to report in euro", param="eur_rates")
    rate = _rate(eur_rates[currency], currency)
    return round_fraction(Fraction(amount * 100, 10 ** exponent(currency)) / rate, ROUNDING)


def oss_return(
    lines: Iterable[TaxedLine],
    *,
    year: int,
    quarter: int,
    eur_rates: Mapping[str, Fraction | int | str] | None = None,
) -> OssReturn:
    start, end = quarter_bounds(year, quarter)
    per_currency: dict[tuple[str, str, str], list[int]] = {}
    for item in lines:
        if not start <= item.tax_date <= end or item.line.rule.id is not RuleId.EU_OSS:
            continue
        for c in item.line.components:
            sums = per_currency.setdefault((c.country, c.rate, item.currency), [0, 0])
            sums[0] += c.taxable_amount
            sums[1] += c.tax_amount
    totals: dict[tuple[str, str], list[int]] = {}
    for (state, rate, currency), (taxable, vat) in per_currency.items():
        sums = totals.setdefault((state, rate), [0, 0])
        sums[0] += to_euro_cents(taxable, currency, eur_rates)
        sums[1] += to_euro_cents(vat, currency, eur_rates)
    rows = tuple(
        OssReturnRow(member_state=state, rate_type="standard", rate=rate, taxable_amount=sums[0], vat_amount=sums[1])
        for (state, rate), sums in sorted(totals.items(), key=lambda kv: (kv[0][0], Fraction(kv[0][1])))
    )
    return OssReturn(
        year=year,
        quarter=quarter,
        period_start=start,
        period_end=end,
        rows=rows,
        total_taxable_amount=sum(row.taxable_amount for row in rows),
        total_vat_amount=sum(row.vat_amount for row in rows),
    )


# ------------------------------------------------------------------ CSV
def format_amount(amount: int, currency: str) -> str:
    """Minor units as a plain decimal string in the currency's exponent: 12345 EUR → "123.45"."""
    exp = exponent(currency)
    sign = "-" if amount < 0 else ""
    if exp == 0:
        return f"{sign}{abs(amount)}"
    whole, frac = divmod(abs(amount), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


_csv = csv_text


def render_jurisdiction_csv(report: JurisdictionReport) -> str:
    header = [
        "period_start",
        "period_end",
        "jurisdiction",
        "country",
        "tax_type",
        "rate",
        "reverse_charge",
        "currency",
        "taxable_amount",
        "tax_amount",
        "lines",
        "invoices",
        "credit_notes",
    ]
    return _csv(
        header,
        (
            [
                report.period_start.isoformat(),
                report.period_end.isoformat(),
                row.jurisdiction,
                row.country,
                row.tax_type or "",
                row.rate,
                "yes" if row.reverse_charge else "no",
                row.currency,
                format_amount(row.taxable_amount, row.currency),
                format_amount(row.tax_amount, row.currency),
                str(row.lines),
                str(row.invoices),
                str(row.credit_notes),
            ]
            for row in report.rows
        ),
    )


def render_oss_csv(oss: OssReturn) -> str:
    period = f"{oss.year}-Q{oss.quarter}"
    header = ["period", "member_state_of_consumption", "rate_type", "vat_rate", "taxable_amount_eur", "vat_amount_eur"]
    body = [
        [
            period,
            row.member_state,
            row.rate_type,
            row.rate,
            format_amount(row.taxable_amount, "EUR"),
            format_amount(row.vat_amount, "EUR"),
        ]
        for row in oss.rows
    ]
    body.append(
        [
            period,
            "TOTAL",
            "",
            "",
            format_amount(oss.total_taxable_amount, "EUR"),
            format_amount(oss.total_vat_amount, "EUR"),
        ]
    )
    return _csv(header, body)
