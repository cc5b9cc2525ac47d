"""Use case: collecting an invoice — one PaymentIntent per attempt — and applying its outcome,
whether it comes as Stripe's synchronous answer or as a webhook, exactly once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from kassa.domain.customer import Customer
from kassa.domain.errors import Conflict, InvalidInput
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import Invoice, InvoiceStatus, PaymentError
from kassa.domain.money import Money
from kassa.domain.payment_methods import (
    SettlementEffect,
    SettlementNews,
    may_charge,
    renewal_notice_days,
    settlement_effect,
)
from kassa.domain.subscription import (
    Status,
    Subscription,
    after_invoice_paid,
    after_payment_failed,
    after_payment_processing,
)
from kassa.services.context import BillingContext
from kassa.services.customers import confirmed_payment_method, save_payment_method
from kassa.services.ports import ChargeResult, ChargeStatus, MandateAcceptance, PaymentIntentInfo

if TYPE_CHECKING:
    from kassa.domain.settings import MerchantSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectResult:
    invoice: Invoice | None
    subscription: Subscription | None
    charge: ChargeResult | None

    @property
    def status(self) -> str:
        return self.invoice.status.value if self.invoice else "no_invoice"


def collect(
    ctx: BillingContext,
    invoice: Invoice,
    customer: Customer | None = None,
    *,
    trigger: str | None = None,
    off_session: bool = True,
    _claims_left: int = 3,
) -> CollectResult:
    """Charge an open invoice and apply the result, never charging one attempt twice.

    ``off_session=False`` when the customer is present (checkout completion, the card page): a
    card that asks for 3-D Secure then answers ``requires_action`` with the client secret
    Stripe.js confirms; renewals, dunning and merchant actions charge off-session.

    An attempt whose outcome never arrived (Stripe unreachable, a crash between the call and
    the write) is sent again under the same attempt number, so Stripe's idempotency key
    replays the first answer. A new attempt is made only for a first charge or when the
    caller brings a new trigger (a newly confirmed card; retries belong to dunning).
    """
    if not invoice.collectable:
        return CollectResult(invoice, ctx.subscription_of(invoice.subscription), None)
    customer = customer or ctx.store.get_customer(invoice.customer)
    if invoice.amount_due == 0:
        return apply_paid(ctx, invoice, payment_intent=None)
    if customer.default_payment_method is None or customer.stripe_customer_id is None:
        result = ChargeResult(ChargeStatus.DECLINED, None, code="no_payment_method", message="no card on file")
        return apply_failure(ctx, invoice, result)
    if not may_charge(invoice.attempt_outcome):
        # a bank debit of this invoice is with the bank: never a second charge while it is processing
        return CollectResult(invoice, ctx.subscription_of(invoice.subscription), None)
    if invoice.attempt_pending:
        return charge(ctx, invoice, customer, invoice.attempt_count, off_session=off_session)
    if invoice.attempt_count > 0 and (trigger is None or trigger == invoice.attempt_trigger):
        return CollectResult(invoice, ctx.subscription_of(invoice.subscription), None)  # this attempt has its outcome
    # claim the attempt first: two concurrent collectors cannot both charge
    attempt = invoice.attempt_count + 1
    claim = {"attempt_count": attempt, "attempt_outcome": None, "attempt_trigger": trigger, "attempted_at": ctx.now()}
    try:
        invoice = ctx.store.save_invoice(invoice.model_copy(update=claim))
    except Conflict:
        current = ctx.store.get_invoice(invoice.id)
        if current.attempt_count < attempt and _claims_left > 0:
            # another write (a webhook's record, a reminder's flag) changed the invoice, but nobody
            # claimed this attempt: decide again on what is stored now
            return collect(
                ctx, current, customer, trigger=trigger, off_session=off_session, _claims_left=_claims_left - 1
            )
        return CollectResult(current, ctx.subscription_of(current.subscription), None)
    return charge(ctx, invoice, customer, attempt, off_session=off_session)


def collect_new(ctx: BillingContext, invoice: Invoice, payer: Customer) -> CollectResult:
    """Collect an invoice just written with its first attempt claimed in the same write."""
    if invoice.amount_due == 0 or payer.default_payment_method is None or payer.stripe_customer_id is None:
        return collect(ctx, invoice, payer)
    return charge(ctx, invoice, payer, invoice.attempt_count)


def charge(
    ctx: BillingContext, invoice: Invoice, customer: Customer, attempt: int, *, off_session: bool = True
) -> CollectResult:
    method = customer.default_payment_method
    assert method is not None and customer.stripe_customer_id is not None
    result = ctx.gateway.charge(
        customer=customer.stripe_customer_id,
        payment_method=method.payment_method_id,
        amount=Money(invoice.amount_due, invoice.currency),
        invoice_id=invoice.id,
        attempt=attempt,
        description=invoice.charge_description,
        off_session=off_session,
        payment_method_type=method.type.value,
        mandate=method.mandate.stripe_mandate if method.mandate else None,
    )
    return apply_charge_result(ctx, invoice.id, result)


def open_payment_intent(ctx: BillingContext, invoice: Invoice | None) -> PaymentIntentInfo | None:
    """The invoice's PaymentIntent while it waits for the customer to authenticate (3-D Secure):
    what Stripe.js's ``confirmCardPayment`` confirms. None when there is nothing to confirm."""
    if invoice is None or not invoice.collectable or invoice.attempt_outcome != "requires_action":
        return None
    if not invoice.payment_intent:
        return None
    intent = ctx.gateway.get_payment_intent(invoice.payment_intent)
    if intent.invoice not in (None, invoice.id) or not intent.awaiting_customer or not intent.client_secret:
        return None
    return intent


