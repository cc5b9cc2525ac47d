"""Use case: after payment — refunds (kassa's and the Stripe dashboard's), disputes and Radar early
fraud warnings, on the invoice whose payment they concern (docs/payments.md).

A refund through kassa is a post-payment credit note whose total is refunded
(``credit_notes.credit_invoice``): one rule — what is left refundable — for every refund. Events
from Stripe name a PaymentIntent; the invoice is found by it in the store (the paid invoice's
index entry), and only when that misses, through Stripe (the PaymentIntent's ``kassa_invoice``
metadata). Every handler is idempotent and order-tolerant: it records news by Stripe object id and
reports ``ignored:…`` when the news was already recorded.
"""

from __future__ import annotations

from collections import Counter
from contextlib import suppress
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from kassa.domain.cancellation import CancellationDetails, CancellationReason
from kassa.domain.credit_notes import (
    CreditNoteLineInput,
    CreditNoteLineType,
    CreditNoteReason,
    CreditNoteRequest,
    credit_state,
)
from kassa.domain.errors import Conflict, IdempotencyKeyReused, IllegalTransition, InvalidInput, NotFound, Unavailable
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.payments import (
    MERCHANT_KEPT,
    FraudWarning,
    InvoiceDispute,
    InvoiceRefund,
    RefundReason,
    dispute_of,
    merge_dispute,
    refund_of,
    refund_request_key,
    refunded_before_note,
    with_refund,
)
from kassa.services.collection import entitlements_event
from kassa.services.context import RETRIES, BillingContext
from kassa.services.ports import BillingStore

REFUND_EVENTS = frozenset({"charge.refunded", "refund.created", "refund.updated", "charge.refund.updated"})
DISPUTE_EVENTS = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
FRAUD_EVENTS = frozenset({"radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"})
HANDLED = REFUND_EVENTS | DISPUTE_EVENTS | FRAUD_EVENTS


class DisputeNotice(BaseModel):
    """What the ``charge.dispute.*`` domain events carry: the dispute and where it belongs."""

    id: str
    invoice: str
    invoice_number: str | None
    customer: str
    subscription: str | None
    amount: int
    currency: str
    reason: str | None
    status: str
    evidence_due_by: datetime | None
    amount_lost: int
    access: str  # keep | suspend: what the merchant's setting did to access
    payment_method_type: str | None = None  # card, sepa_debit, us_bank_account
    contestable: bool = True  # False: a SEPA refund request within 8 weeks, an ACH return


class FraudNotice(BaseModel):
    id: str
    invoice: str
    customer: str
    subscription: str | None
    charge: str | None
    fraud_type: str | None
    action: str


# ------------------------------------------------------------------ refunds through kassa
def refund_invoice(
    ctx: BillingContext,
    invoice_id: str,
    amount: int | None = None,
    reason: RefundReason | None = None,
    key: str | None = None,
) -> tuple[Invoice, InvoiceRefund]:
    """Refund part (``amount``) or all of what is left refundable of a paid invoice's payment.

    The refund is a post-payment credit note refunding its whole total. ``key`` (the request's
    Idempotency-Key) makes a retried request answer with the first refund instead of refunding again;
    without it, a request that failed half-way is still refunded once (the note's id keys Stripe's call)."""
    invoice = ctx.store.get_invoice(invoice_id)
    if key is not None:
        for known in invoice.refunds:
            if known.request_key == key:
                if (amount is not None and amount != known.amount) or (reason and reason.value != known.reason):
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with other parameters", param="Idempotency-Key"
                    )
                return invoice, known
    if invoice.status is not InvoiceStatus.PAID:
        raise InvalidInput(
            f"invoice {invoice.id} is {invoice.status.value}; only a paid invoice is refunded", param="invoice"
        )
    if not invoice.payment_intent:
        raise InvalidInput(f"invoice {invoice.id} was not paid through Stripe: nothing to refund", param="invoice")
    note_id = refund_request_key(invoice.id, key) if key is not None else None
    notes = ctx.store.list_credit_notes(invoice.id)
    noted = credit_state(invoice, notes).refunded
    left = invoice.amount_paid - refunded_before_note(invoice.refunds, invoice.charge_amount_refunded, noted, "")
    wanted = left if amount is None else amount
    if wanted <= 0 or wanted > left:
        raise InvalidInput(
            f"amount must be between 1 and the {max(left, 0)} left refundable on invoice {invoice.id}", param="amount"
        )
    note_reason = (
        {
            RefundReason.DUPLICATE: CreditNoteReason.DUPLICATE,
            RefundReason.FRAUDULENT: CreditNoteReason.FRAUDULENT,
        }.get(reason)
        if reason
        else None
    )
    request = CreditNoteRequest(
        lines=(
            CreditNoteLineInput(
                type=CreditNoteLineType.CUSTOM_LINE_ITEM,
                amount=wanted,
                description=f"Refund ({reason.value})" if reason else "Refund",
            ),
        ),
        reason=note_reason,
        refund_amount=wanted,
    )
    from kassa.services.credit_notes import credit_invoice  # credit notes import this module's rules

    try:
        note, saved = credit_invoice(
            ctx,
            invoice.id,
            request,
            note_id=note_id,
            refund_reason=reason.value if reason else None,
            request_key=key,
        )
    except InvalidInput as error:
        if error.param in ("refund_amount", "lines", "lines.amount"):
            raise InvalidInput(error.message, param="amount") from error
        raise
    made = next(r for r in reversed(saved.refunds) if r.credit_note == note.id)
    return saved, made


