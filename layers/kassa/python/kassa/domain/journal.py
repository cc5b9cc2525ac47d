"""The accounting journal: double-entry lines per document (docs/accounting.md).

Each document is balanced (its debits equal its credits, per currency) by construction: its
postings are signed amounts (+ debit, − credit) that sum to zero, netted per account (and
jurisdiction), each account's net on the side its sign says. Amounts are integers in the
currency's minor unit.

- **invoice** (finalized, not void), at its tax date: Dr receivable (total) · Cr deferred revenue (Σ
  line revenue, net of tax) · Cr VAT payable per jurisdiction;
- **payment**, at paid_at: Dr Stripe balance (bank when paid out of band) · Cr receivable (amount_paid);
- **refund**, at its created: Dr receivable (a credit note's refund) or refunds (made in Stripe
  without a note) · Cr Stripe balance;
- **credit note** (issued), at its tax date: Dr deferred revenue (net) · Dr VAT payable (tax) · Cr
  receivable (total); its out-of-band part: Dr receivable · Cr bank;
- **dispute** opened (funds withdrawn: not an inquiry, ``warning_…``, nor ``prevented``), at its
  created: Dr disputed funds · Cr Stripe balance (amount); Stripe's dispute fee when the event
  carried it: Dr dispute fees · Cr Stripe balance. Closed, at its last update: won — Dr Stripe
  balance · Cr disputed funds (the amount back; a returned fee: Dr Stripe balance · Cr dispute fees);
  lost — Dr dispute losses · Cr disputed funds (amount_lost; any rest back to the Stripe balance);
- **recognition**, per document and month, at the month's last day (or the period's): Dr deferred
  revenue · Cr revenue (``kassa.domain.revenue``).

The customer balance lives in the receivable account: a credit to the balance is a negative
receivable, consumed when a later invoice uses it. Void invoices and void notes are left out, as the
tax reports leave them out. Stripe's processing fees on payments are not known to kassa (they are in
the payments' balance transactions, which kassa does not read or store), so none are posted; a
dispute's fee comes with the dispute's own event and is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from kassa.domain.credit_notes import CreditNote, CreditNoteStatus
from kassa.domain.csv_text import csv_text
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.revenue import (
    BOOKED_STATUSES,
    Recognizable,
    booked_on,
    history_items,
    line_revenue,
    month_bounds,
    months,
)


class Account(StrEnum):
    BANK = "bank"
    STRIPE_BALANCE = "stripe_balance"
    RECEIVABLE = "accounts_receivable"
    VAT_PAYABLE = "vat_payable"
    DEFERRED_REVENUE = "deferred_revenue"
    REVENUE = "revenue"
    REFUNDS = "refunds"
    DISPUTED_FUNDS = "disputed_funds"
    DISPUTE_LOSSES = "dispute_losses"
    DISPUTE_FEES = "dispute_fees"


#: default account codes (a small chart; docs/accounting.md maps them to SKR03/SKR04 and Xero)
ACCOUNT_CODES: dict[Account, str] = {
    Account.BANK: "1000",
    Account.STRIPE_BALANCE: "1010",
    Account.RECEIVABLE: "1200",
    Account.VAT_PAYABLE: "2200",
    Account.DEFERRED_REVENUE: "2400",
    Account.REVENUE: "4000",
    Account.REFUNDS: "4900",
    Account.DISPUTED_FUNDS: "1250",
    Account.DISPUTE_LOSSES: "6900",
    Account.DISPUTE_FEES: "6910",
}


class DocumentType(StrEnum):
    INVOICE = "invoice"
    PAYMENT = "payment"
    REFUND = "refund"
    CREDIT_NOTE = "credit_note"
    DISPUTE = "dispute"
    RECOGNITION = "recognition"


@dataclass(frozen=True)
class JournalLine:
    date: date
    document: str
    type: DocumentType
    invoice: str | None
    account: Account
    jurisdiction: str | None
    debit: int
    credit: int
    currency: str

    def as_json(self) -> dict[str, object]:
        return {
            "date": self.date.isoformat(),
            "document": self.document,
            "type": self.type.value,
            "invoice": self.invoice,
            "account": self.account.value,
            "account_code": ACCOUNT_CODES[self.account],
            "jurisdiction": self.jurisdiction,
            "debit": self.debit,
            "credit": self.credit,
            "currency": self.currency,
        }


Posting = tuple[Account, int, str | None]  # account, signed amount (+ debit, − credit), jurisdiction


def entry(
    day: date, document: str, type_: DocumentType, invoice: str | None, currency: str, postings: Iterable[Posting]
) -> list[JournalLine]:
    """One balanced document: the postings netted per account and jurisdiction (zero nets dropped)."""
    net: dict[tuple[Account, str | None], int] = {}
    for account, amount, jurisdiction in postings:
        net[(account, jurisdiction)] = net.get((account, jurisdiction), 0) + amount
    if sum(net.values()) != 0:
        raise ValueError(f"document {document} does not balance: {net}")
    return [
        JournalLine(day, document, type_, invoice, account, jurisdiction, max(amount, 0), max(-amount, 0), currency)
        for (account, jurisdiction), amount in net.items()
        if amount
    ]


def invoice_entry(invoice: Invoice) -> list[JournalLine]:
    if invoice.status not in BOOKED_STATUSES:
        return []
    postings: list[Posting] = []
    for line in invoice.lines:
        revenue = line_revenue(line)
        postings.append((Account.DEFERRED_REVENUE, -revenue, None))
        postings.append((Account.VAT_PAYABLE, -line.tax_amount, line.tax_jurisdiction))
        postings.append((Account.RECEIVABLE, revenue + line.tax_amount, None))
    day = booked_on(invoice)
    return entry(day, invoice.id, DocumentType.INVOICE, invoice.id, invoice.currency, postings)


def payment_entry(invoice: Invoice) -> list[JournalLine]:
    if invoice.status is not InvoiceStatus.PAID or invoice.amount_paid <= 0:
        return []
    paid = (invoice.paid_at or invoice.finalized_at or invoice.created).date()
    cash = Account.BANK if invoice.paid_out_of_band else Account.STRIPE_BALANCE
    postings: list[Posting] = [(cash, invoice.amount_paid, None), (Account.RECEIVABLE, -invoice.amount_paid, None)]
    return entry(paid, f"{invoice.id}:payment", DocumentType.PAYMENT, invoice.id, invoice.currency, postings)


def refund_entries(invoice: Invoice) -> list[JournalLine]:
    out: list[JournalLine] = []
    for refund in invoice.refunds:
        if not refund.counts or refund.amount <= 0:
            continue
        day = (refund.created or invoice.paid_at or invoice.created).date()
        against = Account.RECEIVABLE if refund.credit_note else Account.REFUNDS
        postings: list[Posting] = [(against, refund.amount, None), (Account.STRIPE_BALANCE, -refund.amount, None)]
        out += entry(day, refund.id, DocumentType.REFUND, invoice.id, invoice.currency, postings)
    return out


#: statuses of a dispute whose funds Stripe never withdrew (an inquiry, one prevented)
NOT_WITHDRAWN = frozenset({"prevented"})


def dispute_entries(invoice: Invoice) -> list[JournalLine]:
    """Per dispute: ``dp_…`` when opened (the funds and the fee withdrawn), ``dp_…:won`` or
    ``dp_…:lost`` when closed."""
    out: list[JournalLine] = []
    currency = invoice.currency
    for dispute in invoice.disputes:
        if dispute.status.startswith("warning_") or dispute.status in NOT_WITHDRAWN or dispute.amount <= 0:
            continue
        opened = (dispute.created or dispute.updated_at or invoice.created).date()
        closed = (dispute.updated_at or dispute.created or invoice.created).date()
        amount, sb, held = dispute.amount, Account.STRIPE_BALANCE, Account.DISPUTED_FUNDS
        postings: list[Posting] = [(held, amount, None), (sb, -amount, None)]
        if dispute.fee:
            postings += [(Account.DISPUTE_FEES, dispute.fee, None), (sb, -dispute.fee, None)]
        out += entry(opened, dispute.id, DocumentType.DISPUTE, invoice.id, currency, postings)
        if dispute.status == "won":
            back = min(dispute.fee_returned, dispute.fee)
            postings = [(sb, amount + back, None), (held, -amount, None), (Account.DISPUTE_FEES, -back, None)]
            out += entry(closed, f"{dispute.id}:won", DocumentType.DISPUTE, invoice.id, currency, postings)
        elif dispute.status == "lost":
            lost = min(dispute.amount_lost or amount, amount)
            postings = [(Account.DISPUTE_LOSSES, lost, None), (sb, amount - lost, None), (held, -amount, None)]
            out += entry(closed, f"{dispute.id}:lost", DocumentType.DISPUTE, invoice.id, currency, postings)
    return out


def credit_note_entry(note: CreditNote) -> list[JournalLine]:
    if note.status is not CreditNoteStatus.ISSUED:
        return []
    postings: list[Posting] = []
    for line in note.lines:
        postings.append((Account.DEFERRED_REVENUE, line.net_amount, None))
        postings.append((Account.VAT_PAYABLE, line.tax_amount, line.tax_jurisdiction))
        postings.append((Account.RECEIVABLE, -line.amount, None))
    if note.out_of_band_amount:  # settled outside kassa (a cash refund, a bank transfer)
        postings += [
            (Account.RECEIVABLE, note.out_of_band_amount, None),
            (Account.BANK, -note.out_of_band_amount, None),
        ]
    return entry(note.reported_on, note.id, DocumentType.CREDIT_NOTE, note.invoice, note.currency, postings)


def recognition_entries(
    items: Iterable[Recognizable], first: date, last: date, invoices: dict[str, str]
) -> list[JournalLine]:
    """Per document and month (clipped to [first, last]): the revenue earned, moved from deferred
    revenue to revenue. ``invoices``: each document's invoice id (a note's is its invoice's)."""
    by_document: dict[tuple[str, str, date], int] = {}
    for item in items:
        for month in months(max(first, item.booked), min(last, item.done)):
            start, end = month_bounds(month)
            start, end = max(start, first), min(end, last)
            key = (item.document, item.currency, end)
            by_document[key] = by_document.get(key, 0) + item.between(start, end)
    out: list[JournalLine] = []
    for (document, currency, end), earned in sorted(by_document.items()):
        postings: list[Posting] = [(Account.DEFERRED_REVENUE, earned, None), (Account.REVENUE, -earned, None)]
        name = f"{document}:recognition:{end:%Y-%m-%d}"  # the last day it recognizes
        out += entry(end, name, DocumentType.RECOGNITION, invoices.get(document, document), currency, postings)
    return out


