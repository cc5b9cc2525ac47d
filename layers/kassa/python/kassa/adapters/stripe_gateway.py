"""The PaymentGateway port on the stripe SDK.

Uses only what both real Stripe (test mode) and localstripe support for the core flows: customers,
SetupIntents, attaching a payment method, PaymentIntents created with confirm=true (off-session for
renewals and dunning, on-session at checkout and on the card page) and read back after Stripe.js
confirmed them (3-D Secure).
Stripe errors are translated into domain results (a decline is a ChargeResult, not an exception) or
domain errors (bad ids → NotFound, outages → PaymentProviderError).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import stripe
from stripe import StripeClient

from kassa.adapters import usage
from kassa.domain.customer import Address, CardSummary
from kassa.domain.errors import InvalidInput, NotFound, PaymentProviderError
from kassa.domain.money import Money
from kassa.services.ports import (
    ChargeResult,
    ChargeStatus,
    PaymentIntentInfo,
    RefundInfo,
    SetupIntentInfo,
    charge_result_from_intent,
    payment_intent_info,
)

# Off-session authentication failures Stripe reports as card errors with these codes.
_AUTH_CODES = {"authentication_required", "payment_intent_authentication_failure"}


def payment_idempotency_key(invoice_id: str, attempt: int) -> str:
    """One PaymentIntent per (invoice, attempt): a retried call can never charge twice."""
    return f"kassa-{invoice_id}-attempt-{attempt}"


class StripeGateway:
    def __init__(self, secret_key: str, publishable_key: str, api_base: str | None = None) -> None:
        kwargs: dict[str, Any] = {"max_network_retries": 2}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self._client = StripeClient(secret_key, **kwargs)
        self._publishable_key = publishable_key
        self._local = api_base is not None  # localstripe (or another Stripe double)

    @property
    def publishable_key(self) -> str:
        return self._publishable_key

    def _do(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        usage.count(f"stripe.{name}")
        try:
            result = fn(*args, **kwargs)
            return result.to_dict() if hasattr(result, "to_dict") else result
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                raise NotFound(error.user_message or str(error), param=error.param) from error
            raise InvalidInput(error.user_message or str(error), param=error.param) from error
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as error:
            raise PaymentProviderError(f"Stripe unavailable: {error.user_message or error}") from error
        except stripe.AuthenticationError as error:
            raise PaymentProviderError("Stripe rejected kassa's API key") from error

    def create_customer(self, *, email: str, name: str | None, address: Address, kassa_id: str) -> str:
        params: dict[str, Any] = {
            "email": email,
            "address": address.model_dump(exclude_none=True),
            "metadata": {"kassa_customer": kassa_id},
        }
        if name:
            params["name"] = name
        customer = self._do(
            "customers.create",
            self._client.v1.customers.create,
            params,
            {"idempotency_key": f"kassa-customer-{kassa_id}"},
        )
        return str(customer["id"])

    @staticmethod
    def _setup_info(intent: Any) -> SetupIntentInfo:
        pm = intent.get("payment_method")
        return SetupIntentInfo(
            id=intent["id"],
            client_secret=intent.get("client_secret"),
            status=intent.get("status"),
            payment_method=pm if isinstance(pm, str) or pm is None else pm.get("id"),
            customer=intent.get("customer"),
            metadata=dict(intent.get("metadata") or {}),
        )

    def create_setup_intent(self, *, customer: str, metadata: dict[str, str]) -> SetupIntentInfo:
        intent = self._do(
            "setup_intents.create",
            self._client.v1.setup_intents.create,
            {"customer": customer, "usage": "off_session", "payment_method_types": ["card"], "metadata": metadata},
        )
        return self._setup_info(intent)

    def get_setup_intent(self, setup_intent_id: str) -> SetupIntentInfo:
        return self._setup_info(
            self._do("setup_intents.retrieve", self._client.v1.setup_intents.retrieve, setup_intent_id)
        )

    def kassa_customer_of(self, customer: str) -> str | None:
        """The kassa customer id kept in a Stripe customer's metadata (None: not one of ours)."""
        try:
            found = self._do("customers.retrieve", self._client.v1.customers.retrieve, customer)
        except NotFound:
            return None
        value = (found.get("metadata") or {}).get("kassa_customer")
        return value if isinstance(value, str) and value else None

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
        """Bring the Stripe customer in line with kassa's (the whole state, so a retry repairs it);
        ``""`` unsets the name, as Stripe's API does."""
        params: dict[str, Any] = {
            "email": email,
            "name": name or "",
            "address": address.model_dump(exclude_none=True),
            "preferred_locales": [preferred_locale],
            "metadata": {"kassa_customer": kassa_id},
        }
        self._do("customers.update", self._client.v1.customers.update, customer, params)

    def attach_payment_method(self, *, payment_method: str, customer: str) -> CardSummary:
        try:
            pm = self._do(
                "payment_methods.attach", self._client.v1.payment_methods.attach, payment_method, {"customer": customer}
            )
        except stripe.CardError as error:
            raise InvalidInput(f"the card was declined: {error.code}", param="payment_method") from error
        card = pm.get("card") or {}
        self._do(
            "customers.update",
            self._client.v1.customers.update,
            customer,
            {"invoice_settings": {"default_payment_method": payment_method}},
        )
        return CardSummary(
            payment_method_id=pm["id"],
            brand=card.get("brand"),
            last4=card.get("last4"),
            exp_month=card.get("exp_month"),
            exp_year=card.get("exp_year"),
        )

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
    ) -> ChargeResult:
        """Off-session (the customer is away): Stripe answers a card that needs 3-D Secure with an
        ``authentication_required`` card error. On-session (checkout, the card page): the PaymentIntent
        is left ``requires_action`` and its client secret goes back to Stripe.js's ``confirmCardPayment``."""
        params: dict[str, Any] = {
            "amount": amount.amount,
            "currency": amount.currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "confirm": True,
            "metadata": {"kassa_invoice": invoice_id, "kassa_attempt": str(attempt)},
        }
        if off_session:
            params["off_session"] = True
        else:
            # cards only: a server-side confirmation needs no return_url, and the next action is
            # Stripe.js's (use_stripe_sdk)
            params["payment_method_types"] = ["card"]
        options = {"idempotency_key": payment_idempotency_key(invoice_id, attempt)}
        try:
            intent = self._do("payment_intents.create", self._client.v1.payment_intents.create, params, options)
        except stripe.CardError as error:
            body = error.json_body or {}
            err = body.get("error", {}) if isinstance(body, dict) else {}
            pi = err.get("payment_intent") or {}
            code = error.code or err.get("code") or "card_declined"
            status = ChargeStatus.REQUIRES_ACTION if code in _AUTH_CODES else ChargeStatus.DECLINED
            return ChargeResult(
                status=status,
                payment_intent=pi.get("id") if isinstance(pi, dict) else None,
                code=code,
                decline_code=err.get("decline_code") or (code if code == "card_declined" else None),
                message=err.get("message") or error.user_message,
                client_secret=pi.get("client_secret") if isinstance(pi, dict) else None,
                attempt=attempt,
            )
        return replace(charge_result_from_intent(intent), attempt=attempt)

    def refund(self, *, payment_intent: str, amount: Money, credit_note_id: str) -> str:
        """Refund part or all of a payment; keyed on the credit note so a retry refunds once."""
        return self.create_refund(payment_intent=payment_intent, amount=amount, credit_note_id=credit_note_id).id

    def create_refund(
        self, *, payment_intent: str, amount: Money, credit_note_id: str, reason: str | None = None
    ) -> RefundInfo:
        """Refund part or all of a payment; keyed on the credit note so a retry refunds once. The
        metadata names the note, so the refund's webhooks are recognised as kassa's own."""
        params: dict[str, Any] = {
            "payment_intent": payment_intent,
            "amount": amount.amount,
            "metadata": {"kassa_credit_note": credit_note_id, **({"kassa_reason": reason} if reason else {})},
        }
        if reason and not self._local:  # localstripe refuses ``reason``; Stripe keeps it on the refund
            params["reason"] = reason
        refund = self._do(
            "refunds.create",
            self._client.v1.refunds.create,
            params,
            {"idempotency_key": f"kassa-refund-{credit_note_id}"},
        )
        return RefundInfo(
            id=str(refund["id"]),
            status=str(refund.get("status") or "succeeded"),
            amount=int(refund.get("amount") or amount.amount),
        )

    def get_payment_intent(self, payment_intent: str) -> PaymentIntentInfo:
        intent = self._do("payment_intents.retrieve", self._client.v1.payment_intents.retrieve, payment_intent)
        return payment_intent_info(intent)

    def invoice_of_payment_intent(self, payment_intent: str) -> str | None:
        try:
            intent = self._do("payment_intents.retrieve", self._client.v1.payment_intents.retrieve, payment_intent)
        except NotFound:
            return None
        value = (intent.get("metadata") or {}).get("kassa_invoice")
        return value if isinstance(value, str) and value else None
