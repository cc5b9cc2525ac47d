"""Use case: building a subscription's invoices — the period's lines, then discount, tax and balance
(Stripe's order) — and one-off items for the next invoice."""

from __future__ import annotations

from datetime import datetime

from kassa.domain.balance import with_balance
from kassa.domain.customer import Customer
from kassa.domain.discounts import Discount, discount_invoice
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import (
    BillingReason,
    Invoice,
    InvoiceLine,
    build_subscription_invoice,
    from_lines,
    invoice_id_for,
)
from kassa.domain.periods import Period, boundary
from kassa.domain.proration import PlanItem, ScheduledChange, apply_scheduled_change
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Subscription
from kassa.services.context import BillingContext, update_subscription
from kassa.services.tax import tax_invoice


def item_of(sub: Subscription) -> PlanItem:
    return PlanItem.from_subscription(sub)


def with_item(sub: Subscription, item: PlanItem) -> Subscription:
    return sub.model_copy(
        update={
            "price": item.price,
            "quantity": item.quantity,
            "unit_amount": item.unit_amount,
            "currency": item.currency,
            "interval": item.interval,
            "interval_count": item.interval_count,
            "tax_behavior": item.tax_behavior,
        }
    )


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
    scheduled = ScheduledChange.model_validate(sub.scheduled_change) if sub.scheduled_change else None
    item, anchor, still = apply_scheduled_change(item_of(sub), sub.billing_cycle_anchor, scheduled, period.start)
    if still is not scheduled:  # the downgrade takes effect with this period
        sub = with_item(sub, item).model_copy(update={"billing_cycle_anchor": anchor, "scheduled_change": None})
        if anchor == period.start and scheduled is not None and scheduled.resets_anchor:
            period = Period(anchor, boundary(anchor, item.interval, item.interval_count, 1))
    price = ctx.price(sub.price)
    product = ctx.product_of(price)
    period_line = build_subscription_invoice(
        sub, period, now, BillingReason.SUBSCRIPTION_CYCLE, product.name if product else price.product
    ).lines[0]
    lines = [InvoiceLine.model_validate(line) for line in sub.pending_lines] + [period_line]
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
    for price_id in {line.price for line in draft.lines if line.price}:
        price = ctx.price(price_id)
        product = ctx.product_of(price)
        codes[price_id] = product.tax_code if product else None
        products[price_id] = price.product
    discount = Discount.model_validate(sub.discount) if sub.discount is not None else None
    draft, counted = discount_invoice(draft, discount, products=products)
    if counted is not None:
        sub = sub.model_copy(update={"discount": counted.model_dump(mode="json")})
    invoice, _ = tax_invoice(draft, customer, settings, codes, ctx.tax)
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
