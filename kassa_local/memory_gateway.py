"""An in-memory PaymentGateway for the simulator: Stripe's observable behaviour without the network.

What it keeps is Stripe's own record — customers, SetupIntents, PaymentIntents and the charges that
moved money — so the simulator's invariants are computed from it, not from kassa's bookkeeping:

* one PaymentIntent per idempotency key (``kassa-<invoice>-attempt-<n>``, as the Stripe adapter
  sends): a repeated key replays the first answer and charges nothing (Stripe keeps keys 24 h);
* every PaymentIntent carries its invoice and attempt (``kassa_invoice`` / ``kassa_attempt``
  metadata) and produces the webhook Stripe sends for it (``payment_intent.succeeded`` or
  ``payment_intent.payment_failed``), queued in ``outgoing`` for the simulator to deliver;
* off-session, a card that needs 3-D Secure fails with ``authentication_required`` and the intent
  waits for a payment method (``requires_payment_method``), like Stripe.

Whether a charge succeeds is decided by a ``DeclineModel``: a pure function of the seed, the invoice
and the attempt number, so a run is reproducible whatever order the calls arrive in (and faults on
or off do not change which invoices decline). Cards only: bank debits and redirect payments
(iDEAL, Bancontact) are not simulated.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kassa.domain.customer import Address, CardSummary, PaymentMethodSummary
from kassa.domain.dunning import AUTHENTICATION_CODES
from kassa.domain.errors import InvalidInput, NotFound
from kassa.domain.money import Money
from kassa.services.ports import (
    ChargeResult,
    GeneratedSepaDebit,
    PaymentIntentInfo,
    RefundInfo,
    SetupIntentInfo,
    charge_result_from_card_error,
    charge_result_from_intent,
    intent_status,
)


def uniform(seed: int, *parts: object) -> float:
    """A reproducible number in [0, 1) from the seed and ``parts`` (independent of call order)."""
    digest = hashlib.blake2b("\x1f".join(map(str, (seed, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def payment_intent_event(obj: dict[str, Any], result: ChargeResult) -> dict[str, Any]:
    """The ``payment_intent.succeeded`` / ``payment_intent.payment_failed`` event Stripe sends for the
    PaymentIntent ``obj`` (its ``id``, ``status``, ``metadata`` …) whose outcome is ``result``: a
    failed one names the error (and the card) in ``last_payment_error``."""
    kind = "succeeded" if obj["status"] == "succeeded" else "payment_failed"
    if result.code:
        obj = {
            **obj,
            "last_payment_error": {
                "code": result.code,
                "decline_code": result.decline_code,
                "message": result.message,
                "payment_method": {"id": obj.get("payment_method")},
            },
        }
    return {
        "id": f"evt_{obj['id']}_{kind}",
        "object": "event",
        "type": f"payment_intent.{kind}",
        "data": {"object": obj},
    }


@dataclass(frozen=True)
class DeclineClass:
    """One kind of decline as Stripe reports it: the error ``code`` and the issuer's ``decline_code``.
    ``recovers``: the chance that a later retry of the same invoice succeeds (0 for hard declines)."""

    name: str
    code: str
    decline_code: str | None
    message: str
    weight: float
    recovers: float


def _declined(reason: str, weight: float, recovers: float, message: str = "Your card was declined.") -> DeclineClass:
    """Stripe's ``card_declined`` error with the issuer's ``reason`` as its decline code."""
    return DeclineClass(reason, "card_declined", reason, message, weight, recovers)


def _failed(code: str, weight: float, recovers: float, message: str) -> DeclineClass:
    """An error with a code of its own, which Stripe repeats as the decline code."""
    return DeclineClass(code, code, code, message, weight, recovers)


#: Stripe's decline classes (https://docs.stripe.com/declines/codes), with their share of declines
DECLINE_CLASSES: tuple[DeclineClass, ...] = (
    _declined("insufficient_funds", 0.40, 0.55, "Your card has insufficient funds."),
    _declined("generic_decline", 0.15, 0.45),
    _declined("do_not_honor", 0.08, 0.35),
    _declined("try_again_later", 0.04, 0.8),
    _failed("processing_error", 0.03, 0.9, "An error occurred while processing your card."),
    _failed("expired_card", 0.10, 0.0, "Your card has expired."),
    _failed("incorrect_cvc", 0.02, 0.0, "Your card's security code is incorrect."),
    _declined("lost_card", 0.03, 0.0),
    _declined("stolen_card", 0.02, 0.0),
    _declined("fraudulent", 0.05, 0.0),
    _failed("authentication_required", 0.08, 0.3, "This payment requires authentication."),
)


@dataclass(frozen=True)
class DeclineModel:
    """A share ``rate`` of first attempts declines, with a class drawn by weight; a retry of a declined
    invoice succeeds with its class's ``recovers`` chance, else declines the same way again."""

    rate: float = 0.05
    seed: int = 1
    classes: tuple[DeclineClass, ...] = DECLINE_CLASSES

    def first_decline(self, invoice_id: str) -> DeclineClass | None:
        if self.rate <= 0 or uniform(self.seed, "decline", invoice_id) >= self.rate:
            return None
        pick = uniform(self.seed, "class", invoice_id) * sum(c.weight for c in self.classes)
        for decline in self.classes:
            pick -= decline.weight
            if pick < 0:
                return decline
        return self.classes[-1]

    def outcome(self, invoice_id: str, attempt: int) -> DeclineClass | None:
        """None: the charge succeeds; otherwise how it declines."""
        decline = self.first_decline(invoice_id)
        if decline is None or attempt <= 1:
            return decline
        return None if uniform(self.seed, "retry", invoice_id, attempt) < decline.recovers else decline