def confirm_payment(ctx: BillingContext, invoice_id: str, payment_intent_id: str) -> CollectResult:
    """After Stripe.js confirmed an invoice's PaymentIntent (3-D Secure at checkout or on the card
    page): read it from Stripe and apply its outcome — once, whether this call or the
    ``payment_intent.succeeded`` webhook comes first. Nothing is charged here."""
    intent = ctx.gateway.get_payment_intent(payment_intent_id)
    if intent.invoice != invoice_id:
        raise InvalidInput("this PaymentIntent pays another invoice", param="payment_intent")
    invoice = ctx.store.get_invoice(invoice_id)
    if invoice.payment_intent not in (None, payment_intent_id) and intent.result.status is not ChargeStatus.SUCCEEDED:
        # news of an older attempt's PaymentIntent that did not pay: the invoice has moved on
        return CollectResult(invoice, ctx.subscription_of(invoice.subscription), intent.result)
    return apply_charge_result(ctx, invoice_id, intent.result)


def apply_charge_result(
    ctx: BillingContext, invoice_id: str, result: ChargeResult, *, republish: bool = False
) -> CollectResult:
    """Apply a PaymentIntent outcome (synchronous answer or webhook) to the invoice, once, by the
    settlement state machine (``kassa.domain.payment_methods.settlement_effect``): duplicates and
    reordered reports (``processing`` after ``failed``, a failure of an older attempt) change nothing.
    ``republish``: a success found already applied publishes the invoice's events again
    (``republish_paid``), as it does after a Conflict of this call's own write."""
    news = {
        ChargeStatus.SUCCEEDED: SettlementNews.SUCCEEDED,
        ChargeStatus.PROCESSING: SettlementNews.PROCESSING,
    }.get(result.status, SettlementNews.FAILED)
    conflicted = republish  # or a write of ours answered Conflict: a DynamoDB timeout may have committed it
    for _ in range(4):
        invoice = ctx.store.get_invoice(invoice_id)
        effect = settlement_effect(
            collectable=invoice.collectable,
            attempt_count=invoice.attempt_count,
            attempt_outcome=invoice.attempt_outcome,
            news=news,
            news_attempt=result.attempt,
        )
        try:
            if result.status is ChargeStatus.SUCCEEDED:
                return apply_paid(ctx, invoice, result.payment_intent, republish=conflicted)
            if effect is SettlementEffect.RECORD_PROCESSING:
                return apply_processing(ctx, invoice, result)
            if result.status is ChargeStatus.PROCESSING:
                return CollectResult(invoice, ctx.subscription_of(invoice.subscription), result)
            return apply_failure(ctx, invoice, result)
        except Conflict:
            conflicted = True
            continue
    raise Conflict(f"invoice {invoice_id} kept changing; retry")


