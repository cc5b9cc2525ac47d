"""Bookkeeping CSVs: invoices (one row per line), payments (and refunds) and customers, in columns
that common bookkeeping imports map directly (docs/accounting.md has the Xero, QuickBooks and
DATEV mappings). Amounts are decimal strings in major units at the currency's exponent
(``Money.decimal``: "12.00", "1200" for JPY), never floats; dates ISO 8601.
"""

from __future__ import annotations

from collections.abc import Iterable

from kassa.domain.csv_text import csv_text
from kassa.domain.customer import Customer
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.journal import ACCOUNT_CODES, Account
from kassa.domain.money import Money
from kassa.domain.revenue import BOOKED_STATUSES, booked_on, line_revenue

INVOICE_COLUMNS = [
    "invoice_number",
    "invoice_id",
    "invoice_date",
    "due_date",
    "status",
    "customer_id",
    "customer_name",
    "customer_email",
    "customer_country",
    "customer_tax_id",
    "line",
    "description",
    "quantity",
    "unit_amount",
    "net_amount",
    "tax_rate",
    "tax_amount",
    "gross_amount",
    "tax_jurisdiction",
    "currency",
    "account_code",
    "service_start",
    "service_end",
]
PAYMENT_COLUMNS = [
    "date",
    "type",
    "reference",
    "invoice_number",
    "invoice_id",
    "customer_id",
    "customer_name",
    "amount",
    "currency",
    "account_code",
]
CUSTOMER_COLUMNS = [
    "customer_id",
    "name",
    "email",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "state",
    "country",
    "tax_id",
    "tax_exempt",
    "preferred_locale",
    "created",
]


def _name(customers: dict[str, Customer], customer_id: str) -> str:
    customer = customers.get(customer_id)
    return (customer.name or customer.email) if customer else ""


def invoices_csv(invoices: Iterable[Invoice], customers: dict[str, Customer]) -> str:
    rows = []
    for invoice in invoices:
        if invoice.status not in BOOKED_STATUSES:
            continue
        customer = customers.get(invoice.customer)
        day = booked_on(invoice).isoformat()
        for index, line in enumerate(invoice.lines):
            net = line_revenue(line)
            rows.append(
                [
                    invoice.number or "",
                    invoice.id,
                    day,
                    day,  # kassa charges at once: due on issue
                    invoice.status.value,
                    invoice.customer,
                    _name(customers, invoice.customer),
                    customer.email if customer else "",
                    invoice.customer_country or (customer.address.country if customer else ""),
                    invoice.customer_tax_id or "",
                    str(index + 1),
                    line.description,
                    str(line.quantity),
                    Money(line.unit_amount, invoice.currency).decimal() if line.unit_amount is not None else "",
                    Money(net, invoice.currency).decimal(),
                    line.tax_rate or "0",
                    Money(line.tax_amount, invoice.currency).decimal(),
                    Money(net + line.tax_amount, invoice.currency).decimal(),
                    line.tax_jurisdiction or "",
                    invoice.currency,
                    ACCOUNT_CODES[Account.REVENUE],
                    line.period_start.date().isoformat(),
                    line.period_end.date().isoformat(),
                ]
            )
    return csv_text(INVOICE_COLUMNS, rows)


def payment_moves(invoice: Invoice) -> list[tuple[str, str, str, int, Account]]:
    """An invoice's payment and refunds: (ISO day, "payment" or "refund", reference, signed amount, account)."""
    cash = Account.BANK if invoice.paid_out_of_band else Account.STRIPE_BALANCE
    moves: list[tuple[str, str, str, int, Account]] = []
    if invoice.status is InvoiceStatus.PAID and invoice.amount_paid > 0 and invoice.paid_at:
        reference = invoice.charge or invoice.payment_intent or f"{invoice.id}:payment"
        moves.append((invoice.paid_at.date().isoformat(), "payment", reference, invoice.amount_paid, cash))
    for refund in invoice.refunds:
        if refund.counts and refund.amount > 0:
            day = (refund.created or invoice.paid_at or invoice.created).date().isoformat()
            moves.append((day, "refund", refund.id, -refund.amount, Account.STRIPE_BALANCE))
    return moves


def payments_csv(invoices: Iterable[Invoice], customers: dict[str, Customer], first_day: str, last_day: str) -> str:
    """Payments received and refunds paid out (negative) dated in [first_day, last_day] (ISO dates)."""
    rows = []
    for invoice in invoices:
        for day, kind, reference, amount, account in payment_moves(invoice):
            if first_day <= day <= last_day:
                rows.append(
                    [
                        day,
                        kind,
                        reference,
                        invoice.number or "",
                        invoice.id,
                        invoice.customer,
                        _name(customers, invoice.customer),
                        Money(amount, invoice.currency).decimal(),
                        invoice.currency,
                        ACCOUNT_CODES[account],
                    ]
                )
    rows.sort(key=lambda row: (row[0], row[2]))
    return csv_text(PAYMENT_COLUMNS, rows)


def customers_csv(customers: Iterable[Customer]) -> str:
    rows = [
        [
            c.id,
            c.name or "",
            c.email,
            c.address.line1 or "",
            c.address.line2 or "",
            c.address.postal_code or "",
            c.address.city or "",
            c.address.state or "",
            c.address.country,
            c.tax_id or "",
            "true" if c.tax_exempt else "false",
            c.preferred_locale,
            c.created.date().isoformat(),
        ]
        for c in sorted(customers, key=lambda c: c.id)
    ]
    return csv_text(CUSTOMER_COLUMNS, rows)
