"""Use case: the merchant's invoice actions (Stripe's ``/finalize``, ``/pay``, ``/void``,
``/mark_uncollectible``). Which status each action starts from is the domain's rule
(``kassa.domain.invoice.INVOICE_ACTIONS``); asking for an action already done answers the same
invoice and publishes nothing, so every call is safe to repeat."""

from __future__ import annotations

from collections.abc import Callable

from kassa.domain.errors import Conflict
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import Invoice, InvoiceAction, InvoiceStatus, action_needed
from kassa.services.collection import CollectResult, apply_paid, collect
from kassa.services.context import RETRIES, BillingContext


def _once(ctx: BillingContext, invoice_id: str, action: InvoiceAction, act: Callable[[Invoice], Invoice]) -> Invoice:
    """Read, check the action, write under the invoice's version; a concurrent writer makes it read
    and decide again (it may find the action done)."""
    for _ in range(RETRIES):
        invoice = ctx.store.get_invoice(invoice_id)
        if not action_needed(invoice, action):
            return invoice
        try:
            return act(invoice)
        except Conflict:
            continue
    raise Conflict(f"invoice {invoice_id} kept changing; retry")


def finalize(ctx: BillingContext, invoice_id: str) -> Invoice:
    """draft → open with the next gapless number (a draft kept while collection was paused with
    ``keep_as_draft``); publishes ``invoice.finalized``. Nothing is charged: ``pay`` does that."""

    def act(invoice: Invoice) -> Invoice:
        now = ctx.now()
        prefix = ctx.store.get_settings().invoice_prefix
        final, _ = ctx.store.finalize_invoice(invoice.opened(now), prefix)
        ctx.emit(DomainEvent.of("invoice.finalized", final, now, cause="finalize"))
        return final

    return _once(ctx, invoice_id, InvoiceAction.FINALIZE, act)


def void(ctx: BillingContext, invoice_id: str) -> Invoice:
    """open or uncollectible → void (it leaves the dunning index); publishes ``invoice.voided``."""

    def act(invoice: Invoice) -> Invoice:
        now = ctx.now()
        voided = ctx.store.save_invoice(invoice.transition(InvoiceStatus.VOID, now))
        ctx.emit(DomainEvent.of("invoice.voided", voided, now, cause="void"))
        return voided

    return _once(ctx, invoice_id, InvoiceAction.VOID, act)


def mark_uncollectible(ctx: BillingContext, invoice_id: str) -> Invoice:
    """open → uncollectible (written off: its dunning ends, a new card does not pay it; ``pay`` still
    can); publishes ``invoice.marked_uncollectible``."""

    def act(invoice: Invoice) -> Invoice:
        now = ctx.now()
        written_off = ctx.store.save_invoice(invoice.transition(InvoiceStatus.UNCOLLECTIBLE, now))
        ctx.emit(DomainEvent.of("invoice.marked_uncollectible", written_off, now, cause="mark_uncollectible"))
        return written_off

    return _once(ctx, invoice_id, InvoiceAction.MARK_UNCOLLECTIBLE, act)


def pay(ctx: BillingContext, invoice_id: str, *, paid_out_of_band: bool = False) -> CollectResult:
    """Pay an open or uncollectible invoice now: charge the customer's default card (a new attempt,
    through ``collection.collect``), or with ``paid_out_of_band`` mark it paid without charging.
    Either way ``invoice.paid`` is published and the subscription is reactivated by the same rules as
    any payment (``subscription.after_invoice_paid``). A paid invoice answers as it is."""
    for _ in range(RETRIES):
        invoice = ctx.store.get_invoice(invoice_id)
        if not action_needed(invoice, InvoiceAction.PAY):
            return CollectResult(invoice, ctx.subscription_of(invoice.subscription), None)
        try:
            if paid_out_of_band:
                return apply_paid(ctx, invoice.model_copy(update={"paid_out_of_band": True}), payment_intent=None)
            # the trigger names this attempt: two concurrent calls claim it once (collect's conditional write)
            return collect(ctx, invoice, trigger=f"pay:{invoice.attempt_count + 1}")
        except Conflict:
            continue
    raise Conflict(f"invoice {invoice_id} kept changing; retry")


__all__ = ["finalize", "mark_uncollectible", "pay", "void"]