# ------------------------------------------------------------------ finding the invoice
def invoice_of_payment(ctx: BillingContext, obj: dict[str, Any]) -> Invoice | str:
    """The invoice a charge, refund, dispute or fraud warning is about, or why there is none."""
    hint = (obj.get("metadata") or {}).get("kassa_invoice") if obj.get("object") == "charge" else None
    if isinstance(hint, str) and hint:  # a charge carries its PaymentIntent's metadata
        found = ctx.store.find_invoice(hint)
        if found is not None and found.status is InvoiceStatus.PAID:
            return found
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    if not isinstance(intent, str) or not intent:
        return "ignored:no payment_intent (not a kassa payment)"
    found = ctx.store.find_invoice_by_payment_intent(intent)
    if found is not None:
        return found
    # not (yet) found in the index: ask Stripe once whose payment this is
    invoice_id = ctx.gateway.invoice_of_payment_intent(intent)
    if invoice_id is None:
        return f"ignored:{intent} is not a kassa payment"
    invoice = ctx.store.find_invoice(invoice_id)
    if invoice is None:
        return f"ignored:unknown invoice {invoice_id}"
    if invoice.status is not InvoiceStatus.PAID:
        # the payment's own webhook has not been applied yet: retried later (SQS), not dropped
        raise Unavailable(f"invoice {invoice_id} is not paid yet; {intent}'s news waits for its payment")
    return invoice


def _save(ctx: BillingContext, invoice_id: str, change: Any) -> tuple[Invoice, Invoice] | None:
    """Apply ``change`` (invoice → invoice) under the invoice's version; (before, after) or None if
    nothing changed."""
    for _ in range(RETRIES):
        before = ctx.store.get_invoice(invoice_id)
        after = change(before)
        if after == before:
            return None
        try:
            return before, ctx.store.save_invoice(after)
        except Conflict:
            continue
    raise Conflict(f"invoice {invoice_id} kept changing; retry")


def _event_time(event: dict[str, Any]) -> datetime | None:
    created = event.get("created")
    return datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None


# ------------------------------------------------------------------ Stripe events
def apply_payment_event(ctx: BillingContext, event: dict[str, Any], obj: dict[str, Any]) -> str:
    etype = str(event.get("type"))
    found = invoice_of_payment(ctx, obj)
    if isinstance(found, str):
        return found
    if etype in REFUND_EVENTS:
        return _refund_news(ctx, found, etype, obj)
    if etype in DISPUTE_EVENTS:
        return _dispute_news(ctx, found, obj, _event_time(event))
    return _fraud_warning(ctx, found, obj)


