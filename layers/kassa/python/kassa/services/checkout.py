"""Use case: checkout — a new subscription with its first invoice (or its trial), the SetupIntent the
storefront confirms with Stripe.js, and completing it once the card is confirmed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kassa.domain.anchors import plan_start
from kassa.domain.customer import Address, Customer
from kassa.domain.errors import InvalidInput
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import BillingReason, Invoice, build_subscription_invoice, invoice_id_for
from kassa.domain.periods import Period
from kassa.domain.proration import PlanItem, ProrationBehavior
from kassa.domain.subscription import Status, Subscription, start_subscription
from kassa.domain.trials import MissingPaymentMethod
from kassa.services.collection import CollectResult, collect
from kassa.services.context import BillingContext
from kassa.services.coupons import redeem_for
from kassa.services.customers import confirmed_payment_method, customer_for_checkout, save_payment_method
from kassa.services.invoicing import finish_invoice, new_invoice
from kassa.services.ports import SetupIntentInfo


@dataclass(frozen=True)
class CheckoutResult:
    subscription: Subscription
    invoice: Invoice | None
    setup_intent: SetupIntentInfo
    publishable_key: str
    customer: Customer


def start_checkout(
    ctx: BillingContext,
    *,
    price_id: str,
    quantity: int = 1,
    customer_id: str | None = None,
    email: str | None = None,
    name: str | None = None,
    address: Address | None = None,
    locale: str = "en",
    trial_days: int | None = None,
    tax_id: str | None = None,
    tax_exempt: bool = False,
    billing_cycle_anchor: datetime | None = None,
    backdate_start_date: datetime | None = None,
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
    coupon: str | None = None,
    promotion_code: str | None = None,
    missing_payment_method: MissingPaymentMethod = MissingPaymentMethod.CREATE_INVOICE,
) -> CheckoutResult:
    price = ctx.store.get_price(price_id)
    if not price.active:
        raise InvalidInput(f"price {price_id} is not active", param="price_id")
    customer = customer_for_checkout(ctx, customer_id, email, name, address, locale, tax_id, tax_exempt)
    now = ctx.now()
    sub = start_subscription(customer=customer.id, price=price, quantity=quantity, now=now, trial_days=trial_days)
    sub = sub.model_copy(update={"missing_payment_method": missing_payment_method.value})
    invoice = None
    settings = ctx.store.get_settings()
    custom_start = billing_cycle_anchor is not None or backdate_start_date is not None
    if custom_start and sub.status is not Status.INCOMPLETE:
        raise InvalidInput(
            "a billing_cycle_anchor or backdated start cannot be combined with a trial", param="trial_days"
        )
    if coupon is not None and promotion_code is not None:
        raise InvalidInput("give a coupon or a promotion_code, not both", param="coupon")
    if sub.status is Status.INCOMPLETE:
        product = ctx.product_of(price)
        label = product.name if product else price.product
        if custom_start:
            plan = plan_start(
                PlanItem.from_price(price, quantity, label),
                now,
                billing_cycle_anchor=billing_cycle_anchor,
                backdate_start_date=backdate_start_date,
                proration_behavior=proration_behavior,
            )
            sub = sub.model_copy(update={"billing_cycle_anchor": plan.anchor}).with_period(plan.current_period)
            draft = new_invoice(
                sub,
                invoice_id_for(sub.id, plan.current_period.start),
                [line.to_invoice_line() for line in plan.lines],
                Period(plan.start, plan.current_period.end),
                now,
                BillingReason.SUBSCRIPTION_CREATE,
            )
        else:
            draft = build_subscription_invoice(sub, sub.period, now, BillingReason.SUBSCRIPTION_CREATE, label)
        if coupon is not None or promotion_code is not None:
            sub = redeem_for(ctx, coupon, promotion_code, customer, price.product, price.currency, sub)
            coupon = promotion_code = None
        sub, invoice, _ = finish_invoice(ctx, sub, draft, customer, settings, use_balance=False)
        sub = sub.model_copy(update={"latest_invoice": invoice.id})
    if coupon is not None or promotion_code is not None:  # a trial: the discount waits for its end
        sub = redeem_for(ctx, coupon, promotion_code, customer, price.product, price.currency, sub)
    assert customer.stripe_customer_id is not None
    intent = ctx.gateway.create_setup_intent(
        customer=customer.stripe_customer_id,
        metadata={"kassa_subscription": sub.id, "kassa_customer": customer.id},
    )
    invoice = ctx.store.create_subscription(sub, invoice, settings.invoice_prefix)
    events = [DomainEvent.of("customer.subscription.created", sub, now, cause="create")]
    if invoice is not None:
        events.append(DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"))
    ctx.emit(*events)
    return CheckoutResult(sub, invoice, intent, ctx.gateway.publishable_key, customer)


def complete_checkout(ctx: BillingContext, subscription_id: str, setup_intent_id: str) -> CollectResult:
    """Attach the confirmed card, charge the first invoice if one is due, activate.

    Called by the storefront after Stripe.js confirmed the SetupIntent, and by the
    setup_intent.succeeded webhook — whichever comes first; the second finds the work done.
    """
    sub = ctx.store.get_subscription(subscription_id)
    intent = ctx.gateway.get_setup_intent(setup_intent_id)
    if intent.metadata.get("kassa_subscription") not in (None, subscription_id):
        raise InvalidInput("this SetupIntent belongs to another subscription", param="setup_intent_id")
    customer = save_payment_method(ctx, sub.customer, confirmed_payment_method(intent))
    invoice = ctx.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
    if sub.status is Status.INCOMPLETE and invoice is not None and invoice.collectable:
        # one attempt per confirmed SetupIntent: the storefront call and the webhook share it
        return collect(ctx, invoice, customer, trigger=setup_intent_id)
    return CollectResult(invoice, ctx.store.get_subscription(subscription_id), None)