def apply_processing(ctx: BillingContext, invoice: Invoice, result: ChargeResult) -> CollectResult:
    """A bank debit is with the bank (SEPA, ACH: days): the invoice stays open with the attempt
    ``processing`` — nothing is charged again until it settles — and the subscription's access
    follows ``settings.bank_debits.access_while_processing``."""
    now = ctx.now()
    processing = invoice.model_copy(
        update={"attempt_outcome": "processing", "payment_intent": result.payment_intent, "next_dunning_at": None}
    )
    sub = ctx.subscription_of(invoice.subscription)
    new_sub = None
    if sub is not None:
        settings = ctx.store.get_settings()
        new_sub = after_payment_processing(
            sub,
            invoice.id,
            now,
            settings.bank_debits.access_while_processing,
            reminder_days(settings, ctx.store.get_customer(invoice.customer)),
        )
    saved_inv, saved_sub = ctx.store.save_invoice_and_subscription(processing, new_sub)
    events = [DomainEvent.of("invoice.payment_processing", saved_inv, now, cause=f"processing:{result.payment_intent}")]
    if saved_sub is not None and sub is not None:
        previous: dict[str, object] = {"status": sub.status.value}
        events.append(
            DomainEvent.of(
                "customer.subscription.updated", saved_sub, now, cause=f"processing:{invoice.id}", previous=previous
            )
        )
        if saved_sub.entitlements_suspended != sub.entitlements_suspended:
            events.append(entitlements_event(saved_sub, now, cause=f"processing:{invoice.id}"))
    ctx.emit(*events)
    return CollectResult(saved_inv, saved_sub or sub, result)


def reminder_days(settings: MerchantSettings, customer: Customer | None) -> int | None:
    """Days before a renewal that its reminder (and a SEPA customer's pre-notification) goes out."""
    method = customer.default_payment_method if customer is not None else None
    return renewal_notice_days(
        settings.emails.upcoming_renewal_days,
        method.type if method else None,
        method.mandate if method else None,
        pre_notification=settings.emails.pre_notification,
        default_days=settings.bank_debits.pre_notification_days,
    )


def entitlements_event(sub: Subscription, now: datetime, cause: str) -> DomainEvent:
    """Tells the storefront to read the customer's entitlements again (Stripe's
    ``entitlements.active_entitlement_summary.updated``)."""
    return DomainEvent.of("entitlements.active_entitlement_summary.updated", sub, now, cause=cause)


def paid_events(invoice: Invoice, now: datetime) -> list[DomainEvent]:
    """What a paid invoice publishes (deterministic ids: a republished one is deduplicated)."""
    return [
        DomainEvent.of("invoice.paid", invoice, now, cause="paid"),
        DomainEvent.of("invoice.payment_succeeded", invoice, now, cause="paid"),
    ]


def republish_paid(ctx: BillingContext, invoice: Invoice) -> None:
    """Publish a paid invoice's events again. The write that paid it and the publish are two steps:
    a function that died between them (or whose write timed out after it committed, so that
    botocore's retry failed its condition) left the invoice paid and its events never sent — no
    receipt, the overdue ladder never stepped back. The run that retries it (a redelivered message,
    the storefront asking again) publishes them again; consumers take each event id once (the
    receipt is claimed in the outbox)."""
    if invoice.status is InvoiceStatus.PAID and invoice.paid_at is not None:
        ctx.emit(*paid_events(invoice, invoice.paid_at))


