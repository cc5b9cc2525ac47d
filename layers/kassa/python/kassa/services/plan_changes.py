"""Use case: changing what a subscription bills — price and quantity, prorated to the second
(``create_prorations``, ``always_invoice``, ``none``), interval switches, downgrades scheduled for
the period end — and previews that compute the same invoice and change nothing.

The change is computed from one read of the subscription and written under that read's version: a
concurrent write in between is a ``Conflict`` (the API's 409), or — for a caller that asks for
``attempts`` — the change is computed again from a fresh read (and the caller's ``check`` asked
again), so nothing is ever decided from a read other than the one it is written under."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kassa.domain.customer import Customer
from kassa.domain.errors import Conflict, CurrencyMismatch, DomainError, InvalidInput
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
from kassa.services.context import BillingContext, retry_pause
from kassa.services.invoicing import finish_invoice, new_invoice, period_invoice, with_items


@dataclass(frozen=True)
class PlanChange:
    subscription: Subscription
    invoice: Invoice | None  # invoiced now (always_invoice, interval switch)
    upcoming: Invoice | None  # preview only: the next renewal invoice with the pending prorations
    before: Subscription | None = None  # the subscription as read: the one the change was computed from


@dataclass(frozen=True)
class _Planned:
    """A change computed from one read of the subscription, not yet written."""

    before: Subscription
    changed: Subscription
    invoice: Invoice | None  # to be invoiced now, with the change
    moved: Customer | None  # the customer with the balance the invoice used
    customer: Customer
    previous: dict[str, Any]
    now: datetime
    trial: bool  # a trialing subscription: the new items apply at the trial's end, nothing is billed


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
    check: Callable[[Subscription], None] | None = None,
    attempts: int = 1,
) -> PlanChange:
    """Change the items (Stripe's ``items`` list: add, change, delete) — or, as a shorthand for a
    one-item subscription, its price and/or quantity — now, prorated to the second per item, or
    schedule a downgrade for the period end. ``preview``: compute the invoice it would produce and
    change nothing — the invoice made now (always_invoice, an interval switch) or else the next
    renewal invoice. ``settings``: the merchant settings when the caller read them for this request
    already (the customer portal).

    ``check``: the caller's own rules (the customer portal's), called with the subscription each
    attempt reads — the read the change is computed from and written under — before anything else;
    it raises to refuse the change. ``attempts``: how often to compute the change again from a fresh
    read when its write lost to a concurrent one; with 1 (the API) the loss is a ``Conflict`` and the
    client asks again."""
    settings = settings if settings is not None else ctx.store.get_settings()
    for attempt in range(attempts):
        if attempt:
            retry_pause(attempt)
        sub = ctx.store.get_subscription(subscription_id)
        if check is not None:
            check(sub)
        planned = _plan(ctx, sub, price_id, quantity, items, behavior, schedule_downgrade, preview, settings)
        if preview:
            return _preview(ctx, planned, settings)
        invoice = planned.invoice
        try:
            if invoice is None:
                saved = ctx.store.save_subscription(planned.changed)
            else:
                invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "update"})
                saved, invoice = ctx.store.renew(planned.changed, invoice, settings.invoice_prefix, planned.moved)
        except Conflict:
            if attempt + 1 < attempts:
                continue  # nothing was written: compute it again from a fresh read
            raise
        return _written(ctx, planned, saved, invoice)
    raise Conflict(f"subscription {subscription_id} kept changing; retry")  # attempts < 1


def _plan(
    ctx: BillingContext,
    sub: Subscription,
    price_id: str | None,
    quantity: int | None,
    items: Sequence[ItemChange] | None,
    behavior: ProrationBehavior,
    schedule_downgrade: bool,
    preview: bool,
    settings: MerchantSettings,
) -> _Planned:
    """The change computed from ``sub`` (one read), changing nothing."""
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
    customer = ctx.store.get_customer(sub.customer)
    previous: dict[str, Any] = {"items": [item.model_dump(mode="json", exclude_none=True) for item in sub.items]}
    if sub.single_item is not None:
        previous.update(price=sub.price, quantity=sub.quantity)
    if sub.status is Status.TRIALING:  # nothing is billed during a trial: the new items apply at its end
        if not new_items[0].same_cycle(sub.items[0]):
            raise InvalidInput("switch the interval after the trial", param="price_id" if where else "items")
        return _Planned(sub, with_items(sub, new_items), None, None, customer, previous, now, trial=True)
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
    return _Planned(sub, changed, invoice, moved, customer, previous, now, trial=False)


def _preview(ctx: BillingContext, planned: _Planned, settings: MerchantSettings) -> PlanChange:
    changed, invoice, upcoming = planned.changed, planned.invoice, None
    if invoice is None and not planned.trial:
        _, upcoming, _ = period_invoice(ctx, changed, changed.next_period(), planned.now, planned.customer, settings)
    return PlanChange(changed, invoice, upcoming=upcoming, before=planned.before)


def _written(ctx: BillingContext, planned: _Planned, saved: Subscription, invoice: Invoice | None) -> PlanChange:
    """After the write: the events, and the invoice made with the change collected."""
    now = planned.now
    updated = DomainEvent.of(
        "customer.subscription.updated", saved, now, cause=f"change:{now}", previous=planned.previous
    )
    if invoice is None:
        ctx.emit(updated)
        return PlanChange(saved, None, upcoming=None, before=planned.before)
    ctx.emit(
        updated,
        DomainEvent.of("invoice.created", invoice, now, cause="create"),
        DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
    )
    collected = collect_new(ctx, invoice, planned.moved or planned.customer)
    return PlanChange(collected.subscription or saved, collected.invoice, upcoming=None, before=planned.before)
