"""The PaymentGateway port on the stripe SDK.

Uses only what both real Stripe (test mode) and localstripe support for the core flows: customers,
SetupIntents, attaching a payment method, PaymentIntents created with confirm=true (off-session for
renewals and dunning, on-session at checkout and on the card page) and read back after Stripe.js
confirmed them (3-D Secure).
Stripe errors are translated into domain results (a decline is a ChargeResult, not an exception) or
domain errors (bad ids → NotFound, outages → PaymentProviderError).

Stripe's rate limit (100 requests/s in live mode, 25 in test mode) is kept from kassa's side by a
token bucket every worker shares (``kassa.adapters.ratelimit``): each call takes a slot first. A 429
that still comes (other traffic on the account) is retried here with jittered exponential backoff
— the stripe SDK's ``max_network_retries`` retries connection errors, 409s and 5xx, not 429s unless
Stripe sends ``Stripe-Should-Retry`` — under the same idempotency key (Stripe saves no result for a
rate-limited request). When the retries run out it is a ``PaymentProviderError``: retryable, never
a declined payment, so no dunning step follows (the renewal message is delivered again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import stripe
from stripe import StripeClient

from kassa.adapters import usage
from kassa.adapters.ratelimit import Rate, TokenBucket, full_jitter
from kassa.domain.customer import Address, PaymentMethodSummary
from kassa.domain.errors import InvalidInput, NotFound, PaymentProviderError, Unavailable
from kassa.domain.money import Money
from kassa.domain.payment_methods import SEPA_GENERATING, Mandate, PaymentMethodKind
from kassa.services.ports import (
    ChargeResult,
    GeneratedSepaDebit,
    PaymentIntentInfo,
    RefundInfo,
    SetupIntentInfo,
    charge_result_from_card_error,
    charge_result_from_intent,
    payment_intent_info,
)


def _accepted_at(mandate: dict[str, Any] | None) -> datetime | None:
    accepted = ((mandate or {}).get("customer_acceptance") or {}).get("accepted_at")
    return datetime.fromtimestamp(accepted, UTC) if isinstance(accepted, int) else None


#: Stripe's documented rate limits, requests per second, by the mode of the secret key
STRIPE_RATE_LIMITS = {"live": 100, "test": 25}
#: what kassa's shared bucket allows itself: ``burst + rate`` within Stripe's limit over any second
STRIPE_BUDGETS = {"live": Rate(rate=90, burst=10), "test": Rate(rate=20, burst=5)}
#: retries of a 429 (backoff 0.5 s doubling, capped at 8 s, full jitter) before PaymentProviderError
RATE_LIMIT_RETRIES = 5
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.5, 8.0


def key_mode(secret_key: str) -> str:
    """``live`` for a live secret or restricted key (``sk_live_…``, ``rk_live_…``), else ``test``."""
    return "live" if "_live_" in secret_key[:8] else "test"


def payment_idempotency_key(invoice_id: str, attempt: int) -> str:
    """One PaymentIntent per (invoice, attempt): a retried call can never charge twice."""
    return f"kassa-{invoice_id}-attempt-{attempt}"


class StripeGateway:
    def __init__(
        self,
        secret_key: str,
        publishable_key: str,
        api_base: str | None = None,
        *,
        local: bool | None = None,
        limiter: TokenBucket | None = None,
        rate_limit_retries: int = RATE_LIMIT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        http_client: Any = None,
    ) -> None:
        """``http_client``: a stripe ``HTTPClient`` (an in-process fake Stripe in the scale simulation)."""
        kwargs: dict[str, Any] = {"max_network_retries": 2}
        if http_client is not None:
            kwargs["http_client"] = http_client
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self._client = StripeClient(secret_key, **kwargs)
        self._publishable_key = publishable_key
        # localstripe (or another Stripe double); a stub of Stripe's own shapes passes local=False
        self._local = api_base is not None if local is None else local
        self._limiter = limiter  # None: no shared bucket (429s are still retried)
        self._rate_limit_retries = rate_limit_retries
        self._sleep = sleep

    @property
    def publishable_key(self) -> str:
        return self._publishable_key

    def _do(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        usage.count(f"stripe.{name}")
        for retry in range(self._rate_limit_retries + 1):
            if self._limiter is not None:
                try:
                    self._limiter.acquire()
                except Unavailable as error:
                    raise PaymentProviderError(f"Stripe calls are queued too long: {error}") from error
            try:
                return self._call(fn, *args, **kwargs)
            except stripe.RateLimitError as error:
                usage.count("stripe.rate_limited")
                if retry == self._rate_limit_retries:
                    message = error.user_message or error
                    raise PaymentProviderError(f"Stripe is rate limiting kassa: {message}") from error
                usage.count("stripe.retries")
                self._sleep(full_jitter(retry, BACKOFF_BASE_S, BACKOFF_CAP_S))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @staticmethod
    def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            return result.to_dict() if hasattr(result, "to_dict") else result
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                raise NotFound(error.user_message or str(error), param=error.param) from error
            raise InvalidInput(error.user_message or str(error), param=error.param) from error
        except (stripe.APIConnectionError, stripe.APIError) as error:
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
        mandate = intent.get("mandate")
        return SetupIntentInfo(
            id=intent["id"],
            client_secret=intent.get("client_secret"),
            status=intent.get("status"),
            payment_method=pm if isinstance(pm, str) or pm is None else pm.get("id"),
            customer=intent.get("customer"),
            metadata=dict(intent.get("metadata") or {}),
            payment_method_types=tuple(intent.get("payment_method_types") or ("card",)),
            mandate=mandate if isinstance(mandate, str) or mandate is None else mandate.get("id"),
        )

    def create_setup_intent(
        self, *, customer: str, metadata: dict[str, str], payment_method_types: Sequence[str] = ("card",)
    ) -> SetupIntentInfo:
        """``payment_method_types`` card, sepa_debit, us_bank_account. Stripe.js confirms a SEPA one with
        ``confirmSepaDebitSetup`` (``payment_method_data[type]=sepa_debit``, the IBAN and the holder's
        name and email), which records the online mandate acceptance; an ACH one with
        ``collectBankAccountForSetup`` + ``confirmUsBankAccountSetup`` (Financial Connections)."""
        params: dict[str, Any] = {
            "customer": customer,
            "usage": "off_session",
            "payment_method_types": list(payment_method_types),
            "metadata": metadata,
        }
        if "us_bank_account" in payment_method_types and not self._local:  # localstripe knows no ACH
            params["payment_method_options"] = {
                "us_bank_account": {"verification_method": "automatic", "financial_connections": {}}
            }
        intent = self._do("setup_intents.create", self._client.v1.setup_intents.create, params)
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

    def attach_payment_method(
        self, *, payment_method: str, customer: str, mandate: str | None = None
    ) -> PaymentMethodSummary:
        try:
            pm = self._do(
                "payment_methods.attach", self._client.v1.payment_methods.attach, payment_method, {"customer": customer}
            )
        except stripe.CardError as error:
            raise InvalidInput(f"the card was declined: {error.code}", param="payment_method") from error
        self._do(
            "customers.update",
            self._client.v1.customers.update,
            customer,
            {"invoice_settings": {"default_payment_method": payment_method}},
        )
        return self._summary(pm, self._mandate(mandate) if mandate else None)

    def _mandate(self, mandate_id: str) -> dict[str, Any] | None:
        """A Mandate object (Stripe: ``payment_method_details.<type>.reference``/``url``); None when the
        Stripe double has none."""
        try:
            found = self._do("mandates.retrieve", self._client.v1.mandates.retrieve, mandate_id)
        except (NotFound, InvalidInput):
            return None
        return found if isinstance(found, dict) else None

    @staticmethod
    def _summary(pm: dict[str, Any], mandate: dict[str, Any] | None) -> PaymentMethodSummary:
        """A PaymentMethod as kassa keeps it: a card, or a bank account with its mandate (shapes of
        Stripe's ``card``, ``sepa_debit`` and ``us_bank_account`` hashes and of the Mandate object)."""
        kind = str(pm.get("type") or "card")
        if kind == "sepa_debit":
            sepa = pm.get("sepa_debit") or {}
            details = ((mandate or {}).get("payment_method_details") or {}).get("sepa_debit") or {}
            generated = (sepa.get("generated_from") or {}).get("payment_method_details") or {}
            return PaymentMethodSummary(
                payment_method_id=pm["id"],
                type=PaymentMethodKind.SEPA_DEBIT,
                last4=sepa.get("last4"),
                bank_code=sepa.get("bank_code"),
                country=sepa.get("country"),
                mandate=Mandate(
                    # localstripe keeps the reference on the payment method itself
                    reference=details.get("reference") or sepa.get("mandate_reference"),
                    url=details.get("url") or sepa.get("mandate_url"),
                    stripe_mandate=(mandate or {}).get("id"),
                    accepted_at=_accepted_at(mandate),
                    generated_from=generated.get("type") if isinstance(generated, dict) else None,
                ),
            )
        if kind == "us_bank_account":
            bank = pm.get("us_bank_account") or {}
            details = ((mandate or {}).get("payment_method_details") or {}).get("us_bank_account") or {}
            return PaymentMethodSummary(
                payment_method_id=pm["id"],
                type=PaymentMethodKind.US_BANK_ACCOUNT,
                last4=bank.get("last4"),
                bank_name=bank.get("bank_name"),
                bank_code=bank.get("routing_number"),
                country="US",
                mandate=Mandate(
                    reference=(mandate or {}).get("id"),
                    stripe_mandate=(mandate or {}).get("id"),
                    accepted_at=_accepted_at(mandate),
                ),
            )
        card = pm.get("card") or {}
        return PaymentMethodSummary(
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
        payment_method_type: str = "card",
        mandate: str | None = None,
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
        if payment_method_type != "card":
            # a bank debit under its mandate (SEPA, ACH): confirmed server-side, it is ``processing``
            # until the bank settles (payment_intent.succeeded / payment_failed days later)
            params["payment_method_types"] = [payment_method_type]
            if mandate and not self._local:
                params["mandate"] = mandate
            if off_session:
                params["off_session"] = True
        elif off_session:
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
            err = {**err, "code": error.code or err.get("code"), "message": err.get("message") or error.user_message}
            return charge_result_from_card_error(err, attempt)
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
        # the latest charge expanded: a failed bank debit's return reason is its failure_code
        intent = self._do(
            "payment_intents.retrieve",
            self._client.v1.payment_intents.retrieve,
            payment_intent,
            {"expand": ["latest_charge"]},
        )
        return payment_intent_info(intent)

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
        """iDEAL / Bancontact first payment that leaves a SEPA Direct Debit mandate for the renewals:
        ``payment_method_types=[<type>]``, ``setup_future_usage=off_session``, confirmed with the
        return URL the bank sends the customer back to (``next_action.redirect_to_url``). Stripe
        (not localstripe, which has neither method) answers ``requires_action``."""
        if source_type not in SEPA_GENERATING:
            raise InvalidInput(f"{source_type} does not generate a SEPA mandate", param="payment_method_type")
        params: dict[str, Any] = {
            "amount": amount.amount,
            "currency": amount.currency.lower(),
            "customer": customer,
            "payment_method_types": [source_type],
            "payment_method_data": {"type": source_type},
            "setup_future_usage": "off_session",
            "confirm": True,
            "return_url": return_url,
            "metadata": {"kassa_invoice": invoice_id, "kassa_attempt": str(attempt)},
        }
        options = {"idempotency_key": payment_idempotency_key(invoice_id, attempt)}
        intent = self._do("payment_intents.create", self._client.v1.payment_intents.create, params, options)
        return payment_intent_info(intent)

    def generated_sepa_debit(self, payment_intent: str) -> GeneratedSepaDebit | None:
        """``latest_charge.payment_method_details.<ideal|bancontact>.generated_sepa_debit`` (and
        ``generated_sepa_debit_mandate``) of a succeeded iDEAL / Bancontact payment."""
        intent = self._do(
            "payment_intents.retrieve",
            self._client.v1.payment_intents.retrieve,
            payment_intent,
            {"expand": ["latest_charge"]},
        )
        charge = intent.get("latest_charge")
        details = charge.get("payment_method_details") if isinstance(charge, dict) else None
        if not isinstance(details, dict):
            return None
        for source_type in sorted(SEPA_GENERATING):
            found = details.get(source_type)
            if isinstance(found, dict) and isinstance(found.get("generated_sepa_debit"), str):
                mandate = found.get("generated_sepa_debit_mandate")
                return GeneratedSepaDebit(
                    payment_method=found["generated_sepa_debit"],
                    mandate=mandate if isinstance(mandate, str) else None,
                    source_type=source_type,
                )
        return None

    def invoice_of_payment_intent(self, payment_intent: str) -> str | None:
        try:
            intent = self._do("payment_intents.retrieve", self._client.v1.payment_intents.retrieve, payment_intent)
        except NotFound:
            return None
        value = (intent.get("metadata") or {}).get("kassa_invoice")
        return value if isinstance(value, str) and value else None
