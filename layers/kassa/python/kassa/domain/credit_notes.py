"""Credit notes (Stripe's rules), as pure functions over an invoice and its earlier notes.

- On an **open** (or uncollectible) invoice a note is *pre-payment*: it reduces ``amount_due`` and
  nothing is refunded; a note that brings ``amount_due`` to 0 marks the invoice paid (Stripe).
- On a **paid** invoice a note is *post-payment*: its total splits into ``refund_amount`` (back
  through Stripe) + ``credit_amount`` (to the customer balance) + ``out_of_band_amount`` (settled
  outside), and the three must sum exactly to the total.
- A note's total never exceeds what is still creditable: the invoice total minus the totals of its
  earlier (non-void) notes; a line of an invoice is never credited beyond its own amount (tax included
  for exclusive prices); refunds never exceed what was paid minus earlier refunds; currencies match.

Draft invoices are edited, not credited; void invoices owe nothing. Amounts are integers in minor
units: no rounding happens here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kassa.domain.balance import BalanceTransactionType, CustomerBalanceTransaction
from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import CurrencyMismatch, IllegalTransition, InvalidInput
from kassa.domain.ids import derived_id
from kassa.domain.invoice import Invoice, InvoiceLine, InvoiceStatus
from kassa.domain.money import MAX_AMOUNT, normalize_currency
from kassa.domain.payments import refunded_before_note


class CreditNoteReason(StrEnum):
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"


class CreditNoteStatus(StrEnum):
    ISSUED = "issued"
    VOID = "void"


class CreditNoteType(StrEnum):
    PRE_PAYMENT = "pre_payment"
    POST_PAYMENT = "post_payment"


class CreditNoteLineType(StrEnum):
    INVOICE_LINE_ITEM = "invoice_line_item"
    CUSTOM_LINE_ITEM = "custom_line_item"


class CreditNoteLine(BaseModel):
    """Either an amount credited against one invoice line (by its index) or a custom amount."""

    model_config = ConfigDict(frozen=True)

    type: CreditNoteLineType
    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT)
    invoice_line: StrictInt | None = Field(default=None, ge=0)
    description: str | None = None

    def model_post_init(self, __context: object) -> None:
        if self.type is CreditNoteLineType.INVOICE_LINE_ITEM and self.invoice_line is None:
            raise InvalidInput("an invoice_line_item credit names its invoice_line", param="lines.invoice_line")
        if self.type is CreditNoteLineType.CUSTOM_LINE_ITEM:
            if self.invoice_line is not None:
                raise InvalidInput("a custom_line_item names no invoice_line", param="lines.invoice_line")
            if not self.description:
                raise InvalidInput("a custom_line_item needs a description", param="lines.description")


class CreditNoteRequest(BaseModel):
    """What the merchant asks for. On paid invoices the split defaults to a full refund."""

    model_config = ConfigDict(frozen=True)

    lines: tuple[CreditNoteLine, ...] = Field(min_length=1)
    reason: CreditNoteReason | None = None
    memo: str | None = Field(default=None, max_length=5000)
    currency: str | None = None
    refund_amount: StrictInt | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    credit_amount: StrictInt | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    out_of_band_amount: StrictInt | None = Field(default=None, ge=0, le=MAX_AMOUNT)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


class CreditNote(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    number: str
    invoice: str
    customer: str
    currency: str
    type: CreditNoteType
    lines: tuple[CreditNoteLine, ...]
    total: StrictInt
    reason: CreditNoteReason | None = None
    memo: str | None = None
    status: CreditNoteStatus = CreditNoteStatus.ISSUED
    refund_amount: StrictInt = 0
    credit_amount: StrictInt = 0
    out_of_band_amount: StrictInt = 0
    created: datetime
    voided_at: datetime | None = None

    def model_post_init(self, __context: object) -> None:
        if self.total != sum(line.amount for line in self.lines):
            raise InvalidInput("a credit note's total is the sum of its lines", param="total")
        if self.type is CreditNoteType.POST_PAYMENT and (
            self.refund_amount + self.credit_amount + self.out_of_band_amount != self.total
        ):
            raise InvalidInput(
                "refund_amount + credit_amount + out_of_band_amount must equal the total", param="refund_amount"
            )


def credit_note_number(invoice_number: str, sequence: int) -> str:
    """The invoice's number with a per-invoice sequence: ``KASSA-0042-CN-01``."""
    if sequence < 1:
        raise InvalidInput("credit note sequences start at 1", param="sequence")
    return f"{invoice_number}-CN-{sequence:02d}"


