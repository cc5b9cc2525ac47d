"""Use case: building a subscription's invoices — the period's lines, then discount, tax and balance
(Stripe's order) — and one-off items for the next invoice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kassa.domain.balance import with_balance
from kassa.domain.customer import Customer
from kassa.domain.discounts import Discount, discount_invoice
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import (
    BillingReason,
    Invoice,
    InvoiceLine,
    from_lines,
    invoice_id_for,
    period_lines,
)
from kassa.domain.items import SubscriptionItem
from kassa.domain.parties import buyer_party
from kassa.domain.periods import Period, boundary
from kassa.domain.proration import ScheduledChange, apply_scheduled_items
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Status, Subscription
from kassa.services.context import BillingContext, update_subscription
from kassa.services.tax import tax_invoice


def with_items(sub: Subscription, items: Sequence[SubscriptionItem]) -> Subscription:
    """``sub`` billing ``items`` (which share one currency and interval)."""
    first = items[0]
    return sub.model_copy(
        update={
            "items": list(items),
            "currency": first.currency,
            "interval": first.interval,
            "interval_count": first.interval_count,
        }
    )


def product_names(ctx: BillingContext, sub: Subscription) -> dict[str, str]:
    """The product name shown on each item's line, by price id (an item carries its product id, so
    only items stored before items existed need their price read)."""
    names = {}
    for item in sub.items:
        product_id = item.product or ctx.price(item.price).product
        product = ctx.product(product_id)
        names[item.price] = product.name if product else product_id
    return names


def known_products(sub: Subscription) -> dict[str, str]:
    """Price id → product id, as the subscription's items carry them."""
    return {item.price: item.product for item in sub.items if item.product}


def period_invoice(
    ctx: BillingContext,
    sub: Subscription,
    period: Period,
    now: datetime,
    customer: Customer,
    settings: MerchantSettings,
    use_balance: bool = True,
) -> tuple[Subscription, Invoice, Customer | None]:
    """The subscription as it will be for ``period`` — a due scheduled change applied, its pending
    proration lines consumed — and the period's invoice: taxed, the customer's balance applied.
    Returns the customer too when its balance moves (to be saved in the same transaction)."""
    usage: list[InvoiceLine] = []
    if period.start == sub.current_period_end and sub.status is not Status.TRIALING:
        # metered items are billed in arrears: the period that ends now, with its late adjustments
        from kassa.services.usage import metered_items, usage_lines

        if metered_items(sub):
            usage = usage_lines(ctx, sub, sub.period, product_names(ctx, sub))
    scheduled = ScheduledChange.model_validate(sub.scheduled_change) if sub.scheduled_change else None
    items, anchor, still = apply_scheduled_items(sub.items, sub.billing_cycle_anchor, scheduled, period.start)
    if still is not scheduled:  # the downgrade takes effect with this period
        sub = with_items(sub, items).model_copy(update={"billing_cycle_anchor": anchor, "scheduled_change": None})
        if anchor == period.start and scheduled is not None and scheduled.resets_anchor:
            period = Period(anchor, boundary(anchor, sub.interval, sub.interval_count, 1))
    lines = (
        [InvoiceLine.model_validate(line) for line in sub.pending_lines]
        + usage
        + period_lines(sub, period, product_names(ctx, sub))
    )
    draft = from_lines(
        invoice_id_for(sub.id, period.start),
        sub.customer,
        sub.id,
        sub.currency,
        lines,
        period,
        now,
        BillingReason.SUBSCRIPTION_CYCLE,
    )
    return finish_invoice(
        ctx, sub.with_period(period).model_copy(update={"pending_lines": []}), draft, customer, settings, use_balance
    )


def finish_invoice(
    ctx: BillingContext,
    sub: Subscription,
    draft: Invoice,
    customer: Customer,
    settings: MerchantSettings,
    use_balance: bool = True,
) -> tuple[Subscription, Invoice, Customer | None]:
    """Discount (the subscription's coupon, if it covers this period), then tax, then the customer's
    balance: the order Stripe applies them in."""
    codes: dict[str, str | None] = {}
    products: dict[str, str] = {}
    known = known_products(sub)
    for price_id in {line.price for line in draft.lines if line.price}:
        product_id = ctx.product_id(price_id, known)
        product = ctx.product(product_id)
        codes[price_id] = product.tax_code if product else None
        products[price_id] = product_id
    discount = Discount.model_validate(sub.discount) if sub.discount is not None else None
    draft, counted = discount_invoice(draft, discount, products=products)
    if counted is not None:
        sub = sub.model_copy(update={"discount": counted.model_dump(mode="json")})
    invoice, _ = tax_invoice(draft, customer, settings, codes, ctx.tax)
    # the parties are frozen with the tax: later changes to the settings or the customer never
    # change this invoice's documents
    invoice = invoice.model_copy(
        update={"seller": settings.seller_party(), "buyer": buyer_party(customer), "locale": customer.preferred_locale}
    )
    if not use_balance:
        return sub, invoice, None
    invoice, moved = with_balance(invoice, customer)
    return sub, invoice, moved


def add_invoice_item(
    ctx: BillingContext, subscription_id: str, *, amount: int, description: str, quantity: int = 1
) -> Subscription:
    """A one-off charge (or credit, when negative) for the subscription's next invoice."""
    if amount == 0:
        raise InvalidInput("a one-off item has a non-zero amount", param="amount")
    now = ctx.now()
    line = InvoiceLine(
        description=description,
        amount=amount * quantity,
        quantity=quantity,
        unit_amount=amount,
        period_start=now,
        period_end=now,
    )
    return update_subscription(
        ctx,
        subscription_id,
        lambda sub: {"pending_lines": [*sub.pending_lines, line.model_dump(mode="json")]},
        "invoice_item",
    )


def new_invoice(
    sub: Subscription, invoice_id: str, lines: list[InvoiceLine], period: Period, now: datetime, reason: BillingReason
) -> Invoice:
    """A draft of ``lines`` for ``sub`` (a checkout, a change invoiced now, a cancellation, a resume)."""
    return from_lines(invoice_id, sub.customer, sub.id, sub.currency, lines, period, now, reason)


def upcoming_invoice(
    ctx: BillingContext,
    sub: Subscription,
    *,
    customer: Customer | None = None,
    settings: MerchantSettings | None = None,
) -> Invoice:
    """The next renewal invoice exactly as it will be made (items, pending prorations, a scheduled
    change, discount, tax, the customer's balance), computed by the same code as the renewal; for a
    trialing subscription, the first invoice after the trial. Nothing is written. ``customer`` and
    ``settings``: the subscription's customer and the merchant settings when the caller has read them
    for this request already (the portal's account page)."""
    if customer is None or customer.id != sub.customer:
        customer = ctx.store.get_customer(sub.customer)
    if settings is None:
        settings = ctx.store.get_settings()
    _, invoice, _ = period_invoice(ctx, sub, sub.next_period(), ctx.now(), customer, settings)
    return invoice