@dataclass
class Charge:
    """A PaymentIntent as Stripe holds it."""

    id: str
    invoice: str
    attempt: int
    customer: str
    payment_method: str
    amount: int
    currency: str
    status: str  # succeeded | requires_payment_method
    result: ChargeResult


@dataclass
class MemoryGateway:
    seed: int = 1
    declines: DeclineModel = field(default_factory=DeclineModel)
    publishable_key: str = "pk_test_simulator"
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    setup_intents: dict[str, SetupIntentInfo] = field(default_factory=dict)
    intents: dict[str, Charge] = field(default_factory=dict)
    by_key: dict[tuple[str, int], str] = field(default_factory=dict)  # idempotency key -> PaymentIntent
    refunds: dict[str, RefundInfo] = field(default_factory=dict)
    outgoing: list[dict[str, Any]] = field(default_factory=list)  # webhooks Stripe is about to send
    calls: int = 0
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _id(self, prefix: str) -> str:
        return f"{prefix}_sim{next(self._seq):08d}"

    # ------------------------------------------------------------------ customers and cards
    def create_customer(self, *, email: str, name: str | None, address: Address, kassa_id: str) -> str:
        self.calls += 1
        customer = self._id("cus")
        self.customers[customer] = {"email": email, "kassa_id": kassa_id}
        return customer

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
        self.calls += 1
        if customer not in self.customers:
            raise NotFound(f"No such customer: '{customer}'", param="customer")
        self.customers[customer].update(email=email, kassa_id=kassa_id)

    def kassa_customer_of(self, customer: str) -> str | None:
        self.calls += 1
        found = self.customers.get(customer)
        return found["kassa_id"] if found else None

    def create_setup_intent(
        self, *, customer: str, metadata: dict[str, str], payment_method_types: Sequence[str] = ("card",)
    ) -> SetupIntentInfo:
        """Waits for the customer's card (``confirm_setup_intent``, what Stripe.js does in the browser)."""
        self.calls += 1
        intent = self._id("seti")
        info = SetupIntentInfo(
            id=intent,
            client_secret=f"{intent}_secret",
            status="requires_payment_method",
            payment_method=None,
            customer=customer,
            metadata=dict(metadata),
            payment_method_types=("card",),
        )
        self.setup_intents[intent] = info
        return info

    def confirm_setup_intent(self, setup_intent_id: str) -> SetupIntentInfo:
        """The customer confirms a card of their own in the browser; Stripe sends ``setup_intent.succeeded``."""
        info = replace(
            self.setup_intents[setup_intent_id], status="succeeded", payment_method=f"pm_card_{setup_intent_id}"
        )
        self.setup_intents[setup_intent_id] = info
        obj = {
            "id": info.id,
            "object": "setup_intent",
            "status": info.status,
            "customer": info.customer,
            "payment_method": info.payment_method,
            "payment_method_types": list(info.payment_method_types),
            "metadata": dict(info.metadata),
        }
        self.outgoing.append(
            {
                "id": f"evt_{info.id}_succeeded",
                "object": "event",
                "type": "setup_intent.succeeded",
                "data": {"object": obj},
            }
        )
        return info

    def get_setup_intent(self, setup_intent_id: str) -> SetupIntentInfo:
        self.calls += 1
        if setup_intent_id not in self.setup_intents:
            raise NotFound(f"No such setupintent: '{setup_intent_id}'", param="intent")
        return self.setup_intents[setup_intent_id]

    def attach_payment_method(
        self, *, payment_method: str, customer: str, mandate: str | None = None
    ) -> PaymentMethodSummary:
        self.calls += 1
        if customer not in self.customers:
            raise InvalidInput(f"No such customer: '{customer}'", param="customer")
        self.customers[customer]["default_payment_method"] = payment_method
        return CardSummary(payment_method_id=payment_method, brand="visa", last4="4242", exp_month=12, exp_year=2099)

    # ------------------------------------------------------------------ payments
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
        self.calls += 1
        known = self.by_key.get((invoice_id, attempt))
        if known is not None:  # the idempotency key was used: Stripe replays the first answer
            return self.intents[known].result
        if payment_method_type != "card":
            raise InvalidInput("the simulator charges cards only", param="payment_method_type")
        intent = self._id("pi")
        decline = self.declines.outcome(invoice_id, attempt)
        if decline is None or (decline.code in AUTHENTICATION_CODES and not off_session):
            # the PaymentIntent Stripe answers with: paid, or (on-session) waiting for 3-D Secure
            answer = {
                "id": intent,
                "status": "succeeded" if decline is None else "requires_action",
                "client_secret": f"{intent}_secret",
                "metadata": {"kassa_invoice": invoice_id, "kassa_attempt": str(attempt)},
            }
            result = charge_result_from_intent(answer)
        else:  # the card error Stripe answers with
            error = {
                "code": decline.code,
                "decline_code": decline.decline_code,
                "message": decline.message,
                "payment_intent": {"id": intent},
            }
            result = charge_result_from_card_error(error, attempt)
        charge = Charge(
            id=intent,
            invoice=invoice_id,
            attempt=attempt,
            customer=customer,
            payment_method=payment_method,
            amount=amount.amount,
            currency=amount.currency,
            status=intent_status(result.status, off_session=off_session),
            result=result,
        )
        self.intents[intent] = charge
        self.by_key[(invoice_id, attempt)] = intent
        if charge.status != "requires_action":  # Stripe sends no event while it waits for the customer
            self.outgoing.append(self.intent_event(charge))
        return result

    def intent_event(self, charge: Charge) -> dict[str, Any]:
        """The webhook Stripe sends for a PaymentIntent's outcome."""
        obj: dict[str, Any] = {
            "id": charge.id,
            "object": "payment_intent",
            "amount": charge.amount,
            "currency": charge.currency.lower(),
            "status": charge.status,
            "customer": charge.customer,
            "payment_method": charge.payment_method,
            "metadata": {"kassa_invoice": charge.invoice, "kassa_attempt": str(charge.attempt)},
        }
        return payment_intent_event(obj, charge.result)

    def get_payment_intent(self, payment_intent: str) -> PaymentIntentInfo:
        self.calls += 1
        charge = self.intents.get(payment_intent)
        if charge is None:
            raise NotFound(f"No such payment_intent: '{payment_intent}'", param="intent")
        return PaymentIntentInfo(
            id=charge.id,
            status=charge.status,
            client_secret=f"{charge.id}_secret",
            invoice=charge.invoice,
            customer=charge.customer,
            payment_method=charge.payment_method,
            result=charge.result,
        )

    def invoice_of_payment_intent(self, payment_intent: str) -> str | None:
        self.calls += 1
        charge = self.intents.get(payment_intent)
        return charge.invoice if charge is not None else None

    def refund(self, *, payment_intent: str, amount: Money, credit_note_id: str) -> str:
        return self.create_refund(payment_intent=payment_intent, amount=amount, credit_note_id=credit_note_id).id

    def create_refund(
        self, *, payment_intent: str, amount: Money, credit_note_id: str, reason: str | None = None
    ) -> RefundInfo:
        """One refund per credit note (its idempotency key)."""
        self.calls += 1
        if credit_note_id not in self.refunds:
            self.refunds[credit_note_id] = RefundInfo(self._id("re"), "succeeded", amount.amount)
        return self.refunds[credit_note_id]

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
        raise InvalidInput("the simulator offers cards only", param="payment_method_type")

    def generated_sepa_debit(self, payment_intent: str) -> GeneratedSepaDebit | None:
        return None  # no redirect payments, so no generated SEPA debits

    # ------------------------------------------------------------------ Stripe's record, for the invariants
    def succeeded(self) -> list[Charge]:
        return [c for c in self.intents.values() if c.status == "succeeded"]

    def take_webhooks(self) -> list[dict[str, Any]]:
        taken, self.outgoing = self.outgoing, []
        return taken