def _refund_news(ctx: BillingContext, invoice: Invoice, etype: str, obj: dict[str, Any]) -> str:
    if etype == "charge.refunded":
        listed = obj.get("refunds")
        refunds = [refund_of(r, invoice.currency) for r in (listed or {}).get("data", [])] if listed else []
        reported = int(obj.get("amount_refunded") or 0)
        charge = obj.get("id")

        def change(inv: Invoice) -> Invoice:
            for refund in refunds:
                inv = with_refund(inv, refund)
            inv = with_refund(inv, refunds[0], reported) if refunds else _reported(inv, reported)
            return inv.model_copy(update={"charge": inv.charge or charge})

        cause = f"charge.refunded:{reported}"
    else:
        refund = refund_of(obj, invoice.currency)

        def change(inv: Invoice) -> Invoice:
            return with_refund(inv, refund)

        cause = f"refund:{refund.id}:{refund.status}"
    saved = _save(ctx, invoice.id, change)
    if saved is None:
        return "ignored:refund already recorded"
    ctx.emit(DomainEvent.of("invoice.updated", saved[1], ctx.now(), cause=cause))
    return "applied"


def _reported(inv: Invoice, reported: int) -> Invoice:
    from kassa.domain.payments import amount_refunded

    figure = max(inv.charge_amount_refunded, reported)
    return inv.model_copy(
        update={"charge_amount_refunded": figure, "amount_refunded": amount_refunded(inv.refunds, figure)}
    )


def _dispute_news(ctx: BillingContext, invoice: Invoice, obj: dict[str, Any], at: datetime | None) -> str:
    news = dispute_of(obj, at, invoice.currency, debited_at=invoice.paid_at)
    merged: dict[str, InvoiceDispute] = {}

    def change(inv: Invoice) -> Invoice:
        disputes, _ = merge_dispute(inv.disputes, news)
        merged["now"] = next(d for d in disputes if d.id == news.id)
        return inv.model_copy(
            update={
                "disputes": list(disputes),
                "amount_disputed_lost": sum(d.amount_lost for d in disputes),
                "charge": inv.charge or news.charge,
            }
        )

    saved = _save(ctx, invoice.id, change)
    if saved is None:
        return "ignored:dispute already recorded"
    before, after = saved
    dispute = merged["now"]
    previous = next((d for d in before.disputes if d.id == dispute.id), None)
    if previous is None:
        kind = "charge.dispute.closed" if dispute.closed else "charge.dispute.created"
    else:
        kind = "charge.dispute.closed" if dispute.closed else "charge.dispute.updated"
    settings = ctx.store.get_settings()
    now = ctx.now()
    access = _dispute_access(ctx, after, dispute, settings.disputes.access == "suspend")
    notice = DisputeNotice(
        id=dispute.id,
        invoice=after.id,
        invoice_number=after.number,
        customer=after.customer,
        subscription=after.subscription,
        amount=dispute.amount,
        currency=dispute.currency,
        reason=dispute.reason,
        status=dispute.status,
        evidence_due_by=dispute.evidence_due_by,
        amount_lost=dispute.amount_lost,
        access=access,
        payment_method_type=dispute.payment_method_type,
        contestable=dispute.contestable,
    )
    ctx.emit(
        DomainEvent.of(kind, notice, now, cause=dispute.status),
        DomainEvent.of("invoice.updated", after, now, cause=f"dispute:{dispute.id}:{dispute.status}"),
    )
    return "applied"


def _dispute_access(ctx: BillingContext, invoice: Invoice, dispute: InvoiceDispute, suspend: bool) -> str:
    """Hold access while the dispute is open or lost (setting ``suspend``); a won one gives it back."""
    if not invoice.subscription:
        return "keep"
    hold = suspend and dispute.status not in MERCHANT_KEPT
    release = dispute.status in MERCHANT_KEPT
    if not hold and not release:
        return "keep"
    for _ in range(RETRIES):
        try:
            sub = ctx.store.get_subscription(invoice.subscription)
        except NotFound:
            return "keep"
        holds = [h for h in sub.dispute_holds if h != dispute.id] + ([dispute.id] if hold else [])
        if holds == sub.dispute_holds:
            return "suspend" if hold else "keep"
        suspended = bool(holds) or (sub.overdue_state is not None and sub.entitlements_suspended)
        changed = sub.model_copy(update={"dispute_holds": holds, "entitlements_suspended": suspended})
        try:
            saved = ctx.store.save_subscription(changed)
        except Conflict:
            continue
        now = ctx.now()
        cause = f"dispute:{dispute.id}:{dispute.status}"
        events = [
            DomainEvent.of(
                "customer.subscription.updated",
                saved,
                now,
                cause=cause,
                previous={"dispute_holds": sub.dispute_holds, "entitlements_suspended": sub.entitlements_suspended},
            )
        ]
        if saved.entitlements_suspended != sub.entitlements_suspended or bool(holds) != bool(sub.dispute_holds):
            events.append(entitlements_event(saved, now, cause=cause))
        ctx.emit(*events)
        return "suspend" if hold else "keep"
    raise Conflict(f"subscription {invoice.subscription} kept changing; retry")