def apply_paid(
    ctx: BillingContext, invoice: Invoice, payment_intent: str | None, *, republish: bool = False
) -> CollectResult:
    """``republish``: the caller's own write of this payment may have committed without its events
    going out (it answered Conflict): a paid invoice found now publishes them again."""
    sub = ctx.subscription_of(invoice.subscription)
    if invoice.status is InvoiceStatus.PAID:
        if republish and payment_intent is not None and payment_intent == invoice.payment_intent:
            republish_paid(ctx, invoice)
        return CollectResult(invoice, sub, None)  # duplicate: one effect
    if invoice.status is InvoiceStatus.VOID:
        log.warning("payment for void invoice %s (intent %s): needs a refund", invoice.id, payment_intent)
        return CollectResult(invoice, sub, None)
    now = ctx.now()
    paid = invoice.transition(InvoiceStatus.PAID, now).model_copy(
        update={"payment_intent": payment_intent, "attempt_outcome": "succeeded"}
    )
    new_sub = None
    first_payment = sub is not None and sub.status is Status.INCOMPLETE
    settings = ctx.store.get_settings() if paid.gets_number_when_paid or first_payment else None
    if sub is not None:
        days = (
            reminder_days(settings, ctx.store.get_customer(invoice.customer))
            if settings is not None and first_payment
            else None
        )
        new_sub = after_invoice_paid(sub, invoice.id, now, days)
    if paid.gets_number_when_paid and settings is not None:  # a checkout's first invoice: numbered as it is paid
        saved_inv, saved_sub = ctx.store.finalize_invoice(paid, settings.invoice_prefix, new_sub)
    else:
        saved_inv, saved_sub = ctx.store.save_invoice_and_subscription(paid, new_sub)
    events = paid_events(saved_inv, now)
    if saved_sub is not None and sub is not None:
        previous = {"status": sub.status.value}
        if sub.overdue_state is not None:
            previous["overdue_state"] = sub.overdue_state
        events.append(
            DomainEvent.of(
                "customer.subscription.updated", saved_sub, now, cause=f"paid:{invoice.id}", previous=previous
            )
        )
        if sub.entitlements_suspended and not saved_sub.entitlements_suspended:
            events.append(entitlements_event(saved_sub, now, cause=f"paid:{invoice.id}"))
    ctx.emit(*events)
    return CollectResult(saved_inv, saved_sub or sub, None)


def apply_failure(ctx: BillingContext, invoice: Invoice, result: ChargeResult) -> CollectResult:
    sub = ctx.subscription_of(invoice.subscription)
    if not invoice.collectable:
        return CollectResult(invoice, sub, result)  # paid or void already: a late failure changes nothing
    now = ctx.now()
    previous = invoice.last_payment_error
    if result.attempt is not None and result.attempt < invoice.attempt_count:
        return CollectResult(invoice, sub, result)  # a stale attempt's news
    if previous is not None and result.attempt is not None and previous.attempt == result.attempt:
        # the same attempt reported twice (synchronous answer and webhook): one effect; only
        # complete what the first report lacked
        if (
            invoice.attempt_outcome == "requires_action"
            and result.status is ChargeStatus.DECLINED
            and result.code != "authentication_required"  # Stripe's off-session report of the same ask
            and result.payment_intent in (None, invoice.payment_intent, previous.payment_intent)
        ):
            # the customer was asked for 3-D Secure and it failed: the attempt's outcome is now a
            # decline (no new email: the authentication request already went out for this attempt)
            failed_auth = previous.model_copy(
                update={
                    "code": result.code or "payment_intent_authentication_failure",
                    "decline_code": result.decline_code,
                    "message": result.message,
                    "payment_intent": result.payment_intent or previous.payment_intent,
                }
            )
            invoice = ctx.store.save_invoice(
                invoice.model_copy(update={"last_payment_error": failed_auth, "attempt_outcome": "declined"})
            )
        elif previous.payment_intent is None and result.payment_intent:
            filled = previous.model_copy(update={"payment_intent": result.payment_intent})
            invoice = ctx.store.save_invoice(
                invoice.model_copy(update={"last_payment_error": filled, "payment_intent": result.payment_intent})
            )
        return CollectResult(invoice, sub, result)
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
            "next_dunning_at": now if invoice.dunned_on_failure else None,
        }
    )
    new_sub = after_payment_failed(sub, invoice.id, now) if sub is not None else None
    saved_inv, saved_sub = ctx.store.save_invoice_and_subscription(failed, new_sub)
    kind = (
        "invoice.payment_action_required" if result.status is ChargeStatus.REQUIRES_ACTION else "invoice.payment_failed"
    )
    events = [DomainEvent.of(kind, saved_inv, now, cause=f"attempt:{saved_inv.attempt_count}:{result.payment_intent}")]
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
    ctx.emit(*events)
    return CollectResult(saved_inv, saved_sub or sub, result)


