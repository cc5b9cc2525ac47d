"""Use case: credit notes — on an open invoice they lower the amount due; on a paid one their total
splits into a refund through Stripe, customer credit and an out-of-band part (Stripe's rule)."""

from __future__ import annotations

from kassa.domain.credit_notes import (
    CreditNote,
    CreditNoteRequest,
    credit_note_id,
    credit_note_number,
    issue_credit_note,
)
from kassa.domain.errors import AlreadyExists, Conflict, CurrencyMismatch, IllegalTransition, InvalidInput
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import Invoice
from kassa.domain.money import Money
from kassa.domain.payments import InvoiceRefund, with_refund
from kassa.services.context import RETRIES, BillingContext


def credit_invoice(
    ctx: BillingContext,
    invoice_id: str,
    request: CreditNoteRequest,
    *,
    note_id: str | None = None,
    refund_reason: str | None = None,
    request_key: str | None = None,
) -> tuple[CreditNote, Invoice]:
    """Issue a credit note: on an open invoice it lowers the amount due; on a paid one its total
    splits into a refund through Stripe, customer credit and an out-of-band part (Stripe's rule).

    The invoice may change under the request (dunning files it under its next retry, a webhook
    settles it): the note is then computed again from the fresh invoice. Its id derives from its
    sequence (or ``note_id``: a refund request's idempotency key), so a refund already sent is
    replayed by Stripe under the same key, not repeated. The refund is recorded on the invoice
    (``refunds``, ``amount_refunded``; kassa.services.payments)."""
    for _ in range(RETRIES):
        try:
            return _credit_invoice_once(ctx, invoice_id, request, note_id, refund_reason, request_key)
        except AlreadyExists:
            raise
        except Conflict:
            continue
    raise Conflict(f"invoice {invoice_id} kept changing; retry")


def _credit_invoice_once(
    ctx: BillingContext,
    invoice_id: str,
    request: CreditNoteRequest,
    note_id: str | None = None,
    refund_reason: str | None = None,
    request_key: str | None = None,
) -> tuple[CreditNote, Invoice]:
    invoice = ctx.store.get_invoice(invoice_id)
    if invoice.number is None and invoice.collectable:
        # a checkout's first invoice is numbered when paid; a credit note needs the invoice's number,
        # so crediting it takes its number now (gapless: the store's counter, in one write)
        invoice, _ = ctx.store.finalize_invoice(invoice, ctx.store.get_settings().invoice_prefix)
    if invoice.number is None:
        raise IllegalTransition(f"invoice {invoice.id} is not finalized", param="invoice")
    previous = ctx.store.list_credit_notes(invoice.id)
    sequence = len(previous) + 1
    now = ctx.now()
    outcome = issue_credit_note(
        invoice,
        request,
        previous=previous,
        credit_note_id=note_id or credit_note_id(invoice.id, sequence),
        number=credit_note_number(invoice.number, sequence),
        now=now,
    )
    note = outcome.credit_note
    if outcome.refund_amount:  # before writing: a retry reuses the note id, so Stripe refunds once
        if not invoice.payment_intent:
            raise InvalidInput("this invoice was not paid through Stripe: nothing to refund", param="refund_amount")
        made = ctx.gateway.create_refund(
            payment_intent=invoice.payment_intent,
            amount=Money(outcome.refund_amount, invoice.currency),
            credit_note_id=note.id,
            reason=refund_reason,
        )
        invoice = with_refund(
            invoice,
            InvoiceRefund(
                id=made.id,
                amount=made.amount,
                currency=invoice.currency,
                reason=refund_reason,
                status=made.status,
                source="kassa",
                credit_note=note.id,
                request_key=request_key,
                created=now,
            ),
        )
    updated = invoice.model_copy(
        update={
            "amount_due": outcome.amount_due,
            "pre_payment_credit_notes_amount": outcome.pre_payment_credit_notes_amount,
            "post_payment_credit_notes_amount": outcome.post_payment_credit_notes_amount,
        }
    )
    if outcome.invoice_status is not invoice.status:
        updated = updated.transition(outcome.invoice_status, now)
    customer = None
    if outcome.balance_transaction is not None:
        current = ctx.store.get_customer(invoice.customer)
        if current.balance_currency not in (None, invoice.currency):
            raise CurrencyMismatch("the customer's balance is in another currency", param="credit_amount")
        customer = current.model_copy(
            update={
                "balance": current.balance + outcome.balance_transaction.amount,
                "balance_currency": invoice.currency,
            }
        )
    saved = ctx.store.issue_credit_note(note, updated, customer)
    ctx.emit(
        DomainEvent.of("credit_note.created", note, now, cause="issue"),
        DomainEvent.of("invoice.updated", saved, now, cause=f"credit:{note.id}"),
    )
    return note, saved
