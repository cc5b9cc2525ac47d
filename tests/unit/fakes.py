"""In-memory test doubles for kassa's ports: no network, no AWS, no Stripe.

``FakeStore`` is ``kassa.adapters.memory.MemoryStore``: the BillingStore contract suite
(tests/contract) runs against it and the DynamoDB adapter alike (optimistic versions, gapless
numbering, the sparse due index, write-once webhook records), so service tests exercise the same
rules the real store enforces.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

from kassa.adapters.memory import MemoryOutbox
from kassa.adapters.memory import MemoryStore as FakeStore
from kassa.adapters.memory import shard_of as shard_of  # re-exported for the unit tests
from kassa.domain.catalog import Price, Product, Recurring
from kassa.domain.customer import Address, CardSummary, PaymentMethodSummary
from kassa.domain.errors import InvalidInput, NotFound, PaymentProviderError, Unavailable
from kassa.domain.events import DomainEvent
from kassa.domain.money import Money
from kassa.domain.payment_methods import Mandate, PaymentMethodKind
from kassa.domain.periods import Interval
from kassa.services.catalog import create_price, create_product
from kassa.services.checkout import CheckoutResult, complete_checkout, start_checkout
from kassa.services.context import BillingContext
from kassa.services.ports import (
    ChargeResult,
    ChargeStatus,
    GeneratedSepaDebit,
    OutgoingEmail,
    PaymentIntentInfo,
    RefundInfo,
    SetupIntentInfo,
    intent_status,
)
from kassa_local.memory_gateway import payment_intent_event


# ---------------------------------------------------------------------------------------- clock
class FixedClock:
    """A clock that only moves when told to (never backwards)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("the clock never goes backwards")
        self._now += step
        return self._now

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None or when < self._now:
            raise ValueError("set an aware datetime, not in the past")
        self._now = when.astimezone(UTC)
        return self._now


# ---------------------------------------------------------------------------------------- events
class ListPublisher:
    """Collects every published DomainEvent, in order."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def publish(self, events: list[DomainEvent]) -> None:
        self.events.extend(events)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of_type(self, event_type: str) -> list[DomainEvent]:
        return [e for e in self.events if e.type == event_type]

    def clear(self) -> None:
        self.events.clear()


class ListQueue:
    """A WorkQueue that keeps what was sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)


# ---------------------------------------------------------------------------------------- gateway
def _mandate_of(payment_method: str | None) -> str | None:
    """The Mandate Stripe makes when a bank account's SetupIntent is confirmed."""
    if payment_method and payment_method.startswith(("pm_sepa", "pm_usbank")):
        return f"mandate_{payment_method}"
    return None


OutcomeKind = Literal["succeed", "decline", "requires_action", "processing", "error", "lost_success"]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


@dataclass
class ChargeCall:
    customer: str
    payment_method: str
    amount: Money
    invoice_id: str
    attempt: int
    description: str
    result: ChargeResult | None = None
    off_session: bool = True
    payment_method_type: str = "card"


