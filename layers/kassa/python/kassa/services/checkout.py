"""Use case: checkout — a new subscription with its first invoice (or its trial), the SetupIntent the
storefront confirms with Stripe.js, and completing it once the card is confirmed; or, for a Dutch or
Belgian customer, the first invoice paid by iDEAL / Bancontact at their bank, which leaves the SEPA
Direct Debit mandate the renewals are debited under (``start_redirect_payment``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from kassa.domain.anchors import plan_start
from kassa.domain.customer import Address, Customer, ensure_valid_tax_id
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import BillingReason, Invoice, build_subscription_invoice, checkout_invoice, invoice_id_for
from kassa.domain.money import Money
from kassa.domain.payment_methods import may_charge, offered_types, redirect_types
from kassa.domain.periods import Period
from kassa.domain.proration import ProrationBehavior
from kassa.domain.subscription import Status, Subscription, start_subscription
from kassa.domain.trials import MissingPaymentMethod
from kassa.services import experiments
from kassa.services.collection import (
    CollectResult,
    adopt_generated_sepa_debit,
    apply_charge_result,
    collect,
    confirm_payment,
    republish_paid,
)
from kassa.services.context import BillingContext
from kassa.services.coupons import check_redeemable, redeem_for
from kassa.services.customers import (
    confirmed_payment_method,
    customer_for_checkout,
    ensure_new_customer_email,
    save_payment_method,
)
from kassa.services.invoicing import finish_invoice, new_invoice, product_names
from kassa.services.ports import ChargeStatus, MandateAcceptance, PaymentIntentInfo, SetupIntentInfo


@dataclass(frozen=True)
class CheckoutResult:
    subscription: Subscription
    invoice: Invoice | None
    setup_intent: SetupIntentInfo
    publishable_key: str
    customer: Customer
    payment_method_types: tuple[str, ...] = ("card",)
    # the first invoice may be paid by redirect instead (iDEAL for NL, Bancontact for BE customers)
    redirect_payment_method_types: tuple[str, ...] = ()


def start_checkout(
    ctx: BillingContext,
    *,
    price_id: str | None = None,
    quantity: int = 1,
    items: Sequence[tuple[str, int | None]] | None = None,
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
    billing_thresholds: dict[str, int] | None = None,
) -> CheckoutResult:
    """A new subscription of ``items`` (price id, quantity) — or of ``price_id`` × ``quantity`` —
    with its first invoice finalized (or its trial), and the SetupIntent to confirm the card with.
    The items are validated before the customer is read (once, by id) and everything before one
    is created."""
    if items is None:
        if price_id is None:
            raise InvalidInput("give items or price_id", param="items")
        items, param = [(price_id, quantity)], (lambda i, field: "price_id" if field == "price" else field)
    else:
        param = lambda i, field: f"items[{i}].{field}"  # noqa: E731
    if not items:
        raise InvalidInput("a subscription has at least one item", param="items")
    prices = []
    counts: list[int] = []
    for i, (item_price, count) in enumerate(items):
        if count is not None and count < 1:
            raise InvalidInput("quantity must be at least 1", param=param(i, "quantity"))
        try:
            price = ctx.price(item_price, fresh=True)
        except NotFound as error:
            raise NotFound(error.message, param=param(i, "price")) from None
        if not price.active:
            raise InvalidInput(f"price {item_price} is not active", param=param(i, "price"))
        if price.metered and count is not None and count != 1:
            # Stripe: a metered price takes no quantity; its usage is reported through its meter
            raise InvalidInput(f"price {item_price} is metered: it takes no quantity", param=param(i, "quantity"))
        prices.append(price)
        counts.append(1 if count is None else count)
    # (a variant never changes whether an item is metered: variants are licensed prices)
    if billing_thresholds is not None and not any(p.metered for p in prices):
        raise InvalidInput("billing_thresholds need a metered item", param="billing_thresholds")
    if coupon is not None and promotion_code is not None:
        raise InvalidInput("give a coupon or a promotion_code, not both", param="coupon")
    # who: read once (never created here), by the experiment below and the rest of the checkout
    known = ctx.store.get_customer(customer_id) if customer_id else None
    # a price experiment of the product charges the customer's variant (kassa.domain.experiments)
    prices, experiment = experiments.checkout_prices(ctx, prices, email=email, customer=known)
    settings = ctx.store.get_settings()
    # what the customer may pay with: the merchant's types, narrowed by the prices and the currency
    method_types = offered_types(
        settings.payment_method_types,
        [p.payment_method_types for p in prices],
        prices[0].currency,
        param=param(0, "price") if len(prices) == 1 else "items",
    )
    custom_start = billing_cycle_anchor is not None or backdate_start_date is not None
    now = ctx.now()
    # validates quantities, currencies and intervals before anything is written
    probe = start_subscription(
        customer="cus_pending",
        items=list(zip(prices, counts, strict=True)),
        now=now,
        trial_days=trial_days,
    )
    if custom_start and probe.status is not Status.INCOMPLETE:
        raise InvalidInput(
            "a billing_cycle_anchor or backdated start cannot be combined with a trial", param="trial_days"
        )
    # who: a new customer's email must be new; read before the coupon is checked
    if known is None:
        if not email or address is None:
            raise InvalidInput("give customer_id or customer.email and customer.address", param="customer")
        ensure_new_customer_email(ctx, email)
        if tax_id:
            ensure_valid_tax_id(tax_id, address.country, param="customer.tax_id")
    if coupon is not None or promotion_code is not None:  # checked here, counted once below (redeem_for)
        check_redeemable(ctx, coupon, promotion_code, known, [p.product for p in prices], probe.currency)
    customer = known or customer_for_checkout(ctx, None, email, name, address, locale, tax_id, tax_exempt)
    sub = probe.model_copy(
        update={
            "customer": customer.id,
            "missing_payment_method": missing_payment_method.value,
            "billing_thresholds": billing_thresholds,
            "experiment": experiment,
        }
    )
    invoice = None
    products = [p.product for p in prices]
    currency = sub.currency
    if sub.status is Status.INCOMPLETE:
        names = product_names(ctx, sub)
        if custom_start:
            plans = [
                plan_start(
                    item.model_copy(update={"name": names[item.price]}),
                    now,
                    billing_cycle_anchor=billing_cycle_anchor,
                    backdate_start_date=backdate_start_date,
                    proration_behavior=proration_behavior,
                )
                for item in sub.items
            ]
            plan = plans[0]
            sub = sub.model_copy(update={"billing_cycle_anchor": plan.anchor}).with_period(plan.current_period)
            draft = new_invoice(
                sub,
                invoice_id_for(sub.id, plan.current_period.start),
                [line.to_invoice_line() for each in plans for line in each.lines],
                Period(plan.start, plan.current_period.end),
                now,
                BillingReason.SUBSCRIPTION_CREATE,
            )
        else:
            draft = build_subscription_invoice(sub, sub.period, now, BillingReason.SUBSCRIPTION_CREATE, names)
        if coupon is not None or promotion_code is not None:
            sub = redeem_for(ctx, coupon, promotion_code, customer, products, currency, sub)
            coupon = promotion_code = None
        sub, invoice, _ = finish_invoice(ctx, sub, draft, customer, settings, use_balance=False)
        invoice = checkout_invoice(invoice, now)  # open, numbered only once it is paid
        sub = sub.model_copy(update={"latest_invoice": invoice.id})
    if coupon is not None or promotion_code is not None:  # a trial: the discount waits for its end
        sub = redeem_for(ctx, coupon, promotion_code, customer, products, currency, sub)
    assert customer.stripe_customer_id is not None
    intent = ctx.gateway.create_setup_intent(
        customer=customer.stripe_customer_id,
        metadata={"kassa_subscription": sub.id, "kassa_customer": customer.id},
        payment_method_types=[t.value for t in method_types],
    )
    invoice = ctx.store.create_subscription(sub, invoice, settings.invoice_prefix)
    events = [DomainEvent.of("customer.subscription.created", sub, now, cause="create")]
    if invoice is not None:
        events.append(DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"))
    ctx.emit(*events)
    redirects: tuple[str, ...] = ()
    if invoice is not None and invoice.amount_due > 0:
        redirects = redirect_types(
            settings.payment_method_types, [p.payment_method_types for p in prices], currency, customer.address.country
        )
    return CheckoutResult(
        sub,
        invoice,
        intent,
        ctx.gateway.publishable_key,
        customer,
        tuple(t.value for t in method_types),
        redirects,
    )


def complete_checkout(
    ctx: BillingContext, subscription_id: str, setup_intent_id: str, acceptance: MandateAcceptance | None = None
) -> CollectResult:
    """Attach the confirmed card, charge the first invoice if one is due, activate.

    Called by the storefront after Stripe.js confirmed the SetupIntent, and by the
    setup_intent.succeeded webhook — whichever comes first; the second finds the work done.
    The charge is on-session (the customer is at the checkout): a card that asks for 3-D Secure
    leaves the invoice ``requires_action`` and the storefront confirms the PaymentIntent
    (``confirm_checkout_payment``).
    """
    sub = ctx.store.get_subscription(subscription_id)
    intent = ctx.gateway.get_setup_intent(setup_intent_id)
    if intent.metadata.get("kassa_subscription") not in (None, subscription_id):
        raise InvalidInput("this SetupIntent belongs to another subscription", param="setup_intent_id")
    customer = save_payment_method(
        ctx, sub.customer, confirmed_payment_method(intent), mandate=intent.mandate, acceptance=acceptance
    )
    invoice = ctx.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
    if sub.status is Status.INCOMPLETE and invoice is not None and invoice.collectable:
        # one attempt per confirmed SetupIntent: the storefront call and the webhook share it
        return collect(ctx, invoice, customer, trigger=setup_intent_id, off_session=False)
    if invoice is not None:
        republish_paid(ctx, invoice)  # a completion that died after paying it: its events go out now
    return CollectResult(invoice, ctx.store.get_subscription(subscription_id), None)


def confirm_checkout_payment(ctx: BillingContext, subscription_id: str, payment_intent_id: str) -> CollectResult:
    """After Stripe.js confirmed the first invoice's PaymentIntent (3-D Secure), or the customer came
    back from their bank (iDEAL, Bancontact: the ``return_url`` carries ``payment_intent``): apply its
    outcome — idempotent with the payment_intent.succeeded webhook; a paid redirect payment's generated
    ``sepa_debit`` becomes the default payment method here too, whichever comes first."""
    sub = ctx.store.get_subscription(subscription_id)
    if not sub.latest_invoice:
        raise InvalidInput("this subscription has no invoice to pay", param="payment_intent")
    result = confirm_payment(ctx, sub.latest_invoice, payment_intent_id)
    invoice = result.invoice
    if (
        invoice is not None
        and not invoice.collectable
        and invoice.payment_intent == payment_intent_id
        and (invoice.attempt_trigger or "").startswith(REDIRECT_TRIGGER)
    ):
        adopt_generated_sepa_debit(ctx, invoice.id, payment_intent_id)
        result = CollectResult(
            ctx.store.get_invoice(invoice.id), ctx.store.get_subscription(subscription_id), result.charge
        )
    return result


#: the attempt_trigger of a first payment by redirect: ``redirect:ideal``, ``redirect:bancontact``
REDIRECT_TRIGGER = "redirect:"


@dataclass(frozen=True)
class RedirectPayment:
    """A checkout's first invoice paid by redirect: the PaymentIntent the customer authorises at their
    bank (``redirect_url``, Stripe's ``next_action.redirect_to_url.url``)."""

    invoice: Invoice
    subscription: Subscription
    payment_intent: PaymentIntentInfo


def check_return_url(url: str, param: str = "return_url") -> str:
    """Where the bank sends the customer back: an absolute http(s) URL (the storefront, or a kassa
    page); Stripe appends ``payment_intent``, ``payment_intent_client_secret`` and ``redirect_status``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc or len(url) > 2048:
        raise InvalidInput("return_url must be an absolute https (or http) URL", param=param)
    return url.strip()


def start_redirect_payment(
    ctx: BillingContext, subscription_id: str, source_type: str, return_url: str
) -> RedirectPayment:
    """Pay a checkout's first invoice by iDEAL or Bancontact (Stripe's documented flow): a PaymentIntent
    with ``payment_method_types=[<type>]`` and ``setup_future_usage=off_session``, confirmed with the
    ``return_url``; the customer authorises it at their bank. When it succeeds (webhook, or
    ``confirm_checkout_payment`` after the return) the invoice is paid and the ``sepa_debit``
    PaymentMethod it generated becomes the default: the renewals are SEPA Direct Debits under its mandate.

    Offered as ``redirect_payment_method_types`` of the checkout (EUR, a Dutch customer iDEAL, a
    Belgian one Bancontact, and SEPA Direct Debit switched on). Called again for the same method while
    the customer has not authorised it, it answers the same PaymentIntent (one attempt, no second
    payment); another method, or after the bank refused, is a new attempt."""
    return_url = check_return_url(return_url)
    sub = ctx.store.get_subscription(subscription_id)
    invoice = ctx.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
    if sub.status is not Status.INCOMPLETE or invoice is None or not invoice.collectable or invoice.amount_due == 0:
        raise InvalidInput("this checkout has no first payment to make", param="subscription")
    customer = ctx.store.get_customer(sub.customer)
    settings = ctx.store.get_settings()
    prices = [ctx.price(item.price) for item in sub.items]
    allowed = redirect_types(
        settings.payment_method_types,
        [p.payment_method_types for p in prices],
        invoice.currency,
        customer.address.country,
    )
    if source_type not in allowed:
        offered = ", ".join(allowed) or "none"
        raise InvalidInput(
            f"{source_type} is not offered for this checkout (offered: {offered}; iDEAL for customers in NL, "
            "Bancontact in BE, in EUR, with sepa_debit in the settings' payment_method_types)",
            param="payment_method_type",
        )
    if customer.stripe_customer_id is None:
        raise InvalidInput("this customer has no Stripe customer", param="customer")
    if not may_charge(invoice.attempt_outcome):
        raise Conflict("a payment of this invoice is with the bank: wait for it to settle", param="subscription")
    trigger = f"{REDIRECT_TRIGGER}{source_type}"
    if invoice.attempt_outcome == "requires_action" and invoice.attempt_trigger == trigger and invoice.payment_intent:
        open_intent = ctx.gateway.get_payment_intent(invoice.payment_intent)
        if open_intent.awaiting_customer and open_intent.redirect_url:
            return RedirectPayment(invoice, sub, open_intent)  # the same payment, not a second one
    if invoice.attempt_pending and invoice.attempt_trigger != trigger:
        raise Conflict("a payment of this invoice is being made; retry", param="subscription")
    attempt = invoice.attempt_count
    if not invoice.attempt_pending:  # claim the attempt first: two concurrent starts cannot both pay
        attempt += 1
        claim = {
            "attempt_count": attempt,
            "attempt_outcome": None,
            "attempt_trigger": trigger,
            "attempted_at": ctx.now(),
        }
        try:
            invoice = ctx.store.save_invoice(invoice.model_copy(update=claim))
        except Conflict:
            raise Conflict("a payment of this invoice is being made; retry", param="subscription") from None
    intent = ctx.gateway.create_redirect_payment(
        customer=customer.stripe_customer_id,
        source_type=source_type,
        amount=Money(invoice.amount_due, invoice.currency),
        invoice_id=invoice.id,
        attempt=attempt,
        return_url=return_url,
    )
    if intent.result.status is ChargeStatus.REQUIRES_ACTION:
        # waiting for the customer at their bank: not a failure (no dunning, no email)
        invoice = ctx.store.save_invoice(
            invoice.model_copy(update={"attempt_outcome": "requires_action", "payment_intent": intent.id})
        )
        return RedirectPayment(invoice, ctx.store.get_subscription(subscription_id), intent)
    done = apply_charge_result(ctx, invoice.id, intent.result)
    assert done.invoice is not None
    return RedirectPayment(done.invoice, done.subscription or sub, intent)