def journal(
    invoices: Iterable[Invoice], notes: Iterable[tuple[CreditNote, Invoice]], first: date, last: date
) -> list[JournalLine]:
    """Every journal line dated in [first, last], by date then document. ``invoices`` and ``notes``
    (each with its invoice) are the history the period needs: the documents of the period and those
    whose payments, refunds, disputes or revenue fall into it (kassa.services.accounting)."""
    invoices, notes = list(invoices), list(notes)
    lines: list[JournalLine] = []
    for invoice in invoices:
        lines += invoice_entry(invoice) + payment_entry(invoice) + refund_entries(invoice) + dispute_entries(invoice)
    for note, _ in notes:
        lines += credit_note_entry(note)
    lines = [line for line in lines if first <= line.date <= last]
    owners = {note.id: note.invoice for note, _ in notes}
    lines += recognition_entries(history_items(invoices, notes), first, last, owners)
    order = list(DocumentType)
    return sorted(lines, key=lambda x: (x.date, order.index(x.type), x.document, x.debit == 0, x.account.value))


JOURNAL_COLUMNS = [
    "date",
    "document",
    "type",
    "invoice",
    "account",
    "account_code",
    "jurisdiction",
    "debit",
    "credit",
    "currency",
]


def render_journal_csv(lines: Iterable[JournalLine]) -> str:
    """The journal as CSV: the JSON's fields, amounts in minor units."""
    rows = ([line.as_json()[c] for c in JOURNAL_COLUMNS] for line in lines)
    return csv_text(JOURNAL_COLUMNS, ([("" if v is None else str(v)) for v in row] for row in rows))