@dataclass
class FakeGateway:
    """A PaymentGateway that records calls; charge outcomes are configured per payment method.

    Outcomes: ``succeed`` (default), ``decline`` (with code / decline_code), ``requires_action``,
    ``processing``, ``error`` (PaymentProviderError, nothing charged) and ``lost_success`` (Stripe
    charged the card but the answer was lost: PaymentProviderError). Like Stripe, one idempotency key
    per (invoice, attempt): a repeated key replays the first result without charging again.
    """

    publishable_key: str = "pk_test_fake"
    setup_payment_method: str | None = "pm_card_visa"  # created SetupIntents are confirmed with this card
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    charge_calls: list[ChargeCall] = field(default_factory=list)
    setup_intents: dict[str, SetupIntentInfo] = field(default_factory=dict)
    stripe_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotent: dict[tuple[str, int], ChargeResult] = field(default_factory=dict)
    succeeded_intents: list[tuple[str, str]] = field(default_factory=list)  # (invoice_id, payment_intent)
    refunds: dict[str, RefundInfo] = field(default_factory=dict)  # by credit note (the idempotency key)
    payment_intents: dict[str, PaymentIntentInfo] = field(default_factory=dict)  # every PaymentIntent made
    redirect_sources: dict[str, str] = field(default_factory=dict)  # iDEAL / Bancontact PaymentIntents
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- configuration
    def will(self, payment_method: str, *outcomes: Outcome) -> None:
        """Outcomes for successive charges of this payment method (the last one repeats)."""
        self.outcomes[payment_method] = list(outcomes)

    def will_succeed(self, payment_method: str) -> None:
        self.will(payment_method, Outcome("succeed"))

    def will_decline(
        self, payment_method: str, code: str = "card_declined", decline_code: str | None = "insufficient_funds"
    ) -> None:
        self.will(payment_method, Outcome("decline", code, decline_code, "Your card has insufficient funds."))

    def will_require_action(self, payment_method: str) -> None:
        self.will(payment_method, Outcome("requires_action", "authentication_required"))

    def _next_outcome(self, payment_method: str) -> Outcome:
        queue = self.outcomes.get(payment_method)
        if not queue:
            return Outcome("succeed")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._seq):06d}"

    # --- port
    def create_customer(self, *, email: str, name: str | None, address: Address, kassa_id: str) -> str:
        self.calls.append(("create_customer", {"email": email, "kassa_id": kassa_id}))
        customer_id = self._id("cus")
        self.stripe_customers[customer_id] = {"email": email, "name": name, "kassa_id": kassa_id}
        return customer_id

    def update_customer(
        self,
        *,
        customer: str,
        email: str,
        name: str | None,
        address: Address,
        preferred_locale: str,
        kassa_id: str,
    ) -> None:
        self.calls.append(("update_customer", {"customer": customer, "email": email, "kassa_id": kassa_id}))
        if customer not in self.stripe_customers:
            raise NotFound(f"No such customer: '{customer}'", param="customer")
        self.stripe_customers[customer].update(
            {"email": email, "name": name, "address": address, "preferred_locales": [preferred_locale]}
        )

    def kassa_customer_of(self, customer: str) -> str | None:
        self.calls.append(("kassa_customer_of", {"customer": customer}))
        found = self.stripe_customers.get(customer)
        return found["kassa_id"] if found else None

    def create_setup_intent(
        self, *, customer: str, metadata: dict[str, str], payment_method_types: Sequence[str] = ("card",)
    ) -> SetupIntentInfo:
        self.calls.append(
            (
                "create_setup_intent",
                {"customer": customer, "metadata": dict(metadata), "payment_method_types": list(payment_method_types)},
            )
        )
        intent_id = self._id("seti")
        confirmed = self.setup_payment_method is not None
        info = SetupIntentInfo(
            id=intent_id,
            client_secret=f"{intent_id}_secret_x",
            status="succeeded" if confirmed else "requires_payment_method",
            payment_method=self.setup_payment_method,
            customer=customer,
            metadata=dict(metadata),
            payment_method_types=tuple(payment_method_types),
            mandate=_mandate_of(self.setup_payment_method),
        )
        self.setup_intents[intent_id] = info
        return info

    def confirm_setup_intent(self, setup_intent_id: str, payment_method: str) -> SetupIntentInfo:
        """What Stripe.js does in the browser."""
        info = replace(
            self.setup_intents[setup_intent_id],
            status="succeeded",
            payment_method=payment_method,
            mandate=_mandate_of(payment_method),
        )
        self.setup_intents[setup_intent_id] = info
        return info

    def get_setup_intent(self, setup_intent_id: str) -> SetupIntentInfo:
        self.calls.append(("get_setup_intent", {"id": setup_intent_id}))
        if setup_intent_id not in self.setup_intents:
            raise NotFound(f"No such setupintent: '{setup_intent_id}'", param="intent")
        return self.setup_intents[setup_intent_id]

    def attach_payment_method(
        self, *, payment_method: str, customer: str, mandate: str | None = None
    ) -> PaymentMethodSummary:
        self.calls.append(
            ("attach_payment_method", {"payment_method": payment_method, "customer": customer, "mandate": mandate})
        )
        if customer not in self.stripe_customers:
            raise InvalidInput(f"No such customer: '{customer}'", param="customer")
        if payment_method.startswith("pm_sepa"):  # a SEPA Direct Debit account (DE89 3704 0044 0532 0130 00)
            return PaymentMethodSummary(
                payment_method_id=payment_method,
                type=PaymentMethodKind.SEPA_DEBIT,
                last4="3000",
                bank_code="37040044",
                country="DE",
                mandate=Mandate(reference=f"MANDATE-{payment_method[-6:].upper()}", stripe_mandate=mandate),
            )
        if payment_method.startswith("pm_usbank"):  # an ACH account
            return PaymentMethodSummary(
                payment_method_id=payment_method,
                type=PaymentMethodKind.US_BANK_ACCOUNT,
                last4="6789",
                bank_name="STRIPE TEST BANK",
                bank_code="110000000",
                country="US",
                mandate=Mandate(reference=mandate, stripe_mandate=mandate),
            )
        return CardSummary(payment_method_id=payment_method, brand="visa", last4="4242", exp_month=12, exp_year=2034)

    def charge(
        self,
        *,
        customer: str,
        payment_method: str,
        amount: Money,
        invoice_id: str,
        attempt: int,
        description: str,
        off_session: bool = True,
        payment_method_type: str = "card",
        mandate: str | None = None,
    ) -> ChargeResult:
        call = ChargeCall(
            customer,
            payment_method,
            amount,
            invoice_id,
            attempt,
            description,
            off_session=off_session,
            payment_method_type=payment_method_type,
        )
        self.charge_calls.append(call)
        self.calls.append(
            ("charge", {"invoice_id": invoice_id, "attempt": attempt, "amount": amount, "off_session": off_session})
        )
        key = (invoice_id, attempt)
        if key in self.idempotent:  # Stripe replays the first answer for a reused idempotency key
            call.result = self.idempotent[key]
            return call.result
        outcome = self._next_outcome(payment_method)
        if outcome.kind == "error":
            raise PaymentProviderError("Stripe unavailable: connection reset")
        intent = self._id("pi")
        if outcome.kind in ("succeed", "lost_success"):
            result = ChargeResult(ChargeStatus.SUCCEEDED, intent, client_secret=f"{intent}_secret_x")
            self.succeeded_intents.append((invoice_id, intent))
        elif outcome.kind == "processing":
            result = ChargeResult(ChargeStatus.PROCESSING, intent)
        elif outcome.kind == "requires_action":
            result = ChargeResult(
                ChargeStatus.REQUIRES_ACTION,
                intent,
                code=outcome.code or "authentication_required",
                client_secret=f"{intent}_secret_x",
            )
        else:
            result = ChargeResult(
                ChargeStatus.DECLINED,
                intent,
                code=outcome.code or "card_declined",
                decline_code=outcome.decline_code,
                message=outcome.message,
            )
        result = replace(result, attempt=attempt)  # the real gateway reports it (PaymentIntent metadata)
        self.idempotent[key] = result
        self.payment_intents[intent] = PaymentIntentInfo(
            id=intent,
            status=intent_status(result.status, off_session=off_session),
            client_secret=f"{intent}_secret_x",
            invoice=invoice_id,
            customer=customer,
            payment_method=payment_method,
            result=replace(result, client_secret=f"{intent}_secret_x"),
        )
        if outcome.kind == "lost_success":
            raise PaymentProviderError("Stripe unavailable: read timeout")
        call.result = result
        return result

    def refund(self, *, payment_intent: str, amount: Money, credit_note_id: str) -> str:
        return self.create_refund(payment_intent=payment_intent, amount=amount, credit_note_id=credit_note_id).id

    def create_refund(
        self, *, payment_intent: str, amount: Money, credit_note_id: str, reason: str | None = None
    ) -> RefundInfo:
        """Like Stripe: one refund per idempotency key (the credit note), replayed on a retry."""
        self.calls.append(("refund", {"payment_intent": payment_intent, "amount": amount, "reason": reason}))
        if credit_note_id not in self.refunds:
            self.refunds[credit_note_id] = RefundInfo(self._id("re"), "succeeded", amount.amount)
        return self.refunds[credit_note_id]

    def get_payment_intent(self, payment_intent: str) -> PaymentIntentInfo:
        self.calls.append(("get_payment_intent", {"payment_intent": payment_intent}))
        if payment_intent not in self.payment_intents:
            raise NotFound(f"No such payment_intent: '{payment_intent}'", param="intent")
        return self.payment_intents[payment_intent]

    def authenticate(self, payment_intent: str, *, success: bool = True) -> PaymentIntentInfo:
        """What Stripe.js's ``confirmCardPayment`` does in the browser: the customer passes (or fails)
        3-D Secure and the PaymentIntent is charged (or fails authentication)."""
        intent = self.payment_intents[payment_intent]
        assert intent.awaiting_customer, f"{payment_intent} is {intent.status}"
        if success:
            result = replace(intent.result, status=ChargeStatus.SUCCEEDED, code=None, decline_code=None, message=None)
            self.succeeded_intents.append((intent.invoice or "", payment_intent))
            status = "succeeded"
        else:
            result = replace(
                intent.result,
                status=ChargeStatus.DECLINED,
                code="payment_intent_authentication_failure",
                message="The provided PaymentMethod has failed authentication.",
            )
            status = "requires_payment_method"
        self.payment_intents[payment_intent] = replace(intent, status=status, result=result)
        return self.payment_intents[payment_intent]

    def settle(self, payment_intent: str, *, success: bool = True, code: str = "insufficient_funds") -> dict[str, Any]:
        """The bank settles a processing debit (days later): the PaymentIntent succeeds, or fails with
        the bank's return reason; returns the webhook Stripe sends for it."""
        intent = self.payment_intents[payment_intent]
        assert intent.status == "processing", f"{payment_intent} is {intent.status}"
        if success:
            result = replace(intent.result, status=ChargeStatus.SUCCEEDED)
            self.succeeded_intents.append((intent.invoice or "", payment_intent))
            self.payment_intents[payment_intent] = replace(intent, status="succeeded", result=result)
        else:
            result = replace(
                intent.result, status=ChargeStatus.DECLINED, code=code, decline_code=code, message="The debit failed."
            )
            self.payment_intents[payment_intent] = replace(intent, status="requires_payment_method", result=result)
        return self.intent_event(payment_intent)

    def create_redirect_payment(
        self,
        *,
        customer: str,
        source_type: str,
        amount: Money,
        invoice_id: str,
        attempt: int,
        return_url: str,
    ) -> PaymentIntentInfo:
        self.calls.append(
            (
                "create_redirect_payment",
                {"invoice_id": invoice_id, "source_type": source_type, "attempt": attempt, "return_url": return_url},
            )
        )
        intent = self._id("pi")
        info = PaymentIntentInfo(
            id=intent,
            status="requires_action",
            client_secret=f"{intent}_secret_x",
            invoice=invoice_id,
            customer=customer,
            payment_method=None,
            result=ChargeResult(ChargeStatus.REQUIRES_ACTION, intent, code="redirect", attempt=attempt),
            redirect_url=f"https://bank.example/{source_type}/{intent}",
        )
        self.payment_intents[intent] = info
        self.redirect_sources[intent] = source_type
        return info

    def generated_sepa_debit(self, payment_intent: str) -> GeneratedSepaDebit | None:
        self.calls.append(("generated_sepa_debit", {"payment_intent": payment_intent}))
        intent = self.payment_intents.get(payment_intent)
        if intent is None or intent.status != "succeeded":
            return None
        source = self.redirect_sources.get(payment_intent)
        if source is None:
            return None
        return GeneratedSepaDebit(f"pm_sepa_{payment_intent[-6:]}", f"mandate_{payment_intent[-6:]}", source)

    def intent_event(self, payment_intent: str) -> dict[str, Any]:
        """The ``payment_intent.succeeded`` / ``payment_intent.payment_failed`` event Stripe sends for it."""
        intent = self.payment_intents[payment_intent]
        obj: dict[str, Any] = {
            "id": intent.id,
            "object": "payment_intent",
            "status": intent.status,
            "client_secret": intent.client_secret,
            "customer": intent.customer,
            "payment_method": intent.payment_method,
            "metadata": {"kassa_invoice": intent.invoice, "kassa_attempt": str(intent.result.attempt or "")},
        }
        return payment_intent_event(obj, intent.result)

    def invoice_of_payment_intent(self, payment_intent: str) -> str | None:
        self.calls.append(("invoice_of_payment_intent", {"payment_intent": payment_intent}))
        return next((inv for inv, pi in self.succeeded_intents if pi == payment_intent), None)

    # --- inspection
    def charges_for(self, invoice_id: str) -> list[ChargeCall]:
        return [c for c in self.charge_calls if c.invoice_id == invoice_id]

    def call_names(self) -> list[str]:
        return [name for name, _ in self.calls]