def stale_setup_intent(invoices: list[Invoice], setup_intent_id: str, created: datetime | None) -> bool:
    """A late ``setup_intent.succeeded`` (a new event id for a SetupIntent used long before): the
    SetupIntent already started an attempt of an open invoice, or was created before its last attempt
    (a card confirmed before that attempt was already tried by it). It neither charges nor moves a
    retry schedule."""
    for invoice in invoices:
        if not invoice.retried_on_new_card or invoice.attempt_count == 0:
            continue
        if invoice.attempt_trigger == setup_intent_id:
            return True
        last = invoice.attempted_at or invoice.finalized_at or invoice.created
        if created is not None and created <= last:
            return True
    return False


def save_confirmed_card(
    ctx: BillingContext, customer_id: str, setup_intent_id: str, *, acceptance: MandateAcceptance | None = None
) -> Customer:
    """The payment method of a SetupIntent the customer confirmed with Stripe.js (a card, or a bank
    account under its mandate) becomes their default (refused when the SetupIntent is another
    customer's). Used by ``update_card`` and the hosted invoice page."""
    customer = ctx.store.get_customer(customer_id)
    intent = ctx.gateway.get_setup_intent(setup_intent_id)
    if intent.customer not in (None, customer.stripe_customer_id) or intent.metadata.get("kassa_customer") not in (
        None,
        customer_id,
    ):
        raise InvalidInput("this SetupIntent belongs to another customer", param="setup_intent_id")
    return save_payment_method(
        ctx, customer_id, confirmed_payment_method(intent), mandate=intent.mandate, acceptance=acceptance
    )


def update_card(
    ctx: BillingContext,
    customer_id: str,
    setup_intent_id: str,
    *,
    off_session: bool = True,
    acceptance: MandateAcceptance | None = None,
) -> tuple[Customer, list[CollectResult]]:
    """A customer saved a new card (card-update page or setup_intent.succeeded, whichever comes
    first): make it the default and retry the open invoices at once, one attempt per SetupIntent
    (uncollectible ones stay written off; a pending checkout's unnumbered first invoice is paid too).
    The page retries on-session (``off_session=False``: a card that asks for 3-D Secure is
    confirmed on the page); the webhook, with nobody there, off-session."""
    customer = save_confirmed_card(ctx, customer_id, setup_intent_id, acceptance=acceptance)
    results = [
        collect(ctx, invoice, customer, trigger=setup_intent_id, off_session=off_session)
        for invoice in ctx.store.list_open_invoices(customer_id)
        if invoice.retried_on_new_card  # open only: a written-off invoice stays written off
    ]
    return customer, results


def adopt_generated_sepa_debit(ctx: BillingContext, invoice_id: str, payment_intent: str) -> Customer | None:
    """An invoice paid by iDEAL or Bancontact with ``setup_future_usage``: the ``sepa_debit``
    PaymentMethod that payment generated (with its mandate) becomes the customer's default, so the
    renewals are debited by SEPA Direct Debit (Stripe: ``generated_sepa_debit``). Idempotent: saving the
    same method again changes nothing. None when the payment generated none."""
    invoice = ctx.store.find_invoice(invoice_id)
    if invoice is None:
        return None
    generated = ctx.gateway.generated_sepa_debit(payment_intent)
    if generated is None:
        return None
    customer = save_payment_method(ctx, invoice.customer, generated.payment_method, mandate=generated.mandate)
    for _ in range(4):  # the mark is written under the version of a read taken inside the loop
        method = customer.default_payment_method
        if (
            method is None
            or method.payment_method_id != generated.payment_method
            or method.mandate is None
            or method.mandate.generated_from is not None
        ):
            return customer
        marked = method.model_copy(
            update={"mandate": method.mandate.model_copy(update={"generated_from": generated.source_type})}
        )
        try:
            return ctx.store.save_customer(customer.model_copy(update={"default_payment_method": marked}))
        except Conflict:
            customer = ctx.store.get_customer(invoice.customer)
    raise Conflict(f"customer {invoice.customer} kept changing; retry")