def credit_note_id(invoice_id: str, sequence: int) -> str:
    """Derived from (invoice, sequence): a retried request cannot issue a second note."""
    return derived_id("cn", invoice_id, str(sequence))


def line_creditable_amount(line: InvoiceLine) -> int:
    """What the customer was charged for ``line``: its amount plus tax when the tax came on top."""
    tax = line.tax_amount if line.tax_behavior is TaxBehavior.EXCLUSIVE else 0
    return max(0, line.amount + tax)


@dataclass(frozen=True)
class InvoiceCreditState:
    """An invoice's credit-note totals, as Stripe shows them, derived from its issued notes."""

    pre_payment_credit_notes_amount: int
    post_payment_credit_notes_amount: int
    refunded: int
    credited_per_line: tuple[int, ...]
    creditable: int  # invoice total − every issued note's total (never below 0)


def credit_state(invoice: Invoice, notes: Sequence[CreditNote] = ()) -> InvoiceCreditState:
    issued = [note for note in notes if note.status is CreditNoteStatus.ISSUED]
    for note in notes:
        if note.invoice != invoice.id:
            raise InvalidInput(f"credit note {note.id} belongs to invoice {note.invoice}", param="credit_notes")
    per_line = [0] * len(invoice.lines)
    for note in issued:
        for line in note.lines:
            if line.invoice_line is not None and line.invoice_line < len(per_line):
                per_line[line.invoice_line] += line.amount
    pre = sum(n.total for n in issued if n.type is CreditNoteType.PRE_PAYMENT)
    post = sum(n.total for n in issued if n.type is CreditNoteType.POST_PAYMENT)
    return InvoiceCreditState(
        pre_payment_credit_notes_amount=pre,
        post_payment_credit_notes_amount=post,
        refunded=sum(n.refund_amount for n in issued),
        credited_per_line=tuple(per_line),
        creditable=max(0, invoice.total - pre - post),
    )


@dataclass(frozen=True)
class CreditNoteOutcome:
    """The issued note and what the caller writes back: the invoice's new amounts and status, the
    refund to ask Stripe for, and the balance entry to record (for ``credit_amount``)."""

    credit_note: CreditNote
    amount_due: int
    invoice_status: InvoiceStatus
    pre_payment_credit_notes_amount: int
    post_payment_credit_notes_amount: int
    refund_amount: int
    balance_transaction: CustomerBalanceTransaction | None