# ---------------------------------------------------------------------------------------- wiring
START = datetime(2025, 1, 31, 10, 0, 0, tzinfo=UTC)  # an end-of-month anchor on purpose

FIXTURE_EVENT_ID = "evt_1Pgc76B7WZ01zgkWwyRHS12y"
_FIXTURES = Path("/work/shared/reference/stripe-fixtures3.json")


@cache
def _stripe_resources() -> dict[str, Any]:
    return json.loads(_FIXTURES.read_text())["resources"]


def stripe_object(kind: str, **overrides: Any) -> dict[str, Any]:
    """A real Stripe example object (stripe/openapi fixtures3.json) with some fields overridden."""
    obj = copy.deepcopy(_stripe_resources()[kind])
    obj.update(overrides)
    return obj


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str = FIXTURE_EVENT_ID) -> dict[str, Any]:
    """The fixture ``event`` envelope around ``obj`` (every other envelope field kept as Stripe sends it)."""
    event = stripe_object("event", id=event_id, type=event_type)
    event["data"] = {"object": obj, "previous_attributes": {}}
    return event


@dataclass
class World:
    store: FakeStore
    gateway: FakeGateway
    publisher: ListPublisher
    clock: FixedClock
    billing: BillingContext

    def catalog(self, unit_amount: int = 1000, currency: str = "eur", **recurring: Any) -> tuple[Product, Price]:
        product = create_product(self.billing, "Pro plan")
        rec = Recurring(**({"interval": Interval.MONTH} | recurring))
        price = create_price(self.billing, product.id, currency, unit_amount, rec)
        return product, price

    def checkout(self, price: Price, email: str = "ada@example.com", **kwargs: Any) -> CheckoutResult:
        returning = self.store.find_customer_by_email(email)
        if returning is not None:  # a returning customer: the merchant's back end passes its id
            return start_checkout(self.billing, price_id=price.id, customer_id=returning.id, **kwargs)
        return start_checkout(
            self.billing,
            price_id=price.id,
            email=email,
            name="Ada",
            address=Address(country="US", state="OR"),
            **kwargs,
        )

    def active_subscription(self, price: Price, **kwargs: Any) -> CheckoutResult:
        """Checkout and pay the first invoice with the default (succeeding) card."""
        result = self.checkout(price, **kwargs)
        complete_checkout(self.billing, result.subscription.id, result.setup_intent.id)
        return result