def _fraud_warning(ctx: BillingContext, invoice: Invoice, obj: dict[str, Any]) -> str:
    warning_id = str(obj.get("id"))
    if any(w.id == warning_id for w in invoice.fraud_warnings):
        return "ignored:fraud warning already recorded"
    settings = ctx.store.get_settings()
    act = settings.fraud.early_warning == "refund_and_cancel" and obj.get("actionable", True) is not False
    now = ctx.now()
    if act:
        try:
            refund_invoice(ctx, invoice.id, reason=RefundReason.FRAUDULENT, key=f"efw:{warning_id}")
        except InvalidInput as error:
            if error.param != "amount":  # nothing left to refund: the cancel still happens
                raise
        if invoice.subscription:
            from kassa.services.cancellation import cancel

            with suppress(IllegalTransition):  # already ended
                cancel(
                    ctx,
                    invoice.subscription,
                    at_period_end=False,
                    details=CancellationDetails(
                        reason=CancellationReason.PAYMENT_DISPUTED,
                        comment=f"fraudulent: Radar early fraud warning {warning_id}",
                    ),
                )
    warning = FraudWarning(
        id=warning_id,
        charge=obj.get("charge") if isinstance(obj.get("charge"), str) else None,
        fraud_type=obj.get("fraud_type"),
        actionable=bool(obj.get("actionable", True)),
        action="refunded_and_canceled" if act else "flagged",
        created=now,
    )

    def change(inv: Invoice) -> Invoice:
        if any(w.id == warning_id for w in inv.fraud_warnings):
            return inv
        return inv.model_copy(
            update={"fraud_warnings": [*inv.fraud_warnings, warning], "charge": inv.charge or warning.charge}
        )

    saved = _save(ctx, invoice.id, change)
    for _ in range(RETRIES):
        customer = ctx.store.get_customer(invoice.customer)
        if warning_id in customer.fraud_warnings:
            break
        try:
            ctx.store.save_customer(
                customer.model_copy(update={"fraud_warnings": [*customer.fraud_warnings, warning_id]})
            )
            break
        except Conflict:
            continue
    else:  # never lost silently: the event is retried (the invoice's part is recorded once)
        raise Conflict(f"customer {invoice.customer} kept changing; retry")
    if saved is None:
        return "ignored:fraud warning already recorded"
    notice = FraudNotice(
        id=warning_id,
        invoice=invoice.id,
        customer=invoice.customer,
        subscription=invoice.subscription,
        charge=warning.charge,
        fraud_type=warning.fraud_type,
        action=warning.action,
    )
    ctx.emit(
        DomainEvent.of("radar.early_fraud_warning.created", notice, now, cause=warning.action),
        DomainEvent.of("invoice.updated", saved[1], now, cause=f"fraud_warning:{warning_id}"),
    )
    return "applied"


# ------------------------------------------------------------------ figures
def figures(store: BillingStore, start: date, end: date) -> dict[str, Any]:
    """Refunded amounts, disputes by status, amounts lost to disputes (per currency) and fraud
    warnings, over the invoices with a tax point in [start, end]."""
    refunded: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    disputed: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for invoice in store.invoices_by_tax_date(start, end):
        if invoice.amount_refunded:
            refunded[invoice.currency] += invoice.amount_refunded
        for dispute in invoice.disputes:
            by_status[dispute.status] += 1
            disputed[dispute.currency] += dispute.amount
            lost[dispute.currency] += dispute.amount_lost
        for warning in invoice.fraud_warnings:
            warnings[warning.action] += 1
    return {
        "object": "payment_figures",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "amount_refunded": dict(refunded),
        "disputes": sum(by_status.values()),
        "disputes_by_status": dict(by_status),
        "amount_disputed": dict(disputed),
        "amount_lost_to_disputes": dict(lost),
        "early_fraud_warnings": dict(warnings),
    }
