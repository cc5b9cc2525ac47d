"""Use cases: catalog, customers, checkout, collecting invoices, renewals, Stripe events.

Orchestrates the domain through ports. Every entry point is idempotent: redelivered messages and
duplicate or out-of-order webhooks lead to one effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kassa.domain.anchors import plan_start
from kassa.domain.balance import apply_balance
from kassa.domain.cancellation import (
    CancellationDetails,
    cancel_immediately,
    schedule_cancellation,
    undo_scheduled_cancellation,
)
from kassa.domain.catalog import Price, Product, Recurring, TaxBehavior
from kassa.domain.credit_notes import (
    CreditNote,
    CreditNoteRequest,
    credit_note_id,
    credit_note_number,
    issue_credit_note,
)
from kassa.domain.customer import Address, Customer
from kassa.domain.discounts import (
    Coupon,
    Discount,
    PromotionCode,
    apply_discount,
    discount_applies,
    record_discounted_invoice,
    redeem,
    start_discount,
)
from kassa.domain.entitlements import Entitlement, entitlements
from kassa.domain.errors import AlreadyExists, Conflict, CurrencyMismatch, IllegalTransition, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.ids import derived_id, new_id
from kassa.domain.invoice import (
    BillingReason,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentError,
    build_subscription_invoice,
    from_lines,
    invoice_id_for,
)
from kassa.domain.money import Money
from kassa.domain.pausing import PauseBehavior, PauseCollection, pause_collection_after, resume_subscription
from kassa.domain.periods import Period, boundary
from kassa.domain.proration import PlanItem, ProrationBehavior, ScheduledChange, apply_scheduled_change, change_item
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import (
    DueAction,
    Status,
    Subscription,
    due_action,
    renewal_reminder,
    start_subscription,
)
from kassa.domain.trials import MissingPaymentMethod, TrialEndAction, trial_end_outcome
from kassa.services.ports import (
    BillingStore,
    ChargeResult,
    ChargeStatus,
    Clock,
    EventPublisher,
    PaymentGateway,
    SetupIntentInfo,
    charge_result_from_intent,
)
from kassa.services.tax import TaxQuoter, tax_invoice

log = logging.getLogger(__name__)

COLLECTABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
HANDLED_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "setup_intent.succeeded",
        "payment_method.updated",
        "payment_method.automatically_updated",
    }
)


@dataclass(frozen=True)
class CheckoutResult:
    subscription: Subscription
    invoice: Invoice | None
    setup_intent: SetupIntentInfo
    publishable_key: str
    customer: Customer


@dataclass(frozen=True)
class PlanChange:
    subscription: Subscription
    invoice: Invoice | None  # invoiced now (always_invoice, interval switch)
    upcoming: Invoice | None  # preview only: the next renewal invoice with the pending prorations


@dataclass(frozen=True)
class CollectResult:
    invoice: Invoice | None
    subscription: Subscription | None
    charge: ChargeResult | None


class Billing:
    def __init__(
        self,
        store: BillingStore,
        gateway: PaymentGateway | None,
        publisher: EventPublisher,
        clock: Clock,
        tax: TaxQuoter | None = None,
    ) -> None:
        self.tax = tax
        self.store = store
        self._prices: dict[str, Price] = {}
        self._products: dict[str, Product | None] = {}
        self._gateway = gateway
        self.publisher = publisher
        self.clock = clock

    @property
    def gateway(self) -> PaymentGateway:
        if self._gateway is None:  # pragma: no cover - wiring error
            raise RuntimeError("this function has no payment gateway")
        return self._gateway

    def now(self) -> datetime:
        return self.clock.now().replace(microsecond=0)

    def _emit(self, *events: DomainEvent) -> None:
        if events:
            self.publisher.publish(list(events))

    # ------------------------------------------------------------------ catalog
    def create_product(self, name: str, description: str | None = None, tax_code: str | None = None) -> Product:
        product = Product(
            id=new_id("prod", 14), name=name, description=description, tax_code=tax_code, created=self.now()
        )
        self.store.put_product(product)
        self._emit(DomainEvent.of("product.created", product, product.created, cause="create"))
        return product

    def create_price(
        self,
        product_id: str,
        currency: str,
        unit_amount: int,
        recurring: Recurring,
        tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE,
        nickname: str | None = None,
    ) -> Price:
        self.store.get_product(product_id)  # NotFound names the field
        price = Price(
            id=new_id("price", 20),
            product=product_id,
            currency=currency,
            unit_amount=unit_amount,
            recurring=recurring,
            tax_behavior=tax_behavior,
            nickname=nickname,
            created=self.now(),
        )
        self.store.put_price(price)
        self._emit(DomainEvent.of("price.created", price, price.created, cause="create"))
        return price

    # ------------------------------------------------------------------ customers
    def create_customer(
        self,
        email: str,
        name: str | None,
        address: Address,
        locale: str = "en",
        tax_id: str | None = None,
        tax_exempt: bool = False,
    ) -> Customer:
        if self.store.find_customer_by_email(email) is not None:
            raise AlreadyExists(f"a customer with email {email} already exists", param="email")
        customer = Customer(
            id=new_id("cus", 14),
            email=email,
            name=name,
            address=address,
            preferred_locale=locale,
            tax_id=tax_id,
            tax_exempt=tax_exempt,
            created=self.now(),
        )
        customer = customer.model_copy(
            update={
                "stripe_customer_id": self.gateway.create_customer(
                    email=email, name=name, address=address, kassa_id=customer.id
                )
            }
        )
        self.store.create_customer(customer)
        self._emit(DomainEvent.of("customer.created", customer, customer.created, cause="create"))
        return customer

    def _customer_for_checkout(
        self,
        customer_id: str | None,
        email: str | None,
        name: str | None,
        address: Address | None,
        locale: str,
        tax_id: str | None = None,
        tax_exempt: bool = False,
    ) -> Customer:
        if customer_id:
            return self.store.get_customer(customer_id)
        if not email or address is None:
            raise InvalidInput("give customer_id or customer.email and customer.address", param="customer")
        existing = self.store.find_customer_by_email(email)
        if existing is not None:
            return existing
        try:
            return self.create_customer(email, name, address, locale, tax_id, tax_exempt)
        except AlreadyExists:  # a concurrent checkout created it
            found = self.store.find_customer_by_email(email)
            if found is None:
                raise
            return found

    # ------------------------------------------------------------------ checkout
    def start_checkout(
        self,
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
        price = self.store.get_price(price_id)
        if not price.active:
            raise InvalidInput(f"price {price_id} is not active", param="price_id")
        customer = self._customer_for_checkout(customer_id, email, name, address, locale, tax_id, tax_exempt)
        now = self.now()
        sub = start_subscription(customer=customer.id, price=price, quantity=quantity, now=now, trial_days=trial_days)
        sub = sub.model_copy(update={"missing_payment_method": missing_payment_method.value})
        invoice = None
        settings = self.store.get_settings()
        custom_start = billing_cycle_anchor is not None or backdate_start_date is not None
        if custom_start and sub.status is not Status.INCOMPLETE:
            raise InvalidInput(
                "a billing_cycle_anchor or backdated start cannot be combined with a trial", param="trial_days"
            )
        if coupon is not None and promotion_code is not None:
            raise InvalidInput("give a coupon or a promotion_code, not both", param="coupon")
        if sub.status is Status.INCOMPLETE:
            product = self._product_of(price)
            name = product.name if product else price.product
            if custom_start:
                plan = plan_start(
                    PlanItem.from_price(price, quantity, name),
                    now,
                    billing_cycle_anchor=billing_cycle_anchor,
                    backdate_start_date=backdate_start_date,
                    proration_behavior=proration_behavior,
                )
                sub = sub.model_copy(update={"billing_cycle_anchor": plan.anchor}).with_period(plan.current_period)
                draft = from_lines(
                    invoice_id_for(sub.id, plan.current_period.start),
                    customer.id,
                    sub.id,
                    sub.currency,
                    [line.to_invoice_line() for line in plan.lines],
                    Period(plan.start, plan.current_period.end),
                    now,
                    BillingReason.SUBSCRIPTION_CREATE,
                )
            else:
                draft = build_subscription_invoice(sub, sub.period, now, BillingReason.SUBSCRIPTION_CREATE, name)
            if coupon is not None or promotion_code is not None:
                sub = self._redeem(coupon, promotion_code, customer, price, sub)
                coupon = promotion_code = None
            sub, invoice, _ = self._finish_invoice(sub, draft, customer, settings, use_balance=False)
            sub = sub.model_copy(update={"latest_invoice": invoice.id})
        if coupon is not None or promotion_code is not None:  # a trial: the discount waits for its end
            sub = self._redeem(coupon, promotion_code, customer, price, sub)
        assert customer.stripe_customer_id is not None
        intent = self.gateway.create_setup_intent(
            customer=customer.stripe_customer_id,
            metadata={"kassa_subscription": sub.id, "kassa_customer": customer.id},
        )
        invoice = self.store.create_subscription(sub, invoice, settings.invoice_prefix)
        events = [DomainEvent.of("customer.subscription.created", sub, now, cause="create")]
        if invoice is not None:
            events.append(DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"))
        self._emit(*events)
        return CheckoutResult(sub, invoice, intent, self.gateway.publishable_key, customer)

    def _price(self, price_id: str) -> Price:
        """A price, read once per Billing instance (one per invocation): prices never change, and a
        renewal needs the same one for its line, its tax code and its discount."""
        if price_id not in self._prices:
            self._prices[price_id] = self.store.get_price(price_id)
        return self._prices[price_id]

    def _product_of(self, price: Price) -> Product | None:
        if price.product not in self._products:
            try:
                self._products[price.product] = self.store.get_product(price.product)
            except NotFound:
                self._products[price.product] = None
        return self._products[price.product]

    def complete_checkout(self, subscription_id: str, setup_intent_id: str) -> CollectResult:
        """Attach the confirmed card, charge the first invoice if one is due, activate.

        Called by the storefront after Stripe.js confirmed the SetupIntent, and by the
        setup_intent.succeeded webhook — whichever comes first; the second finds the work done.
        """
        sub = self.store.get_subscription(subscription_id)
        intent = self.gateway.get_setup_intent(setup_intent_id)
        if intent.metadata.get("kassa_subscription") not in (None, subscription_id):
            raise InvalidInput("this SetupIntent belongs to another subscription", param="setup_intent_id")
        if intent.status != "succeeded" or not intent.payment_method:
            raise InvalidInput(
                f"the SetupIntent is {intent.status}; confirm the card with Stripe.js first", param="setup_intent_id"
            )
        customer = self.save_payment_method(sub.customer, intent.payment_method)
        invoice = self.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
        if sub.status is Status.INCOMPLETE and invoice is not None and invoice.status in COLLECTABLE:
            # one attempt per confirmed SetupIntent: the storefront call and the webhook share it
            return self.collect(invoice, customer, trigger=setup_intent_id)
        return CollectResult(invoice, self.store.get_subscription(subscription_id), None)

    def save_payment_method(self, customer_id: str, payment_method: str) -> Customer:
        customer = self.store.get_customer(customer_id)
        if customer.default_payment_method and customer.default_payment_method.payment_method_id == payment_method:
            return customer
        assert customer.stripe_customer_id is not None
        card = self.gateway.attach_payment_method(payment_method=payment_method, customer=customer.stripe_customer_id)
        for _ in range(3):
            try:
                saved = self.store.save_customer(customer.model_copy(update={"default_payment_method": card}))
                self._emit(DomainEvent.of("customer.updated", saved, self.now(), cause=f"pm:{payment_method}"))
                return saved
            except Conflict:
                customer = self.store.get_customer(customer_id)
        raise Conflict("the customer kept changing; retry")

    def update_card(self, customer_id: str, setup_intent_id: str) -> tuple[Customer, list[CollectResult]]:
        """A customer saved a new card (card-update page or setup_intent.succeeded, whichever comes
        first): make it the default and retry the open invoices at once, one attempt per SetupIntent."""
        customer = self.store.get_customer(customer_id)
        intent = self.gateway.get_setup_intent(setup_intent_id)
        if intent.customer not in (None, customer.stripe_customer_id) or intent.metadata.get("kassa_customer") not in (
            None,
            customer_id,
        ):
            raise InvalidInput("this SetupIntent belongs to another customer", param="setup_intent_id")
        if intent.status != "succeeded" or not intent.payment_method:
            raise InvalidInput(
                f"the SetupIntent is {intent.status}; confirm the card with Stripe.js first", param="setup_intent_id"
            )
        customer = self.save_payment_method(customer_id, intent.payment_method)
        results = [
            self.collect(invoice, customer, trigger=setup_intent_id)
            for invoice in self.store.list_open_invoices(customer_id)
            if not invoice.keep_as_draft and invoice.number is not None
        ]
        return customer, results

    def card_setup_intent(self, customer_id: str, purpose: str) -> SetupIntentInfo:
        """A SetupIntent for the customer's card-update page."""
        customer = self.store.get_customer(customer_id)
        if customer.stripe_customer_id is None:
            raise InvalidInput("this customer has no Stripe customer", param="customer")
        return self.gateway.create_setup_intent(
            customer=customer.stripe_customer_id, metadata={"kassa_customer": customer_id, "kassa_purpose": purpose}
        )

    def card_updated(self, payment_method: dict[str, Any], event_id: str) -> str:
        """payment_method.updated / payment_method.automatically_updated (the card networks' account
        updater): refresh the stored brand, last4 and expiry of the customer's default card."""
        pm_id, stripe_customer = payment_method.get("id"), payment_method.get("customer")
        card = payment_method.get("card")
        if not isinstance(pm_id, str) or not isinstance(stripe_customer, str) or not isinstance(card, dict):
            return "ignored:not a card of a customer"
        customer_id = self.gateway.kassa_customer_of(stripe_customer)
        if customer_id is None:
            return "ignored:not a kassa customer"
        for _ in range(3):
            try:
                customer = self.store.get_customer(customer_id)
            except NotFound:
                return f"ignored:unknown customer {customer_id}"
            current = customer.default_payment_method
            if current is None or current.payment_method_id != pm_id:
                return "ignored:not the default card"
            updated = current.model_copy(
                update={
                    "brand": card.get("brand") or current.brand,
                    "last4": card.get("last4") or current.last4,
                    "exp_month": card.get("exp_month") or current.exp_month,
                    "exp_year": card.get("exp_year") or current.exp_year,
                }
            )
            if updated == current:
                return "applied:unchanged"
            try:
                saved = self.store.save_customer(customer.model_copy(update={"default_payment_method": updated}))
            except Conflict:
                continue
            self._emit(DomainEvent.of("customer.updated", saved, self.now(), cause=event_id))
            return "applied"
        raise Conflict("the customer kept changing; retry")

    # ------------------------------------------------------------------ collecting
    def collect(
        self, invoice: Invoice, customer: Customer | None = None, *, trigger: str | None = None
    ) -> CollectResult:
        """Charge an open invoice and apply the result, never charging one attempt twice.

        An attempt whose outcome never arrived (Stripe unreachable, a crash between the call and
        the write) is sent again under the same attempt number, so Stripe's idempotency key
        replays the first answer. A new attempt is made only for a first charge or when the
        caller brings a new trigger (a newly confirmed card; retries belong to dunning).
        """
        if invoice.status not in COLLECTABLE:
            return CollectResult(invoice, self._sub_of(invoice), None)
        customer = customer or self.store.get_customer(invoice.customer)
        if invoice.amount_due == 0:
            return self._apply_paid(invoice, payment_intent=None, cause="zero")
        if customer.default_payment_method is None or customer.stripe_customer_id is None:
            result = ChargeResult(ChargeStatus.DECLINED, None, code="no_payment_method", message="no card on file")
            return self._apply_failure(invoice, result)
        if attempt_pending(invoice):
            return self._charge(invoice, customer, invoice.attempt_count)
        if invoice.attempt_count > 0 and (trigger is None or trigger == invoice.attempt_trigger):
            return CollectResult(invoice, self._sub_of(invoice), None)  # this attempt has its outcome
        # claim the attempt first: two concurrent collectors cannot both charge
        attempt = invoice.attempt_count + 1
        claim = {"attempt_count": attempt, "attempt_outcome": None, "attempt_trigger": trigger}
        try:
            invoice = self.store.save_invoice(invoice.model_copy(update=claim))
        except Conflict:
            current = self.store.get_invoice(invoice.id)
            return CollectResult(current, self._sub_of(current), None)
        return self._charge(invoice, customer, attempt)

    def _charge(self, invoice: Invoice, customer: Customer, attempt: int) -> CollectResult:
        assert customer.default_payment_method is not None and customer.stripe_customer_id is not None
        result = self.gateway.charge(
            customer=customer.stripe_customer_id,
            payment_method=customer.default_payment_method.payment_method_id,
            amount=Money(invoice.amount_due, invoice.currency),
            invoice_id=invoice.id,
            attempt=attempt,
            description=f"Invoice {invoice.number}",
        )
        return self.apply_charge_result(invoice.id, result)

    def apply_charge_result(self, invoice_id: str, result: ChargeResult) -> CollectResult:
        """Apply a PaymentIntent outcome (synchronous answer or webhook) to the invoice, once."""
        for _ in range(4):
            invoice = self.store.get_invoice(invoice_id)
            try:
                if result.status is ChargeStatus.SUCCEEDED:
                    return self._apply_paid(invoice, result.payment_intent, cause=result.payment_intent or "paid")
                if result.status is ChargeStatus.PROCESSING:
                    if invoice.status in COLLECTABLE and invoice.attempt_outcome is None:
                        invoice = self.store.save_invoice(
                            invoice.model_copy(
                                update={"attempt_outcome": "processing", "payment_intent": result.payment_intent}
                            )
                        )
                    return CollectResult(invoice, self._sub_of(invoice), result)
                return self._apply_failure(invoice, result)
            except Conflict:
                continue
        raise Conflict(f"invoice {invoice_id} kept changing; retry")

    def _sub_of(self, invoice: Invoice) -> Subscription | None:
        return self.store.get_subscription(invoice.subscription) if invoice.subscription else None

    def _apply_paid(self, invoice: Invoice, payment_intent: str | None, cause: str) -> CollectResult:
        if invoice.status is InvoiceStatus.PAID:
            return CollectResult(invoice, self._sub_of(invoice), None)  # duplicate: one effect
        if invoice.status is InvoiceStatus.VOID:
            log.warning("payment for void invoice %s (intent %s): needs a refund", invoice.id, payment_intent)
            return CollectResult(invoice, self._sub_of(invoice), None)
        now = self.now()
        paid = invoice.transition(InvoiceStatus.PAID, now).model_copy(
            update={"payment_intent": payment_intent, "attempt_outcome": "succeeded"}
        )
        sub = self._sub_of(invoice)
        new_sub = None
        if (
            sub is not None
            and sub.latest_invoice == invoice.id
            and sub.status in (Status.INCOMPLETE, Status.PAST_DUE, Status.UNPAID, Status.PAUSED)
        ):
            new_sub = sub.transition(Status.ACTIVE, now).model_copy(update={"incomplete_expires_at": None})
            if sub.status is Status.INCOMPLETE:
                new_sub = new_sub.with_period(sub.period)
                reminder = renewal_reminder(new_sub, self.store.get_settings().emails.upcoming_renewal_days)
                new_sub = new_sub.model_copy(update={"renewal_reminder_at": reminder})
        if sub is not None and sub.latest_invoice == invoice.id and sub.overdue_state is not None:
            # paying clears the overdue state and gives access back at once (dunning re-checks older invoices)
            new_sub = (new_sub or sub).model_copy(
                update={"overdue_state": None, "entitlements_suspended": False, "changes_blocked": False}
            )
        saved_inv, saved_sub = self.store.save_invoice_and_subscription(paid, new_sub)
        events = [
            DomainEvent.of("invoice.paid", saved_inv, now, cause="paid"),
            DomainEvent.of("invoice.payment_succeeded", saved_inv, now, cause="paid"),
        ]
        if saved_sub is not None and sub is not None:
            previous = {"status": sub.status.value}
            if sub.overdue_state is not None:
                previous["overdue_state"] = sub.overdue_state
            events.append(
                DomainEvent.of(
                    "customer.subscription.updated", saved_sub, now, cause=f"paid:{invoice.id}", previous=previous
                )
            )
            if sub.entitlements_suspended:
                events.append(entitlements_event(saved_sub, now, cause=f"paid:{invoice.id}"))
        self._emit(*events)
        return CollectResult(saved_inv, saved_sub or sub, None)

    def _apply_failure(self, invoice: Invoice, result: ChargeResult) -> CollectResult:
        if invoice.status not in COLLECTABLE:
            # paid or void already: a late failure changes nothing
            return CollectResult(invoice, self._sub_of(invoice), result)
        now = self.now()
        previous = invoice.last_payment_error
        if result.attempt is not None and result.attempt < invoice.attempt_count:
            return CollectResult(invoice, self._sub_of(invoice), result)  # a stale attempt's news
        if previous is not None and result.attempt is not None and previous.attempt == result.attempt:
            # the same attempt reported twice (synchronous answer and webhook): one effect; only
            # complete what the first report lacked
            if previous.payment_intent is None and result.payment_intent:
                filled = previous.model_copy(update={"payment_intent": result.payment_intent})
                invoice = self.store.save_invoice(
                    invoice.model_copy(update={"last_payment_error": filled, "payment_intent": result.payment_intent})
                )
            return CollectResult(invoice, self._sub_of(invoice), result)
        error = PaymentError(
            code=result.code or "card_declined",
            decline_code=result.decline_code,
            message=result.message,
            attempt=result.attempt,
            payment_intent=result.payment_intent,
        )
        outcome = "requires_action" if result.status is ChargeStatus.REQUIRES_ACTION else "declined"
        failed = invoice.model_copy(
            update={
                "last_payment_error": error,
                "payment_intent": result.payment_intent,
                "attempt_outcome": outcome,
                # dunning: the first failure anchors the schedule; the invoice enters the dunning index
                "first_failed_at": invoice.first_failed_at or now,
                "first_payment_error": invoice.first_payment_error or error,
                "next_dunning_at": now,
            }
        )
        sub = self._sub_of(invoice)
        new_sub = None
        if sub is not None and sub.latest_invoice == invoice.id and sub.status in (Status.ACTIVE, Status.TRIALING):
            new_sub = sub.transition(Status.PAST_DUE, now)
        saved_inv, saved_sub = self.store.save_invoice_and_subscription(failed, new_sub)
        kind = (
            "invoice.payment_action_required"
            if result.status is ChargeStatus.REQUIRES_ACTION
            else "invoice.payment_failed"
        )
        events = [
            DomainEvent.of(kind, saved_inv, now, cause=f"attempt:{saved_inv.attempt_count}:{result.payment_intent}")
        ]
        if saved_sub is not None and sub is not None:
            events.append(
                DomainEvent.of(
                    "customer.subscription.updated",
                    saved_sub,
                    now,
                    cause=f"failed:{invoice.id}",
                    previous={"status": sub.status.value},
                )
            )
        self._emit(*events)
        return CollectResult(saved_inv, saved_sub or sub, result)

    # ------------------------------------------------------------------ renewals
    def due_work(self, shard: int, limit: int = 1000) -> list[dict[str, Any]]:
        """The renewal sweep: what is due now in one shard of the due index (a Query, never a Scan)."""
        now = self.now()
        return [
            {"subscription": sub_id, "due_at": due.isoformat()}
            for sub_id, due in self.store.due_subscriptions(shard, now, limit)
        ]

    def process_due(self, subscription_id: str) -> str:
        """Do what is due for one subscription. Safe to call any number of times."""
        try:
            sub = self.store.get_subscription(subscription_id)
        except NotFound:
            return "unknown"
        now = self.now()
        due = due_action(sub, now)
        if due.action is DueAction.NOTHING:
            # a redelivery after the period was advanced but before its charge had an outcome
            latest = self.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
            if latest is not None and latest.status in COLLECTABLE and attempt_pending(latest):
                return self._status_of(self.collect(latest))
            return "nothing"
        if due.action is DueAction.EXPIRE:
            return self._expire(sub, now)
        if due.action is DueAction.CANCEL:
            return self._cancel_now(sub, now, cause="period_end")
        if due.action is DueAction.UPCOMING:
            reminded = self.store.save_subscription(sub.model_copy(update={"renewal_reminder_at": None}))
            self._emit(DomainEvent.of("invoice.upcoming", reminded, now, cause=f"upcoming:{sub.current_period_end}"))
            return "upcoming"
        if due.action is DueAction.TRIAL_WILL_END:
            noticed = self.store.save_subscription(sub.model_copy(update={"trial_will_end_notified": True}))
            self._emit(DomainEvent.of("customer.subscription.trial_will_end", noticed, now, cause="notice"))
            return "trial_will_end"
        assert due.period is not None
        settings = self.store.get_settings()
        customer = self.store.get_customer(sub.customer)
        if due.action is DueAction.END_TRIAL:
            outcome = trial_end_outcome(
                sub,
                now,
                has_payment_method=customer.default_payment_method is not None,
                missing_payment_method=MissingPaymentMethod(sub.missing_payment_method),
            )
            if outcome.action is TrialEndAction.CANCEL:
                return self._cancel_now(sub, now, cause="trial_end")
            if outcome.action is TrialEndAction.PAUSE:
                paused = self.store.save_subscription(sub.transition(Status.PAUSED, now))
                self._emit(
                    DomainEvent.of(
                        "customer.subscription.paused", paused, now, cause="trial_end", previous={"status": "trialing"}
                    )
                )
                return "paused"
        previous = {"current_period_start": sub.current_period_start.isoformat(), "status": sub.status.value}
        pause = pause_collection_after(
            PauseCollection.model_validate(sub.pause_collection) if sub.pause_collection else None, now
        )
        advanced, invoice, moved = self._period_invoice(
            sub, due.period, now, customer, settings, use_balance=pause is None
        )
        advanced = advanced.model_copy(update={"pause_collection": pause.model_dump(mode="json") if pause else None})
        advanced = advanced.model_copy(
            update={"renewal_reminder_at": renewal_reminder(advanced, settings.emails.upcoming_renewal_days)}
        )
        if pause is None:
            # the first attempt is claimed in the same transaction that creates the invoice
            invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "renewal"})
        elif pause.behavior is PauseBehavior.KEEP_AS_DRAFT:
            invoice = invoice.model_copy(update={"keep_as_draft": True})
        elif pause.behavior is PauseBehavior.VOID:
            invoice = invoice.transition(InvoiceStatus.VOID, now)
        if due.action is DueAction.END_TRIAL:
            advanced = advanced.transition(Status.ACTIVE, now)
        if moved is not None:
            customer = moved
        try:
            advanced, invoice = self.store.renew(advanced, invoice, settings.invoice_prefix, moved)
        except AlreadyExists:
            # a redelivery after the invoice was written: continue from its state
            existing = self.store.get_invoice(invoice.id)
            if existing.status in COLLECTABLE and attempt_pending(existing):
                return self._status_of(self.collect(existing))
            return "already_renewed"
        except Conflict:
            raise  # the subscription changed under us: the message is retried and decides again
        if pause is not None:  # collection paused: the invoice is kept as a draft, voided or written off
            if pause.behavior is PauseBehavior.MARK_UNCOLLECTIBLE:
                invoice = self.store.save_invoice(invoice.transition(InvoiceStatus.UNCOLLECTIBLE, now))
            self._emit(
                DomainEvent.of("invoice.created", invoice, now, cause="create"),
                DomainEvent.of(
                    "customer.subscription.updated", advanced, now, cause=f"renew:{invoice.id}", previous=previous
                ),
            )
            return f"paused:{invoice.status.value}"
        self._emit(
            DomainEvent.of("invoice.created", invoice, now, cause="create"),
            DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
            DomainEvent.of(
                "customer.subscription.updated", advanced, now, cause=f"renew:{invoice.id}", previous=previous
            ),
        )
        if customer.default_payment_method is None or customer.stripe_customer_id is None:
            return self._status_of(self.collect(invoice, customer))
        return self._status_of(self._charge(invoice, customer, invoice.attempt_count))

    def _period_invoice(
        self,
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
        item, anchor, still = apply_scheduled_change(
            self._item_of(sub), sub.billing_cycle_anchor, scheduled, period.start
        )
        if still is not scheduled:  # the downgrade takes effect with this period
            sub = self._with_item(sub, item).model_copy(
                update={"billing_cycle_anchor": anchor, "scheduled_change": None}
            )
            if anchor == period.start and scheduled is not None and scheduled.resets_anchor:
                period = Period(anchor, boundary(anchor, item.interval, item.interval_count, 1))
        price = self._price(sub.price)
        product = self._product_of(price)
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
        return self._finish_invoice(
            sub.with_period(period).model_copy(update={"pending_lines": []}), draft, customer, settings, use_balance
        )

    def _finish_invoice(
        self,
        sub: Subscription,
        draft: Invoice,
        customer: Customer,
        settings: MerchantSettings,
        use_balance: bool = True,
    ) -> tuple[Subscription, Invoice, Customer | None]:
        """Discount (the subscription's coupon, if it covers this period), then tax, then the
        customer's balance: the order Stripe applies them in."""
        codes: dict[str, str | None] = {}
        products: dict[str, str] = {}
        for price_id in {line.price for line in draft.lines if line.price}:
            price = self._price(price_id)
            product = self._product_of(price)
            codes[price_id] = product.tax_code if product else None
            products[price_id] = price.product
        if sub.discount is not None:
            discount = Discount.model_validate(sub.discount)
            if discount_applies(discount, draft.period_start):
                applied = apply_discount(draft.lines, discount, draft.currency, products=products)
                lines = [
                    line.model_copy(update={"amount": line.amount - off, "discount_amount": off})
                    for line, off in zip(draft.lines, applied.amounts, strict=True)
                ]
                draft = draft.model_copy(
                    update={
                        "lines": lines,
                        "total_discount": applied.total,
                        "discount": f"{discount.coupon.describe()}: {applied.rule}",
                    }
                )
                sub = sub.model_copy(update={"discount": record_discounted_invoice(discount).model_dump(mode="json")})
        invoice, _ = tax_invoice(draft, customer, settings, codes, self.tax)
        if not use_balance:
            return sub, invoice, None
        invoice, moved = with_balance(invoice, customer)
        return sub, invoice, moved

    # ------------------------------------------------------------------ coupons
    def create_coupon(self, **fields: Any) -> Coupon:
        coupon = Coupon(**{"id": fields.pop("id", None) or new_id("co", 12), **fields, "created": self.now()})
        self.store.put_coupon(coupon)
        self._emit(DomainEvent.of("coupon.created", coupon, self.now(), cause="create"))
        return coupon

    def create_promotion_code(self, code: str, coupon_id: str, **fields: Any) -> PromotionCode:
        promo = PromotionCode(id=new_id("promo", 14), code=code, coupon=self.store.get_coupon(coupon_id), **fields)
        self.store.put_promotion_code(promo)
        self._emit(DomainEvent.of("promotion_code.created", promo, self.now(), cause="create"))
        return promo

    def _redeem(
        self, coupon_id: str | None, code: str | None, customer: Customer, price: Price, sub: Subscription
    ) -> Subscription:
        """Redeem a coupon or a customer-entered promotion code for a new subscription."""
        offer: Coupon | PromotionCode
        if code is not None:
            promo = self.store.get_promotion_code(code)
            offer = promo.model_copy(update={"coupon": self.store.get_coupon(promo.coupon.id)})
        else:
            assert coupon_id is not None
            offer = self.store.get_coupon(coupon_id)
        redeemed = redeem(offer, self.now(), customer.id, price.product, currency=price.currency)
        coupon = redeemed.coupon if isinstance(redeemed, PromotionCode) else redeemed
        self.store.count_redemption(coupon, redeemed if isinstance(redeemed, PromotionCode) else None)
        discount = start_discount(
            coupon, sub.current_period_start, customer=customer.id, subscription=sub.id, promotion_code=code
        )
        self._emit(DomainEvent.of("customer.discount.created", discount, self.now(), cause="create"))
        return sub.model_copy(update={"discount": discount.model_dump(mode="json")})

    def _item_of(self, sub: Subscription) -> PlanItem:
        return PlanItem.from_subscription(sub)

    @staticmethod
    def _with_item(sub: Subscription, item: PlanItem) -> Subscription:
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

    # ------------------------------------------------------------------ plan changes
    def change_plan(
        self,
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
        sub = self.store.get_subscription(subscription_id)
        if sub.status not in (Status.ACTIVE, Status.TRIALING, Status.PAST_DUE):
            raise IllegalTransition(f"subscription {sub.id} is {sub.status.value}: its plan cannot change")
        if sub.changes_blocked and not preview:
            raise IllegalTransition(
                f"subscription {sub.id} is overdue ({sub.overdue_state}): pay the open invoice before changing the plan"
            )
        new_price = self.store.get_price(price_id or sub.price)
        if not new_price.active:
            raise InvalidInput(f"price {new_price.id} is not active", param="price_id")
        new_item = PlanItem.from_price(new_price, quantity or sub.quantity)
        now = self.now()
        settings = self.store.get_settings()
        customer = self.store.get_customer(sub.customer)
        previous = {"price": sub.price, "quantity": sub.quantity}
        if sub.status is Status.TRIALING:  # nothing is billed during a trial: the new plan applies at its end
            changed = self._with_item(sub, new_item)
            if new_item.interval != sub.interval or new_item.interval_count != sub.interval_count:
                raise InvalidInput("switch the interval after the trial", param="price_id")
            if not preview:
                changed = self.store.save_subscription(changed)
                self._emit(
                    DomainEvent.of(
                        "customer.subscription.updated", changed, now, cause=f"change:{now}", previous=previous
                    )
                )
            return PlanChange(changed, None, upcoming=None)
        result = change_item(
            self._item_of(sub),
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
            changed = self._with_item(sub, result.item).model_copy(
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
            draft = from_lines(
                derived_id("in", sub.id, "update", now.isoformat()),
                sub.customer,
                sub.id,
                sub.currency,
                [*pending, *lines],
                Period(now, changed.current_period_end),
                now,
                BillingReason.SUBSCRIPTION_UPDATE,
            )
            changed, invoice, moved = self._finish_invoice(
                changed.model_copy(update={"pending_lines": []}), draft, customer, settings
            )
        if preview:
            upcoming = None
            if invoice is None:
                _, upcoming, _ = self._period_invoice(changed, changed.next_period(), now, customer, settings)
            return PlanChange(changed, invoice, upcoming=upcoming)
        if invoice is None:
            saved = self.store.save_subscription(changed)
            self._emit(
                DomainEvent.of("customer.subscription.updated", saved, now, cause=f"change:{now}", previous=previous)
            )
            return PlanChange(saved, None, upcoming=None)
        invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "update"})
        saved, invoice = self.store.renew(changed, invoice, settings.invoice_prefix, moved)
        self._emit(
            DomainEvent.of("customer.subscription.updated", saved, now, cause=f"change:{now}", previous=previous),
            DomainEvent.of("invoice.created", invoice, now, cause="create"),
            DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
        )
        payer = moved or customer
        if invoice.amount_due == 0 or payer.default_payment_method is None or payer.stripe_customer_id is None:
            collected = self.collect(invoice, payer)
        else:
            collected = self._charge(invoice, payer, invoice.attempt_count)
        return PlanChange(collected.subscription or saved, collected.invoice, upcoming=None)

    # ------------------------------------------------------------------ credit notes
    def credit_invoice(self, invoice_id: str, request: CreditNoteRequest) -> tuple[CreditNote, Invoice]:
        """Issue a credit note: on an open invoice it lowers the amount due; on a paid one its total
        splits into a refund through Stripe, customer credit and an out-of-band part (Stripe's rule).

        The invoice may change under the request (dunning files it under its next retry, a webhook
        settles it): the note is then computed again from the fresh invoice. Its id derives from its
        sequence, so a refund already sent is replayed by Stripe under the same key, not repeated."""
        for _ in range(3):
            try:
                return self._credit_invoice_once(invoice_id, request)
            except AlreadyExists:
                raise
            except Conflict:
                continue
        raise Conflict(f"invoice {invoice_id} kept changing; retry")

    def _credit_invoice_once(self, invoice_id: str, request: CreditNoteRequest) -> tuple[CreditNote, Invoice]:
        invoice = self.store.get_invoice(invoice_id)
        if invoice.number is None:
            raise IllegalTransition(f"invoice {invoice.id} is not finalized", param="invoice")
        previous = self.store.list_credit_notes(invoice.id)
        sequence = len(previous) + 1
        now = self.now()
        outcome = issue_credit_note(
            invoice,
            request,
            previous=previous,
            credit_note_id=credit_note_id(invoice.id, sequence),
            number=credit_note_number(invoice.number, sequence),
            now=now,
        )
        note = outcome.credit_note
        if outcome.refund_amount:  # before writing: a retry reuses the note id, so Stripe refunds once
            if not invoice.payment_intent:
                raise InvalidInput("this invoice was not paid through Stripe: nothing to refund", param="refund_amount")
            self.gateway.refund(
                payment_intent=invoice.payment_intent,
                amount=Money(outcome.refund_amount, invoice.currency),
                credit_note_id=note.id,
            )
        updated = invoice.model_copy(
            update={
                "amount_due": outcome.amount_due,
                "pre_payment_credit_notes_amount": outcome.pre_payment_credit_notes_amount,
                "post_payment_credit_notes_amount": outcome.post_payment_credit_notes_amount,
            }
        )
        if outcome.invoice_status is not invoice.status:
            updated = updated.transition(outcome.invoice_status, now)
        customer = None
        if outcome.balance_transaction is not None:
            current = self.store.get_customer(invoice.customer)
            if current.balance_currency not in (None, invoice.currency):
                raise CurrencyMismatch("the customer's balance is in another currency", param="credit_amount")
            customer = current.model_copy(
                update={
                    "balance": current.balance + outcome.balance_transaction.amount,
                    "balance_currency": invoice.currency,
                }
            )
        saved = self.store.issue_credit_note(note, updated, customer)
        self._emit(
            DomainEvent.of("credit_note.created", note, now, cause="issue"),
            DomainEvent.of("invoice.updated", saved, now, cause=f"credit:{note.id}"),
        )
        return note, saved

    # ------------------------------------------------------------------ paused subscriptions
    def resume(self, subscription_id: str) -> PlanChange:
        """Resume a paused subscription (Stripe: the billing cycle restarts now and the new period is
        invoiced at once; the subscription stays paused until that invoice is paid)."""
        sub = self.store.get_subscription(subscription_id)
        now = self.now()
        plan = resume_subscription(sub, now)
        settings = self.store.get_settings()
        customer = self.store.get_customer(sub.customer)
        resumed = plan.subscription
        draft = from_lines(
            derived_id("in", sub.id, "resume", now.isoformat()),
            sub.customer,
            sub.id,
            sub.currency,
            [line.to_invoice_line() for line in plan.lines],
            resumed.period,
            now,
            BillingReason.SUBSCRIPTION_UPDATE,
        )
        resumed, invoice, moved = self._finish_invoice(resumed, draft, customer, settings)
        invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "resume"})
        saved, invoice = self.store.renew(resumed, invoice, settings.invoice_prefix, moved)
        self._emit(
            DomainEvent.of("invoice.created", invoice, now, cause="create"),
            DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
        )
        payer = moved or customer
        if invoice.amount_due == 0 or payer.default_payment_method is None or payer.stripe_customer_id is None:
            collected = self.collect(invoice, payer)
        else:
            collected = self._charge(invoice, payer, invoice.attempt_count)
        if collected.subscription is not None and collected.subscription.status is Status.ACTIVE:
            self._emit(DomainEvent.of("customer.subscription.resumed", collected.subscription, now, cause="resume"))
        return PlanChange(collected.subscription or saved, collected.invoice, upcoming=None)

    # ------------------------------------------------------------------ one-off items
    def add_invoice_item(
        self, subscription_id: str, *, amount: int, description: str, quantity: int = 1
    ) -> Subscription:
        """A one-off charge (or credit, when negative) for the subscription's next invoice."""
        if amount == 0:
            raise InvalidInput("a one-off item has a non-zero amount", param="amount")
        now = self.now()
        line = InvoiceLine(
            description=description,
            amount=amount * quantity,
            quantity=quantity,
            unit_amount=amount,
            period_start=now,
            period_end=now,
        )
        sub = self.store.get_subscription(subscription_id)
        return self._update(
            subscription_id, {"pending_lines": [*sub.pending_lines, line.model_dump(mode="json")]}, "invoice_item"
        )

    # ------------------------------------------------------------------ pausing collection
    def pause_collection(
        self, subscription_id: str, behavior: PauseBehavior, resumes_at: datetime | None = None
    ) -> Subscription:
        """Stop collecting (Stripe's pause_collection): the status stays active and access continues;
        the invoices generated meanwhile are kept as drafts, written off or voided."""
        pause = PauseCollection(behavior=behavior, resumes_at=resumes_at)
        return self._update(subscription_id, {"pause_collection": pause.model_dump(mode="json")}, "pause_collection")

    def resume_collection(self, subscription_id: str) -> Subscription:
        return self._update(subscription_id, {"pause_collection": None}, "resume_collection")

    def _update(self, subscription_id: str, changes: dict[str, Any], cause: str) -> Subscription:
        for _ in range(3):
            sub = self.store.get_subscription(subscription_id)
            if sub.status in (Status.CANCELED, Status.INCOMPLETE_EXPIRED):
                raise IllegalTransition(f"subscription {sub.id} has ended ({sub.status.value})")
            changed = sub.model_copy(update=changes)
            if changed == sub:
                return sub
            try:
                saved = self.store.save_subscription(changed)
            except Conflict:
                continue
            previous = {key: getattr(sub, key) for key in changes}
            now = self.now()
            self._emit(
                DomainEvent.of("customer.subscription.updated", saved, now, cause=f"{cause}:{now}", previous=previous)
            )
            return saved
        raise Conflict(f"subscription {subscription_id} kept changing; retry")

    # ------------------------------------------------------------------ cancellation and access
    def cancel(
        self, subscription_id: str, *, at_period_end: bool, details: CancellationDetails, prorate: bool = False
    ) -> Subscription:
        """Cancel now, or at the period end (undoable until then). Asking twice changes nothing.
        ``prorate`` (now only): the unused time is credited on a final invoice, and any pending
        proration lines go on it too; a negative total becomes customer credit."""
        if prorate and at_period_end:
            raise InvalidInput("prorate only goes with an immediate cancellation", param="prorate")
        for _ in range(3):
            sub = self.store.get_subscription(subscription_id)
            now = self.now()
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
                    customer = self.store.get_customer(sub.customer)
                    draft = from_lines(
                        derived_id("in", sub.id, "cancel", now.isoformat()),
                        sub.customer,
                        sub.id,
                        sub.currency,
                        [*pending, *lines],
                        Period(now, max(sub.current_period_end, now + timedelta(seconds=1))),
                        now,
                        BillingReason.SUBSCRIPTION_UPDATE,
                    )
                    changed, final, moved = self._finish_invoice(
                        changed.model_copy(update={"pending_lines": []}), draft, customer, self.store.get_settings()
                    )
                    saved, final = self.store.renew(changed, final, self.store.get_settings().invoice_prefix, moved)
                    self.collect(final, moved or customer)
                elif immediate is not None and sub.status is Status.INCOMPLETE and sub.latest_invoice:
                    # Stripe voids the unpaid first invoice of a subscription canceled before it started
                    first = self.store.get_invoice(sub.latest_invoice)
                    voided = first.transition(InvoiceStatus.VOID, now) if first.status in COLLECTABLE else None
                    if voided is None:
                        saved = self.store.save_subscription(changed)
                    else:
                        voided, maybe = self.store.save_invoice_and_subscription(voided, changed)
                        assert maybe is not None
                        saved = maybe
                        self._emit(DomainEvent.of("invoice.voided", voided, now, cause="cancel"))
                else:
                    saved = self.store.save_subscription(changed)
            except Conflict:
                continue
            kind = (
                "customer.subscription.deleted" if saved.status is Status.CANCELED else "customer.subscription.updated"
            )
            self._emit(DomainEvent.of(kind, saved, now, cause=f"cancel:{at_period_end}", previous=previous))
            return saved
        raise Conflict(f"subscription {subscription_id} kept changing; retry")

    def undo_cancel(self, subscription_id: str) -> Subscription:
        for _ in range(3):
            sub = self.store.get_subscription(subscription_id)
            now = self.now()
            changed = undo_scheduled_cancellation(sub, now)
            if changed == sub:
                return sub
            try:
                saved = self.store.save_subscription(changed.model_copy(update={"cancellation_details": None}))
            except Conflict:
                continue
            self._emit(
                DomainEvent.of(
                    "customer.subscription.updated",
                    saved,
                    now,
                    cause="uncancel",
                    previous={"cancel_at_period_end": True},
                )
            )
            return saved
        raise Conflict(f"subscription {subscription_id} kept changing; retry")

    def entitlements_of(self, customer_id: str) -> list[Entitlement]:
        """What the customer may use right now, following statuses, trials and scheduled cancellations."""
        self.store.get_customer(customer_id)
        subs = self.store.list_customer_subscriptions(customer_id)
        products = {price_id: self._price(price_id).product for price_id in {s.price for s in subs}}
        suspended = {s.id for s in subs if s.entitlements_suspended}  # the overdue ladder cut access
        return entitlements(subs, self.now(), products=products, suspended=suspended)

    def _cancel_now(self, sub: Subscription, now: datetime, cause: str) -> str:
        canceled = self.store.save_subscription(sub.transition(Status.CANCELED, now))
        self._emit(DomainEvent.of("customer.subscription.deleted", canceled, now, cause=cause))
        return "canceled"

    @staticmethod
    def _status_of(result: CollectResult) -> str:
        return result.invoice.status.value if result.invoice else "no_invoice"

    def _expire(self, sub: Subscription, now: datetime) -> str:
        invoice = self.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
        expired = sub.transition(Status.INCOMPLETE_EXPIRED, now)
        voided = (
            invoice.transition(InvoiceStatus.VOID, now) if invoice and invoice.status is InvoiceStatus.OPEN else None
        )
        if voided is not None:
            _, saved = self.store.save_invoice_and_subscription(voided, expired)
        else:
            saved = self.store.save_subscription(expired)
        assert saved is not None
        events = [
            DomainEvent.of(
                "customer.subscription.updated", saved, now, cause="expire", previous={"status": sub.status.value}
            )
        ]
        if voided is not None:
            events.append(DomainEvent.of("invoice.voided", voided, now, cause="expire"))
        self._emit(*events)
        return "expired"

    # ------------------------------------------------------------------ Stripe events
    def apply_stripe_event(self, event: dict[str, Any]) -> str:
        """Apply one verified Stripe event. Returns what happened: applied / ignored:<why>."""
        if not isinstance(event, dict):
            raise InvalidInput("a Stripe event is a JSON object", param="body")
        etype = event.get("type", "")
        if etype not in HANDLED_EVENTS:
            return "ignored:unhandled type"
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata") or {}, dict):
            raise InvalidInput("data.object and its metadata must be objects", param="data.object")
        if etype in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            invoice_id = (obj.get("metadata") or {}).get("kassa_invoice")
            if not invoice_id:
                return "ignored:not a kassa payment"
            if self.store.find_invoice(invoice_id) is None:
                return f"ignored:unknown invoice {invoice_id}"
            result = charge_result_from_intent(obj)
            if etype == "payment_intent.payment_failed" and result.status is ChargeStatus.SUCCEEDED:
                return "ignored:inconsistent"
            self.apply_charge_result(invoice_id, result)
            return "applied"
        if etype in ("payment_method.updated", "payment_method.automatically_updated"):
            return self.card_updated(obj, str(event.get("id")))
        if etype == "setup_intent.succeeded":
            # a card confirmed on the card-update page (kassa_purpose) or at checkout: the same work as
            # the page's own call, whichever comes first
            metadata = obj.get("metadata") or {}
            kind, key = (
                ("customer", "kassa_customer")
                if metadata.get("kassa_purpose")
                else ("subscription", "kassa_subscription")
            )
            target = metadata.get(key)
            if not isinstance(target, str) or not target:
                return "ignored:not a kassa setup"
            try:
                if kind == "customer":
                    self.update_card(target, obj["id"])
                else:
                    self.complete_checkout(target, obj["id"])
            except NotFound:
                return f"ignored:unknown {kind} {target}"
            except (InvalidInput, IllegalTransition) as error:
                return f"ignored:{error.message}"
            return "applied"
        return "ignored:unhandled type"


