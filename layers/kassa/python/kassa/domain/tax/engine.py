"""The tax engine: a quote for a set of lines, a customer and a tax point date.

Arithmetic is exact (``Fraction``) and rounded once per line and tax component to the currency's
minor unit with ``Rounding.HALF_UP`` (``money.round_fraction``):

- tax-exclusive line of amount ``a``: for each tax, ``taxable = round(a × share)`` and
  ``tax = round(a × share × rate)``; the total is ``a + Σ tax``;
- tax-inclusive line of gross ``g``: the combined rate ``R = Σ share × rate`` gives
  ``net = round(g / (1 + R))``; the tax ``g − net`` is split between the taxes in proportion to their
  ``share × rate`` without losing a minor unit (largest remainder); so net + tax = g exactly.

An invoice-level breakdown aggregates the lines per jurisdiction, tax type and rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from fractions import Fraction

from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import InvalidInput
from kassa.domain.money import Money, Rounding, normalize_currency, round_fraction
from kassa.domain.tax.model import (
    BreakdownRow,
    LineTax,
    TaxComponent,
    TaxCustomer,
    TaxLineInput,
    TaxQuote,
    TaxSettings,
    tax_category,
)
from kassa.domain.tax.rates import RateRow, RateTable, default_rates, format_percent
from kassa.domain.tax.rules import Decision, check_customer_tax_id, decide
from kassa.domain.tax.territories import locate
from kassa.domain.tax.vat_numbers import ViesChecker

ROUNDING = Rounding.HALF_UP  # per line and component, in the currency's minor unit


def _tax_point(tax_date: date) -> date:
    if isinstance(tax_date, datetime):  # a datetime is a date: keep its calendar day, as given
        return tax_date.date()
    if not isinstance(tax_date, date):
        raise InvalidInput("tax_date must be a date (the invoice's tax point)", param="tax_date")
    return tax_date


def _country_of(jurisdiction: str) -> str:
    return jurisdiction[:2]


def combined_rate(rows: Sequence[RateRow]) -> Fraction:
    """The effective rate on the net amount: Σ taxable share × rate."""
    return sum((row.taxable_share * row.rate for row in rows), Fraction(0))


def _split(tax: int, rows: Sequence[RateRow], currency: str) -> list[int]:
    weights = [row.taxable_share * row.rate for row in rows]
    if len(rows) == 1:
        return [tax]
    scale = math.lcm(*(w.denominator for w in weights))
    ratios = [int(w * scale) for w in weights]
    return [part.amount for part in Money(tax, currency).allocate(ratios)]


def compute_line(line: TaxLineInput, decision: Decision, currency: str, tax_code: str) -> LineTax:
    """One line's tax under a decision."""
    rows = tuple(row for row in decision.rates if row.rate > 0 and row.taxable_share > 0)
    rate = combined_rate(rows)
    if not rows:
        net = line.amount
        taxes: list[int] = []
    elif line.tax_behavior is TaxBehavior.INCLUSIVE:
        net = round_fraction(Fraction(line.amount) / (1 + rate), ROUNDING)
        taxes = _split(line.amount - net, rows, currency)
    else:
        net = line.amount
        taxes = [round_fraction(net * row.taxable_share * row.rate, ROUNDING) for row in rows]
    components = tuple(
        TaxComponent(
            jurisdiction=row.jurisdiction,
            country=_country_of(row.jurisdiction),
            tax_type=row.tax_type,
            rate=row.percent,
            taxable_amount=round_fraction(net * row.taxable_share, ROUNDING),
            tax_amount=tax,
            source=row.source,
        )
        for row, tax in zip(rows, taxes, strict=True)
    )
    tax_amount = sum(taxes)
    return LineTax(
        reference=line.reference,
        tax_code=tax_code,
        tax_behavior=line.tax_behavior,
        jurisdiction=decision.jurisdiction,
        country=decision.country,
        rate=format_percent(rate),
        taxable_amount=net,
        tax_amount=tax_amount,
        total=net + tax_amount,
        reverse_charge=decision.reverse_charge,
        rule=decision.rule,
        legal_mention=decision.legal_mention,
        vies_verified=decision.vies_verified,
        components=components,
    )


