"""Use case: customers and their cards (the card itself lives in Stripe; kassa keeps its summary)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from kassa.domain.customer import (
    Address,
    Customer,
    PaymentMethodSummary,
    email_key,
    ensure_valid_peppol_id,
    ensure_valid_tax_id,
)
from kassa.domain.customer import update_customer as apply_customer_update
from kassa.domain.errors import AlreadyExists, Conflict, CustomerExists, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.ids import new_id
from kassa.domain.payment_methods import accepted_mandate, offered_types
from kassa.domain.subscription import TERMINAL
from kassa.services.context import RETRIES, BillingContext
from kassa.services.ports import MandateAcceptance, SetupIntentInfo


def create_customer(
    ctx: BillingContext,
    email: str,
    name: str | None,
    address: Address,
    locale: str = "en",
    tax_id: str | None = None,
    tax_exempt: bool = False,
    peppol_id: str | None = None,
) -> Customer:
    if tax_id:
        ensure_valid_tax_id(tax_id, address.country)
    if peppol_id:
        ensure_valid_peppol_id(peppol_id)
    if ctx.store.find_customer_by_email(email) is not None:
        raise AlreadyExists(f"a customer with email {email} already exists", param="email")
    customer = Customer(
        id=new_id("cus", 14),
        email=email,
        name=name,
        address=address,
        preferred_locale=locale,
        tax_id=tax_id,
        tax_exempt=tax_exempt,
        peppol_id=peppol_id or None,
        created=ctx.now(),
    )
    customer = customer.model_copy(
        update={
            "stripe_customer_id": ctx.gateway.create_customer(
                email=email, name=name, address=address, kassa_id=customer.id
            )
        }
    )
    ctx.store.create_customer(customer)
    ctx.emit(DomainEvent.of("customer.created", customer, customer.created, cause="create"))
    return customer


def customer_for_checkout(
    ctx: BillingContext,
    customer_id: str | None,
    email: str | None,
    name: str | None,
    address: Address | None,
    locale: str,
    tax_id: str | None = None,
    tax_exempt: bool = False,
) -> Customer:
    if customer_id:
        return ctx.store.get_customer(customer_id)
    if not email or address is None:
        raise InvalidInput("give customer_id or customer.email and customer.address", param="customer")
    ensure_new_customer_email(ctx, email)
    try:
        return create_customer(ctx, email, name, address, locale, tax_id, tax_exempt)
    except AlreadyExists:  # a concurrent checkout created it
        raise _customer_exists() from None


def _customer_exists() -> CustomerExists:
    return CustomerExists(
        "a customer with this email already exists; a checkout for an existing customer passes customer_id "
        "(from the merchant's back end, which knows who is signed in), never the email alone",
        param="customer.email",
    )


def ensure_new_customer_email(ctx: BillingContext, email: str) -> None:
    """A checkout with ``customer: {email…}`` makes a new customer: an email is no proof of identity,
    so an existing customer is never found (and shown, or charged on a new card) by it."""
    if ctx.store.find_customer_by_email(email) is not None:
        raise _customer_exists()


#: the fields the Stripe customer mirrors
_STRIPE_FIELDS = frozenset({"email", "name", "address", "preferred_locale"})


def update_customer(
    ctx: BillingContext, customer_id: str, changes: dict[str, Any] | Callable[[Customer], dict[str, Any]]
) -> Customer:
    """``POST /v1/customers/{id}``: change email (unique, case-insensitively: the email lookup moves
    with it), name, address, preferred_locale, tax_id or tax_exempt; the Stripe customer is updated
    too and ``customer.updated`` carries the previous values. Invoices finalized from now on are taxed
    from the new address and tax id; finalized ones keep theirs. Only the fields named in ``changes``
    are written, under the version read (a write that loses to a concurrent one is retried from a
    fresh read); ``changes`` may be computed from that read (a callable: the portal's form, whose
    address keeps the state on file), so a concurrent change of another field is never overwritten."""
    for _ in range(RETRIES):
        customer = ctx.store.get_customer(customer_id)
        wanted = changes(customer) if callable(changes) else changes
        updated, previous = apply_customer_update(customer, wanted)
        if "email" in previous and email_key(updated.email) != email_key(customer.email):
            owner = ctx.store.find_customer_by_email(updated.email)
            if owner is not None and owner.id != customer.id:
                raise AlreadyExists(f"another customer has the email {updated.email}", param="email")
        try:
            if not previous:
                saved = customer
            elif "email" in previous:
                saved = ctx.store.change_customer_email(updated, customer.email)
            else:
                saved = ctx.store.save_customer(updated)
        except AlreadyExists:
            raise
        except Conflict:
            continue
        if saved.stripe_customer_id is not None and _STRIPE_FIELDS & set(wanted):
            # the whole state, also when nothing changed here: a retry after a Stripe outage repairs it
            ctx.gateway.update_customer(
                customer=saved.stripe_customer_id,
                email=saved.email,
                name=saved.name,
                address=saved.address,
                preferred_locale=saved.preferred_locale,
                kassa_id=saved.id,
            )
        if previous:
            cause = f"update:{saved.version}"
            ctx.emit(DomainEvent.of("customer.updated", saved, ctx.now(), cause=cause, previous=previous))
        return saved
    raise Conflict("the customer kept changing; retry")


def save_payment_method(
    ctx: BillingContext,
    customer_id: str,
    payment_method: str,
    *,
    mandate: str | None = None,
    acceptance: MandateAcceptance | None = None,
) -> Customer:
    """Make the card or bank account the customer's default: attached once, then written under the
    version of a read taken inside the retry loop (a concurrent change of the customer is kept). A bank
    account keeps its mandate: reference (from Stripe), when it was accepted (kassa's clock, unless
    Stripe recorded it) and the IP address and user agent of the acceptance, when the caller knows them
    (a later call that brings them completes a mandate saved by the webhook)."""
    method = None
    for _ in range(RETRIES):
        customer = ctx.store.get_customer(customer_id)
        current = customer.default_payment_method
        if current is not None and current.payment_method_id == payment_method:
            completed = with_acceptance(current, acceptance, ctx.now())
            if completed == current:
                return customer
            update, cause = completed, f"pm:{payment_method}:mandate"
        else:
            assert customer.stripe_customer_id is not None
            if method is None:
                method = with_acceptance(
                    ctx.gateway.attach_payment_method(
                        payment_method=payment_method, customer=customer.stripe_customer_id, mandate=mandate
                    ),
                    acceptance,
                    ctx.now(),
                )
            update, cause = method, f"pm:{payment_method}"
        try:
            saved = ctx.store.save_customer(customer.model_copy(update={"default_payment_method": update}))
        except Conflict:
            continue
        ctx.emit(DomainEvent.of("customer.updated", saved, ctx.now(), cause=cause))
        return saved
    raise Conflict("the customer kept changing; retry")


def with_acceptance(
    method: PaymentMethodSummary, acceptance: MandateAcceptance | None, now: datetime
) -> PaymentMethodSummary:
    """A bank account's mandate with when and how it was accepted (a card has no mandate)."""
    mandate = method.mandate
    if mandate is None:
        return method
    accepted = accepted_mandate(
        now=mandate.accepted_at or now,
        reference=mandate.reference,
        ip_address=mandate.ip_address or (acceptance.ip_address if acceptance else None),
        user_agent=mandate.user_agent or (acceptance.user_agent if acceptance else None),
        stripe_mandate=mandate.stripe_mandate,
        url=mandate.url,
        generated_from=mandate.generated_from,
    )
    return method if accepted == mandate else method.model_copy(update={"mandate": accepted})