def entitlements_event(sub: Subscription, now: datetime, cause: str) -> DomainEvent:
    """Tells the storefront to read the customer's entitlements again (Stripe's
    ``entitlements.active_entitlement_summary.updated``)."""
    return DomainEvent.of("entitlements.active_entitlement_summary.updated", sub, now, cause=cause)


def with_balance(invoice: Invoice, customer: Customer) -> tuple[Invoice, Customer | None]:
    """Apply the customer's credit balance to the invoice; a negative total becomes credit. Returns the
    customer with its new balance when it moved (a balance in another currency is left alone)."""
    currency = invoice.currency
    if customer.balance_currency not in (None, currency) or (customer.balance == 0 and invoice.total >= 0):
        return invoice, None
    applied = apply_balance(Money(invoice.total, currency), Money(customer.balance, currency))
    after = applied.balance_after.amount
    updated = invoice.model_copy(
        update={"amount_due": applied.amount_due.amount, "starting_balance": customer.balance, "ending_balance": after}
    )
    return updated, customer.model_copy(update={"balance": after, "balance_currency": currency if after else None})


def attempt_pending(invoice: Invoice) -> bool:
    """An attempt was claimed but its outcome never recorded (to be re-sent under the same number)."""
    return invoice.attempt_count > 0 and invoice.attempt_outcome is None


__all__ = ["Billing", "CheckoutResult", "CollectResult", "attempt_pending"]
