"""Use case: changing what a subscription bills — price and quantity, prorated to the second
(``create_prorations``, ``always_invoice``, ``none``), interval switches, downgrades scheduled for
the period end — and previews that compute the same invoice and change nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kassa.domain.customer import Customer
from kassa.domain.errors import CurrencyMismatch, DomainError, InvalidInput
from kassa.domain.events import DomainEvent
from kassa.domain.ids import derived_id
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine
from kassa.domain.items import ItemChange, apply_item_changes
from kassa.domain.periods import Period
from kassa.domain.proration import ProrationBehavior, change_items
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Status, Subscription, ensure_changeable
from kassa.services import usage
from kassa.services.collection import collect_new
from kassa.services.context import BillingContext
from kassa.services.invoicing import finish_invoice, new_invoice, period_invoice, with_items


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
    items: Sequence[ItemChange] | None = None,
    behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
    schedule_downgrade: bool = False,
    preview: bool = False,
    settings: MerchantSettings | None = None,
) -> PlanChange:
    """Change the items (Stripe's ``items`` list: add, change, delete) — or, as a shorthand for a
    one-item subscription, its price and/or quantity — now, prorated to the second per item, or
    schedule a downgrade for the period end. ``preview``: compute the invoice it would produce and
    change nothing — the invoice made now (always_invoice, an interval switch) or else the next
    renewal invoice. ``settings``: the merchant settings when the caller read them for this request
    already (the customer portal)."""
    sub = ctx.store.get_subscription(subscription_id)
    ensure_changeable(sub, preview=preview)
    if items is None:
        if sub.single_item is None:
            raise InvalidInput("this subscription has several items: give items", param="items")
        items = [ItemChange(id=sub.items[0].id, price=price_id, quantity=quantity)]
        where = {"items[0].price": "price_id", "items[0].quantity": "quantity"}
    else:
        where = {}
    prices = {change.price: ctx.store.get_price(change.price) for change in items if change.price}
    try:
        new_items = apply_item_changes(sub.items, items, prices, derived_id("si", sub.id, ctx.now().isoformat()))
    except DomainError as error:
        error.param = where.get(error.param or "", error.param)
        raise
    if new_items[0].currency != sub.currency:
        # name the request entry that brought the other currency (every item switched with it)
        entry = next(
            (i for i, change in enumerate(items) if change.price and prices[change.price].currency != sub.currency), 0
        )
        raise CurrencyMismatch(
            f"a subscription keeps its currency: cannot change from {sub.currency} to {new_items[0].currency}",
            param="price_id" if where else f"items[{entry}].price",
        )
    now = ctx.now()
    settings = settings if settings is not None else ctx.store.get_settings()
    customer = ctx.store.get_customer(sub.customer)
    previous: dict[str, Any] = {"items": [item.model_dump(mode="json", exclude_none=True) for item in sub.items]}
    if sub.single_item is not None:
        previous.update(price=sub.price, quantity=sub.quantity)
    if sub.status is Status.TRIALING:  # nothing is billed during a trial: the new items apply at its end
        if not new_items[0].same_cycle(sub.items[0]):
            raise InvalidInput("switch the interval after the trial", param="price_id" if where else "items")
        changed = with_items(sub, new_items)
        if not preview:
            changed = ctx.store.save_subscription(changed)
            ctx.emit(
                DomainEvent.of("customer.subscription.updated", changed, now, cause=f"change:{now}", previous=previous)
            )
        return PlanChange(changed, None, upcoming=None)
    result = change_items(
        sub.items,
        new_items,
        period=sub.period,
        anchor=sub.billing_cycle_anchor,
        t=now,
        behavior=behavior,
        schedule_downgrade=schedule_downgrade,
    )
    if result.scheduled is not None:
        changed = sub.model_copy(update={"scheduled_change": result.scheduled.model_dump(mode="json")})
    else:
        changed = with_items(sub, result.items).model_copy(
            update={
                "billing_cycle_anchor": result.anchor,
                "current_period_start": result.period.start,
                "current_period_end": result.period.end,
                "scheduled_change": None,
            }
        )
    metered = {item.price for item in [*sub.items, *new_items] if item.metered}
    # a metered item charges nothing in advance (its usage is billed in arrears): no proration lines
    lines = [line.to_invoice_line() for line in result.lines if not (line.price in metered and line.full_amount == 0)]
    if result.pending:
        changed = changed.model_copy(
            update={"pending_lines": [*sub.pending_lines, *(line.model_dump(mode="json") for line in lines)]}
        )
    invoice: Invoice | None = None
    moved: Customer | None = None
    # a metered item removed or switched to another price: the usage so far is invoiced now
    usage_so_far = usage.changed_usage_lines(ctx, sub, new_items, now)
    if result.invoice_now or usage_so_far:
        invoiced = changed
        billed: list[InvoiceLine] = list(usage_so_far)
        if result.invoice_now:
            billed = [*(InvoiceLine.model_validate(line) for line in sub.pending_lines), *usage_so_far, *lines]
            invoiced = changed.model_copy(update={"pending_lines": []})
        draft = new_invoice(
            sub,
            derived_id("in", sub.id, "update", now.isoformat()),
            billed,
            Period(sub.current_period_start if usage_so_far else now, changed.current_period_end),
            now,
            BillingReason.SUBSCRIPTION_UPDATE,
        )
        changed, invoice, moved = finish_invoice(ctx, invoiced, draft, customer, settings)
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