def make_world(start: datetime = START) -> World:
    store, gateway, publisher, clock = FakeStore(), FakeGateway(), ListPublisher(), FixedClock(start)
    return World(store, gateway, publisher, clock, BillingContext(store, gateway, publisher, clock))


# ---------------------------------------------------------------------------------------- email
FakeOutbox = MemoryOutbox  # the Outbox port in memory: a key is claimed once
@dataclass
class FakeMailer:
    """Records what was handed to the mail service; ``fail_with`` makes the next send raise."""

    sent: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    fail_with: Exception | None = None

    def send(self, email: OutgoingEmail, sender: str) -> str:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        self.sent.append((email, sender))
        return f"msg-{len(self.sent)}"

    def templates(self, customer: str | None = None) -> list[str]:
        return [e.template for e, _ in self.sent if customer is None or e.customer == customer]


class CountingStore:  # the analytics tests: one refresh lists a customer's subscriptions once
    """The store, counting each customer's refreshes (a refresh lists the customer's subscriptions
    once); ``fail_for``: that customer's reads raise as a throttled DynamoDB does."""

    def __init__(self, store: Any, fail_for: str | None = None) -> None:
        self.store = store
        self.fail_for = fail_for
        self.refreshes: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def list_customer_subscriptions(self, customer_id: str) -> Any:
        self.refreshes[customer_id] += 1
        if customer_id == self.fail_for:
            raise Unavailable("throttled")
        return self.store.list_customer_subscriptions(customer_id)
