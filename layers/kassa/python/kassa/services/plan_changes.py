"""Use case: changing what a subscription bills — price and quantity, prorated to the second
(``create_prorations``, ``always_invoice``, ``none``), interval switches, downgrades scheduled for
the period end — and previews that compute the same invoice and change nothing."""

from __future__ import annotations

from dataclasses import dataclass

from kassa.domain.customer import Customer
from kassa.domain.errors import InvalidInput
from kassa.domain.events import DomainEvent
from kassa.domain.ids import derived_id
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine
from kassa.domain.periods import Period
from kassa.domain.proration import PlanItem, ProrationBehavior, change_item
from kassa.domain.subscription import Status, Subscription, ensure_changeable
from kassa.services.collection import collect_new
from kassa.services.context import BillingContext
from kassa.services.invoicing import finish_invoice, item_of, new_invoice, period_invoice, with_item


@dataclass(frozen=True)
class PlanChange:
    subscription: Subscription
    invoice: Invoice | None  # invoiced now (always_invoice, interval switch)
    upcoming: Invoice | None  # preview only: the next renewal invoice with the pending prorations


def change_plan(
    ctx: BillingContext,
    subscription_id: str,
    *,
    price_id: str | None = None,
    quantity: int | None = None,
    behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
    schedule_downgrade: bool = False,
    preview: bool = False,
) -> PlanChange:
    """Change the price and/or quantity now (prorated to the second), or schedule a downgrade for
    the period end. ``preview``: compute the invoice it would produce and change nothing — the
    invoice made now (always_invoice, an interval switch) or else the next renewal invoice."""
    sub = ctx.store.get_subscription(subscription_id)
    ensure_changeable(sub, preview=preview)
    new_price = ctx.store.get_price(price_id or sub.price)
    if not new_price.active:
        raise InvalidInput(f"price {new_price.id} is not active", param="price_id")
    new_item = PlanItem.from_price(new_price, quantity or sub.quantity)
    now = ctx.now()
    settings = ctx.store.get_settings()
    customer = ctx.store.get_customer(sub.customer)
    previous = {"price": sub.price, "quantity": sub.quantity}
    if sub.status is Status.TRIALING:  # nothing is billed during a trial: the new plan applies at its end
        changed = with_item(sub, new_item)
        if new_item.interval != sub.interval or new_item.interval_count != sub.interval_count:
            raise InvalidInput("switch the interval after the trial", param="price_id")
        if not preview:
            changed = ctx.store.save_subscription(changed)
            ctx.emit(
                DomainEvent.of("customer.subscription.updated", changed, now, cause=f"change:{now}", previous=previous)
            )
        return PlanChange(changed, None, upcoming=None)
    result = change_item(
        item_of(sub),
        new_item,
        period=sub.period,
        anchor=sub.billing_cycle_anchor,
        t=now,
        behavior=behavior,
        schedule_downgrade=schedule_downgrade,
    )
    if result.scheduled is not None:
        changed = sub.model_copy(update={"scheduled_change": result.scheduled.model_dump(mode="json")})
    else:
        changed = with_item(sub, result.item).model_copy(
            update={
                "billing_cycle_anchor": result.anchor,
                "current_period_start": result.period.start,
                "current_period_end": result.period.end,
                "scheduled_change": None,
            }
        )
    lines = [line.to_invoice_line() for line in result.lines]
    if result.pending:
        changed = changed.model_copy(
            update={"pending_lines": [*sub.pending_lines, *(line.model_dump(mode="json") for line in lines)]}
        )
    invoice: Invoice | None = None
    moved: Customer | None = None
    if result.invoice_now:
        pending = [InvoiceLine.model_validate(line) for line in sub.pending_lines]
        draft = new_invoice(
            sub,
            derived_id("in", sub.id, "update", now.isoformat()),
            [*pending, *lines],
            Period(now, changed.current_period_end),
            now,
            BillingReason.SUBSCRIPTION_UPDATE,
        )
        changed, invoice, moved = finish_invoice(
            ctx, changed.model_copy(update={"pending_lines": []}), draft, customer, settings
        )
    if preview:
        upcoming = None
        if invoice is None:
            _, upcoming, _ = period_invoice(ctx, changed, changed.next_period(), now, customer, settings)
        return PlanChange(changed, invoice, upcoming=upcoming)
    if invoice is None:
        saved = ctx.store.save_subscription(changed)
        ctx.emit(DomainEvent.of("customer.subscription.updated", saved, now, cause=f"change:{now}", previous=previous))
        return PlanChange(saved, None, upcoming=None)
    invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "update"})
    saved, invoice = ctx.store.renew(changed, invoice, settings.invoice_prefix, moved)
    ctx.emit(
        DomainEvent.of("customer.subscription.updated", saved, now, cause=f"change:{now}", previous=previous),
        DomainEvent.of("invoice.created", invoice, now, cause="create"),
        DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
    )
    collected = collect_new(ctx, invoice, moved or customer)
    return PlanChange(collected.subscription or saved, collected.invoice, upcoming=None)