def issue_credit_note(
    invoice: Invoice,
    request: CreditNoteRequest,
    *,
    previous: Sequence[CreditNote] = (),
    credit_note_id: str,
    number: str,
    now: datetime,
) -> CreditNoteOutcome:
    """Validate ``request`` against ``invoice`` and its ``previous`` notes and issue the note.

    ``invoice.amount_due`` must already reflect earlier pre-payment notes (write back each outcome's
    ``amount_due``).
    """
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID):
        raise IllegalTransition(
            f"invoice {invoice.id} is {invoice.status.value}: "
            "only open, uncollectible or paid invoices take credit notes"
        )
    if request.currency is not None and normalize_currency(request.currency) != invoice.currency:
        raise CurrencyMismatch(
            f"invoice {invoice.id} is in {invoice.currency}, not {request.currency}", param="currency"
        )
    state = credit_state(invoice, previous)
    per_line = list(state.credited_per_line)
    for line in request.lines:
        if line.invoice_line is None:
            continue
        if line.invoice_line >= len(invoice.lines):
            raise InvalidInput(f"invoice {invoice.id} has no line {line.invoice_line}", param="lines.invoice_line")
        left = line_creditable_amount(invoice.lines[line.invoice_line]) - per_line[line.invoice_line]
        if line.amount > left:
            raise InvalidInput(
                f"line {line.invoice_line} can be credited {max(0, left)} more, not {line.amount}",
                param="lines.amount",
            )
        per_line[line.invoice_line] += line.amount
    total = request.total
    if total > state.creditable:
        raise InvalidInput(
            f"the credit note total {total} exceeds the {state.creditable} still creditable on invoice {invoice.id}",
            param="lines",
        )
    refund = credit = out_of_band = 0
    status: InvoiceStatus = invoice.status
    if invoice.status is InvoiceStatus.PAID:
        kind = CreditNoteType.POST_PAYMENT
        given = (request.refund_amount, request.credit_amount, request.out_of_band_amount)
        if all(part is None for part in given):
            refund = total
        else:
            refund, credit, out_of_band = (part or 0 for part in given)
        if refund + credit + out_of_band != total:
            raise InvalidInput(
                f"refund_amount + credit_amount + out_of_band_amount = {refund + credit + out_of_band}, "
                f"but the credit note total is {total}",
                param="refund_amount",
            )
        # refunds made outside kassa (the Stripe dashboard) count too: one limit for every refund
        already = refunded_before_note(invoice.refunds, invoice.charge_amount_refunded, state.refunded, credit_note_id)
        if refund > invoice.amount_paid - already:
            raise InvalidInput(
                f"refund_amount {refund} exceeds the {max(0, invoice.amount_paid - already)} paid and not yet refunded",
                param="refund_amount",
            )
        amount_due = invoice.amount_due
    else:
        kind = CreditNoteType.PRE_PAYMENT
        if request.refund_amount or request.credit_amount or request.out_of_band_amount:
            raise InvalidInput(
                "a credit note on an unpaid invoice reduces its amount due; nothing is refunded or credited",
                param="refund_amount",
            )
        if total > invoice.amount_due:
            raise InvalidInput(
                f"the credit note total {total} exceeds the amount due {invoice.amount_due}", param="lines"
            )
        amount_due = invoice.amount_due - total
        status = InvoiceStatus.PAID if amount_due == 0 else invoice.status
    note = CreditNote(
        id=credit_note_id,
        number=number,
        invoice=invoice.id,
        customer=invoice.customer,
        currency=invoice.currency,
        type=kind,
        lines=request.lines,
        total=total,
        reason=request.reason,
        memo=request.memo,
        refund_amount=refund,
        credit_amount=credit,
        out_of_band_amount=out_of_band,
        created=now,
    )
    entry = None
    if credit:
        entry = CustomerBalanceTransaction(
            id=derived_id("cbtxn", credit_note_id, "credit"),
            customer=invoice.customer,
            amount=-credit,
            currency=invoice.currency,
            type=BalanceTransactionType.CREDIT_NOTE,
            invoice=invoice.id,
            credit_note=credit_note_id,
            description=f"Credit note {number}",
            created=now,
        )
    return CreditNoteOutcome(
        credit_note=note,
        amount_due=amount_due,
        invoice_status=status,
        pre_payment_credit_notes_amount=state.pre_payment_credit_notes_amount
        + (total if kind is CreditNoteType.PRE_PAYMENT else 0),
        post_payment_credit_notes_amount=state.post_payment_credit_notes_amount
        + (total if kind is CreditNoteType.POST_PAYMENT else 0),
        refund_amount=refund,
        balance_transaction=entry,
    )


@dataclass(frozen=True)
class VoidOutcome:
    credit_note: CreditNote
    amount_due: int  # the invoice's amount due after the void
    balance_transaction: CustomerBalanceTransaction | None  # reverses the note's credit_amount


def void_credit_note(note: CreditNote, invoice: Invoice, now: datetime) -> VoidOutcome:
    """Void an issued note: a pre-payment note gives back the amount due (while the invoice is still
    unpaid); a post-payment note's balance credit is reversed. A note that refunded money cannot be
    voided (the refund cannot be taken back). Voiding a void note changes nothing."""
    if note.invoice != invoice.id:
        raise InvalidInput(f"credit note {note.id} belongs to invoice {note.invoice}", param="invoice")
    if note.status is CreditNoteStatus.VOID:
        return VoidOutcome(note, invoice.amount_due, None)
    if note.refund_amount:
        raise IllegalTransition(f"credit note {note.id} refunded {note.refund_amount}; a refund cannot be voided")
    amount_due = invoice.amount_due
    if note.type is CreditNoteType.PRE_PAYMENT:
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            raise IllegalTransition(
                f"invoice {invoice.id} is {invoice.status.value}: the pre-payment credit note can no longer be voided"
            )
        amount_due += note.total
    entry = None
    if note.credit_amount:
        entry = CustomerBalanceTransaction(
            id=derived_id("cbtxn", note.id, "void"),
            customer=note.customer,
            amount=note.credit_amount,
            currency=note.currency,
            type=BalanceTransactionType.CREDIT_NOTE,
            invoice=note.invoice,
            credit_note=note.id,
            description=f"Credit note {note.number} voided",
            created=now,
        )
    voided = note.model_copy(update={"status": CreditNoteStatus.VOID, "voided_at": now})
    return VoidOutcome(voided, amount_due, entry)