def breakdown(lines: Iterable[LineTax]) -> tuple[BreakdownRow, ...]:
    """Lines aggregated per (jurisdiction, tax type, rate, reverse charge); lines without tax count
    under their jurisdiction with tax type None and rate "0"."""
    totals: dict[tuple[str, str, str | None, str, bool], list[int]] = {}
    key: tuple[str, str, str | None, str, bool]
    for line in lines:
        if line.components:
            for c in line.components:
                key = (c.jurisdiction, c.country, c.tax_type, c.rate, line.reverse_charge)
                acc = totals.setdefault(key, [0, 0])
                acc[0] += c.taxable_amount
                acc[1] += c.tax_amount
        else:
            key = (line.jurisdiction, line.country, None, "0", line.reverse_charge)
            acc = totals.setdefault(key, [0, 0])
            acc[0] += line.taxable_amount
    return tuple(
        BreakdownRow(
            jurisdiction=key[0],
            country=key[1],
            tax_type=key[2],
            rate=key[3],
            reverse_charge=key[4],
            taxable_amount=acc[0],
            tax_amount=acc[1],
        )
        for key, acc in sorted(totals.items(), key=lambda item: (item[0][0], item[0][2] or "", item[0][3]))
    )


def quote_tax(
    lines: Sequence[TaxLineInput],
    *,
    currency: str,
    customer: TaxCustomer,
    settings: TaxSettings,
    tax_date: date,
    rates: RateTable | None = None,
    vies: ViesChecker | None = None,
) -> TaxQuote:
    """Tax for ``lines`` sold by a seller with ``settings`` to ``customer``, at the tax point
    ``tax_date`` (the invoice's date of supply, in the seller's calendar). ``vies`` is optional and
    never blocks (see ``vat_numbers``)."""
    currency = normalize_currency(currency)
    on = _tax_point(tax_date)
    table = rates if rates is not None else default_rates()
    location = locate(customer.address)
    tax_id = check_customer_tax_id(customer, location, settings, vies)

    decisions: dict[str, Decision] = {}

    def decision_for(code: str) -> Decision:
        category = tax_category(code, settings.default_tax_code)
        if category not in decisions:
            decisions[category] = decide(
                settings=settings,
                customer=customer,
                location=location,
                tax_id=tax_id,
                category=category,
                tax_code=code,
                on=on,
                rates=table,
            )
        return decisions[category]

    taxed = []
    for line in lines:
        code = (line.tax_code or settings.default_tax_code).strip().lower()
        taxed.append(compute_line(line, decision_for(code), currency, code))
    if not taxed:  # still say what would apply
        decision_for(settings.default_tax_code)
    first = next(iter(decisions.values()))
    rules = {line.rule for line in taxed}
    line_rates = {line.rate for line in taxed}
    mentions = sorted({line.legal_mention for line in taxed if line.legal_mention})
    return TaxQuote(
        currency=currency,
        tax_date=on,
        jurisdiction=taxed[0].jurisdiction if taxed else first.jurisdiction,
        customer_tax_id=tax_id.normalized if tax_id is not None and tax_id.valid else None,
        vies_verified=tax_id.vies_verified if tax_id is not None else None,
        reverse_charge=any(line.reverse_charge for line in taxed) if taxed else first.reverse_charge,
        legal_mention=" ".join(mentions) or (None if taxed else first.legal_mention),
        rule=rules.pop() if len(rules) == 1 else (first.rule if not taxed else None),
        rate=line_rates.pop() if len(line_rates) == 1 else None,
        lines=tuple(taxed),
        breakdown=breakdown(taxed),
        taxable_amount=sum(line.taxable_amount for line in taxed),
        tax_amount=sum(line.tax_amount for line in taxed),
        total=sum(line.total for line in taxed),
    )