def confirmed_payment_method(intent: SetupIntentInfo) -> str:
    """The card or bank account of a SetupIntent the customer confirmed with Stripe.js. A bank debit's
    SetupIntent may stay ``processing`` while the account is verified (ACH): it is usable once Stripe
    answers ``succeeded``."""
    if intent.status != "succeeded" or not intent.payment_method:
        raise InvalidInput(
            f"the SetupIntent is {intent.status}; confirm the payment method with Stripe.js first",
            param="setup_intent_id",
        )
    return intent.payment_method


def offered_payment_method_types(ctx: BillingContext, customer_id: str) -> tuple[str, ...]:
    """What the card page offers the customer: the merchant's ``payment_method_types`` that can pay
    the currency of their subscriptions (cards always can)."""
    settings = ctx.store.get_settings()
    subs = [s for s in ctx.store.list_customer_subscriptions(customer_id) if s.status not in TERMINAL]
    currency = subs[0].currency if subs else settings.default_currency
    try:
        return tuple(t.value for t in offered_types(settings.payment_method_types, [], currency))
    except InvalidInput:
        return ("card",)


def card_setup_intent(
    ctx: BillingContext,
    customer_id: str,
    purpose: str,
    *,
    customer: Customer | None = None,
    offered: tuple[str, ...] | None = None,
) -> SetupIntentInfo:
    """A SetupIntent for the customer's card-update page (a card, or a bank account where offered).
    ``customer``, ``offered``: the customer and ``offered_payment_method_types`` when the caller read
    them for this request already (not read again)."""
    customer = customer if customer is not None else ctx.store.get_customer(customer_id)
    if customer.stripe_customer_id is None:
        raise InvalidInput("this customer has no Stripe customer", param="customer")
    return ctx.gateway.create_setup_intent(
        customer=customer.stripe_customer_id,
        metadata={"kassa_customer": customer_id, "kassa_purpose": purpose},
        payment_method_types=offered if offered is not None else offered_payment_method_types(ctx, customer_id),
    )


def card_updated(ctx: BillingContext, payment_method: dict[str, Any], event_id: str) -> str:
    """payment_method.updated / payment_method.automatically_updated (the card networks' account
    updater): refresh the stored brand, last4 and expiry of the customer's default card."""
    pm_id, stripe_customer = payment_method.get("id"), payment_method.get("customer")
    card = payment_method.get("card")
    if not isinstance(pm_id, str) or not isinstance(stripe_customer, str) or not isinstance(card, dict):
        return "ignored:not a card of a customer"
    customer_id = ctx.gateway.kassa_customer_of(stripe_customer)
    if customer_id is None:
        return "ignored:not a kassa customer"
    for _ in range(RETRIES):
        try:
            customer = ctx.store.get_customer(customer_id)
        except NotFound:
            return f"ignored:unknown customer {customer_id}"
        current = customer.default_payment_method
        if current is None or current.payment_method_id != pm_id or current.is_bank_account:
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
            saved = ctx.store.save_customer(customer.model_copy(update={"default_payment_method": updated}))
        except Conflict:
            continue
        ctx.emit(DomainEvent.of("customer.updated", saved, ctx.now(), cause=event_id))
        return "applied"
    raise Conflict("the customer kept changing; retry")
