"""Revenue recognition: each invoice line's revenue is earned day by day over its service period.

The rule (worked examples in docs/revenue.md):

- a line's **revenue** is its amount net of tax (an inclusive price's tax taken out; discounts are
  already off the line), in the currency's minor unit;
- it is earned evenly per **day** of its service period ``[start date, end date)`` (a yearly plan
  from 15 January is 365 days; a proration over its own period; a line whose period is shorter than
  a day — a one-off item, whose period is the instant it was added — is earned at once);
- nothing is recognized before the document is **booked** (its tax date): an invoice billing a
  period that started earlier (usage in arrears, a late proration) catches up on its booking day;
- a **credit note** reverses what it credits: a negative line over the credited invoice line's
  period (a custom credit over the invoice's period), booked at the note's date, so the part of the
  period already past is reversed at once and the rest day by day;
- rounding is explicit: the **cumulative method**. Revenue earned through a day is
  ``round_half_up(amount × elapsed days / period days)`` in minor units (EUR cents, whole yen, KWD
  fils: amounts are already in the currency's minor unit, so each currency is rounded at its own
  exponent); a month's revenue is the difference of two cumulative figures, so the months always sum
  exactly to the line and never drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from kassa.domain.catalog import TaxBehavior
from kassa.domain.credit_notes import CreditNote, CreditNoteLineType, CreditNoteStatus
from kassa.domain.csv_text import csv_text
from kassa.domain.invoice import Invoice, InvoiceLine, InvoiceStatus
from kassa.domain.money import Rounding, round_fraction

ROUNDING = Rounding.HALF_UP
#: invoices that count (finalized, not voided: the tax reports' ``REPORTABLE``)
BOOKED_STATUSES = frozenset({InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE})


@dataclass(frozen=True)
class Recognizable:
    """One line's revenue to recognize: ``amount`` (signed: a credit note's is negative) over the
    service days ``[start, end)``, nothing before ``booked``."""

    document: str  # the invoice or credit note
    line: int  # its line index
    currency: str
    amount: int
    start: date
    end: date
    booked: date

    @property
    def days(self) -> int:
        return max((self.end - self.start).days, 0)

    def through(self, day: date) -> int:
        """Revenue recognized from the start through the end of ``day`` (the cumulative method)."""
        if day < self.booked:
            return 0
        if self.days == 0:
            return self.amount
        elapsed = min(max((day + timedelta(days=1) - self.start).days, 0), self.days)
        return round_fraction(Fraction(self.amount * elapsed, self.days), ROUNDING)

    def between(self, first: date, last: date) -> int:
        """Revenue recognized on the days ``first`` … ``last`` (inclusive)."""
        return self.through(last) - self.through(first - timedelta(days=1))

    @property
    def done(self) -> date:
        """The last day on which anything is recognized."""
        return max(self.booked, self.end - timedelta(days=1) if self.days else self.start)


def line_revenue(line: InvoiceLine) -> int:
    """A line's revenue: its amount net of tax (an inclusive price's tax is inside the amount)."""
    return line.amount - line.tax_amount if line.tax_behavior is TaxBehavior.INCLUSIVE else line.amount


def booked_on(invoice: Invoice) -> date:
    """The day an invoice is booked: its tax point (the tax reports' date), else its finalization."""
    when = invoice.finalized_at or invoice.created
    return invoice.tax_date or when.date()


def invoice_items(invoice: Invoice) -> list[Recognizable]:
    """An invoice's lines to recognize (none for a draft or a void invoice)."""
    if invoice.status not in BOOKED_STATUSES:
        return []
    booked = booked_on(invoice)
    return [
        Recognizable(
            invoice.id,
            index,
            invoice.currency,
            line_revenue(line),
            line.period_start.date(),
            line.period_end.date(),  # a one-off item's period is the instant it was added: at once
            booked,
        )
        for index, line in enumerate(invoice.lines)
    ]


def credit_note_items(note: CreditNote, invoice: Invoice) -> list[Recognizable]:
    """A credit note's reversal: minus each credited net amount, over what it credits."""
    if note.status is not CreditNoteStatus.ISSUED:
        return []
    credited = {i.line: i for i in invoice_items(invoice.model_copy(update={"status": InvoiceStatus.PAID}))}
    out = []
    for index, line in enumerate(note.lines):
        by_line = line.type is CreditNoteLineType.INVOICE_LINE_ITEM and line.invoice_line is not None
        source = credited.get(line.invoice_line or 0) if by_line else None
        start = source.start if source else invoice.period_start.date()
        end = source.end if source else max(invoice.period_end.date(), start)
        out.append(Recognizable(note.id, index, note.currency, -line.net_amount, start, end, note.reported_on))
    return out


def history_items(invoices: Iterable[Invoice], notes: Iterable[tuple[CreditNote, Invoice]]) -> list[Recognizable]:
    items: list[Recognizable] = []
    for invoice in invoices:
        items.extend(invoice_items(invoice))
    for note, invoice in notes:
        items.extend(credit_note_items(note, invoice))
    return items


def month_bounds(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def months(first: date, last: date) -> Iterator[date]:
    """The first days of the months from ``first``'s to ``last``'s."""
    month = first.replace(day=1)
    while month <= last:
        yield month
        month = month_bounds(month)[1] + timedelta(days=1)


@dataclass(frozen=True)
class RevenueMonth:
    month: str  # YYYY-MM
    currency: str
    billed: int  # revenue booked in the month (invoices less credit notes, net of tax)
    recognized: int  # revenue earned in the month
    deferred: int  # booked but not yet earned at the end of the month

    def as_json(self) -> dict[str, object]:
        return {
            "month": self.month,
            "currency": self.currency,
            "billed": self.billed,
            "recognized": self.recognized,
            "deferred": self.deferred,
        }


def revenue_by_month(items: Iterable[Recognizable], first: date, last: date) -> list[RevenueMonth]:
    """Billed, recognized and deferred revenue per month (``first``'s to ``last``'s) and currency;
    a currency appears from the first month it has anything booked."""
    items = list(items)
    currencies = sorted({i.currency for i in items})
    out: list[RevenueMonth] = []
    for month in months(first, last):
        start, end = month_bounds(month)
        for currency in currencies:
            mine = [i for i in items if i.currency == currency and i.booked <= end]
            billed = sum(i.amount for i in mine if i.booked >= start)
            recognized = sum(i.between(start, end) for i in mine)
            deferred = sum(i.amount - i.through(end) for i in mine)
            if mine:
                out.append(RevenueMonth(f"{month:%Y-%m}", currency, billed, recognized, deferred))
    return out


REVENUE_COLUMNS = ["month", "currency", "billed", "recognized", "deferred"]


def render_revenue_csv(rows: Iterable[RevenueMonth]) -> str:
    """The revenue report as CSV: the JSON's fields, amounts in minor units."""
    return csv_text(REVENUE_COLUMNS, ([str(r.as_json()[c]) for c in REVENUE_COLUMNS] for r in rows))
