"""Accounting exports and the revenue report (docs/accounting.md, docs/revenue.md): the history a
period needs, read with queries over the tax-month index (gsi3, as the tax reports read a period;
never a Scan), handed to the pure rules in ``kassa.domain.journal``, ``revenue`` and ``exports``.

A period's journal needs more than the invoices dated in it: the payments, refunds, disputes and
revenue that fall into it may belong to invoices booked before. Service periods last at most three
years (``periods.MAX_INTERVAL_COUNT``), so invoices and credit notes with a tax date up to
``LOOKBACK_MONTHS`` before the period are read too: one Query per month and kind.
"""

from __future__ import annotations

from datetime import date

from kassa.domain.credit_notes import CreditNote
from kassa.domain.customer import Customer
from kassa.domain.errors import InvalidInput, NotFound
from kassa.domain.exports import customers_csv, invoices_csv, payment_moves, payments_csv
from kassa.domain.invoice import Invoice
from kassa.domain.journal import JournalLine, journal
from kassa.domain.revenue import RevenueMonth, history_items, month_bounds, revenue_by_month
from kassa.services.ports import BillingStore

LOOKBACK_MONTHS = 37  # the longest service period (3 years) and a month
MAX_DAYS = 366  # the longest period one export covers
MAX_MONTHS = 36  # the longest revenue report


def months_before(day: date, count: int) -> date:
    total = day.year * 12 + day.month - 1 - count
    return date(total // 12, total % 12 + 1, 1)


def _period(first: date, last: date, limit_days: int = MAX_DAYS) -> None:
    if last < first:
        raise InvalidInput("to is before from", param="to")
    if (last - first).days >= limit_days:
        raise InvalidInput(f"a period covers at most {limit_days} days", param="to")


def history(store: BillingStore, first: date, last: date) -> tuple[list[Invoice], list[tuple[CreditNote, Invoice]]]:
    """Finalized invoices and credit notes (each with its invoice) booked from ``LOOKBACK_MONTHS``
    before ``first`` to ``last``."""
    since = months_before(first, LOOKBACK_MONTHS)
    invoices = store.invoices_by_tax_date(since, last)
    by_id = {i.id: i for i in invoices}
    notes = []
    for note in store.credit_notes_by_tax_date(since, last):
        invoice = by_id.get(note.invoice) or store.find_invoice(note.invoice)
        if invoice is not None:
            notes.append((note, invoice))
    return invoices, notes


def journal_lines(store: BillingStore, first: date, last: date) -> list[JournalLine]:
    """The double-entry journal of [first, last]."""
    _period(first, last)
    invoices, notes = history(store, first, last)
    return journal(invoices, notes, first, last)


def revenue_report(store: BillingStore, first_month: date, last_month: date) -> list[RevenueMonth]:
    """Billed, recognized and deferred revenue per month and currency, ``first_month`` to ``last_month``."""
    first, last = first_month.replace(day=1), month_bounds(last_month)[1]
    if last < first:
        raise InvalidInput("to is before from", param="to")
    if (last.year - first.year) * 12 + last.month - first.month >= MAX_MONTHS:
        raise InvalidInput(f"a report covers at most {MAX_MONTHS} months", param="to")
    invoices, notes = history(store, first, last)
    return revenue_by_month(history_items(invoices, notes), first, last)


def _customers(store: BillingStore, invoices: list[Invoice]) -> dict[str, Customer]:
    found = {}
    for customer_id in dict.fromkeys(i.customer for i in invoices):
        try:
            found[customer_id] = store.get_customer(customer_id)
        except NotFound:  # the row shows the customer id only
            continue
    return found


def invoices_export(store: BillingStore, first: date, last: date) -> str:
    """Invoices booked in [first, last], one CSV row per line."""
    _period(first, last)
    invoices = store.invoices_by_tax_date(first, last)
    return invoices_csv(invoices, _customers(store, invoices))


def payments_export(store: BillingStore, first: date, last: date) -> str:
    """Payments received and refunds paid out in [first, last]."""
    _period(first, last)
    invoices, _ = history(store, first, last)
    first_day, last_day = first.isoformat(), last.isoformat()
    # only the customers of invoices with a move in the period are read (not every invoice's of the lookback)
    paying = [i for i in invoices if any(first_day <= move[0] <= last_day for move in payment_moves(i))]
    return payments_csv(paying, _customers(store, paying), first_day, last_day)


def customers_export(store: BillingStore, first: date, last: date) -> str:
    """The customers invoiced in [first, last] (the contacts the invoices' import refers to)."""
    _period(first, last)
    return customers_csv(_customers(store, store.invoices_by_tax_date(first, last)).values())
