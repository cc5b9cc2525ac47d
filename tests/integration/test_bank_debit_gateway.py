"""The Stripe gateway's bank-debit shapes against stubbed HTTP (localstripe has no ACH, iDEAL,
Bancontact nor Mandate objects): ACH Direct Debit (us_bank_account) SetupIntents, attach with the
mandate, a debit that is processing and one returned with the bank's reason; SEPA's Mandate reference;
iDEAL and Bancontact first payments saved for later (setup_future_usage) and the sepa_debit
PaymentMethod they generate — the request and response shapes of Stripe's API reference."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kassa.adapters.stripe_gateway import StripeGateway
from kassa.domain.money import Money
from kassa.domain.payment_methods import PaymentMethodKind
from kassa.services.ports import ChargeStatus

from .conftest import stripe_object

pytestmark = pytest.mark.integration

ACCEPTED_AT = 1767225600  # 2026-01-01T00:00:00Z


class _Stub(BaseHTTPRequestHandler):
    """Canned Stripe answers by (method, path); every request is recorded with its form."""

    routes: dict[tuple[str, str], dict[str, Any]] = {}
    seen: list[tuple[str, str, dict[str, list[str]]]] = []

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode()) if length else parse_qs(parts.query)
        type(self).seen.append((method, parts.path, form))
        body = type(self).routes.get((method, parts.path))
        status = 200 if body is not None else 404
        payload = json.dumps(body or {"error": {"type": "invalid_request_error", "message": "no such route"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._answer("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._answer("GET")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[StripeGateway]:
    _Stub.routes, _Stub.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StripeGateway(
            "sk_test_stub", "pk_test_stub", api_base=f"http://127.0.0.1:{server.server_address[1]}", local=False
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _form(path: str) -> dict[str, list[str]]:
    return next(form for method, seen, form in _Stub.seen if seen == path and method == "POST")


def _mandate(kind: str, details: dict[str, Any]) -> dict[str, Any]:
    return stripe_object(
        "mandate",
        id="mandate_1",
        customer_acceptance={
            "accepted_at": ACCEPTED_AT,
            "online": {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0"},
            "type": "online",
        },
        payment_method_details={kind: details, "type": kind},
    )


# ----------------------------------------------------------------------------- ACH Direct Debit
def test_an_ach_setup_intent_asks_for_financial_connections_verification(stub: StripeGateway) -> None:
    _Stub.routes[("POST", "/v1/setup_intents")] = stripe_object(
        "setup_intent",
        id="seti_ach",
        status="requires_payment_method",
        payment_method_types=["card", "us_bank_account"],
    )
    info = stub.create_setup_intent(
        customer="cus_1", metadata={"kassa_subscription": "sub_1"}, payment_method_types=["card", "us_bank_account"]
    )
    form = _form("/v1/setup_intents")
    assert form["payment_method_types[0]"] == ["card"] and form["payment_method_types[1]"] == ["us_bank_account"]
    assert form["payment_method_options[us_bank_account][verification_method]"] == ["automatic"]
    assert form["usage"] == ["off_session"]
    assert info.payment_method_types == ("card", "us_bank_account")


def test_an_ach_account_is_saved_with_its_bank_routing_number_and_mandate(stub: StripeGateway) -> None:
    _Stub.routes[("POST", "/v1/payment_methods/pm_ach/attach")] = stripe_object(
        "payment_method",
        id="pm_ach",
        type="us_bank_account",
        card=None,
        us_bank_account={
            "account_holder_type": "individual",
            "account_type": "checking",
            "bank_name": "STRIPE TEST BANK",
            "last4": "6789",
            "routing_number": "110000000",
        },
    )
    _Stub.routes[("POST", "/v1/customers/cus_1")] = stripe_object("customer", id="cus_1")
    _Stub.routes[("GET", "/v1/mandates/mandate_1")] = _mandate("us_bank_account", {})
    account = stub.attach_payment_method(payment_method="pm_ach", customer="cus_1", mandate="mandate_1")
    assert account.type is PaymentMethodKind.US_BANK_ACCOUNT and account.settles_later
    assert (account.bank_name, account.last4, account.bank_code) == ("STRIPE TEST BANK", "6789", "110000000")
    assert account.mandate is not None and account.mandate.stripe_mandate == "mandate_1"
    assert account.mandate.accepted_at is not None and int(account.mandate.accepted_at.timestamp()) == ACCEPTED_AT


def test_an_ach_debit_is_processing_under_its_mandate(stub: StripeGateway) -> None:
    _Stub.routes[("POST", "/v1/payment_intents")] = stripe_object(
        "payment_intent",
        id="pi_ach",
        status="processing",
        payment_method_types=["us_bank_account"],
        last_payment_error=None,
        metadata={"kassa_invoice": "in_1", "kassa_attempt": "1"},
    )
    result = stub.charge(
        customer="cus_1", payment_method="pm_ach", amount=Money(2000, "USD"), invoice_id="in_1", attempt=1,
        description="Invoice KASSA-0001", payment_method_type="us_bank_account", mandate="mandate_1",
    )  # fmt: skip
    form = _form("/v1/payment_intents")
    assert form["payment_method_types[0]"] == ["us_bank_account"] and form["mandate"] == ["mandate_1"]
    assert form["off_session"] == ["true"] and form["confirm"] == ["true"]
    assert result.status is ChargeStatus.PROCESSING and result.attempt == 1


def test_a_returned_ach_debit_carries_the_banks_reason_from_the_charge(stub: StripeGateway) -> None:
    _Stub.routes[("GET", "/v1/payment_intents/pi_ach")] = stripe_object(
        "payment_intent",
        id="pi_ach",
        status="requires_payment_method",
        payment_method_types=["us_bank_account"],
        last_payment_error={"type": "invalid_request_error", "code": "payment_intent_payment_attempt_failed"},
        latest_charge=stripe_object(
            "charge", id="ch_ach", status="failed", failure_code="debit_not_authorized",
            failure_message="The customer notified their bank that this payment was unauthorized.",
        ),
        metadata={"kassa_invoice": "in_1", "kassa_attempt": "1"},
    )  # fmt: skip
    intent = stub.get_payment_intent("pi_ach")
    get = next(form for method, path, form in _Stub.seen if method == "GET")
    assert get["expand[0]"] == ["latest_charge"]
    assert intent.result.status is ChargeStatus.DECLINED
    assert intent.result.decline_code == "debit_not_authorized" and intent.result.attempt == 1


# ----------------------------------------------------------------------------- SEPA on Stripe
def test_a_sepa_account_takes_its_reference_from_stripes_mandate(stub: StripeGateway) -> None:
    _Stub.routes[("POST", "/v1/payment_methods/pm_sepa/attach")] = stripe_object(
        "payment_method",
        id="pm_sepa",
        type="sepa_debit",
        card=None,
        sepa_debit={"bank_code": "37040044", "branch_code": "", "country": "DE", "last4": "3000"},
    )
    _Stub.routes[("POST", "/v1/customers/cus_1")] = stripe_object("customer", id="cus_1")
    _Stub.routes[("GET", "/v1/mandates/mandate_1")] = _mandate(
        "sepa_debit", {"reference": "6XGNQAY1ERZ3GBDP", "url": "https://pay.stripe.com/mandate/x"}
    )
    account = stub.attach_payment_method(payment_method="pm_sepa", customer="cus_1", mandate="mandate_1")
    assert account.type is PaymentMethodKind.SEPA_DEBIT and (account.last4, account.country) == ("3000", "DE")
    assert account.mandate is not None and account.mandate.reference == "6XGNQAY1ERZ3GBDP"
    assert account.mandate.url == "https://pay.stripe.com/mandate/x"


def test_a_sepa_debit_on_stripe_names_its_mandate(stub: StripeGateway) -> None:
    _Stub.routes[("POST", "/v1/payment_intents")] = stripe_object(
        "payment_intent", id="pi_sepa", status="processing", last_payment_error=None,
        metadata={"kassa_invoice": "in_2", "kassa_attempt": "1"},
    )  # fmt: skip
    stub.charge(
        customer="cus_1", payment_method="pm_sepa", amount=Money(1500, "EUR"), invoice_id="in_2", attempt=1,
        description="Invoice KASSA-0002", payment_method_type="sepa_debit", mandate="mandate_1",
    )  # fmt: skip
    form = _form("/v1/payment_intents")
    assert form["payment_method_types[0]"] == ["sepa_debit"] and form["mandate"] == ["mandate_1"]


# ----------------------------------------------------------------------------- iDEAL / Bancontact
@pytest.mark.parametrize("source", ["ideal", "bancontact"])
def test_a_redirect_first_payment_is_saved_for_sepa_debits(stub: StripeGateway, source: str) -> None:
    _Stub.routes[("POST", "/v1/payment_intents")] = stripe_object(
        "payment_intent",
        id="pi_redirect",
        status="requires_action",
        payment_method_types=[source],
        setup_future_usage="off_session",
        next_action={"type": "redirect_to_url", "redirect_to_url": {"url": "https://bank.example/authorize",
                                                                    "return_url": "https://shop.example/back"}},
        last_payment_error=None,
        metadata={"kassa_invoice": "in_3", "kassa_attempt": "1"},
    )  # fmt: skip
    intent = stub.create_redirect_payment(
        customer="cus_1", source_type=source, amount=Money(1500, "EUR"), invoice_id="in_3", attempt=1,
        return_url="https://shop.example/back",
    )  # fmt: skip
    form = _form("/v1/payment_intents")
    assert form["payment_method_types[0]"] == [source] and form["payment_method_data[type]"] == [source]
    assert form["setup_future_usage"] == ["off_session"] and form["return_url"] == ["https://shop.example/back"]
    assert (form["amount"], form["currency"], form["customer"]) == (["1500"], ["eur"], ["cus_1"])
    assert form["confirm"] == ["true"]
    assert form["metadata[kassa_invoice]"] == ["in_3"] and form["metadata[kassa_attempt]"] == ["1"]
    assert (intent.status, intent.invoice) == ("requires_action", "in_3")
    # where the customer authorises it: Stripe's next_action.redirect_to_url.url
    assert intent.redirect_url == "https://bank.example/authorize" and intent.awaiting_customer
    assert intent.result.status is ChargeStatus.REQUIRES_ACTION


@pytest.mark.parametrize("source", ["ideal", "bancontact"])
def test_the_sepa_debit_a_redirect_payment_generated_is_found_on_its_charge(stub: StripeGateway, source: str) -> None:
    _Stub.routes[("GET", "/v1/payment_intents/pi_redirect")] = stripe_object(
        "payment_intent",
        id="pi_redirect",
        status="succeeded",
        latest_charge=stripe_object(
            "charge",
            id="ch_redirect",
            payment_method_details={
                "type": source,
                source: {"generated_sepa_debit": "pm_generated", "generated_sepa_debit_mandate": "mandate_gen"},
            },
        ),
    )
    generated = stub.generated_sepa_debit("pi_redirect")
    assert generated is not None
    assert (generated.payment_method, generated.mandate, generated.source_type) == (
        "pm_generated",
        "mandate_gen",
        source,
    )


def test_a_card_payment_generated_no_sepa_debit(stub: StripeGateway) -> None:
    _Stub.routes[("GET", "/v1/payment_intents/pi_card")] = stripe_object(
        "payment_intent", id="pi_card", status="succeeded", latest_charge=stripe_object("charge", id="ch_card")
    )
    assert stub.generated_sepa_debit("pi_card") is None
