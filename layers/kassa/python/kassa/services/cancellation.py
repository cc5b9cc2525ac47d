"""Use case: cancelling — now (optionally crediting the unused time on a final invoice) or at the
period end (undoable until then) — and what the customer may use meanwhile (entitlements)."""

from __future__ import annotations

from datetime import timedelta

from kassa.domain.cancellation import (
    CancellationDetails,
    cancel_immediately,
    schedule_cancellation,
    undo_scheduled_cancellation,
)
from kassa.domain.entitlements import Entitlement, entitlements
from kassa.domain.errors import Conflict, InvalidInput
from kassa.domain.events import DomainEvent
from kassa.domain.ids import derived_id
from kassa.domain.invoice import BillingReason, InvoiceLine, InvoiceStatus
from kassa.domain.periods import Period
from kassa.domain.subscription import Status, Subscription
from kassa.services.collection import collect
from kassa.services.context import RETRIES, BillingContext
from kassa.services.invoicing import finish_invoice, new_invoice


def cancel(
    ctx: BillingContext,
    subscription_id: str,
    *,
    at_period_end: bool,
    details: CancellationDetails,
    prorate: bool = False,
) -> Subscription:
    """Cancel now, or at the period end (undoable until then). Asking twice changes nothing.
    ``prorate`` (now only): the unused time is credited on a final invoice, and any pending
    proration lines go on it too; a negative total becomes customer credit."""
    if prorate and at_period_end:
        raise InvalidInput("prorate only goes with an immediate cancellation", param="prorate")
    for _ in range(RETRIES):
        sub = ctx.store.get_subscription(subscription_id)
        now = ctx.now()
        previous = {"cancel_at_period_end": sub.cancel_at_period_end, "status": sub.status.value}
        immediate = None if at_period_end else cancel_immediately(sub, now, prorate=prorate)
        changed = schedule_cancellation(sub, now) if immediate is None else immediate.subscription
        if changed == sub:
            return sub
        changed = changed.model_copy(update={"cancellation_details": details.model_dump(mode="json")})
        lines = [line.to_invoice_line() for line in immediate.lines] if immediate else []
        pending = [InvoiceLine.model_validate(line) for line in sub.pending_lines] if prorate else []
        try:
            if lines or pending:
                customer = ctx.store.get_customer(sub.customer)
                settings = ctx.store.get_settings()
                draft = new_invoice(
                    sub,
                    derived_id("in", sub.id, "cancel", now.isoformat()),
                    [*pending, *lines],
                    Period(now, max(sub.current_period_end, now + timedelta(seconds=1))),
                    now,
                    BillingReason.SUBSCRIPTION_UPDATE,
                )
                changed, final, moved = finish_invoice(
                    ctx, changed.model_copy(update={"pending_lines": []}), draft, customer, settings
                )
                saved, final = ctx.store.renew(changed, final, settings.invoice_prefix, moved)
                collect(ctx, final, moved or customer)
            elif immediate is not None and sub.status is Status.INCOMPLETE and sub.latest_invoice:
                # Stripe voids the unpaid first invoice of a subscription canceled before it started
                first = ctx.store.get_invoice(sub.latest_invoice)
                voided = first.transition(InvoiceStatus.VOID, now) if first.collectable else None
                if voided is None:
                    saved = ctx.store.save_subscription(changed)
                else:
                    voided, maybe = ctx.store.save_invoice_and_subscription(voided, changed)
                    assert maybe is not None
                    saved = maybe
                    ctx.emit(DomainEvent.of("invoice.voided", voided, now, cause="cancel"))
            else:
                saved = ctx.store.save_subscription(changed)
        except Conflict:
            continue
        kind = "customer.subscription.deleted" if saved.status is Status.CANCELED else "customer.subscription.updated"
        ctx.emit(DomainEvent.of(kind, saved, now, cause=f"cancel:{at_period_end}", previous=previous))
        return saved
    raise Conflict(f"subscription {subscription_id} kept changing; retry")


def undo_cancel(ctx: BillingContext, subscription_id: str) -> Subscription:
    for _ in range(RETRIES):
        sub = ctx.store.get_subscription(subscription_id)
        now = ctx.now()
        changed = undo_scheduled_cancellation(sub, now)
        if changed == sub:
            return sub
        try:
            saved = ctx.store.save_subscription(changed.model_copy(update={"cancellation_details": None}))
        except Conflict:
            continue
        ctx.emit(
            DomainEvent.of(
                "customer.subscription.updated", saved, now, cause="uncancel", previous={"cancel_at_period_end": True}
            )
        )
        return saved
    raise Conflict(f"subscription {subscription_id} kept changing; retry")


def entitlements_of(ctx: BillingContext, customer_id: str) -> list[Entitlement]:
    """What the customer may use right now, following statuses, trials and scheduled cancellations."""
    ctx.store.get_customer(customer_id)
    subs = ctx.store.list_customer_subscriptions(customer_id)
    unknown = {item.price for s in subs for item in s.items if not item.product}  # stored before items
    products = {price_id: ctx.price(price_id).product for price_id in unknown}
    # the ladder, a dispute or a bank debit awaited with access_while_processing=suspend
    suspended = {s.id for s in subs if s.entitlements_suspended or s.dispute_holds or s.settlement_hold}
    return entitlements(subs, ctx.now(), products=products, suspended=suspended)
