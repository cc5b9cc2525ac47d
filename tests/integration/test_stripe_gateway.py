"""StripeGateway (the PaymentGateway port on the stripe SDK) against the stack's localstripe.

Card numbers (localstripe): 4242… succeeds; 4000000000000341 attaches, then declines on charge;
4000002500003155 requires authentication; 4000000000000002 declines on attach.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import stripe

from kassa.adapters import usage
from kassa.adapters.stripe_gateway import StripeGateway, payment_idempotency_key
from kassa.domain.customer import Address, CardSummary
from kassa.domain.errors import InvalidInput, NotFound, PaymentProviderError
from kassa.domain.money import Money
from kassa.services.ports import ChargeStatus
from kassa_local.client import confirm_sepa_debit_setup_request

from .conftest import confirm_like_stripe_js, stripe_get, stripe_object

pytestmark = pytest.mark.integration

VISA = "4242424242424242"
DECLINES_ON_CHARGE = "4000000000000341"
NEEDS_3DS = "4000002500003155"
DECLINES_ON_ATTACH = "4000000000000002"


@pytest.fixture(scope="module")
def gateway(config: dict[str, Any]) -> StripeGateway:
    return StripeGateway(config["stripe_secret_key"], config["stripe_publishable_key"], api_base=config["stripe_url"])


def new_customer(gateway: StripeGateway, uid: str) -> str:
    address = Address(country="nl", city="Utrecht")
    return gateway.create_customer(email=f"gw-{uid}@example.com", name="Grace", address=address, kassa_id=f"cus_{uid}")


def card_on_file(gateway: StripeGateway, config: dict[str, Any], uid: str, number: str) -> tuple[str, CardSummary]:
    """The checkout card flow: SetupIntent, confirmed by 'Stripe.js', then attached by kassa."""
    customer = new_customer(gateway, uid)
    intent = gateway.create_setup_intent(customer=customer, metadata={"kassa_subscription": f"sub_{uid}"})
    assert intent.client_secret
    confirmed = confirm_like_stripe_js(config, intent.id, intent.client_secret, number)
    assert confirmed.status_code == 200, confirmed.text
    payment_method = gateway.get_setup_intent(intent.id).payment_method
    assert payment_method
    return customer, gateway.attach_payment_method(payment_method=payment_method, customer=customer)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on exit: nothing listens there


# ----------------------------------------------------------------------------- customers, cards


def test_create_customer_stores_email_address_and_kassa_id(gateway, config, uid):
    customer = new_customer(gateway, uid)

    assert customer.startswith("cus_")
    stored = stripe_get(config, f"/v1/customers/{customer}")
    assert stored["email"] == f"gw-{uid}@example.com"
    assert stored["name"] == "Grace"
    assert stored["metadata"] == {"kassa_customer": f"cus_{uid}"}
    assert stored["address"]["country"] == "NL"
    assert stored["address"]["city"] == "Utrecht"


def test_setup_intent_confirmed_like_stripe_js_succeeds_with_a_payment_method(gateway, config, uid):
    customer = new_customer(gateway, uid)
    intent = gateway.create_setup_intent(customer=customer, metadata={"kassa_subscription": f"sub_{uid}"})

    assert intent.id.startswith("seti_")
    assert intent.status == "requires_payment_method"
    assert intent.payment_method is None
    assert intent.customer == customer
    assert intent.client_secret and intent.client_secret.startswith(intent.id)

    confirmed = confirm_like_stripe_js(config, intent.id, intent.client_secret, VISA)
    assert confirmed.status_code == 200, confirmed.text

    info = gateway.get_setup_intent(intent.id)
    assert info.status == "succeeded"
    assert info.payment_method and info.payment_method.startswith("pm_")
    assert info.customer == customer
    assert info.metadata == {"kassa_subscription": f"sub_{uid}"}


def test_attach_payment_method_returns_the_card_and_makes_it_the_default(gateway, config, uid):
    customer, card = card_on_file(gateway, config, uid, VISA)

    assert card.payment_method_id.startswith("pm_")
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2034)
    stored = stripe_get(config, f"/v1/customers/{customer}")
    assert stored["invoice_settings"]["default_payment_method"] == card.payment_method_id
    assert stripe_get(config, f"/v1/payment_methods/{card.payment_method_id}")["customer"] == customer


def test_a_card_declined_on_attach_is_invalid_input_naming_payment_method(gateway, config, uid):
    customer = new_customer(gateway, uid)
    created = requests.post(
        f"{config['stripe_url']}/v1/payment_methods",
        headers={"Authorization": f"Bearer {config['stripe_secret_key']}"},
        data={"type": "card", "card[number]": DECLINES_ON_ATTACH, "card[exp_month]": "12", "card[exp_year]": "2034",
              "card[cvc]": "123"},
        timeout=10,
    )  # fmt: skip
    assert created.status_code == 200, created.text

    with pytest.raises(InvalidInput) as raised:
        gateway.attach_payment_method(payment_method=created.json()["id"], customer=customer)

    assert raised.value.param == "payment_method"
    assert "card_declined" in raised.value.message


# ----------------------------------------------------------------------------- charges


def test_charge_with_a_good_card_succeeds_and_tags_the_payment_intent(gateway, config, uid):
    customer, card = card_on_file(gateway, config, uid, VISA)

    result = gateway.charge(
        customer=customer, payment_method=card.payment_method_id, amount=Money(1999, "EUR"),
        invoice_id=f"in_{uid}", attempt=1, description="Invoice KASSA-0001",
    )  # fmt: skip

    assert result.status is ChargeStatus.SUCCEEDED
    assert result.payment_intent and result.payment_intent.startswith("pi_")
    assert result.attempt == 1
    assert result.code is None and result.decline_code is None
    intent = stripe_get(config, f"/v1/payment_intents/{result.payment_intent}")
    assert intent["metadata"] == {"kassa_invoice": f"in_{uid}", "kassa_attempt": "1"}
    assert (intent["amount"], intent["currency"], intent["customer"]) == (1999, "eur", customer)
    assert intent["payment_method"] == card.payment_method_id
    assert intent["status"] == "succeeded"


def test_charge_declined_by_the_card_is_a_result_not_an_exception(gateway, config, uid):
    customer, card = card_on_file(gateway, config, uid, DECLINES_ON_CHARGE)
    assert card.last4 == "0341"  # attaching worked; only charging declines

    result = gateway.charge(
        customer=customer, payment_method=card.payment_method_id, amount=Money(900, "EUR"),
        invoice_id=f"in_{uid}", attempt=2, description="Invoice KASSA-0002",
    )  # fmt: skip

    assert result.status is ChargeStatus.DECLINED
    assert result.code == "card_declined"
    assert result.decline_code == "card_declined"
    assert result.message
    assert result.attempt == 2


def test_charge_needing_authentication_requires_action(gateway, config, uid):
    customer, card = card_on_file(gateway, config, uid, NEEDS_3DS)

    result = gateway.charge(
        customer=customer, payment_method=card.payment_method_id, amount=Money(500, "EUR"),
        invoice_id=f"in_{uid}", attempt=1, description="Invoice KASSA-0003",
    )  # fmt: skip

    assert result.status is ChargeStatus.REQUIRES_ACTION
    assert result.payment_intent and result.payment_intent.startswith("pi_")
    assert result.client_secret and result.client_secret.startswith(result.payment_intent)
    assert stripe_get(config, f"/v1/payment_intents/{result.payment_intent}")["status"] == "requires_action"


def test_an_unknown_customer_is_a_domain_error_not_a_stripe_exception(gateway, config, uid):
    _, card = card_on_file(gateway, config, uid, VISA)

    for call in (
        lambda: gateway.charge(customer="cus_doesnotexist", payment_method=card.payment_method_id,
                               amount=Money(100, "EUR"), invoice_id=f"in_{uid}", attempt=1, description="x"),
        lambda: gateway.attach_payment_method(payment_method=card.payment_method_id, customer="cus_doesnotexist"),
    ):  # fmt: skip
        with pytest.raises((NotFound, InvalidInput)) as raised:
            call()
        assert not isinstance(raised.value, stripe.StripeError)
        assert isinstance(raised.value.__cause__, stripe.InvalidRequestError)  # translated, with the cause kept


def test_an_unknown_setup_intent_is_not_found(gateway):
    with pytest.raises(NotFound):
        gateway.get_setup_intent("seti_doesnotexist")


# ----------------------------------------------------------------------------- outages


def test_stripe_unreachable_is_a_payment_provider_error(config, uid):
    down = StripeGateway(config["stripe_secret_key"], config["stripe_publishable_key"],
                         api_base=f"http://127.0.0.1:{closed_port()}")  # fmt: skip
    with pytest.raises(PaymentProviderError) as raised:
        down.create_customer(email=f"down-{uid}@example.com", name=None, address=Address(country="DE"), kassa_id=uid)
    assert isinstance(raised.value.__cause__, stripe.APIConnectionError)

    with pytest.raises(PaymentProviderError):
        down.charge(customer="cus_x", payment_method="pm_x", amount=Money(100, "EUR"), invoice_id=f"in_{uid}",
                    attempt=1, description="x")  # fmt: skip


def test_a_key_stripe_rejects_is_a_payment_provider_error(config, uid):
    gateway = StripeGateway("rk_not_a_secret_key", config["stripe_publishable_key"], api_base=config["stripe_url"])
    with pytest.raises(PaymentProviderError, match="API key"):
        gateway.create_customer(email=f"key-{uid}@example.com", name=None, address=Address(country="DE"), kassa_id=uid)


def test_calls_are_counted_for_usage_metrics(gateway, uid):
    before = usage.snapshot().get("calls.stripe.customers.create", 0.0)
    new_customer(gateway, uid)
    assert usage.snapshot()["calls.stripe.customers.create"] == before + 1


# ----------------------------------------------------------------------------- never charge twice


def test_payment_idempotency_key_is_deterministic_per_invoice_and_attempt():
    key = payment_idempotency_key("in_abc", 1)
    assert key == payment_idempotency_key("in_abc", 1)
    assert key != payment_idempotency_key("in_abc", 2)
    assert key != payment_idempotency_key("in_abd", 1)
    assert payment_idempotency_key("in_a", 12) != payment_idempotency_key("in_a1", 2)
    assert len(key) <= 255  # Stripe's limit for Idempotency-Key


class _FlakyStripe(BaseHTTPRequestHandler):
    """Answers the first POST /v1/payment_intents with a 500, then with a succeeded PaymentIntent
    (stubbed HTTP: localstripe ignores Idempotency-Key, so it cannot show what is sent)."""

    seen: list[tuple[dict[str, str], dict[str, list[str]]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        type(self).seen.append(({k.lower(): v for k, v in self.headers.items()}, form))
        if len(type(self).seen) == 1:
            status, body = 500, {"error": {"type": "api_error", "message": "try again"}}
        else:
            body = stripe_object(
                "payment_intent", id="pi_stubbed", status="succeeded", amount=1500, currency="eur",
                metadata={"kassa_invoice": form["metadata[kassa_invoice]"][0],
                          "kassa_attempt": form["metadata[kassa_attempt]"][0]},
                last_payment_error=None,
            )  # fmt: skip
            status = 200
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky_stripe() -> Iterator[str]:
    _FlakyStripe.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyStripe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_retried_charge_reuses_the_idempotency_key_of_its_attempt(flaky_stripe, uid):
    gateway = StripeGateway("sk_test_stub", "pk_test_stub", api_base=flaky_stripe)

    result = gateway.charge(
        customer="cus_stub", payment_method="pm_stub", amount=Money(1500, "EUR"), invoice_id=f"in_{uid}", attempt=3,
        description="Invoice KASSA-0009",
    )  # fmt: skip

    assert result.status is ChargeStatus.SUCCEEDED and result.attempt == 3
    assert len(_FlakyStripe.seen) == 2  # the SDK retried the 500 once
    keys = {headers.get("idempotency-key") for headers, _ in _FlakyStripe.seen}
    assert keys == {payment_idempotency_key(f"in_{uid}", 3)}
    for _, form in _FlakyStripe.seen:
        assert form["off_session"] == ["true"] and form["confirm"] == ["true"]
        assert form["amount"] == ["1500"] and form["currency"] == ["eur"]


# ----------------------------------------------------------------------------- 3-D Secure
ASKS_FOR_3DS = "4000002760003184"  # localstripe: every confirmation asks for authentication


def test_an_on_session_charge_of_a_3ds_card_is_left_for_stripe_js_and_read_back_once_confirmed(gateway, config, uid):
    customer, card = card_on_file(gateway, config, uid, ASKS_FOR_3DS)

    result = gateway.charge(
        customer=customer, payment_method=card.payment_method_id, amount=Money(1500, "EUR"),
        invoice_id=f"in_{uid}", attempt=1, description="Invoice KASSA-3DS", off_session=False,
    )  # fmt: skip

    assert result.status is ChargeStatus.REQUIRES_ACTION
    assert result.code == "authentication_required" and result.attempt == 1
    assert result.client_secret and result.client_secret.startswith(f"{result.payment_intent}_secret_")
    assert result.payment_intent is not None
    waiting = gateway.get_payment_intent(result.payment_intent)
    assert (waiting.status, waiting.invoice, waiting.awaiting_customer) == ("requires_action", f"in_{uid}", True)

    # what localstripe's shim sends for confirmCardPayment once the person completes authentication
    done = requests.post(
        f"{config['stripe_url']}/v1/payment_intents/{result.payment_intent}/_authenticate",
        params={"success": "true"},
        data={"key": config["stripe_publishable_key"], "client_secret": result.client_secret},
        timeout=30,
    )
    assert done.status_code == 200, done.text
    confirmed = gateway.get_payment_intent(result.payment_intent)
    assert confirmed.status == "succeeded" and confirmed.result.status is ChargeStatus.SUCCEEDED
    assert confirmed.result.attempt == 1 and not confirmed.awaiting_customer


# ----------------------------------------------------------------------------- SEPA Direct Debit
SEPA_OK = "DE89370400440532013000"
SEPA_CLOSED = "DE62370400440532013001"  # localstripe returns it; kassa_local: the bank says account_closed
SEPA_NO_FUNDS = "DE78370400440532013004"  # kassa_local: insufficient_funds


def sepa_on_file(gateway: StripeGateway, config: dict[str, Any], uid: str, iban: str) -> tuple[str, CardSummary]:
    """The checkout's bank-account flow: a SetupIntent offering sepa_debit, confirmed by 'Stripe.js'
    (confirmSepaDebitSetup: payment_method_data[type]=sepa_debit), attached by kassa."""
    customer = new_customer(gateway, uid)
    intent = gateway.create_setup_intent(
        customer=customer, metadata={"kassa_subscription": f"sub_{uid}"}, payment_method_types=["card", "sepa_debit"]
    )
    assert intent.client_secret and intent.payment_method_types == ("card", "sepa_debit")
    confirmed = confirm_sepa_debit_setup_request(config, intent.id, intent.client_secret, iban, "Daan", "d@example.nl")
    assert confirmed.status_code == 200, confirmed.text
    info = gateway.get_setup_intent(intent.id)
    assert info.status == "succeeded" and info.payment_method
    return customer, gateway.attach_payment_method(
        payment_method=info.payment_method, customer=customer, mandate=info.mandate
    )


def wait_for_intent(gateway: StripeGateway, payment_intent: str, status: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        intent = gateway.get_payment_intent(payment_intent)
        if intent.status == status or time.monotonic() > deadline:
            return intent
        time.sleep(0.1)


def test_a_sepa_account_is_saved_with_its_iban_last4_and_mandate_reference(gateway, config, uid):
    _, account = sepa_on_file(gateway, config, uid, SEPA_OK)

    assert account.type.value == "sepa_debit" and account.is_bank_account
    assert (account.last4, account.country, account.bank_code) == ("3000", "DE", "37040044")
    assert account.mandate is not None and account.mandate.reference == "NXDSYREGC9PSMKWY"  # localstripe's


def test_a_sepa_debit_is_processing_and_then_succeeds(gateway, config, uid):
    customer, account = sepa_on_file(gateway, config, uid, SEPA_OK)

    result = gateway.charge(
        customer=customer, payment_method=account.payment_method_id, amount=Money(1500, "EUR"),
        invoice_id=f"in_{uid}", attempt=1, description="Invoice KASSA-SEPA", payment_method_type="sepa_debit",
    )  # fmt: skip

    assert result.status is ChargeStatus.PROCESSING and result.attempt == 1
    assert result.payment_intent is not None
    settled = wait_for_intent(gateway, result.payment_intent, "succeeded")
    assert settled.result.status is ChargeStatus.SUCCEEDED and settled.invoice == f"in_{uid}"


@pytest.mark.parametrize(("iban", "reason"), [(SEPA_CLOSED, "account_closed"), (SEPA_NO_FUNDS, "insufficient_funds")])
def test_a_returned_sepa_debit_fails_later_with_the_banks_reason(gateway, config, uid, iban, reason):
    customer, account = sepa_on_file(gateway, config, uid, iban)

    result = gateway.charge(
        customer=customer, payment_method=account.payment_method_id, amount=Money(1500, "EUR"),
        invoice_id=f"in_{uid}", attempt=1, description="Invoice KASSA-SEPA", payment_method_type="sepa_debit",
    )  # fmt: skip

    assert result.status is ChargeStatus.PROCESSING  # the bank answers days later (here ~0.5 s)
    assert result.payment_intent is not None
    failed = wait_for_intent(gateway, result.payment_intent, "requires_payment_method")
    assert failed.result.status is ChargeStatus.DECLINED
    assert failed.result.decline_code == reason and failed.result.attempt == 1
